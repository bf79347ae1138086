"""Which backend a command is about, named the way records keep it.

Every record says which origin made it: ``mock`` for the bundled mock (its port changes
every run), else the API's base URL. `run`, `plan`, `status`, `report` and `gc` all pick
the origin the same way, from ``--backend`` and ``--base-url``, so they agree.
"""

from __future__ import annotations

import argparse
import os

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN, Backend
from kling_pipe._backends.wavespeed.urls import validate_base_url
from kling_pipe.exceptions import KlingPipeError


def base_url_from_env(explicit: str | None) -> str:
    """Pick the base URL: the flag, then `WAVESPEED_BASE_URL`, then WaveSpeed's own."""
    chosen = explicit or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
    return validate_base_url(chosen)


def origin_for(backend: str | Backend, base_url: str | None) -> str:
    """Name where the work goes, as records keep it: ``mock``, or the API's base URL."""
    if isinstance(backend, str):
        if backend == "mock":
            return MOCK_ORIGIN
        if backend == "wavespeed":
            return base_url_from_env(base_url)
        raise KlingPipeError(f'unknown backend "{backend}"; use "mock" or "wavespeed"')
    return backend.origin


def add_backend_arguments(
    parser: argparse.ArgumentParser,
    what: str = "whose renders: the bundled mock's (default) or the real WaveSpeed API's",
) -> None:
    """Add ``--backend`` and ``--base-url``, which say whose renders a command is about."""
    parser.add_argument("--backend", choices=("mock", "wavespeed"), default="mock", help=what)
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help=f"WaveSpeed API base URL (else WAVESPEED_BASE_URL, else {DEFAULT_BASE_URL})",
    )


def origin_from(args: argparse.Namespace) -> str:
    """Return the origin ``--backend`` and ``--base-url`` name."""
    return origin_for(args.backend, args.base_url)
