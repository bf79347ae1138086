"""The command line: ``kling-pipe mock [options]`` and ``python -m mockserver [options]``.

It parses options, builds a `MockConfig` and serves until Ctrl-C; nothing more.

The key it accepts is one it makes up at start and prints, unless ``--api-key`` gives one,
which it then never prints: a key it did not make may be a real one (pasted from a
WaveSpeed account), and must not end up on a screen or in a CI log. It never reads
``WAVESPEED_API_KEY``, for the same reason.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
import signal
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from mockserver.config import (
    DEFAULT_FPS,
    DEFAULT_PORT,
    MAX_FPS,
    AfterPolls,
    FixedTime,
    Manual,
    MockConfig,
    Processing,
    RandomTime,
)
from mockserver.faults import FaultConfig, FaultKind, parse_fault

#: The highest TCP port number.
_MAX_PORT: Final = 65535


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock's options to *parser* (shared by ``kling-pipe mock`` and ``-m``)."""
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"0 to 65535; 0 picks a free one (default {DEFAULT_PORT})",
    )
    net.add_argument(
        "--api-key",
        help="key to accept, never printed (default: a new random key, printed at start)",
    )
    tasks = parser.add_argument_group("tasks")
    tasks.add_argument(
        "--processing-s", type=float, default=2.0, help="seconds a task processes (default 2)"
    )
    tasks.add_argument(
        "--jitter-s", type=float, default=0.0, help="draw uniformly from processing ± this"
    )
    tasks.add_argument("--seed", type=int, default=0, help="seed of the jitter draws")
    tasks.add_argument("--after-polls", type=int, metavar="N", help="end tasks on their N-th poll")
    tasks.add_argument(
        "--manual", action="store_true", help="tasks wait for POST /_mock/tasks/ID/complete"
    )
    tasks.add_argument(
        "--history-lag-s",
        type=float,
        default=0.0,
        help="a task shows in the history only S seconds after its creation (default 0)",
    )
    tasks.add_argument(
        "--clock-offset-s",
        type=float,
        default=0.0,
        help="the server's clock runs this far ahead (negative: behind) of the mock's; "
        "shows in created_at, history filters and Date headers (default 0)",
    )
    tasks.add_argument(
        "--sync-timeout-s",
        type=float,
        default=60.0,
        help="enable_sync_mode answers 5004 after this (default 60)",
    )
    tier = parser.add_argument_group("account")
    tier.add_argument(
        "--concurrency", type=int, default=100, help="tasks processing at once (default 100)"
    )
    tier.add_argument("--submits-per-minute", type=int, help="429 beyond this (default: off)")
    tier.add_argument("--balance", default="1000", help="starting balance in USD (default 1000)")
    tier.add_argument(
        "--price-factor",
        default="1",
        help="the server's prices are the catalogue's times this, in quotes and bills alike "
        "(default 1)",
    )
    tier.add_argument(
        "--no-quotes",
        action="store_true",
        help="answer no price quote (/model/price and /model/pricing are 404, /models has no "
        "price)",
    )
    tier.add_argument(
        "--no-billings-search",
        action="store_true",
        help="answer 404 to /billings/search, as an account without it",
    )
    tier.add_argument(
        "--state-dir",
        type=Path,
        help="keep tasks, uploads, ledger and outputs here across restarts "
        "(default: a temp folder, removed on exit)",
    )
    renders = parser.add_argument_group("renders")
    renders.add_argument(
        "--fps",
        type=int,
        default=DEFAULT_FPS,
        help=f"frames per second of the output videos, 1 to {MAX_FPS} (default {DEFAULT_FPS})",
    )
    renders.add_argument(
        "--caption",
        action="store_true",
        help="write each task's prompt and take (#2: its request's second twin) on its frames",
    )
    renders.add_argument(
        "--share-renders",
        action="store_true",
        help="one video per image, last image and duration, whatever the prompt (benchmarks)",
    )
    renders.add_argument(
        "--flat-placeholders",
        action="store_true",
        help="placeholders without their checkerboard: lighter videos (benchmarks)",
    )
    faults = parser.add_argument_group("faults")
    kinds = ", ".join(FaultKind)
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:RATE][:KEY=VALUE...]",
        help=f"inject a fault; repeatable. Kinds: {kinds}. "
        "E.g. server_error:0.1:routes=poll+submit:status=502, gateway_error:status=504, "
        "late_create:delay_s=30, second_client:0.5:image=same",
    )
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")


def _processing(args: argparse.Namespace) -> Processing:
    if args.manual:
        return Manual()
    if args.after_polls is not None:
        return AfterPolls(polls=args.after_polls)
    if args.jitter_s:
        return RandomTime(mean_s=args.processing_s, jitter_s=args.jitter_s, seed=args.seed)
    return FixedTime(seconds=args.processing_s)


def new_api_key() -> str:
    """Make up a key for one run of the mock: random, and plainly not a WaveSpeed key."""
    return f"mock-{secrets.token_hex(16)}"


def build_config(args: argparse.Namespace) -> MockConfig:
    """Turn parsed options into a config; ValueError with a readable message if wrong.

    Without ``--api-key`` the config gets a new random key (`new_api_key`).
    """
    if not 0 <= args.port <= _MAX_PORT:
        raise ValueError(f"--port {args.port}: a port is 0 to {_MAX_PORT} (0 picks a free one)")
    if not 1 <= args.fps <= MAX_FPS:
        raise ValueError(f"--fps {args.fps}: frames per second are 1 to {MAX_FPS} (24 is film's)")
    if args.api_key is not None and not args.api_key.strip():
        raise ValueError("--api-key: empty; give the key clients will send, or leave it out")
    try:
        balance = Decimal(args.balance)
    except InvalidOperation as exc:
        raise ValueError(f"--balance: {args.balance!r} is not a number") from exc
    try:
        price_factor = Decimal(args.price_factor)
    except InvalidOperation as exc:
        raise ValueError(f"--price-factor: {args.price_factor!r} is not a number") from exc
    if not price_factor.is_finite() or price_factor <= 0:
        raise ValueError(f"--price-factor {args.price_factor}: must be a number above 0")
    rules = []
    for text in args.fault:
        try:
            rules.append(parse_fault(text))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--fault {text}: {exc}") from exc
    return MockConfig(
        host=args.host,
        port=args.port,
        api_key=new_api_key() if args.api_key is None else args.api_key,
        processing=_processing(args),
        concurrency_limit=args.concurrency,
        submits_per_minute=args.submits_per_minute,
        balance_usd=balance,
        faults=FaultConfig(seed=args.fault_seed, rules=tuple(rules)),
        state_dir=args.state_dir,
        sync_timeout_s=args.sync_timeout_s,
        history_lag_s=args.history_lag_s,
        clock_offset_s=args.clock_offset_s,
        fps=args.fps,
        caption=args.caption,
        share_renders=args.share_renders,
        flat_placeholders=args.flat_placeholders,
        price_factor=price_factor,
        quotes=not args.no_quotes,
        billings_search=not args.no_billings_search,
    )


async def serve(config: MockConfig, *, show_key: bool = True) -> None:
    """Serve until SIGINT or SIGTERM, printing where, and the key if *show_key*."""
    import asyncio  # noqa: PLC0415 - `kling-pipe --help` parses without the event loop

    from mockserver.server import MockServer  # noqa: PLC0415 - aiohttp loads after parsing

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with MockServer(config) as mock:
        print(f"WaveSpeed mock listening on {mock.base_url}", flush=True)
        if show_key:
            print(f"API key: {mock.api_key}", flush=True)
        else:
            print("API key: the one given with --api-key", flush=True)
        where = config.state_dir or "a temporary folder (removed on exit)"
        print(f"State: {where}. Admin routes: {mock.base_url}/_mock/stats", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    print("Stopped.", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the mock with parsed *args*; return the exit status."""
    import asyncio  # noqa: PLC0415 - see `serve`

    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # Only a key the mock made up is printed: a given one may be a real one.
        asyncio.run(serve(config, show_key=args.api_key is None))
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    except OSError as exc:
        # A port taken, an address not this machine's, a state folder not writable: all
        # for the user to change, in one line.
        print(f"error: {_os_problem(exc, config)}", file=sys.stderr)
        return 2
    return 0


def _os_problem(exc: OSError, config: MockConfig) -> str:
    """Say in one line why the mock could not start."""
    if exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror or exc}"
    reason = _BIND_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"cannot listen on {config.host}:{config.port}: {reason}"


_BIND_REASONS: Final = {
    errno.EADDRINUSE: "the port is in use (another server?); --port 0 picks a free one",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mockserver``."""
    parser = argparse.ArgumentParser(
        prog="python -m mockserver", description="Run a local WaveSpeed v3 mock server."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
