"""The application factory and its middlewares.

Middlewares, outermost first: journal, faults, JSON errors, Bearer authentication.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import formatdate
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from mockserver import admin, api, files, money
from mockserver.clock import SystemClock
from mockserver.config import MockConfig
from mockserver.state import MockState
from mockserver.wire import STATE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mockserver.clock import Clock
import hmac
import logging
from typing import TYPE_CHECKING, Final

from mockserver.faults import FaultKind, RouteClass, echo_key, hostile_id
from mockserver.tasks import Answer
from mockserver.wire import (
    CLIENT_GONE,
    DRAWN,
    DROPPED,
    GATEWAY,
    MANGLED,
    PROVENANCE,
    TASK_ID,
    ApiError,
    client_gone,
    drop,
    envelope,
    error_response,
    gateway_page,
    origin,
    wait_unless_gone,
)

if TYPE_CHECKING:
    from typing import Any

    from aiohttp.typedefs import Handler

    from mockserver.faults import Drawn


def create_app(config: MockConfig | None = None, *, clock: Clock | None = None) -> web.Application:
    """Build the mock WaveSpeed application; nothing touches the disk until it starts.

    *clock* defaults to the real clock; pass a `ManualClock` to drive time from a test.
    """
    config = config or MockConfig()
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=MIDDLEWARES)
    app[STATE] = MockState(config, clock or SystemClock())
    app.router.add_routes([*money.ROUTES, *api.ROUTES, *files.ROUTES, *admin.ROUTES])
    app.on_response_prepare.append(_date_header)
    app.cleanup_ctx.append(_lifespan)
    return app


async def _date_header(request: web.Request, response: web.StreamResponse) -> None:
    """Date every answer by the server's clock (the mock clock + ``clock_offset_s``).

    This runs after aiohttp has set its own ``Date`` from the real clock, and replaces it.
    """
    response.headers[hdrs.DATE] = formatdate(request.app[STATE].server_now(), usegmt=True)


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    """Open the state folder and run the deadline ticker for the app's lifetime."""
    state = app[STATE]
    state.open()
    ticker = asyncio.create_task(state.run_ticker(), name="wavespeed-mock-ticker")
    yield
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    await state.close()


_LOG = logging.getLogger(__name__)

#: Route name → the class fault rules target; unnamed routes (admin, unknown) have none.
ROUTE_CLASSES: Final[dict[str, RouteClass]] = {
    "submit": RouteClass.SUBMIT,
    "result": RouteClass.POLL,
    "prediction": RouteClass.POLL,
    "upload_ticket": RouteClass.UPLOAD,
    "upload_put": RouteClass.UPLOAD,
    "upload_binary": RouteClass.UPLOAD,
    "upload_file": RouteClass.DOWNLOAD,
    "output_file": RouteClass.DOWNLOAD,
    "history": RouteClass.OTHER,
    "delete": RouteClass.OTHER,
    "balance": RouteClass.OTHER,
    "webhook_secret": RouteClass.OTHER,
    "models": RouteClass.OTHER,
    "price": RouteClass.OTHER,
    "pricing": RouteClass.OTHER,
    "billings_search": RouteClass.OTHER,
}


def route_class(request: web.Request) -> RouteClass | None:
    """Return the class of the route *request* matched, if it is an API or media route."""
    name = request.match_info.route.name
    return ROUTE_CLASSES.get(name) if name else None


@web.middleware
async def journal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request but the mock's own admin routes; count them by route class.

    A request's entry has no status when nobody received its answer: the mock dropped the
    connection, or the client had gone (or the handler was cancelled) before it was ready.
    A submit's tasks learn the entry's number and that outcome (``/_mock/tasks``).
    """
    if request.path.startswith("/_mock/"):
        return await handler(request)
    state = request.app[STATE]
    route = route_class(request)
    state.journal.counts[route.value if route else "unrouted"] += 1
    status: int | None = None
    answer = Answer.CLIENT_GONE
    try:
        response = await handler(request)
        status = response.status
        answer = _answer(request, response)
        return response
    finally:
        seq = state.journal.record(
            method=request.method,
            path=request.path,
            status=None if answer in {Answer.DROPPED, Answer.CLIENT_GONE} else status,
            monotonic=state.clock.monotonic(),
            wall=state.clock.now(),
            route=route.value if route else None,
            task_id=request.get(TASK_ID) or request.match_info.get("task_id"),
            faults=drawn.kinds if (drawn := request.get(DRAWN)) else [],
        )
        provenance = request.get(PROVENANCE)
        if provenance is not None:
            state.settle(provenance, seq, answer, status)


def _answer(request: web.Request, response: web.StreamResponse) -> Answer:
    """Say what became of a handled request's answer (a streamed one was at least begun)."""
    if request.get(DROPPED):
        return Answer.DROPPED
    if request.get(CLIENT_GONE) or (not response.prepared and client_gone(request)):
        return Answer.CLIENT_GONE
    if request.get(GATEWAY):
        return Answer.GATEWAY_ERROR
    if request.get(MANGLED):
        return Answer.MANGLED
    return Answer.ANSWERED


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the faults drawn for this request around the handler.

    Before it: ``latency`` (real time), ``drop_before``, ``rate_limit``, ``server_error``,
    ``echo_key`` (nothing done). After it, once it acted: ``late_answer`` holds the answer
    until the mock clock reaches arrival + ``delay_s``, then ``drop_after`` closes the
    connection, ``gateway_error`` answers a gateway's HTML page instead, or ``wrong_task``
    and ``hostile_id`` rewrite the answer.
    """
    route = route_class(request)
    if route is None:
        return await handler(request)
    state = request.app[STATE]
    drawn = state.faults.draw(route)
    request[DRAWN] = drawn
    if drawn.latency_s:
        await asyncio.sleep(drawn.latency_s)
    refusal = _before_handler(request, drawn)
    if refusal is not None:
        return refusal
    answer_at = None if drawn.late_answer_s is None else state.clock.now() + drawn.late_answer_s
    response = await handler(request)
    # A streamed answer (a download) has begun already: it can still be cut, not replaced.
    open_answer = not response.prepared and not request.get(CLIENT_GONE)
    if open_answer and answer_at is not None:
        sleeper = asyncio.ensure_future(state.clock.sleep_until(answer_at))
        try:
            if not await wait_unless_gone(request, sleeper):
                request[CLIENT_GONE] = True
                return response
        finally:
            sleeper.cancel()
    if drawn.drop_after:
        drop(request)
    elif open_answer and drawn.gateway_status is not None:
        request[GATEWAY] = True
        echoed = (
            "" if drawn.gateway_echo is None else echo_key(state.config.api_key, drawn.gateway_echo)
        )
        return gateway_page(drawn.gateway_status, detail=echoed)
    elif open_answer and (drawn.wrong_task or drawn.hostile_id is not None):
        return _rewritten(request, response, drawn)
    return response


def _before_handler(request: web.Request, drawn: Drawn) -> web.Response | None:
    """Answer the faults that act instead of the handler (nothing done); None if none."""
    if drawn.drop_before:
        drop(request)
        return web.Response(status=204)
    rule = drawn.error
    if rule is None:
        return None
    if rule.kind is FaultKind.RATE_LIMIT:
        headers = {"Retry-After": str(rule.retry_after_s)}
        return error_response(429, "rate limit exceeded (injected fault)", headers)
    if rule.kind is FaultKind.ECHO_KEY:
        key = request.app[STATE].config.api_key
        return error_response(rule.status, echo_key(key, drawn.echo or "plain"))
    return error_response(rule.status, "server error (injected fault)")


def _rewritten(
    request: web.Request, response: web.StreamResponse, drawn: Drawn
) -> web.StreamResponse:
    """Answer another task's prediction (``wrong_task``), then mangle a task id (``hostile_id``).

    The id mangled is the prediction's, or a history page's first item's.
    """
    if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
        return response
    assert isinstance(response.body, bytes)
    data: Any = json.loads(response.body).get("data")
    if not isinstance(data, dict):
        return response
    state = request.app[STATE]
    if drawn.wrong_task and "task_id" in request.match_info:
        other = state.other_task(request.match_info["task_id"])
        if other is not None:
            data = state.prediction(other, origin(request))
    if drawn.hostile_id is not None:
        form, token = drawn.hostile_id
        items = data.get("items")
        target = (
            data if items is None else (items[0] if isinstance(items, list) and items else None)
        )
        if isinstance(target, dict):
            mangled = hostile_id(form, token)
            target["id"] = mangled
            if isinstance(target.get("urls"), dict):
                target["urls"]["get"] = f"{origin(request)}/api/v3/predictions/{mangled}/result"
            if route_class(request) is RouteClass.SUBMIT:
                request[MANGLED] = True
    return envelope(data)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer errors as ``{"code", "message"}`` JSON, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"not found: {request.method} {request.path}",
            413: f"body: larger than the {request.app[STATE].config.max_body_bytes} bytes allowed",
        }.get(exc.status, exc.reason)
        return error_response(exc.status, message, _kept_headers(exc))
    except Exception:  # noqa: BLE001 - any bug answers as JSON 500, logged with traceback
        _LOG.exception("mock server error on %s %s", request.method, request.path)
        return error_response(500, "internal error in the mock server")


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <key>`` on every ``/api/`` route (media URLs are open)."""
    if request.path.startswith("/api/"):
        expected = f"Bearer {request.app[STATE].config.api_key}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "Unauthorized: invalid or missing API key")
    return await handler(request)


MIDDLEWARES: Final = (journal_middleware, fault_middleware, error_middleware, auth_middleware)
