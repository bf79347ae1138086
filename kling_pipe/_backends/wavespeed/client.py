"""WaveSpeed's v3 REST API over aiohttp: the one real implementation of `Backend`.

Built to WaveSpeed's public API (summarised in docs/mock.md), not to the mock's habits, so the
same code talks to real WaveSpeed, to the bundled mock and to any server that honours it.
The caller owns the `aiohttp.ClientSession` and passes it in with the base URL; this module
never builds either.

Money safety: `submit` is the only call that costs money. It is retried only when the server
answered 429, or a 5xx in WaveSpeed's own envelope (nothing was created), or the connection
could not even be opened. When the request may have reached the server but no usable answer
came back (a bare 5xx or 408 from something in front of the API among them), it raises
`SubmitOutcomeUnknown` at once and never resends: the caller looks the task up in the history.
Every other call is safe to repeat and is retried on 429, 5xx and connection errors.

Clock safety: the server's clock (from each answer's ``Date``) places a lost submit's window
in the history, so it is trusted only while it agrees with the server's own task times: a
submit answer's ``created_at`` must fall while the request was on the wire, and no task may
be dated in the server's future. Until a submit answer agrees again, `clock_offset` is None,
and a window placed without it never concludes "no task".

Key safety: the API key is sent only to the base URL's origin, never on the upload PUT (a
presigned storage URL) nor to a CDN serving outputs; it never appears in `repr`, in log
records, or in exception messages. Every text a server sends is scrubbed whole by the
client's `Scrubber` before it is kept or cut short for a message (a server echoing the key
gets it replaced by ``***``), and the parser of answers is handed the same scrubber, so a
failed task's ``error`` is clean before any code past the border sees it.

Trust: a task id from an answer is a `TaskId` only once `parse_task_id` proved its form; an
answer to ``get_prediction(x)`` that describes another task raises `WrongTaskError`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import attrs
import stamina

from kling_pipe import _files as durable
from kling_pipe._backends.account import Charge, Quote, ServerModel
from kling_pipe._backends.base import (
    MAX_PAGE_SIZE,
    Download,
    Prediction,
    SubmitRequest,
    TaskId,
    parse_task_id,
)

if TYPE_CHECKING:
    from kling_pipe._backends.base import Backend
from kling_pipe._backends.wavespeed.parsing import (
    ERRORS_BY_STATUS,
    NOT_JSON,
    balance_from_json,
    billing_page_from_json,
    field,
    format_time,
    is_envelope,
    json_or_none,
    models_from_json,
    prediction_from_json,
    price_from_formula,
    price_quote_from_json,
    pricing_quote_from_json,
    server_offset,
)
from kling_pipe._backends.wavespeed.retries import (
    MaybeSentError,
    RetryEvent,
    RetryPolicy,
    may_follow_an_action,
    retry_wait_s,
)
from kling_pipe._backends.wavespeed.scrub import Scrubber
from kling_pipe._backends.wavespeed.urls import origin_of, safe_url, validate_base_url
from kling_pipe._decisions.pacing import parse_retry_after
from kling_pipe._files import looks_like_mp4
from kling_pipe._shotlist.images import content_type, sniff
from kling_pipe.exceptions import (
    ApiError,
    AuthError,
    BackendConnectionError,
    BackendError,
    GatewayError,
    NotFoundError,
    NotMp4Error,
    ProtocolError,
    QuoteUnavailableError,
    RateLimitedError,
    ServerError,
    SubmitOutcomeUnknown,
    TruncatedDownloadError,
    WrongTaskError,
)

__all__ = ["Timeouts", "WaveSpeedClient"]

#: Named for what users see in their logs, not for where the module sits.
_log = logging.getLogger("kling_pipe.wavespeed")

T = TypeVar("T")


def steady_seconds() -> float:
    """Seconds on a clock that never jumps and, where the system has one, counts suspends.

    Linux's ``CLOCK_BOOTTIME`` keeps counting while a laptop sleeps (``time.monotonic``
    would not, and the server's clock carried forward on it would fall behind by the nap);
    elsewhere ``time.monotonic``, and the next answer's ``Date`` puts it right.
    """
    boot = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boot) if boot is not None else time.monotonic()


_UPLOAD_TICKET_PATH: Final = "/api/v3/media/uploads"
_HISTORY_PATH: Final = "/api/v3/predictions"
_MODELS_PATH: Final = "/api/v3/models"
#: The quote routes, newest contract first: the official CLI calls ``/model/price`` and
#: calls ``/model/pricing`` "a legacy contract"; WaveSpeed's docs page shows the older one.
_PRICE_PATH: Final = "/api/v3/model/price"
_PRICING_PATH: Final = "/api/v3/model/pricing"
_BALANCE_PATH: Final = "/api/v3/balance"
_BILLINGS_PATH: Final = "/api/v3/billings/search"
#: Billing pages read at most: a run's window on a busy account, never an endless walk.
_MAX_BILLING_PAGES: Final = 200
#: A JSON answer larger than this is not an API envelope: refuse rather than buffer it.
_MAX_JSON_BYTES: Final = 8 * 1024 * 1024
#: Download chunk size: memory use is bounded by this, whatever the video's size.
_CHUNK_BYTES: Final = 1024 * 1024
#: How much of a server's error text goes into an exception message (after scrubbing).
_MAX_MESSAGE_CHARS: Final = 300
#: How much of an answer that is not JSON an exception message quotes (after scrubbing).
_MAX_QUOTED_BODY_CHARS: Final = 80
#: How far a task's ``created_at`` may lie outside the server's clock as its ``Date`` headers
#: tell it (whole seconds, read at either end of a request) before the two are taken to
#: disagree: the settle step's own slack, so a window placed on the clock still holds the task.
_CLOCK_SLACK: Final = timedelta(seconds=5)
#: Model ids become URL paths: only these characters, so an id can never escape the path.
_MODEL_ID: Final = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+")


@attrs.frozen(kw_only=True)
class Timeouts:
    """Per-request time limits, in seconds."""

    #: Opening a connection (DNS, TCP, TLS).
    connect_s: float = 15.0
    #: A whole API exchange: the API answers in well under a second when healthy.
    api_total_s: float = 60.0
    #: The longest silence while streaming a download or an upload; no limit on the total,
    #: since a large video on a slow link may take minutes.
    transfer_read_s: float = 60.0


# --------------------------------------------------------------------------- the client


def _redacted(_: str) -> str:
    return "'***'"


@attrs.define
class WaveSpeedClient:
    """The `Backend` for WaveSpeed's API (and for the mock server, which speaks the same API).

    *session* is the run's one `aiohttp.ClientSession`, owned and closed by the caller; it must
    not carry an Authorization header of its own. *base_url* is checked by
    `validate_base_url`. *origin* is what records call this server: its base URL unless told
    otherwise (the bundled mock is ``mock``, whose port changes every run). *on_retry* is
    called before every retry (for summaries and logs); *rng* (``[0, 1)`` draws for jitter)
    and *clock* (aware UTC now) are injectable for tests.
    """

    _session: aiohttp.ClientSession = attrs.field(repr=False, alias="session")
    base_url: str = attrs.field(converter=validate_base_url)
    _api_key: str = attrs.field(repr=_redacted, alias="api_key")
    _origin: str | None = attrs.field(default=None, kw_only=True, alias="origin")
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, kw_only=True)
    timeouts: Timeouts = attrs.field(factory=Timeouts, kw_only=True)
    on_retry: Callable[[RetryEvent], None] | None = attrs.field(
        default=None, kw_only=True, repr=False
    )
    rng: Callable[[], float] = attrs.field(default=random.random, kw_only=True, repr=False)
    clock: Callable[[], datetime] = attrs.field(
        default=lambda: datetime.now(UTC), kw_only=True, repr=False
    )
    #: Seconds that never jump (not even when the machine's clock is corrected): the server's
    #: clock is carried forward on it from the latest ``Date``. Injectable for tests.
    monotonic: Callable[[], float] = attrs.field(default=steady_seconds, kw_only=True, repr=False)
    #: The server's clock at the latest API answer (from its ``Date`` header), and
    #: `monotonic` then; None before the first one.
    _server_seen: tuple[datetime, float] | None = attrs.field(default=None, init=False, repr=False)
    #: Set when a task's ``created_at`` disagreed with the ``Date`` clock; cleared by a submit
    #: answer that agrees with it again.
    _clock_doubted: bool = attrs.field(default=False, init=False, repr=False)
    #: Masks the key in every text a server sends; made once the key is checked.
    _scrubber: Scrubber = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Messages here never quote the key: they are printed to users.
        if not self._api_key:
            raise AuthError("the WaveSpeed API key is empty", status=401)
        if any(c.isspace() or not c.isprintable() for c in self._api_key):
            raise AuthError(
                "the WaveSpeed API key contains spaces or control characters", status=401
            )
        if aiohttp.hdrs.AUTHORIZATION in self._session.headers:
            msg = "the session must not carry an Authorization header: the client adds it per call"
            raise ValueError(msg)
        self._scrubber = Scrubber(self._api_key)

    @property
    def origin(self) -> str:
        """What records call this server: ``mock`` for the bundled mock, else the base URL."""
        return self._origin or self.base_url

    @property
    def clock_offset(self) -> timedelta | None:
        """The server's clock minus ours *now*; None before the first answer with a ``Date``.

        The server's clock is carried forward from the latest answer on a clock that never
        jumps, and compared with ours as it reads at this moment: a machine clock stepped
        (NTP, a user) since that answer changes the offset by the step, so ``clock() +
        clock_offset`` stays the server's time and an intent's send time, written with both
        read together, is placed right.

        None as well while the server's own task times disagree with its ``Date`` (a proxy
        rewriting the header, a server whose clocks differ): see the module docstring.
        """
        server_now = self._server_now()
        if server_now is None or self._clock_doubted:
            return None
        return server_now - self.clock()

    def _server_now(self) -> datetime | None:
        """Return the server's clock now, carried from the latest ``Date``, trusted or not."""
        if self._server_seen is None:
            return None
        server_at, seen_at = self._server_seen
        return server_at + timedelta(seconds=self.monotonic() - seen_at)

    def _check_created_at(self, task: Prediction, *, on_the_wire_s: float | None = None) -> None:
        """Doubt the server's clock if *task*'s ``created_at`` disagrees with it.

        Every task was created before the answer that lists it: one dated later than the
        server's clock (plus `_CLOCK_SLACK`) shows the two clocks differ. A submit's own task
        (*on_the_wire_s*: how long its request took) was created while the request was on
        the wire; one that was trusts the clock again.
        """
        server_now = self._server_now()
        if server_now is None:
            return
        earliest = (
            None
            if on_the_wire_s is None
            else server_now - timedelta(seconds=on_the_wire_s) - _CLOCK_SLACK
        )
        agrees = task.created_at <= server_now + _CLOCK_SLACK and (
            earliest is None or task.created_at >= earliest
        )
        if not agrees:
            if not self._clock_doubted:
                _log.warning(
                    "task %s is dated %s but the server's clock (its Date header) said %s:"
                    " the server's clock is not trusted until a submit's answer agrees with it",
                    task.id,
                    task.created_at.isoformat(timespec="seconds"),
                    server_now.isoformat(timespec="seconds"),
                )
            self._clock_doubted = True
        elif earliest is not None:
            self._clock_doubted = False

    def _learn_server_time(self, date_header: str | None) -> None:
        received_at = self.clock()
        offset = server_offset(date_header, received_at)
        if offset is not None:
            self._server_seen = (received_at + offset, self.monotonic())

    # ------------------------------------------------------------------ Backend methods

    async def upload_image(self, path: Path) -> str:
        """Upload a local image (ticket, then PUT of the raw bytes) and return its public URL.

        The PUT goes to the ticket's storage URL with only the ticket's headers: no
        Authorization, and no Content-Type unless the ticket asks for one (a presigned URL's
        signature may cover it). The ticket and the PUT are each retried on their own.
        """
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise BackendError(f"{path}: cannot read the image: {exc.strerror or exc}") from exc
        body: dict[str, Any] = {"filename": path.name, "size": len(data)}
        # By content, not by name, like the shot-list loader: a misnamed file still uploads
        # with its true type.
        info = sniff(data)
        if info is not None:
            body["content_type"] = content_type(info.kind)
        ticket = await self._retrying(
            "upload ticket", lambda: self._api_call("POST", _UPLOAD_TICKET_PATH, body)
        )
        where = "upload ticket"
        download_url = field(ticket, "download_url", str, where)
        upload = ticket.get("upload")
        if not isinstance(upload, Mapping):
            raise ProtocolError(f"{where}: field 'upload' should be an object")
        method = field(upload, "method", str, f"{where}.upload").upper()
        put_url = field(upload, "url", str, f"{where}.upload")
        headers = upload.get("headers") or {}
        if method not in {"PUT", "POST"}:
            shown = self._scrubber.brief(method, 20)
            raise ProtocolError(f"{where}: unexpected upload method {shown!r}")
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ProtocolError(f"{where}: field 'upload.headers' should map names to strings")
        if origin_of(put_url) is None or origin_of(download_url) is None:
            raise ProtocolError(f"{where}: upload or download URL is not an absolute URL")
        if self._scrubber.finds_key(put_url) or self._scrubber.finds_key(download_url):
            # The PUT would hand the key to the storage host; the download URL goes into
            # records and to WaveSpeed in every submit.
            raise ProtocolError(f"{where}: an upload or download URL carries the API key")
        await self._retrying("upload", lambda: self._put_once(method, put_url, data, dict(headers)))
        return download_url

    async def submit(self, request: SubmitRequest) -> Prediction:
        """Create a task: ``POST /api/v3/{model}``. Costs money; see the module docstring.

        Raises SubmitOutcomeUnknown when the request may have reached the server without a
        usable answer: the connection dropped or timed out after sending, a success answer
        cannot be read, or a 5xx or 408 came without WaveSpeed's envelope (a gateway or a CDN
        can say that after the API acted). Retried only after WaveSpeed's own 429/5xx answer
        or a connection never opened. Its task's ``created_at`` is checked against the
        server's clock (see the module docstring).
        """
        if not _MODEL_ID.fullmatch(request.model):
            msg = f"model id {request.model!r:.80} is not a WaveSpeed model path"
            raise ValueError(msg)
        body: dict[str, Any] = {"duration": request.duration}
        if request.prompt or "multi_prompt" not in request.fields:
            body["prompt"] = request.prompt
        if request.image_url is not None:
            body["image"] = request.image_url
        if request.last_image_url is not None:
            body[request.end_frame_field] = request.last_image_url
        body.update(request.fields)
        path = f"/api/v3/{request.model}"

        async def once() -> Prediction:
            sent_at, sent_steady = self.clock(), self.monotonic()
            try:
                data = await self._api_call("POST", path, body)
                task = prediction_from_json(data, scrub=self._scrubber)
            except (MaybeSentError, ProtocolError, GatewayError) as exc:
                msg = (
                    f"submit {request.model}: the task may have been created but no usable"
                    f" answer came back ({exc}); look it up in the history, do not resend"
                )
                raise SubmitOutcomeUnknown(msg, model=request.model, sent_at=sent_at) from exc
            self._check_created_at(task, on_the_wire_s=self.monotonic() - sent_steady)
            return task

        return await self._retrying("submit", once)

    async def get_prediction(self, task_id: TaskId) -> Prediction:
        """Return a task's state: ``GET /api/v3/predictions/{id}/result``, retried when safe.

        Raises WrongTaskError, at once and without retrying, when the answer describes
        another task (a cache or proxy answering every poll with one task's body): following
        it would deliver one shot another's video. A *task_id* that did not come from
        `parse_task_id` and has not its form is a caller's bug: ValueError, nothing sent.
        """
        try:
            parse_task_id(task_id, "task id")
        except ProtocolError:
            msg = f"task id {task_id!r:.80} is not a WaveSpeed task id"
            raise ValueError(msg) from None
        operation = "get_prediction"
        path = f"/api/v3/predictions/{task_id}/result"
        data = await self._retrying(operation, lambda: self._api_call("GET", path, None))
        prediction = prediction_from_json(data, scrub=self._scrubber)
        self._check_created_at(prediction)
        if prediction.id != task_id:
            raise WrongTaskError(
                f"GET {path}: the answer describes task {prediction.id}, not {task_id};"
                " something between us and the API (a cache, a proxy) answers for the wrong"
                " task, so the answer is not used"
            )
        return prediction

    async def list_predictions(  # noqa: PLR0913 -- keyword-only filters, each optional
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
    ) -> list[Prediction]:
        """Return one page of the history: ``POST /api/v3/predictions`` with the filters given.

        Times must be timezone-aware; they are sent in UTC. Raises ValueError for a page below
        1 or a page size outside 1..100. A page with one unreadable item (an id that is not
        a task id, say) is refused whole with ProtocolError: see `Backend.list_predictions`.
        """
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            msg = f"page must be 1 or more and page_size 1..{MAX_PAGE_SIZE}"
            raise ValueError(msg)
        body: dict[str, Any] = {"page": page, "page_size": page_size}
        if model is not None:
            body["model"] = model
        if status is not None:
            body["status"] = status
        if created_after is not None:
            body["created_after"] = format_time(created_after)
        if created_before is not None:
            body["created_before"] = format_time(created_before)
        data = await self._retrying(
            "list_predictions", lambda: self._api_call("POST", _HISTORY_PATH, body)
        )
        items = data.get("items")
        if not isinstance(items, list):
            # Missing or null is not "no tasks": a read taken so could conclude that a lost
            # submit created nothing and pay for it twice.
            got = "missing" if "items" not in data else type(items).__name__
            raise ProtocolError(f"history: field 'items' should be a list, got {got}")
        page_of: list[Prediction] = []
        for index, item in enumerate(items):
            try:
                page_of.append(prediction_from_json(item, scrub=self._scrubber))
            except ProtocolError as exc:
                msg = f"history page {page}, item {index}: {exc}; the whole page is refused"
                raise ProtocolError(msg) from None
        for listed in page_of:
            self._check_created_at(listed)
        return page_of

    # ------------------------------------------------------------------ money

    async def list_models(self) -> list[ServerModel]:
        """Return WaveSpeed's model list (``GET /api/v3/models``), each model read strictly."""
        data = await self._retrying("list_models", lambda: self._api_data("GET", _MODELS_PATH))
        return models_from_json(data, scrub=self._scrubber)

    async def quote(self, model: str, inputs: dict[str, object]) -> Quote:
        """Return what one request of *model* with *inputs* costs, and which route said so.

        ``/model/price`` first, then ``/model/pricing``, each skipped only when it is not
        there (404); then the models list's base price and formula (`price_from_formula`).
        Raises QuoteUnavailableError when none gives a price, and anything else a route
        answers (a 400 about the inputs, a broken answer) as it is: never a guessed price.
        """
        body = {"model_id": model, "inputs": inputs}
        readers = (
            (_PRICE_PATH, price_quote_from_json),
            (_PRICING_PATH, pricing_quote_from_json),
        )
        for path, read in readers:
            try:
                data = await self._retrying(
                    "quote", functools.partial(self._api_call, "POST", path, body)
                )
            except NotFoundError:
                continue
            return read(data, model, scrub=self._scrubber)
        listed = next((m for m in await self.list_models() if m.model_id == model), None)
        price = None if listed is None else price_from_formula(listed, inputs)
        if price is None:
            why = (
                "is not in the models list" if listed is None else "has no price there we can read"
            )
            raise QuoteUnavailableError(
                f"no quote for {model}: {_PRICE_PATH} and {_PRICING_PATH} are not there, "
                f"and the model {why}"
            )
        return Quote(model_id=model, usd=price, source="models")

    async def balance(self) -> Decimal:
        """Return the account's balance in USD (``GET /api/v3/balance``)."""
        data = await self._retrying("balance", lambda: self._api_call("GET", _BALANCE_PATH, None))
        return balance_from_json(data)

    async def billings(self, *, since: datetime, until: datetime) -> list[Charge]:
        """Return every task's charge and refund from *since* to *until* (``billings/search``).

        Read to the last page (`_MAX_BILLING_PAGES` at most: more is a ProtocolError, not a
        partial list that would look like money missing). NotFoundError when the account
        does not answer the search: the caller falls back to the balance.
        """
        charges: list[Charge] = []
        for page in range(1, _MAX_BILLING_PAGES + 1):
            body = {
                "page": page,
                "page_size": MAX_PAGE_SIZE,
                "start_time": format_time(since),
                "end_time": format_time(until),
            }
            data = await self._retrying(
                "billings", functools.partial(self._api_call, "POST", _BILLINGS_PATH, body)
            )
            found, more = billing_page_from_json(data, scrub=self._scrubber)
            charges.extend(found)
            if not more:
                return charges
        raise ProtocolError(f"billings: more than {_MAX_BILLING_PAGES} pages for one run's window")

    async def download(self, url: str, dest: Path) -> Download:
        """Stream an output to *dest*: temp file beside it, sha256 on the fly, fsync, rename.

        Checked while streaming: the bytes must start like an MP4 (NotMp4Error otherwise, not
        retried) and match the Content-Length (TruncatedDownloadError, retried from scratch).
        On any error or cancellation the temp file is removed and *dest* is left as it was.
        The key is sent only if *url* is on the base URL's origin. Creates *dest*'s folder.
        """
        origin = origin_of(url)
        if origin is None or origin[0] not in ("http", "https"):
            msg = f"output URL {safe_url(url)} is not an http(s) URL"
            raise ValueError(msg)
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        return await self._retrying("download", lambda: self._download_once(url, dest))

    # ------------------------------------------------------------------ plumbing

    def _scrub(self, text: str) -> str:
        """Make server text safe and short for a one-line message: scrubbed whole, then cut."""
        return self._scrubber.brief(text, _MAX_MESSAGE_CHARS)

    def _api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    async def _retrying(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run *call* with stamina's retry loop, backing off per `retry_wait_s`.

        Each retry is logged as it is decided, before the wait: what failed, how long until
        the next try and which try it is (``retrying get_prediction in 1.2 s (attempt 2 of
        6) after: ... HTTP 503 ...``). The CLI silences stamina's own, vaguer, lines.
        """
        failures = 0
        last_wait = 0.0
        last_error: BackendError | None = None
        started = time.monotonic()

        # BaseException: stamina 26.2 hands its hook any exception (26.1 said Exception).
        def backoff_hook(exc: BaseException) -> bool | float:
            nonlocal failures, last_wait, last_error
            failures += 1
            wait = retry_wait_s(exc, failures, self.retry, self.rng())
            if wait is None or not isinstance(exc, BackendError):
                return False
            last_wait, last_error = wait, exc
            # stamina stops after `attempts` tries or once `timeout_s` has passed since the
            # first: only a retry that will happen is announced.
            if failures < self.retry.attempts and time.monotonic() - started < self.retry.timeout_s:
                _log.warning(
                    "retrying %s in %.1f s (attempt %d of %d) after: %s",
                    operation,
                    wait,
                    failures + 1,
                    self.retry.attempts,
                    exc,
                )
            return wait

        async for attempt in stamina.retry_context(
            on=backoff_hook, attempts=self.retry.attempts, timeout=self.retry.timeout_s
        ):
            with attempt:
                if attempt.num > 1 and last_error is not None and self.on_retry is not None:
                    self.on_retry(
                        RetryEvent(
                            operation=operation,
                            attempt=attempt.num,
                            wait_s=last_wait,
                            cause=last_error,
                        )
                    )
                return await call()
        raise AssertionError("unreachable: stamina either returns or raises")

    def _connection_error(
        self, operation: str, exc: BaseException, *, maybe_sent: bool
    ) -> BackendConnectionError:
        """Wrap an aiohttp or timeout error; *maybe_sent* if the request may have gone out."""
        kind = MaybeSentError if maybe_sent else BackendConnectionError
        detail = self._scrub(str(exc)) or type(exc).__name__
        return kind(f"{operation}: connection failed: {type(exc).__name__}: {detail}")

    async def _api_call(
        self, method: str, path: str, body: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        """One API exchange; returns the envelope's ``data`` object or raises a BackendError."""
        data = await self._api_data(method, path, body)
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{method} {path}: the answer's 'data' is not an object")
        return data

    async def _api_data(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> object:
        """One API exchange; returns the envelope's ``data`` (any JSON) or raises a BackendError."""
        operation = f"{method} {path}"
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.api_total_s, sock_connect=self.timeouts.connect_s
        )
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=body,
                headers=self._api_headers(),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                raw = await self._read_limited(response, operation)
                status = response.status
                retry_after = response.headers.get(aiohttp.hdrs.RETRY_AFTER)
                server_date = response.headers.get(aiohttp.hdrs.DATE)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Raised while opening the connection: nothing was sent.
            raise self._connection_error(operation, exc, maybe_sent=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._connection_error(operation, exc, maybe_sent=True) from exc
        _log.debug("%s -> HTTP %d (%d bytes)", operation, status, len(raw))
        if 200 <= status < 300:
            envelope = self._json_object(raw, operation)
            self._learn_server_time(server_date)
            code = envelope.get("code")
            if isinstance(code, int) and not isinstance(code, bool) and not 200 <= code < 300:
                # The envelope's code mirrors the HTTP status; trust the more specific one.
                raise self._api_error(operation, code, raw, retry_after)
            if "data" not in envelope:
                raise ProtocolError(f"{operation}: the answer has no 'data'")
            return envelope["data"]
        if 300 <= status < 400:
            raise ProtocolError(f"{operation}: unexpected redirect (HTTP {status})")
        raise self._api_error(operation, status, raw, retry_after)

    async def _read_limited(self, response: aiohttp.ClientResponse, operation: str) -> bytes:
        """Read a JSON answer's body, refusing one too large to be an API envelope."""
        if (response.content_length or 0) > _MAX_JSON_BYTES:
            raise ProtocolError(f"{operation}: answer too large ({response.content_length} bytes)")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > _MAX_JSON_BYTES:
                raise ProtocolError(f"{operation}: answer too large (over {_MAX_JSON_BYTES} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _json_object(self, raw: bytes, operation: str) -> Mapping[str, Any]:
        """Decode a JSON object, or raise ProtocolError quoting the start of what came instead.

        The whole body is scrubbed before the start is cut from it, and the decoder's error
        (which holds the raw body) is not chained to ours.
        """
        value = json_or_none(raw)
        if value is NOT_JSON:
            text = raw.decode("utf-8", "replace")
            shown = self._scrubber.brief(text, _MAX_QUOTED_BODY_CHARS)
            raise ProtocolError(f"{operation}: the answer is not JSON (or too deep): {shown!r}")
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{operation}: the answer is JSON but not an object")
        return value

    def _api_error(
        self, operation: str, status: int, raw: bytes, retry_after: str | None
    ) -> ApiError:
        """Map an HTTP error status (and its body's message) to the matching ApiError."""
        # The whole text is scrubbed before it is cut (`_scrub`): a key straddling the cut
        # would otherwise leak all but its last few characters.
        value = json_or_none(raw)
        if isinstance(value, Mapping) and isinstance(value.get("message"), str):
            message = value["message"]
        else:
            message = raw.decode("utf-8", "replace")
        message = self._scrub(message)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
        text = f"{operation}: HTTP {status} {reason}" + (f": {message}" if message else "")
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            wait = parse_retry_after(retry_after, self.clock())
            if wait is not None:
                text += f" (retry after {wait:g} s)"
            return RateLimitedError(text, status=status, api_message=message, retry_after_s=wait)
        if may_follow_an_action(status) and not is_envelope(raw):
            return GatewayError(text, status=status, api_message=message)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            return ServerError(text, status=status, api_message=message)
        kind = ERRORS_BY_STATUS.get(status, ApiError)
        return kind(text, status=status, api_message=message)

    async def _put_once(self, method: str, url: str, data: bytes, headers: dict[str, str]) -> None:
        """PUT the image bytes to the storage URL: exactly the ticket's headers, no key."""
        operation = f"upload to {safe_url(url)}"
        skip = set() if any(k.lower() == "content-type" for k in headers) else {"Content-Type"}
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.timeouts.connect_s, sock_read=self.timeouts.transfer_read_s
        )
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, skip_auto_headers=skip, timeout=timeout
            ) as response:
                raw = await self._read_limited(response, operation)
                status = response.status
                retry_after = response.headers.get(aiohttp.hdrs.RETRY_AFTER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._connection_error(operation, exc, maybe_sent=True) from exc
        if not 200 <= status < 300:
            raise self._api_error(operation, status, raw, retry_after)

    async def _download_once(self, url: str, dest: Path) -> Download:
        """One download attempt into a fresh temp file; see `download`."""
        operation = f"download {safe_url(url)}"
        temp = durable.TempFile.beside(dest)
        try:
            size, digest = await self._fetch_into(url, temp.handle, operation)
            await asyncio.to_thread(temp.commit)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            temp.discard()
            msg = f"{operation}: the connection ended before the whole file arrived ({exc})"
            raise TruncatedDownloadError(self._scrub(msg)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            temp.discard()
            raise self._connection_error(operation, exc, maybe_sent=True) from exc
        except BaseException:
            # Includes cancellation: nothing half-written may stay behind.
            temp.discard()
            raise
        return Download(path=dest, size=size, sha256=digest)

    async def _fetch_into(self, url: str, fh: IO[bytes], operation: str) -> tuple[int, str]:
        """GET *url* and copy its body to *fh*; return (size, sha256) once checked complete.

        The MP4 signature is checked as soon as 8 bytes arrive, so an error page is refused
        without downloading all of it.
        """
        headers: dict[str, str] = {"Accept-Encoding": "identity"}
        if origin_of(url) == origin_of(self.base_url):
            headers.update(self._api_headers())
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.timeouts.connect_s, sock_read=self.timeouts.transfer_read_s
        )
        async with self._session.get(url, headers=headers, timeout=timeout) as response:
            if response.status != HTTPStatus.OK:
                raw = await self._read_limited(response, operation)
                retry_after = response.headers.get(aiohttp.hdrs.RETRY_AFTER)
                raise self._api_error(operation, response.status, raw, retry_after)
            encoding = response.headers.get(aiohttp.hdrs.CONTENT_ENCODING, "identity")
            # A compressed body's Content-Length counts compressed bytes: aiohttp then checks
            # completeness itself, and the count below cannot be compared with it.
            expected = response.content_length if encoding.lower() == "identity" else None
            hasher = hashlib.sha256()
            size = 0
            head = b""
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                if len(head) < 8:
                    head += chunk[: 8 - len(head)]
                    if len(head) == 8 and not looks_like_mp4(head):
                        raise NotMp4Error(
                            f"{operation}: the server sent something that is not an MP4"
                        )
                size += len(chunk)
                await asyncio.to_thread(_write_and_hash, fh, hasher.update, chunk)
        if expected is not None and size != expected:
            raise TruncatedDownloadError(
                f"{operation}: got {size} of {expected} bytes; the download was cut short"
            )
        if not looks_like_mp4(head):
            raise NotMp4Error(f"{operation}: the file is too short to be an MP4 ({size} bytes)")
        return size, hasher.hexdigest()


if TYPE_CHECKING:

    def _implements_backend(client: WaveSpeedClient) -> Backend:
        """Let mypy prove that the client satisfies the Backend protocol."""
        return client


def _write_and_hash(fh: IO[bytes], update: Callable[[bytes], object], chunk: bytes) -> None:
    """Write and hash one chunk (in a worker thread: both release the GIL on large buffers)."""
    fh.write(chunk)
    update(chunk)
