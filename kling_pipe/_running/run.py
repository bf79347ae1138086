"""`render()`: load, plan, check the budget, connect a backend, schedule, return the result.

The one place that decides which backend a run talks to. The bundled mock is the default:
it is started in-process on a free loopback port and the real WaveSpeed client is pointed
at it, so an offline run exercises the same HTTP code a paid run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Callable, Collection, Coroutine, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs

from kling_pipe import _files
from kling_pipe._backends.base import MOCK_PROCESSING_S, Backend
from kling_pipe._backends.connect import connect
from kling_pipe._backends.origins import origin_for
from kling_pipe._decisions.plan import Plan, plan
from kling_pipe._decisions.results import RunResult
from kling_pipe._outputs.folders import place_picks, preflight, take_over
from kling_pipe._outputs.report import write_report
from kling_pipe._records.assessment import (
    Assessment,
    adopt_lock,
    assess_shotlist,
    is_simulated,
    open_store,
    read_lock_of,
    write_lock_for,
)
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import RunLock, Store, state_dir_for
from kling_pipe._running.progress import QuietReporter
from kling_pipe._running.scheduler import (
    DEFAULT_CONCURRENCY,
    Records,
    Reporter,
    RunOptions,
    Scheduler,
    Timing,
)
from kling_pipe._running.submitting import Prover, SettleOptions
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import ShotList
from kling_pipe.exceptions import KlingPipeError, Problem, ShotListError

P = ParamSpec("P")
T = TypeVar("T")

#: How long a lost answer is given with the bundled mock (see `render`).
BUNDLED_MOCK_SETTLE = SettleOptions(
    act_window=timedelta(seconds=2), history_lag=timedelta(seconds=0.5), poll_s=0.25
)


class NotConfirmedError(KlingPipeError):
    """The user declined to spend money on the plan, or could not be asked."""


def check_budget(shotlist: ShotList, p: Plan, cap: Decimal | None) -> None:
    """Refuse a plan that costs more than the budget in force."""
    if cap is None or p.total_cost <= cap:
        return
    where = "storyboard.max_cost" if shotlist.storyboard.max_cost == cap else "--max-cost"
    raise ShotListError(
        str(shotlist.source),
        [
            Problem(
                where,
                f"the plan costs {p.total_cost} USD for {p.what_to_render()} to render, "
                f"more than {cap}; nothing was submitted",
            )
        ],
    )


def unknown_rerender(shotlist: ShotList, names: Collection[str]) -> list[str]:
    """Return the names in *names* that are neither a shot id nor one of a shot's takes.

    ``--rerender storm`` names every take of storm, ``--rerender storm#2`` take 2 alone.
    """
    known = {s.id for s in shotlist.shots} | {k for s in shotlist.shots for k in s.unit_keys}
    return sorted(set(names) - known)


def check_locked(shotlist: ShotList, assessment: Assessment) -> None:
    """`--locked`: refuse to render (or possibly resubmit) anything the lock does not cover."""
    spend = [r for r in assessment.resume.values() if r.kind in ("render", "reconcile")]
    if spend:
        problems = [
            Problem(f"shots ({s.shot_id})", f"--locked: would be rendered ({s.reason or s.kind})")
            for s in spend
        ]
        raise ShotListError(str(shotlist.source), problems)


async def render(  # noqa: PLR0913 - keyword-only options, each with a default
    source: str | os.PathLike[str] | ShotList,
    *,
    backend: str | Backend = "mock",
    base_url: str | None = None,
    api_key: str | None = None,
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    mock_processing_s: float = MOCK_PROCESSING_S,
    handle_sigint: bool = False,
    rerender: Collection[str] = (),
    resubmit_uncertain: bool = False,
    locked: bool = False,
    keep_records: bool = True,
    report: bool = True,
    timing: Timing | None = None,
    prover: Prover | None = None,
) -> RunResult:
    """Render every shot of a shot list that is not already rendered; return what happened.

    *backend* is ``"mock"`` (the default: the bundled mock, offline and free),
    ``"wavespeed"`` (the real API; key from *api_key* or ``WAVESPEED_API_KEY``) or any
    object implementing `kling_pipe._backends.base.Backend`. With *keep_records* (the default) every
    step is recorded in ``<shot list>.kling-state/`` and ``<shot list>.lock.json`` is
    rewritten at the end, so an unchanged shot is never paid for twice and a killed run
    resumes. Raises `ShotListError` for an invalid shot list, a plan over budget, or (with
    *locked*) a shot the lock file does not cover, all before anything is sent;
    `StoreBusyError` when another run holds the shot list; `NotConfirmedError` when
    *confirm* declines the plan. With *report* (the default) the contact sheet
    ``<output_dir>/index.html`` is written at the end, from thumbnails made while the run
    waited. *options* hold how the run behaves (`RunOptions`: concurrency, budget, retries,
    pacing, settling); unset ones come from the storyboard. *timing* (clocks and sleep) and *prover*
    (what proves a lost submit's task, `kling_pipe._running.submitting.Prover`) are for tests and
    embedding: the defaults are the real clock and the video proof.
    """
    shotlist = source if isinstance(source, ShotList) else load(source)
    unknown = unknown_rerender(shotlist, rerender)
    if unknown:
        raise KlingPipeError(f"--rerender: no shot with id {', '.join(map(repr, unknown))}")
    opts = _effective_options(shotlist, options or RunOptions())
    if not report:  # no sheet: a decode is made only for a chain frame
        opts = attrs.evolve(opts, thumbnails=False)
    origin = origin_for(backend, base_url)
    if backend == "mock" and opts.settle == SettleOptions():
        # The bundled mock lives and dies with this process and saves each task as it makes
        # it: after a kill its history is complete at once, and it never acts late.
        opts = attrs.evolve(opts, settle=BUNDLED_MOCK_SETTLE)

    # Assessed up to three times (read-only, under the run lock, after taking over renamed
    # shots): each image is read and hashed once.
    hash_file = functools.cache(_files.sha256_file)

    def assessed(store: Store | None) -> Assessment:
        return assess_shotlist(
            shotlist,
            store,
            origin=origin,
            rerender=rerender,
            resubmit_uncertain=resubmit_uncertain,
            lock=read_lock_of(shotlist),
            hash_file=hash_file,
        )

    # First without writing anything: a plan that is refused leaves no trace on disk.
    assessment = await asyncio.to_thread(_read_only, shotlist, keep_records, assessed)
    p = _checked_plan(shotlist, assessment, opts, locked=locked)
    if confirm is not None and p.to_render and not confirm(p):
        raise NotConfirmedError("not confirmed; nothing was submitted")
    with contextlib.ExitStack() as stack:
        store = None
        if keep_records:
            await asyncio.to_thread(preflight, shotlist, origin)
            stack.enter_context(RunLock(state_dir_for(shotlist.source)))
            store = stack.enter_context(Store.open(state_dir_for(shotlist.source)))
            assessment = await asyncio.to_thread(_adopt, store, shotlist, assessed, hash_file)
            p = _checked_plan(shotlist, assessment, opts, locked=locked)
        registry = stack.enter_context(Registry.open() if keep_records else Registry.in_memory())
        mock_state = None if store is None else store.folder / "mock"
        connection = connect(backend, base_url, api_key, mock_processing_s, mock_state)
        async with connection as connected:
            records = Records(
                store=store or Store.in_memory(),
                resume=assessment.resume,
                inputs=assessment.inputs,
                origin=origin,
                base_url=connected.base_url,
            )
            scheduler = Scheduler(
                shotlist,
                p,
                connected.backend,
                options=opts,
                reporter=reporter or QuietReporter(),
                records=records,
                registry=registry,
                prover=prover,
                timing=timing,
            )
            try:
                with _stop_signals(scheduler, enabled=handle_sigint):
                    result = await scheduler.run()
            finally:
                if store is not None:
                    write_lock_for(shotlist, store, hash_file=hash_file)
            result = attrs.evolve(result, simulated=is_simulated(origin))
            if not report:
                return result
            sheet = await asyncio.to_thread(
                write_report,
                shotlist,
                store=store,
                origin=origin,
                fingerprints=assessment.fingerprints,
                picks=assessment.picks,
                result=result,
            )
            return attrs.evolve(result, report=sheet)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _read_only(
    shotlist: ShotList, keep_records: bool, assessed: Callable[[Store | None], Assessment]
) -> Assessment:
    store = open_store(shotlist, create=False) if keep_records else None
    try:
        return assessed(store)
    finally:
        if store is not None:
            store.close()


def _adopt(
    store: Store,
    shotlist: ShotList,
    assessed: Callable[[Store | None], Assessment],
    hash_file: Callable[[Path], str],
) -> Assessment:
    """Take over what the lock and other shot ids recorded; assess again under the run lock.

    Then place each shot's picked take at ``<id>.mp4`` from what is already on disk (a pick
    made, or a fresh checkout's lock adopted); takes delivered in this run are placed as
    they arrive.
    """
    lock = read_lock_of(shotlist)
    if lock is not None:
        adopt_lock(store, shotlist, lock, hash_file)
    assessment = assessed(store)
    if take_over(store, shotlist, assessment):
        assessment = assessed(store)
    if place_picks(store, shotlist, assessment):
        assessment = assessed(store)
    return assessment


def _checked_plan(
    shotlist: ShotList, assessment: Assessment, opts: RunOptions, *, locked: bool
) -> Plan:
    if locked:
        check_locked(shotlist, assessment)
    p = plan(
        shotlist,
        statuses=assessment.statuses,
        picks=assessment.picks,
        retry_failed=opts.retry_failed,
    )
    check_budget(shotlist, p, opts.max_cost)
    return p


def _effective_options(shotlist: ShotList, opts: RunOptions) -> RunOptions:
    """Fill what the caller left unset from the storyboard's settings, then the defaults."""
    cap = opts.max_cost if opts.max_cost is not None else shotlist.storyboard.max_cost
    workers = opts.concurrency or shotlist.storyboard.concurrency or DEFAULT_CONCURRENCY
    return attrs.evolve(opts, concurrency=workers, max_cost=cap)


@contextlib.contextmanager
def _stop_signals(scheduler: Scheduler, *, enabled: bool) -> Iterator[None]:
    """First Ctrl-C or SIGTERM: stop submitting, cancel cleanly, summarise. Second: exit now.

    SIGTERM (what `kill`, systemd and CI runners send) gets the same clean stop as Ctrl-C:
    the answer of a submit on the wire is awaited, and every task id is recorded and printed.
    """
    if not enabled:
        yield None
        return
    loop = asyncio.get_running_loop()
    stops = (signal.SIGINT, signal.SIGTERM)

    def first(signum: int) -> None:
        for each in stops:
            loop.remove_signal_handler(each)
        scheduler.request_stop(signum)

    for signum in stops:
        loop.add_signal_handler(signum, first, signum)
    try:
        yield None
    finally:
        for signum in stops:
            loop.remove_signal_handler(signum)


def _blocking(coroutine: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Make a blocking twin of a coroutine function, with the very same parameters."""

    @functools.wraps(coroutine)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(coroutine(*args, **kwargs))

    return blocking


#: Blocking `render` for scripts: the same arguments, typed the same (one list, not two).
render_sync = _blocking(render)
render_sync.__name__ = render_sync.__qualname__ = "render_sync"
render_sync.__doc__ = "Blocking `render` for scripts; takes the same arguments (see there)."
