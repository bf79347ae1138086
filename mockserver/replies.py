"""How the mock answers: WaveSpeed's envelope, its error body, and a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from mockserver.keys import DROPPED


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


def gateway_page(status: int) -> web.Response:
    """Answer *status* as a gateway in front of the API does: nginx's HTML, no envelope."""
    title = f"{status} {_GATEWAY_REASONS.get(status, 'Bad Gateway')}"
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
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
