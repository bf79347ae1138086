"""The application factory."""

from __future__ import annotations

import asyncio
from email.utils import formatdate
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from mockserver import admin, api, files
from mockserver.clock import SystemClock
from mockserver.config import MockConfig
from mockserver.keys import STATE
from mockserver.middleware import MIDDLEWARES
from mockserver.state import MockState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mockserver.clock import Clock


def create_app(config: MockConfig | None = None, *, clock: Clock | None = None) -> web.Application:
    """Build the mock WaveSpeed application; nothing touches the disk until it starts.

    *clock* defaults to the real clock; pass a `ManualClock` to drive time from a test.
    """
    config = config or MockConfig()
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=MIDDLEWARES)
    app[STATE] = MockState(config, clock or SystemClock())
    app.router.add_routes([*api.ROUTES, *files.ROUTES, *admin.ROUTES])
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
