"""Which backend a command is about, named the way records keep it, and whose renders those are.

Every record says which origin made it: ``mock`` for the bundled mock (its port changes
every run), else the API's base URL. Every command that reads or makes renders (`run`,
`plan`, `status`, `report`, `cut`, `export`, `pick`) picks the origin the same way, from
``--backend``, ``--base-url`` and ``WAVESPEED_BASE_URL`` (`origin_from`), so they agree.

An origin is one of three *kinds* (`origin_kind`): the bundled mock's (simulated money), a
local server's (a base URL on this machine: a mock started with `kling-pipe mock`, a proxy;
its renders and spend are its own, never WaveSpeed's), or WaveSpeed's. Records, the lock
file's sections and every label people read follow the kind, so a render made against a
server on loopback is never filed or shown as a paid WaveSpeed render.
"""

from __future__ import annotations

import argparse
import os
from typing import Literal
from urllib.parse import urlsplit

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN, Backend
from kling_pipe._backends.wavespeed.urls import is_loopback, validate_base_url
from kling_pipe.exceptions import KlingPipeError

#: Whose renders an origin's are.
OriginKind = Literal["mock", "local", "wavespeed"]


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


def origin_kind(origin: str) -> OriginKind:
    """Say whose renders *origin*'s are: the bundled mock's, a local server's, or WaveSpeed's.

    A base URL whose host is this machine (localhost, 127.0.0.0/8, ::1) is a local server,
    whatever answers there; any other origin is WaveSpeed's (its own API, or another host
    standing for it).
    """
    if origin == MOCK_ORIGIN:
        return "mock"
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    return "local" if host is not None and is_loopback(host) else "wavespeed"


def describe_origin(origin: str) -> str:
    """Name *origin* for people: the bundled mock, a local server (with its URL), or WaveSpeed."""
    match origin_kind(origin):
        case "mock":
            return "the bundled mock"
        case "local":
            return f"a local server at {origin}"
    return "WaveSpeed" if origin == DEFAULT_BASE_URL else f"WaveSpeed at {origin}"


def add_backend_arguments(
    parser: argparse.ArgumentParser,
    what: str = "whose renders: the bundled mock's (default) or the real WaveSpeed API's",
) -> None:
    """Add ``--backend`` and ``--base-url``, which say whose renders a command is about."""
    parser.add_argument("--backend", choices=("mock", "wavespeed"), default="mock", help=what)
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            f"WaveSpeed API base URL (else WAVESPEED_BASE_URL, else {DEFAULT_BASE_URL}); "
            "one on this machine is a local server, whose renders are its own"
        ),
    )


def origin_from(args: argparse.Namespace) -> str:
    """Return the origin ``--backend`` and ``--base-url`` name: every command's one way."""
    return origin_for(args.backend, args.base_url)
