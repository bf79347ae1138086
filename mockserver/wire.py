"""How the mock speaks HTTP: request keys, WaveSpeed's envelope and error body, drops.

Every answer the API routes give goes through `envelope` or `ApiError`, so the wire format
lives in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

if TYPE_CHECKING:
    # Types only: the state imports this module's errors, so the keys name it lazily.
    from mockserver.faults import Drawn
    from mockserver.state import MockState
    from mockserver.tasks import Provenance

STATE: Final[web.AppKey[MockState]] = web.AppKey("state")

#: The faults drawn for a request, read by handlers that honour them (submit, downloads).
DRAWN: Final[web.RequestKey[Drawn]] = web.RequestKey("drawn")
#: Set when the connection was closed instead of answered, so the journal shows no status.
DROPPED: Final = web.RequestKey("dropped", bool)
#: The prediction a request concerned, for the journal.
TASK_ID: Final = web.RequestKey("task_id", str)
#: Set when the client went away before the answer was ready (nobody got it).
CLIENT_GONE: Final = web.RequestKey("client_gone", bool)
#: Set when a ``gateway_error`` fault replaced the answer with a gateway's HTML page.
GATEWAY: Final = web.RequestKey("gateway", bool)
#: Set when a ``hostile_id`` fault rewrote a submit's answer: its task id is unusable.
MANGLED: Final = web.RequestKey("mangled", bool)
#: A submit's record of the tasks it created or provoked, settled when the request ends.
PROVENANCE: Final[web.RequestKey[Provenance]] = web.RequestKey("provenance")


class ApiError(Exception):
    """An HTTP error answered as ``{"code": status, "message": message}``, like WaveSpeed's."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


def envelope(data: Any) -> web.Response:
    """Answer 200 with ``{"code": 200, "message": "success", "data": data}``."""
    return web.json_response({"code": 200, "message": "success", "data": data})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Answer *status* with ``{"code": status, "message": message}``."""
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def drop(request: web.Request) -> None:
    """Close the connection so that no (further) response bytes reach the client."""
    request[DROPPED] = True
    if request.transport is not None:
        request.transport.close()


#: What nginx says for each gateway status (its own spellings), and how often a waiting
#: handler looks whether its client is still there.
_GATEWAY_REASONS: Final = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_GONE_POLL_S: Final = 0.01


def gateway_page(status: int, *, detail: str = "") -> web.Response:
    """Answer *status* as a gateway in front of the API does: nginx's HTML, no envelope.

    *detail* is added as a paragraph (a debugging proxy that echoes the request, say).
    """
    title = f"{status} {_GATEWAY_REASONS.get(status, 'Bad Gateway')}"
    extra = f"<p>{detail}</p>\r\n" if detail else ""
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n{extra}<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


def client_gone(request: web.Request) -> bool:
    """Say whether the client's connection is closed (or closing)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def wait_unless_gone(request: web.Request, job: asyncio.Future[Any]) -> bool:
    """Wait for *job*; return False early if the client goes away first (*job* runs on).

    Neither a timeout here nor the handler's cancellation cancels *job*.
    """
    while not job.done():
        if client_gone(request):
            return False
        await asyncio.wait({job}, timeout=_GONE_POLL_S)
    return True


def origin(request: web.Request) -> str:
    """Return ``scheme://host[:port]`` as the client addressed the mock."""
    return f"{request.scheme}://{request.host}"
