"""`render()`: load, plan, check the budget, connect a backend, wire the run, schedule it.

The one place that decides which backend a run talks to, and the one place that builds a
run's collaborators (store, registry, inputs, delivery, watcher, submit protocol, the walk of
a take, the scheduler) and hands them to each other: none of them builds another, and no
constructor does I/O. The bundled mock is the default: it is started in-process on a free
loopback port and the real WaveSpeed client is pointed at it, so an offline run exercises the
same HTTP code a paid run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs

from kling_pipe import _files
from kling_pipe._backends.base import Backend
from kling_pipe._backends.connect import connect
from kling_pipe._backends.origins import origin_for, origin_kind
from kling_pipe._backends.prices import price_for
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.engine import Admission
from kling_pipe._decisions.pacing import DurationEstimator
from kling_pipe._decisions.plan import Plan, PriceOf, plan, unpriced_problem
from kling_pipe._decisions.quotes import PricedRequest, distinct_requests, quoted_price
from kling_pipe._decisions.results import RunResult, ShotResult
from kling_pipe._decisions.selection import SelectionError, units_of
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._outputs.folders import place_picks, preflight, take_over
from kling_pipe._outputs.migrate import migrate_to_versions
from kling_pipe._outputs.report import write_report
from kling_pipe._outputs.rerender import clear_marks, marks_in_force
from kling_pipe._records.assessment import (
    Assessment,
    adopt_lock,
    approvals_after_run,
    assess_shotlist,
    is_simulated,
    open_store,
    read_lock_of,
    write_lock_for,
)
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.registry import Registry
from kling_pipe._records.spending import spent_on_storyboard
from kling_pipe._records.store import RunLock, Store, state_dir_for
from kling_pipe._running.delivery import Delivery
from kling_pipe._running.inputs import ShotInputs, url_frames
from kling_pipe._running.money import BillKeeper, quote_plan
from kling_pipe._running.options import DEFAULT_CONCURRENCY, RunOptions, Timing
from kling_pipe._running.progress import QuietReporter
from kling_pipe._running.proving import Prover, Subject, VideoProver
from kling_pipe._running.scheduler import EarlierIntent, Reporter, Scheduler, initial_results
from kling_pipe._running.submitting import SubmitProtocol
from kling_pipe._running.walk import AttemptError, FrameNotYetError, Walk
from kling_pipe._running.watching import TaskWatcher
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import ShotList, unit_key
from kling_pipe.exceptions import KlingPipeError, Problem, ShotListError

_log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: How long a lost answer is given with the bundled mock (see `render`).
BUNDLED_MOCK_SETTLE = SettleOptions(
    act_window=timedelta(seconds=2),
    history_lag=timedelta(seconds=0.5),
    # The mock runs on this machine's clock: its Date headers are off by their rounding only.
    slack=timedelta(seconds=1),
    poll_s=0.25,
)


class NotConfirmedError(KlingPipeError):
    """The user declined to spend money on the plan, or could not be asked."""


def check_budget(shotlist: ShotList, p: Plan, cap: Decimal | None) -> None:
    """Refuse a plan that costs more than the run's cap, or passes the film's budget.

    *cap* is the run's (``--max-cost``, else ``max_cost``); the film's is the storyboard's
    ``budget`` against what its records say was spent before (`Plan.spent`).
    """
    problems = []
    if cap is not None and p.total_cost > cap:
        where = "storyboard.max_cost" if shotlist.storyboard.max_cost == cap else "--max-cost"
        problems.append(
            Problem(
                where,
                f"the plan costs {p.total_cost} USD for {p.what_to_render()} to render, "
                f"more than {cap}; nothing was submitted",
            )
        )
    film = p.film_budget_problem()
    if film is not None:
        problems.append(Problem(film.path, f"{film.message}; nothing was submitted"))
    if problems:
        raise ShotListError(str(shotlist.source), problems)


def unknown_rerender(shotlist: ShotList, names: Collection[str]) -> list[str]:
    """Return the names in *names* that are neither a shot id nor one of a shot's takes.

    ``--rerender storm`` names every take of storm, ``--rerender storm#2`` take 2 alone.
    """
    known = {s.id for s in shotlist.shots} | {k for s in shotlist.shots for k in s.unit_keys}
    return sorted(set(names) - known)


def check_locked(shotlist: ShotList, assessment: Assessment, p: Plan | None = None) -> None:
    """`--locked`: refuse to render (or possibly resubmit) anything the lock does not cover.

    With *p*, takes it leaves out (not in ``--only``) are not asked about.
    """
    left_out = set() if p is None else {u.id for u in p.excluded}
    spend = [
        r
        for key, r in assessment.resume.items()
        if r.kind in ("render", "reconcile") and key not in left_out
    ]
    if spend:
        problems = [
            Problem(f"shots ({s.shot_id})", f"--locked: would be rendered ({s.reason or s.kind})")
            for s in spend
        ]
        raise ShotListError(str(shotlist.source), problems)


async def render(  # noqa: PLR0913 - keyword-only, each with a default
    source: str | os.PathLike[str] | ShotList,
    *,
    backend: str | Backend = "mock",
    base_url: str | None = None,
    api_key: str | None = None,
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    timing: Timing | None = None,
    prover: Prover | None = None,
) -> RunResult:
    """Render every shot of a shot list that is not already rendered; return what happened.

    *backend* is ``"mock"`` (the default: the bundled mock, offline and free),
    ``"wavespeed"`` (the real API at *base_url*; key from *api_key* or ``WAVESPEED_API_KEY``)
    or any object implementing `kling_pipe._backends.base.Backend`. *options* hold how the
    run behaves (`RunOptions`: concurrency, budget, retries, pacing, settling, what to render
    again, records, the contact sheet); unset ones come from the storyboard. With records
    kept (the default) every step is recorded in ``<shot list>.kling-state/`` and
    ``<shot list>.lock.json`` is rewritten at the end, so an unchanged shot is never paid for
    twice and a killed run resumes. Raises `ShotListError` for an invalid shot list, a plan
    over budget, or (with ``locked``) a shot the lock file does not cover, all before
    anything is sent; `StoreBusyError` when another run holds the shot list;
    `NotConfirmedError` when *confirm* declines the plan. *timing* (clocks and sleep) and
    *prover* (what proves a lost submit's task, `kling_pipe._running.proving.Prover`) are for
    tests and embedding: the defaults are the real clock and the video proof.
    """
    shotlist = source if isinstance(source, ShotList) else load(source)
    opts = _effective_options(shotlist, options or RunOptions())
    unknown = unknown_rerender(shotlist, opts.rerender)
    if unknown:
        raise KlingPipeError(f"--rerender: no shot with id {', '.join(map(repr, unknown))}")
    origin = origin_for(backend, base_url)
    opts, marked = _with_marks(shotlist, opts, origin)
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
            rerender=opts.rerender,
            resubmit_uncertain=opts.resubmit_uncertain,
            lock=read_lock_of(shotlist),
            hash_file=hash_file,
        )

    def spent(store: Store | None) -> Decimal:
        return spent_on_storyboard(store, read_lock_of(shotlist), origin)

    # First without writing anything: a plan that is refused leaves no trace on disk.
    assessment, before = await asyncio.to_thread(
        _read_only, shotlist, opts.keep_records, assessed, spent
    )
    pricing = _Pricing(shotlist, backend, base_url, api_key, origin)
    p = await pricing.checked_plan(assessment, opts, before)
    if confirm is not None and p.to_render and not confirm(p):
        raise NotConfirmedError("not confirmed; nothing was submitted")
    with contextlib.ExitStack() as stack:
        store = None
        if opts.keep_records:
            await asyncio.to_thread(preflight, shotlist, origin)
            stack.enter_context(RunLock(state_dir_for(shotlist.source)))
            store = stack.enter_context(Store.open(state_dir_for(shotlist.source)))
            assessment = await asyncio.to_thread(_adopt, store, shotlist, assessed, hash_file)
            spent_now = await asyncio.to_thread(spent, store)
            p = await pricing.checked_plan(assessment, opts, spent_now)
        registry = stack.enter_context(
            Registry.open() if opts.keep_records else Registry.in_memory()
        )
        mock_state = None if store is None else store.folder / "mock"
        connection = connect(
            backend,
            base_url,
            api_key,
            opts.mock_processing_s,
            mock_state,
            mock_fps=opts.mock_fps,
            mock_caption=opts.mock_caption,
        )
        async with connection as connected:
            run = _Run(
                shotlist=shotlist,
                plan=p,
                assessment=assessment,
                backend=connected.backend,
                base_url=connected.base_url,
                store=store or stack.enter_context(Store.in_memory()),
                registry=registry,
                options=opts,
                timing=timing or Timing(),
            )
            keeper = await BillKeeper.start(connected.backend, run.store, origin)
            try:
                result = await run.render(reporter or QuietReporter(), prover)
            finally:
                if store is not None:
                    approvals = approvals_after_run(
                        shotlist, store, origin=origin, rerender=opts.rerender, hash_file=hash_file
                    )
                    write_lock_for(shotlist, store, hash_file=hash_file, approvals=approvals)
            if store is not None and marked:  # under the run lock still
                clear_marks(shotlist, origin, [s.id for s in result.shots if s.state == "done"])
            result = attrs.evolve(result, simulated=is_simulated(origin))
            result = attrs.evolve(result, bill=await keeper.finish())
            if not opts.report:
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


@attrs.define
class _Pricing:
    """How a run prices its plan: the origin's price list, then WaveSpeed's quotes.

    Against any server but the bundled mock, each distinct request the plan pays for is
    quoted once before anything is sent (`quote_plan`): a price that changed, an
    unconfirmed one nobody quotes or a quote that cannot be read refuses the run (naming
    each shot and both prices); a quote missing for a confirmed price leaves the
    catalogue's, with a warning. The plan is then priced as the run will pay
    (`quoted_price`) and its budget checked against that. A plan made again later (once the
    records are open) has its new requests, if any, quoted too.
    """

    shotlist: ShotList
    backend: str | Backend
    base_url: str | None
    api_key: str | None
    origin: str
    price: PriceOf | None = None
    quoted: set[PricedRequest] = attrs.field(factory=set)

    async def checked_plan(self, assessment: Assessment, opts: RunOptions, spent: Decimal) -> Plan:
        """Plan and check the run (`_checked_plan`), priced by quotes where they apply."""
        p = _checked_plan(self.shotlist, assessment, opts, spent, self.price)
        if self.price is not None and set(distinct_requests(p)) <= self.quoted:
            return p
        checked = await quote_plan(p, self.backend, self.base_url, self.api_key, origin=self.origin)
        if checked is None:
            self.price = price_for(self.origin)
        else:
            problems = checked.problems()
            if problems:
                raise ShotListError(str(self.shotlist.source), problems)
            for warning in checked.warnings():
                _log.warning("%s", warning)
            self.quoted |= {line.request for line in checked.lines}
            self.price = quoted_price(checked, price_for(self.origin))
        return _checked_plan(self.shotlist, assessment, opts, spent, self.price)


@attrs.frozen(kw_only=True)
class _Run:
    """One run's collaborators, built here and handed to the scheduler (which builds none)."""

    shotlist: ShotList
    plan: Plan
    assessment: Assessment
    backend: Backend
    #: The API base URL of this connection: an upload is reused only with that server.
    base_url: str
    store: Store
    registry: Registry
    options: RunOptions
    timing: Timing

    async def render(self, reporter: Reporter, prover: Prover | None) -> RunResult:
        """Wire the run's units together, schedule it, and return what happened."""
        async with contextlib.AsyncExitStack() as stack:
            if prover is None:
                frames = await stack.enter_async_context(url_frames())
                prover = VideoProver(self.backend, frames)
            return await self._render(reporter, prover)

    async def _render(self, reporter: Reporter, prover: Prover) -> RunResult:
        shotlist, opts, timing, store = self.shotlist, self.options, self.timing, self.store
        origin = self.assessment.origin
        output_dir = OutputLayout.of(shotlist, origin).folder
        await asyncio.to_thread(output_dir.mkdir, parents=True, exist_ok=True)
        owner_prefix = str(shotlist.source.resolve())
        # Tasks recorded before the registry knew them: no other shot list may take them.
        self.registry.claim_many(
            [(t, f"{owner_prefix}#{s}") for s, t in store.task_owners()], origin=origin
        )
        picks = self.assessment.picks
        results = initial_results(self.plan, picks=picks)
        _fill_from_records(results, self.assessment, shotlist)
        scheduler = Scheduler(
            self.plan,
            Admission(
                plan=self.plan,
                concurrency=opts.concurrency or DEFAULT_CONCURRENCY,
                max_cost=opts.max_cost,
                budget_left=self.plan.budget_left,
                retry_failed=opts.retry_failed,
                fail_fast=opts.fail_fast,
                rate_per_min=opts.rate_per_min,
            ),
            prover=prover,
            reporter=reporter,
            results=results,
            output_dir=output_dir,
            clock=timing.monotonic,
        )
        delivery = Delivery(
            backend=self.backend,
            store=store,
            shotlist=shotlist,
            origin=origin,
            thumbnails=opts.thumbnails,
        )
        live = scheduler.results

        def picked_video(shot_id: str) -> Path | None:
            return live[unit_key(shot_id, picks.get(shot_id, 1))].file

        shot_inputs = ShotInputs(
            shotlist=shotlist,
            backend=self.backend,
            store=store,
            base_url=self.base_url,
            origin=origin,
            output_dir=output_dir,
            now=timing.now,
            video_of=picked_video,
            frames=delivery.frames,
        )
        begun: dict[str, int] = {}
        protocol = SubmitProtocol(
            backend=self.backend,
            store=store,
            registry=self.registry,
            origin=origin,
            options=opts.settle,
            prover=prover,
            turns=scheduler,
            storyboard=owner_prefix,
            now=timing.now,
            sleep=timing.sleep,
            locked=opts.locked,
            on_wait=scheduler.waiting,
            on_attempt=begun.__setitem__,
            on_task=scheduler.task_known,
        )
        durations = {u.shot.duration for u in self.plan.units}
        watcher = TaskWatcher(
            self.backend,
            timeout_s=opts.task_timeout_s,
            policy=opts.poll_policy,
            estimator=DurationEstimator(
                prior_s=opts.expected_task_s,
                seed_s=store.task_durations(self.plan.model, origin=origin, durations=durations),
            ),
            clock=timing.monotonic,
            sleep=timing.sleep,
            on_limit=scheduler.account_limited,
            on_queue=scheduler.account_queue,
        )
        walk = Walk(
            shotlist=shotlist,
            backend=self.backend,
            store=store,
            origin=origin,
            resume=self.assessment.resume,
            inputs=self.assessment.inputs,
            fingerprints=self.assessment.fingerprints,
            picks=picks,
            owner_prefix=owner_prefix,
            shot_inputs=shot_inputs,
            delivery=delivery,
            watcher=watcher,
            protocol=protocol,
            results=live,
            report=scheduler.report,
            earlier=scheduler.earlier,
            begun=begun,
            now=timing.now,
            on_final=scheduler.task_final,
            awaited=scheduler.awaited,
        )
        intents = await _earlier_intents(walk, store, self.plan, self.assessment)
        try:
            with _stop_signals(scheduler, enabled=opts.handle_signals):
                result = await scheduler.run(walk, protocol, intents)
            if result.account_limit is not None:  # `plan` tells the next run of it
                self.registry.record_account_limit(origin, result.account_limit, timing.now())
            await delivery.frames.drain()  # thumbnails left: no take waits for them now
        finally:
            await delivery.frames.close()  # however the run ends, no frame job outlives it
        return result


async def _earlier_intents(
    walk: Walk, store: Store, p: Plan, assessment: Assessment
) -> list[EarlierIntent]:
    """Every intent earlier runs left unsettled, current or not, with what proves its task.

    Each holds the submit turn from the run's start and is settled at once: a like submit of
    this run must never be lost beside it, and a task it made must be found by its own
    fingerprint, not by an edited shot's submit. A take's intent whose frame cannot be had
    yet (a chain frame of a source still to render) holds its turn from the start all the
    same, and is settled when its take starts; an intent of inputs no take has any more,
    whose chain frame's source renders in this run, is settled once that source's video
    lands (or unproved, if it never does).
    """
    current = {
        resume.attempt.id: unit
        for unit in p.units
        if (resume := assessment.resume.get(unit.id)) is not None
        and resume.kind == "reconcile"
        and resume.attempt is not None
    }
    intents = []
    for attempt in store.unsettled_intents(assessment.origin):
        unit = current.get(attempt.id)
        try:
            subject = await walk.intent_subject(attempt, unit)
        except FrameNotYetError as waiting:
            intents.append(
                EarlierIntent(
                    walk.placeholder(attempt),
                    attempt,
                    settle_now=False,
                    waits_for=waiting.source,
                    current=unit is not None,
                )
            )
            continue
        except (AttemptError, OSError, KlingPipeError):
            if unit is None or unit.status != "excluded":
                intents.append(
                    EarlierIntent(
                        walk.placeholder(attempt),
                        attempt,
                        settle_now=False,
                        current=unit is not None,
                    )
                )
                continue
            # Not in --only, its take never starts: settled now with the frames its inputs
            # name, or none (it can then only end uncertain), never left holding its turn.
            subject = await _recorded_subject(walk, attempt)
        intents.append(EarlierIntent(subject, attempt, current=unit is not None))
    return intents


async def _recorded_subject(walk: Walk, attempt: Attempt) -> Subject:
    """Describe an intent by its recorded inputs, or by its name when they cannot be had."""
    try:
        return await walk.intent_subject(attempt, None)
    except (AttemptError, OSError, KlingPipeError):
        return walk.placeholder(attempt)


def _fill_from_records(
    results: dict[str, ShotResult], assessment: Assessment, shotlist: ShotList
) -> None:
    """Give cached and uncertain takes what the records know of them."""
    for key, resume in assessment.resume.items():
        result, attempt = results.get(key), resume.attempt
        if result is None or attempt is None:
            continue
        if result.state not in ("cached", "uncertain", "expired"):
            continue
        result.task_id = attempt.task_id
        result.error = resume.reason if result.state in ("uncertain", "expired") else ""
        if attempt.file is not None:
            result.file = shotlist.base_dir / attempt.file
        result.sha256, result.bytes = attempt.sha256, attempt.bytes


def _read_only(
    shotlist: ShotList,
    keep_records: bool,
    assessed: Callable[[Store | None], Assessment],
    spent: Callable[[Store | None], Decimal],
) -> tuple[Assessment, Decimal]:
    """Assess the shot list, and read what it spent before, without writing anything."""
    store = open_store(shotlist, create=False) if keep_records else None
    try:
        return assessed(store), spent(store)
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

    Renders of a folder written before versions are brought into ``versions/`` first
    (`migrate_to_versions`). Then place each shot's current version at ``<id>.mp4`` from what
    is already on disk (a pick made, a version restored, or a fresh checkout's lock adopted);
    takes delivered in this run are placed as they arrive.
    """
    lock = read_lock_of(shotlist)
    if lock is not None:
        adopt_lock(store, shotlist, lock, hash_file)
    migrate_to_versions(store, shotlist)
    assessment = assessed(store)
    if take_over(store, shotlist, assessment):
        assessment = assessed(store)
    if place_picks(store, shotlist, assessment):
        assessment = assessed(store)
    return assessment


def _checked_plan(
    shotlist: ShotList,
    assessment: Assessment,
    opts: RunOptions,
    spent: Decimal,
    price: PriceOf | None = None,
) -> Plan:
    """Plan the run and refuse it, before anything is sent, if it may not go as asked.

    Refused: a ``--only`` name that selects nothing, a ``--rerender`` outside ``--only``,
    ``--locked`` with anything to pay for, a plan over ``max_cost`` or the film's ``budget``.
    *price* prices a shot (the origin's price list unless given: `price_for`). A render
    whose price nobody confirmed is not refused before the quotes: against a real server
    WaveSpeed's quote prices it, or the run is refused for want of one (`_check_quotes`).
    Once they priced the plan (*price* given), a render still without a price (one the
    quotes did not cover) is refused against any server but the bundled mock.
    """
    p = plan(
        shotlist,
        statuses=assessment.statuses,
        picks=assessment.picks,
        retry_failed=0 if opts.locked else opts.retry_failed,
        fingerprints=assessment.fingerprints,
        only=opts.only,
        spent=spent,
        notes=assessment.plan_notes(),
        price=price or price_for(assessment.origin),
    )
    real = origin_kind(assessment.origin) != "mock"
    unpriced = unpriced_problem(p, real_money=real) if price is not None else None
    if unpriced is not None:
        refused = Problem(unpriced.path, f"{unpriced.message}; nothing was submitted")
        raise ShotListError(str(shotlist.source), [refused])
    if opts.only is not None:
        check_rerender_in_only(shotlist, p, opts.rerender, assessment.picks)
    if opts.locked:
        check_locked(shotlist, assessment, p)
    check_budget(shotlist, p, opts.max_cost)
    return p


def check_rerender_in_only(
    shotlist: ShotList, p: Plan, rerender: Collection[str], picks: Mapping[str, int]
) -> None:
    """Refuse ``--rerender`` of a take ``--only`` leaves out: it would not be rendered."""
    left_out = {u.id for u in p.excluded}
    outside = [name for name in rerender if units_of(shotlist, [name], picks) & left_out]
    if outside:
        raise SelectionError(
            f"--rerender {' '.join(outside)}: not in --only, so it would not be rendered; "
            "name it in --only too"
        )


def _with_marks(
    shotlist: ShotList, opts: RunOptions, origin: str
) -> tuple[RunOptions, tuple[str, ...]]:
    """Add the takes marked for re-render (`kling-pipe mark`, the review page) to *opts*.

    A full run's only: a run with ``--only`` leaves them for later. Return them too.
    """
    marked = marks_in_force(shotlist, origin) if opts.keep_records and not opts.only else ()
    if not marked:
        return opts, ()
    rerender = list(dict.fromkeys([*opts.rerender, *marked]))
    return attrs.evolve(opts, rerender=rerender), marked  # type: ignore[arg-type] # tuple()


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
