"""`render()`: load, plan, check the budget, connect a backend, schedule, return the result.

The one place that decides which backend a run talks to. The bundled mock is the default:
it is started in-process on a free loopback port and the real WaveSpeed client is pointed
at it, so an offline run exercises the same HTTP code a paid run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal

import aiohttp

from kling_pipe.backend import Backend
from kling_pipe.exceptions import KlingPipeError, Problem, ShotListError
from kling_pipe.loader import load
from kling_pipe.plan import Plan, plan
from kling_pipe.progress import QuietReporter
from kling_pipe.results import RunResult
from kling_pipe.scheduler import Reporter, RunOptions, Scheduler
from kling_pipe.specs import ShotList
from kling_pipe.wavespeed import WaveSpeedClient, validate_base_url

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
DEFAULT_CONCURRENCY = 4
#: Seconds each task takes in the bundled mock when `render` starts it (demo speed).
MOCK_PROCESSING_S = 1.0


class NotConfirmedError(KlingPipeError):
    """The user declined to spend money on the plan, or could not be asked."""


def api_key_from_env() -> str:
    """Return the WaveSpeed API key from `WAVESPEED_API_KEY`, or fail in one line."""
    key = os.environ.get("WAVESPEED_API_KEY", "").strip()
    if not key:
        raise KlingPipeError(
            "WAVESPEED_API_KEY is not set; export your WaveSpeed API key to render with "
            "--backend wavespeed (or use the default offline mock)"
        )
    return key


def base_url_from_env(explicit: str | None) -> str:
    """Pick the base URL: the flag, then `WAVESPEED_BASE_URL`, then WaveSpeed's own."""
    chosen = explicit or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
    return validate_base_url(chosen)


def check_budget(shotlist: ShotList, p: Plan, max_cost: Decimal | None) -> None:
    """Refuse a plan that costs more than the budget (the flag overrides the storyboard)."""
    cap = shotlist.storyboard.max_cost if max_cost is None else max_cost
    if cap is None or p.total_cost <= cap:
        return
    where = "storyboard.max_cost" if max_cost is None else "--max-cost"
    n = len(p.to_render)
    raise ShotListError(
        str(shotlist.source),
        [
            Problem(
                where,
                f"the plan costs {p.total_cost} USD for {n} shot{'s' * (n != 1)} to render, "
                f"more than {cap}; nothing was submitted",
            )
        ],
    )


@contextlib.asynccontextmanager
async def _mock_backend(processing_s: float) -> AsyncIterator[Backend]:
    from mockserver import MockConfig, MockServer  # noqa: PLC0415 - only the mock path needs it
    from mockserver.config import RandomTime  # noqa: PLC0415

    jitter = processing_s * 0.2
    config = MockConfig(processing=RandomTime(mean_s=processing_s, jitter_s=jitter, seed=0))
    async with MockServer(config) as mock, aiohttp.ClientSession() as session:
        yield WaveSpeedClient(session=session, base_url=mock.base_url, api_key=mock.api_key)


@contextlib.asynccontextmanager
async def _wavespeed_backend(base_url: str | None, api_key: str | None) -> AsyncIterator[Backend]:
    url = base_url_from_env(base_url)
    key = api_key or api_key_from_env()
    async with aiohttp.ClientSession() as session:
        yield WaveSpeedClient(session=session, base_url=url, api_key=key)


@contextlib.asynccontextmanager
async def _given_backend(backend: Backend) -> AsyncIterator[Backend]:
    yield backend


async def render(  # noqa: PLR0913 - keyword-only options, each with a default
    source: str | os.PathLike[str] | ShotList,
    *,
    backend: str | Backend = "mock",
    concurrency: int | None = None,
    max_cost: Decimal | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    mock_processing_s: float = MOCK_PROCESSING_S,
    handle_sigint: bool = False,
) -> RunResult:
    """Render every shot of a shot list and return what happened.

    *backend* is ``"mock"`` (the default: the bundled mock, offline and free),
    ``"wavespeed"`` (the real API; key from *api_key* or ``WAVESPEED_API_KEY``) or any
    object implementing `kling_pipe.backend.Backend`. Raises `ShotListError` for an invalid
    shot list or a plan over budget (before anything is sent) and `NotConfirmedError` when
    *confirm* declines the plan.
    """
    shotlist = source if isinstance(source, ShotList) else load(source)
    opts = options or RunOptions()
    cap = max_cost if max_cost is not None else opts.max_cost
    cap = cap if cap is not None else shotlist.storyboard.max_cost
    workers = concurrency or shotlist.storyboard.concurrency or opts.concurrency
    opts = RunOptions(
        concurrency=workers,
        max_cost=cap,
        rate_per_min=opts.rate_per_min,
        retry_failed=opts.retry_failed,
        fail_fast=opts.fail_fast,
        task_timeout_s=opts.task_timeout_s,
        poll_policy=opts.poll_policy,
        expected_task_s=opts.expected_task_s,
        reconcile_attempts=opts.reconcile_attempts,
        reconcile_pause_s=opts.reconcile_pause_s,
        clock_skew=opts.clock_skew,
        max_unknown_resends=opts.max_unknown_resends,
    )
    p = plan(shotlist, retry_failed=opts.retry_failed)
    check_budget(shotlist, p, cap)
    if confirm is not None and p.to_render and not confirm(p):
        raise NotConfirmedError("not confirmed; nothing was submitted")

    if isinstance(backend, str):
        if backend == "mock":
            connection = _mock_backend(mock_processing_s)
        elif backend == "wavespeed":
            connection = _wavespeed_backend(base_url, api_key)
        else:
            raise KlingPipeError(f'unknown backend "{backend}"; use "mock" or "wavespeed"')
    else:
        connection = _given_backend(backend)

    async with connection as client:
        scheduler = Scheduler(
            shotlist, p, client, options=opts, reporter=reporter or QuietReporter()
        )
        with _sigint_stops(scheduler, enabled=handle_sigint):
            return await scheduler.run()


@contextlib.contextmanager
def _sigint_stops(scheduler: Scheduler, *, enabled: bool) -> Iterator[None]:
    """First Ctrl-C: stop submitting and cancel cleanly. Second: the default, exit at once."""
    if not enabled:
        yield None
        return
    loop = asyncio.get_running_loop()

    def first_interrupt() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        scheduler.request_stop()

    loop.add_signal_handler(signal.SIGINT, first_interrupt)
    try:
        yield None
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def render_sync(source: str | os.PathLike[str] | ShotList, **kwargs: object) -> RunResult:
    """Blocking `render` for scripts; takes the same keyword arguments."""
    return asyncio.run(render(source, **kwargs))  # type: ignore[arg-type]
