"""Middlewares, outermost first: journal, faults, JSON errors, Bearer authentication."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Final

from aiohttp import web

from mockserver.errors import ApiError
from mockserver.faults import FaultKind, RouteClass
from mockserver.keys import DRAWN, DROPPED, STATE, TASK_ID
from mockserver.replies import drop, error_response

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

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
}


def route_class(request: web.Request) -> RouteClass | None:
    """Return the class of the route *request* matched, if it is an API or media route."""
    name = request.match_info.route.name
    return ROUTE_CLASSES.get(name) if name else None


@web.middleware
async def journal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request but the mock's own admin routes; count them by route class."""
    if request.path.startswith("/_mock/"):
        return await handler(request)
    state = request.app[STATE]
    route = route_class(request)
    state.journal.counts[route.value if route else "unrouted"] += 1
    status: int | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        state.journal.record(
            method=request.method,
            path=request.path,
            status=None if request.get(DROPPED) else status,
            monotonic=state.clock.monotonic(),
            wall=state.clock.now(),
            route=route.value if route else None,
            task_id=request.get(TASK_ID) or request.match_info.get("task_id"),
            faults=drawn.kinds if (drawn := request.get(DRAWN)) else [],
        )


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the faults drawn for this request around the handler."""
    route = route_class(request)
    if route is None:
        return await handler(request)
    drawn = request.app[STATE].faults.draw(route)
    request[DRAWN] = drawn
    if drawn.latency_s:
        await asyncio.sleep(drawn.latency_s)
    if drawn.drop_before:
        drop(request)
        return web.Response(status=204)
    if drawn.error is not None:
        rule = drawn.error
        if rule.kind is FaultKind.RATE_LIMIT:
            headers = {"Retry-After": str(rule.retry_after_s)}
            return error_response(429, "rate limit exceeded (injected fault)", headers)
        return error_response(rule.status, "server error (injected fault)")
    response = await handler(request)
    if drawn.drop_after:
        drop(request)
    return response


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
