"""How the mock answers: WaveSpeed's envelope, its error body, and a dropped connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def origin(request: web.Request) -> str:
    """Return ``scheme://host[:port]`` as the client addressed the mock."""
    return f"{request.scheme}://{request.host}"
