"""The bundled mock as a transport: the real client, pointed at a mock started in-process.

An offline run goes through the same HTTP code a paid run does; only the server differs.
The mock dies with the run and saves each task as it makes it (in *state_dir*), so a run
killed and resumed offline finds its tasks again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from kling_pipe._backends.base import MOCK_FPS, MOCK_ORIGIN
from kling_pipe._backends.connect import Connected
from kling_pipe._backends.wavespeed.client import WaveSpeedClient

__all__ = ["connect_mock"]


@contextlib.asynccontextmanager
async def connect_mock(
    processing_s: float, state_dir: Path | None, *, fps: int = MOCK_FPS, caption: bool = False
) -> AsyncIterator[Connected]:
    """Start the bundled mock on a free loopback port and yield a client talking to it.

    Its renders have *fps* frames a second and, with *caption*, their prompt written on them.
    """
    from mockserver import MockConfig, MockServer  # noqa: PLC0415 - only the mock path needs it
    from mockserver.config import RandomTime  # noqa: PLC0415

    jitter = processing_s * 0.2
    config = MockConfig(
        processing=RandomTime(mean_s=processing_s, jitter_s=jitter, seed=0),
        state_dir=state_dir,
        fps=fps,
        caption=caption,
    )
    async with MockServer(config) as mock, aiohttp.ClientSession() as session:
        client = WaveSpeedClient(
            session=session, base_url=mock.base_url, api_key=mock.api_key, origin=MOCK_ORIGIN
        )
        yield Connected(client, mock.base_url)
