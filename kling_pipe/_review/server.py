"""The review server: the live page of one storyboard on 127.0.0.1, safe on a shared machine.

What it promises, each kept in one place here:

* **Loopback only**: it binds ``127.0.0.1`` and nothing else (`ReviewSite.start`).
* **Host checked** (`_guard`): a request whose ``Host`` is not ``127.0.0.1:PORT`` or
  ``localhost:PORT`` is refused (421), so a web page whose name was rebound to 127.0.0.1
  (DNS rebinding) reaches nothing.
* **A token per session**: a secret made at start and printed in the URL. The page itself
  wants it in its URL (``/?token=...``, else 403; a reload shows the cookie) and leaves a
  cookie of its own (``HttpOnly``, ``SameSite=Strict``) that its files and events need; every
  request that changes anything carries it in the ``X-Review-Token`` header (else 403),
  which no other site's page can send without a CORS preflight that this server never grants.
* **Only the output folder**: ``/files/...`` serves regular files inside the storyboard's
  output folder for the origin, resolved (symbolic links followed) and checked to be still
  inside it, and only videos and pictures (`MEDIA_TYPES`: an HTML or script file someone
  left there never runs as the page); anything else is 404, nothing is listed.
* **No network from the page**: a Content-Security-Policy of ``default-src 'self'`` (no
  inline script at all), and nothing the page names is anywhere else.

The buttons call the commands' own functions (`pick_take`, `approve_shots`,
`unapprove_shots`, `mark_for_rerender`, `unmark`: `kling_pipe._review.actions`) and show
their refusals as the commands print them; they run one at a time, in a thread, like a
command would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from kling_pipe._outputs.contact_sheet import CardContext, SheetShot, SheetTake, shot_card
from kling_pipe._outputs.frames import Thumb, fresh_thumb, identity_of
from kling_pipe._records.layout import OutputLayout
from kling_pipe._review import actions
from kling_pipe._review.board import Board, RecordsClock, read_board
from kling_pipe._review.page import CSS, JS, page
from kling_pipe._shotlist.specs import LocalImage, ShotList
from kling_pipe.exceptions import KlingPipeError

log = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
TOKEN_HEADER: Final = "X-Review-Token"  # noqa: S105 - a header's name
#: How often the records are stat'ed for a change (a few `stat` calls each time).
POLL_S: Final = 0.3
#: After reading the board, wait this many times as long as the reading took (at least).
BUSY_SHARE: Final = 4
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: What the page shows from the output folder: videos and pictures, nothing that runs.
MEDIA_TYPES: Final = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Review:
    """One storyboard's review: its board as last read, the clients following it, the token."""

    def __init__(self, shotlist: ShotList, origin: str, *, token: str | None = None) -> None:
        self.shotlist = shotlist
        self.origin = origin
        self.token = token or secrets.token_urlsafe(24)
        self.layout = OutputLayout.of(shotlist, origin)
        #: The port served on, once known: until then every request is refused.
        self.port: int | None = None
        self._clock = RecordsClock(shotlist, origin)
        self._cards: dict[str, str] = {}
        self._totals = ""
        self._clients: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self._acting = asyncio.Lock()
        self._poke = asyncio.Event()

    def allow_port(self, port: int) -> None:
        """Accept the Host names of *port* on loopback (and no other)."""
        self.port = port

    @property
    def cookie(self) -> str:
        """The session cookie's name: one per port, since cookies ignore ports."""
        return f"kling_review_{self.port or 0}"

    # --- the board and the cards ---------------------------------------------------------

    def _context(self, board: Board) -> CardContext:
        return CardContext(
            href=self._href,
            thumbs=self._thumbs,
            usd="USD simulated" if board.simulated else "USD",
            source_name=self.shotlist.source.name,
            live=True,
        )

    def _href(self, path: Path) -> str:
        relative = Path(os.path.relpath(path.absolute(), self.layout.folder.absolute()))
        return "/files/" + quote(relative.as_posix())

    def _thumbs(
        self, take: SheetTake, shot_id: str, stem: str
    ) -> tuple[Thumb | None, Thumb | None]:
        """Return the thumbnails a run made, if they are fresh; the page never makes one itself."""
        try:
            if take.video is not None:
                dests = self.layout.thumbs_of(self.layout.thumb_stem(take.video))
                identity = identity_of(take.video)
                return fresh_thumb(dests[0], identity), fresh_thumb(dests[1], identity)
            spec = self.shotlist.shot(shot_id)
        except (OSError, KeyError):
            return None, None
        found: list[Thumb | None] = []
        for image, dest in zip(
            (spec.image, spec.last_image), self.layout.thumbs_of(stem), strict=True
        ):
            if not isinstance(image, LocalImage):
                found.append(None)
                continue
            try:
                found.append(fresh_thumb(dest, identity_of(self.shotlist.resolve(image))))
            except OSError:  # the image is not on this machine: the records alone
                found.append(None)
        return found[0], found[1]

    def _render(self, board: Board) -> tuple[dict[str, str], str]:
        ctx = self._context(board)
        cards = {shot.id: shot_card(n, shot, ctx)[0] for n, shot in enumerate(board.shots, 1)}
        return cards, _totals(board.shots, board)

    async def refresh(self) -> None:
        """Read the board again and push every card that changed to every client."""
        board = await asyncio.to_thread(read_board, self.shotlist, self.origin)
        cards, totals = await asyncio.to_thread(self._render, board)
        changed = [(sid, html) for sid, html in cards.items() if self._cards.get(sid) != html]
        self._cards = cards
        for sid, html in changed:
            self._send("card", json.dumps({"id": sid, "html": html}))
        if totals != self._totals:
            self._totals = totals
            self._send("totals", json.dumps({"html": totals}))

    def _send(self, event: str, data: str) -> None:
        for queue in self._clients:
            queue.put_nowait((event, data))

    async def follow(self) -> None:
        """Follow the records until cancelled: read the board again whenever they change.

        Reading the board checks every video's sha256 (as `status` does), so on a big board
        of big files it costs: the next reading waits at least `BUSY_SHARE` times as long as
        the last one took, so following a run never takes more than a share of one core.
        """
        loop = asyncio.get_running_loop()
        while True:
            pause = POLL_S
            if self._clock.changed() or self._poke.is_set():
                self._poke.clear()
                started = loop.time()
                try:
                    await self.refresh()
                except KlingPipeError as error:  # records mid-change: read them next time
                    log.debug("review: records not readable now: %s", error)
                pause = max(POLL_S, (loop.time() - started) * BUSY_SHARE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), pause)

    # --- the routes -----------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        """Serve the page, for the URL with the token; it leaves the session's cookie.

        A reload (the page takes the token out of the address bar) is let in by the cookie.
        """
        given = request.query.get("token") or request.cookies.get(self.cookie, "")
        if not hmac.compare_digest(given, self.token):
            raise web.HTTPForbidden(text="kling-pipe review: open the URL printed, with its token")
        if not self._cards:
            await self.refresh()
        board_name = self.shotlist.storyboard.name
        body = page(
            title=f"{board_name} — review",
            name=board_name,
            totals=self._totals,
            cards="\n".join(self._cards.values()),
            token=self.token,
        )
        response = web.Response(text=body, content_type="text/html")
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        return response

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every card now, then each card that changes, as it changes."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        for sid, html in self._cards.items():
            queue.put_nowait(("card", json.dumps({"id": sid, "html": html})))
        queue.put_nowait(("totals", json.dumps({"html": self._totals})))
        self._clients.add(queue)
        try:
            await response.write(b"retry: 1000\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                if item is None:
                    break
                event, data = item
                await response.write(f"event: {event}\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            pass  # the page went away; a cancellation (the server stopping) goes on up
        finally:
            self._clients.discard(queue)
        return response

    async def close_clients(self) -> None:
        """End every event stream (the server is stopping)."""
        for queue in self._clients:
            queue.put_nowait(None)

    async def file(self, request: web.Request) -> web.StreamResponse:
        """Serve a file inside the output folder (resolved, links followed, checked), else 404."""
        path = media_inside(self.layout.folder, request.match_info["tail"])
        if path is None:
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={"Content-Type": MEDIA_TYPES[path.suffix.lower()]})

    async def static(self, request: web.Request) -> web.StreamResponse:
        """Serve the page's script and styles."""
        if request.path == "/app.js":
            return web.Response(text=JS, content_type="text/javascript")
        return web.Response(text=CSS, content_type="text/css")

    async def act(self, request: web.Request) -> web.StreamResponse:
        """Do what a button says: the command's own function, one at a time; refusals as its."""
        action = request.match_info["action"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("shot"), str):
            return _answer(400, error='send {"shot": "<id>"} as JSON')
        take = body.get("take")
        if action in {"pick", "pick-preview"} and (
            not isinstance(take, int) or isinstance(take, bool) or not 1 <= take <= 8
        ):
            return _answer(400, error="a pick names its take, from 1 to 8")
        do = actions.ACTIONS.get(action)
        if do is None:
            raise web.HTTPNotFound
        async with self._acting:
            try:
                message = await asyncio.to_thread(
                    do, self.shotlist, body["shot"], take, origin=self.origin
                )
            except KlingPipeError as error:
                return _answer(409, error=str(error))
        self._poke.set()
        return _answer(200, message=message)

    # --- the guard ------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Host checked, token checked, security headers on every answer (refusals too)."""
        try:
            self._check(request)
            response = await handler(request)
        except web.HTTPException as refusal:  # answered, not raised: it gets the headers too
            response = web.Response(status=refusal.status, text=refusal.text or refusal.reason)
        response.headers.update(_SECURITY_HEADERS)
        return response

    def _check(self, request: web.Request) -> None:
        if self.port is None or not host_allowed(request.host, self.port):
            raise web.HTTPMisdirectedRequest(text="kling-pipe review: wrong Host")
        if request.path == "/":
            return  # the page checks its own token, in its URL
        if request.method != "GET":
            given = request.headers.get(TOKEN_HEADER, "")
        else:
            given = request.cookies.get(self.cookie, "")
        if not hmac.compare_digest(given, self.token):
            raise web.HTTPForbidden(text="kling-pipe review: no token")


def media_inside(folder: Path, tail: str) -> Path | None:
    """Return the video or picture *tail* names inside *folder*, or None (blocking: stats).

    Resolved with every link followed, then checked: a path that leads out of the folder
    (``..``, an absolute path, a link to elsewhere), a file of another kind, or nothing at
    all is None.
    """
    root = folder.resolve()
    try:
        path = (root / tail).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not path.is_relative_to(root) or path.suffix.lower() not in MEDIA_TYPES:
        return None
    return path if path.is_file() else None


def host_allowed(host: str, port: int) -> bool:
    """Whether a request's ``Host`` names this server on loopback: nothing else is answered."""
    return host in {f"{HOST}:{port}", f"localhost:{port}"}


def _answer(status: int, **fields: Any) -> web.Response:
    return web.json_response({"ok": status == 200, **fields}, status=status)


def _totals(shots: tuple[SheetShot, ...], board: Board) -> str:
    counts: dict[str, int] = {}
    for shot in shots:
        counts[shot.status] = counts.get(shot.status, 0) + 1
    money = (
        f"{board.spent} USD simulated (bundled mock)"
        if board.simulated
        else f"{board.spent} USD spent"
    )
    parts = [
        f"{len(shots)} shot{'s' * (len(shots) != 1)}",
        money,
        ", ".join(f"{n} {status}" for status, n in counts.items()),
    ]
    return " · ".join(f'<span class="total">{_esc(p)}</span>' for p in parts)


def _esc(text: str) -> str:
    import html  # noqa: PLC0415 - small, and only here

    return html.escape(text, quote=True)


def make_app(review: Review) -> web.Application:
    """Build the review's aiohttp application (routes, guard); following starts with it."""
    app = web.Application(middlewares=[review.guard], client_max_size=64 * 1024)
    app.router.add_get("/", review.index)
    app.router.add_get("/events", review.events)
    app.router.add_get("/app.js", review.static)
    app.router.add_get("/app.css", review.static)
    app.router.add_get("/files/{tail:.+}", review.file)
    app.router.add_post("/api/{action}", review.act)

    async def following(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(review.follow())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def closing(_app: web.Application) -> None:
        await review.close_clients()

    app.cleanup_ctx.append(following)
    app.on_shutdown.append(closing)
    return app


class ReviewSite:
    """The review served on 127.0.0.1 (a free port unless given), started and stopped."""

    def __init__(self, review: Review, port: int = 0) -> None:
        self.review = review
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The URL to open: the page, with the session's token."""
        return f"http://{HOST}:{self.port}/?token={self.review.token}"

    async def start(self) -> str:
        """Bind 127.0.0.1 and serve; return the URL to open."""
        runner = web.AppRunner(make_app(self.review), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner  # closed by `close` even when the port is taken
        site = web.TCPSite(runner, HOST, self._port)
        await site.start()
        server = site._server  # noqa: SLF001 - the port the kernel chose
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self.review.allow_port(self.port)
        return self.url

    async def close(self) -> None:
        """Stop serving (event streams ended, the port freed)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
