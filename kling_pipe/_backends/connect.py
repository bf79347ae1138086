"""Which backend a run talks to: the one place that turns ``--backend`` into a connection.

The bundled mock is the default (`kling_pipe._backends.mock`); ``wavespeed`` is the real
API with the key from ``WAVESPEED_API_KEY``; a caller may also hand `render` any object
that keeps the `Backend` protocol.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from kling_pipe._backends.base import MOCK_FPS, Backend
from kling_pipe._backends.origins import base_url_from_env
from kling_pipe.exceptions import KlingPipeError

__all__ = ["Connected", "api_key_from_env", "connect"]


@attrs.frozen
class Connected:
    """A backend ready for a run, with the base URL its uploads are valid for."""

    backend: Backend
    #: The API base URL, which uploads are valid for (the mock's changes every run).
    base_url: str


def api_key_from_env() -> str:
    """Return the WaveSpeed API key from `WAVESPEED_API_KEY`, or fail in one line."""
    key = os.environ.get("WAVESPEED_API_KEY", "").strip()
    if not key:
        raise KlingPipeError(
            "WAVESPEED_API_KEY is not set; export your WaveSpeed API key to render with "
            "--backend wavespeed (or use the default offline mock)"
        )
    return key


@contextlib.asynccontextmanager
async def _wavespeed(base_url: str | None, api_key: str | None) -> AsyncIterator[Connected]:
    import aiohttp  # noqa: PLC0415 - HTTP loads only when a run connects

    from kling_pipe._backends.wavespeed.client import WaveSpeedClient  # noqa: PLC0415

    url = base_url_from_env(base_url)
    key = api_key or api_key_from_env()
    async with aiohttp.ClientSession() as session:
        yield Connected(WaveSpeedClient(session=session, base_url=url, api_key=key), url)


@contextlib.asynccontextmanager
async def _given(backend: Backend) -> AsyncIterator[Connected]:
    yield Connected(backend, str(getattr(backend, "base_url", backend.origin)))


def connect(  # noqa: PLR0913 - the connection's parts; the mock's render settings by keyword
    backend: str | Backend,
    base_url: str | None,
    api_key: str | None,
    mock_processing_s: float,
    mock_state_dir: Path | None,
    *,
    mock_fps: int = MOCK_FPS,
    mock_caption: bool = False,
) -> contextlib.AbstractAsyncContextManager[Connected]:
    """Connect the backend a run asked for; the mock keeps its state in *mock_state_dir*.

    The ``mock_`` settings shape the bundled mock's renders, and nothing else's.
    """
    if not isinstance(backend, str):
        return _given(backend)
    if backend == "mock":
        from kling_pipe._backends.mock import connect_mock  # noqa: PLC0415

        return connect_mock(mock_processing_s, mock_state_dir, fps=mock_fps, caption=mock_caption)
    if backend == "wavespeed":
        return _wavespeed(base_url, api_key)
    raise KlingPipeError(f'unknown backend "{backend}"; use "mock" or "wavespeed"')
