"""The async shell around `engine`: turns its decisions into uploads, submits, polls, downloads.

The only code in kling-pipe that awaits on the backend. One asyncio task per shot attempt,
all inside one `TaskGroup`; each feeds its outcome back to `engine.decide`, which says what
starts next. Money rules enforced here, beyond the engine's budget:

* a submit is sent only with its cost reserved;
* every submit goes through `kling_pipe._running.submitting.SubmitProtocol`, which writes its
  intent, owns its task id, and settles a lost answer by proof, never by a blind resend.

Takes: what is scheduled is each *render unit* of the plan (`Plan.units`), one per take,
named by its unit key (the shot's id for take 1, ``id#k`` for take k). A take is paid work as
safe as a shot: its own attempt in the store, its own submit through the protocol (two takes
of one shot have the same first frame, so the protocol never has both unsettled at once), its
own file (`kling_pipe._records.layout.OutputLayout.take`) and result. A chained take waits for,
and takes its frame from, the picked take of its source; the picked take, once delivered, is
placed at ``<id>.mp4`` (`kling_pipe._running.delivery.Delivery.place_pick`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import attrs

from kling_pipe._backends.base import Backend, Download, Prediction, SubmitRequest
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.engine import (
    Admission,
    CancelRunning,
    Event,
    RunFinished,
    RunStarted,
    ShotEnded,
    SkipShot,
    StartShot,
    StopRequested,
    decide,
)
from kling_pipe._decisions.pacing import DurationEstimator, PollPolicy, RateLimiter
from kling_pipe._decisions.plan import Plan, PlannedTake
from kling_pipe._decisions.results import RunResult, ShotResult, ShotState
from kling_pipe._decisions.resume import Resume
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import Store
from kling_pipe._running.delivery import Delivery, DeliveryError
from kling_pipe._running.inputs import InputError, ShotInputs, relative_to_shotlist
from kling_pipe._running.submitting import (
    Prover,
    SettleOptions,
    Subject,
    SubmitFailedError,
    SubmitProtocol,
    VideoProver,
)
from kling_pipe._running.watching import TaskWatcher, WatchError
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.specs import ShotList, unit_key
from kling_pipe.exceptions import (
    AuthError,
    BackendError,
    KlingPipeError,
    NotFoundError,
)

log = logging.getLogger("kling_pipe")


#: Takes in flight at once when neither the caller nor the storyboard says.
DEFAULT_CONCURRENCY = 4


@attrs.frozen(kw_only=True)
class RunOptions:
    """How a run behaves; the CLI flags map onto these one to one.

    `render` takes its options here and only here. A value left at None falls back to the
    storyboard's setting, then to the default.
    """

    #: Takes in flight at once (None: the storyboard's ``concurrency``, else 4).
    concurrency: int | None = None
    #: The most the run may spend, in USD (None: the storyboard's ``max_cost``, else no cap).
    max_cost: Decimal | None = None
    #: Submits per minute at most (an account tier's limit), or None for no limit.
    rate_per_min: int | None = None
    #: How many times a task that failed on the server is resubmitted.
    retry_failed: int = 0
    fail_fast: bool = False
    #: Longest wait for one task from submit to final status.
    task_timeout_s: float = 3600.0
    poll_policy: PollPolicy = attrs.Factory(PollPolicy)
    #: Expected seconds per task before any task of this run completes (None: probe).
    expected_task_s: float | None = None
    #: How a submit whose answer was lost is settled (see `kling_pipe._running.submitting`).
    settle: SettleOptions = attrs.Factory(SettleOptions)
    #: Make the contact sheet's thumbnails while the run waits (off with `run --no-report`).
    thumbnails: bool = True


@attrs.frozen(kw_only=True)
class Timing:
    """Every clock the shell reads and the one way it waits, injectable so tests use fake time."""

    #: Seconds for measuring intervals (poll pacing, durations).
    monotonic: Callable[[], float] = time.monotonic
    #: Aware UTC wall-clock time (send times, upload ages); the server's clock is derived.
    now: Callable[[], datetime] = attrs.field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@attrs.frozen(kw_only=True)
class Records:
    """Where a run records what it does, and what earlier runs left to continue."""

    store: Store
    #: What each take needs, from `resume.assess`, by unit key.
    resume: Mapping[str, Resume]
    #: Each take's fingerprinted inputs, by unit key.
    inputs: Mapping[str, Mapping[str, Any]]
    #: Where the work goes, as records keep it: ``mock``, or the API's base URL.
    origin: str
    #: The API base URL of this connection: an upload is reused only with that server.
    base_url: str


class Reporter(Protocol):
    """Where progress goes: a live table, plain log lines, or nowhere."""

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Show that a shot moved to `result.state`; *detail* says more (a task id, an error)."""

    def spent_changed(self, spent: Decimal) -> None:
        """Show the money committed so far."""


class _ShotFailedError(KlingPipeError):
    """Ends one attempt; carries how the engine should account for it."""

    def __init__(  # noqa: PLR0913 - keyword-only accounting flags
        self,
        message: str,
        *,
        charged: bool,
        retryable: bool = False,
        fatal: bool = False,
        code: int | None = None,
        state: ShotState = "failed",
    ) -> None:
        self.charged = charged
        self.retryable = retryable
        self.fatal = fatal
        self.code = code
        self.state: ShotState = state
        super().__init__(message)


class _Settled(NamedTuple):
    """How settling an earlier run's intent ended: its task, or the error to raise."""

    found: Prediction | None
    error: Exception | None


class Scheduler:
    """Renders the shots of one plan through one backend; use once."""

    def __init__(  # noqa: PLR0913 - the run's whole context, keyword-only
        self,
        shotlist: ShotList,
        plan: Plan,
        backend: Backend,
        *,
        options: RunOptions,
        reporter: Reporter,
        records: Records | None = None,
        registry: Registry | None = None,
        prover: Prover | None = None,
        timing: Timing | None = None,
    ) -> None:
        self._shotlist = shotlist
        self._plan = plan
        self._backend = backend
        self._options = options
        self._reporter = reporter
        timing = timing or Timing()
        self._clock = clock = timing.monotonic
        self._now = now = timing.now
        self._sleep = sleep = timing.sleep
        if records is None:  # a caller that keeps no records: they live in memory
            origin = backend.origin
            records = Records(
                store=Store.in_memory(), resume={}, inputs={}, origin=origin, base_url=origin
            )
        origin = records.origin
        self._origin = origin
        self._admission = Admission(
            plan=plan,
            concurrency=options.concurrency or DEFAULT_CONCURRENCY,
            max_cost=options.max_cost,
            retry_failed=options.retry_failed,
            fail_fast=options.fail_fast,
        )
        self._units: dict[str, PlannedTake] = {u.id: u for u in plan.units}
        self._picks = {p.id: p.pick for p in plan.shots}
        self._results = {
            u.id: ShotResult(
                id=u.id,
                duration=u.shot.duration,
                state="queued",
                shot=u.shot.id,
                take=u.take,
                picked=u.take == self._picks.get(u.shot.id, 1),
            )
            for u in plan.units
        }
        for p in plan.units:
            if p.status == "cached":
                self._results[p.id].state = "cached"
            elif p.status == "uncertain":
                self._results[p.id].state = "uncertain"
        self._fill_from_records(records)
        self._output_dir = OutputLayout.of(shotlist, records.origin).folder
        self._watcher = TaskWatcher(
            backend,
            timeout_s=options.task_timeout_s,
            policy=options.poll_policy,
            estimator=DurationEstimator(
                prior_s=options.expected_task_s,
                seed_s=records.store.task_durations(
                    plan.model, origin=origin, durations={p.shot.duration for p in plan.shots}
                ),
            ),
            clock=clock,
            sleep=sleep,
        )
        self._limiter = (
            RateLimiter(max_events=options.rate_per_min) if options.rate_per_min else None
        )
        self._delivery = Delivery(
            backend=backend,
            store=records.store,
            shotlist=shotlist,
            origin=origin,
            thumbnails=options.thumbnails,
        )
        self._inputs = ShotInputs(
            shotlist=shotlist,
            backend=backend,
            store=records.store,
            base_url=records.base_url,
            origin=origin,
            output_dir=self._output_dir,
            now=now,
            video_of=self._picked_video,
            frames=self._delivery.frames,
        )
        #: Intents of earlier runs being settled, by shot id (started with the run).
        self._settling: dict[str, asyncio.Task[_Settled]] = {}
        self._records = records
        self._store = records.store
        self._registry = registry or Registry.in_memory()
        self._owner_prefix = str(shotlist.source.resolve())
        self._registry.claim_many(
            [(t, f"{self._owner_prefix}#{s}") for s, t in self._store.task_owners()],
            origin=origin,
        )
        self._protocol = SubmitProtocol(
            backend=backend,
            store=self._store,
            registry=self._registry,
            origin=origin,
            options=options.settle,
            prover=prover or VideoProver(backend),
            now=now,
            sleep=sleep,
            before_send=self._wait_for_rate_slot,
            on_wait=self._protocol_waits,
            on_task=self._protocol_task,
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._interrupted = False
        self._stop_signal: int = signal.SIGINT

    def _picked_video(self, shot_id: str) -> Path | None:
        """Return the video a chain from *shot_id* takes its frame from: its picked take's."""
        return self._results[unit_key(shot_id, self._picks.get(shot_id, 1))].file

    def _fill_from_records(self, records: Records) -> None:
        """Give cached and uncertain takes what the records know of them."""
        for key, resume in records.resume.items():
            if key not in self._results:
                continue
            result, attempt = self._results[key], resume.attempt
            if attempt is None or result.state not in ("cached", "uncertain"):
                continue
            result.task_id = attempt.task_id
            result.error = resume.reason if result.state == "uncertain" else ""
            if attempt.file is not None:
                result.file = self._shotlist.base_dir / attempt.file
            result.sha256, result.bytes = attempt.sha256, attempt.bytes

    @property
    def results(self) -> dict[str, ShotResult]:
        """Every shot's result so far, by id (live while the run goes on)."""
        return self._results

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop starting shots and cancel running ones (the first Ctrl-C or SIGTERM)."""
        self._interrupted = True
        self._stop_signal = signum
        self._apply(StopRequested())

    async def run(self) -> RunResult:
        """Render every shot the plan renders and return what happened."""
        started = self._clock()
        self._output_dir.mkdir(parents=True, exist_ok=True)
        reserved = await self._reserve_unsettled()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                # Intents earlier runs left are settled at once, outside the concurrency
                # limit: new submits whose frames are like theirs wait for them.
                for shot_id, (subject, attempt) in reserved.items():
                    self._settling[shot_id] = group.create_task(
                        self._settle_quietly(subject, attempt), name=f"settle {shot_id}"
                    )
                self._say_what_chains_wait_for()
                self._apply(RunStarted())
                await self._finished.wait()
                for settling in self._settling.values():
                    settling.cancel()
                await self._delivery.frames.drain()  # thumbnails left: no shot waits now
        finally:
            self._protocol.release_reserved()
            await self._delivery.frames.close()  # however the run ends, no frame job outlives it
        return RunResult(
            storyboard=self._plan.storyboard,
            output_dir=self._output_dir,
            shots=tuple(self._results[u.id] for u in self._plan.units),
            wall_s=self._clock() - started,
            interrupted=self._interrupted,
            stop_signal=self._stop_signal,
        )

    def _say_what_chains_wait_for(self) -> None:
        """Show each chained take waiting for its sources as exactly that, not just queued."""
        for planned in self._plan.units:
            result = self._results[planned.id]
            sources = [
                src
                for src in planned.sources
                if src in self._results and self._results[src].state != "cached"
            ]
            if result.state == "queued" and sources:
                waits = ", ".join(f'"{src}"' for src in sources)
                self._reporter.shot_changed(result, f"waiting for shot {waits}")

    async def _reserve_unsettled(self) -> dict[str, tuple[Subject, Attempt]]:
        """Hold the submit turn of every intent earlier runs left unsettled (see `reserve`)."""
        reserved: dict[str, tuple[Subject, Attempt]] = {}
        for shot_id, resume in self._records.resume.items():
            if resume.kind == "reconcile" and resume.attempt is not None:
                if shot_id not in self._units:
                    continue
                try:
                    subject = await self._subject(self._units[shot_id])
                except (_ShotFailedError, OSError, KlingPipeError):
                    continue  # its attempt will try again, and say why if it fails
                self._protocol.reserve(subject, resume.attempt)
                reserved[shot_id] = (subject, resume.attempt)
        return reserved

    async def _settle_quietly(self, subject: Subject, attempt: Attempt) -> _Settled:
        """Settle an earlier run's intent; its shot's attempt takes the outcome, errors too.

        Never raises (but for cancellation): an error in a task of the run's group would
        cancel every shot.
        """
        try:
            return _Settled(await self._protocol.settle_recorded(subject, attempt), None)
        except (SubmitFailedError, BackendError, ValueError, OSError, sqlite3.Error) as exc:
            return _Settled(None, exc)

    def _release_turn(self, shot_id: str) -> None:
        resume = self._records.resume.get(shot_id)
        self._protocol.release(None if resume is None else resume.attempt)

    # The engine loop.

    def _apply(self, event: Event) -> None:
        for action in decide(self._admission, event):
            match action:
                case StartShot(shot_id=sid, attempt=attempt):
                    assert self._group is not None
                    work = self._attempt(sid, attempt)
                    try:
                        task = self._group.create_task(work, name=sid)
                    except RuntimeError:  # the group is shutting down after an error
                        work.close()
                        continue
                    self._running[sid] = task
                case SkipShot(shot_id=sid, reason=reason):
                    self._release_turn(sid)
                    self._set(sid, "skipped", reason)
                    self._results[sid].error = reason
                case CancelRunning():
                    for task in self._running.values():
                        task.cancel()
                case RunFinished():
                    self._finished.set()
        self._reporter.spent_changed(self._admission.committed)

    async def _attempt(self, shot_id: str, attempt: int) -> None:
        result = self._results[shot_id]
        result.attempts = attempt
        result.error, result.code, result.task_id = "", None, None
        unit = self._units[shot_id]
        started = self._clock()
        unit_cost = self._admission.reserved[shot_id]
        event: ShotEnded
        try:
            await self._render(unit, result)
        except _ShotFailedError as failure:
            result.error, result.code = str(failure), failure.code
            if failure.charged:
                result.cost += unit_cost
            event = ShotEnded(
                shot_id=shot_id,
                outcome="uncertain" if failure.state == "uncertain" else "failed",
                charged=failure.charged,
                retryable=failure.retryable,
                fatal=failure.fatal,
            )
            self._set(shot_id, failure.state, str(failure))
        except (ValueError, OSError, sqlite3.Error, KlingPipeError) as exc:
            # One bad answer (a malformed task id or URL), a full disk or a locked database
            # fails this shot only; the run goes on. A task it had may have been paid for.
            charged = result.task_id is not None
            if charged:
                result.cost += unit_cost
            result.error = f"{type(exc).__name__}: {exc}"
            log.warning("shot %s failed: %s", shot_id, result.error)
            event = ShotEnded(shot_id=shot_id, outcome="failed", charged=charged)
            self._set(shot_id, "failed", result.error)
        except asyncio.CancelledError:
            # Our own cancellation after Ctrl-C: record it and let the run finish cleanly.
            charged = result.task_id is not None and result.state != "done"
            if charged:
                result.cost += unit_cost
            detail = f"task {result.task_id} may still be rendering" if charged else ""
            result.error = "cancelled" + (f"; {detail}" if detail else "")
            event = ShotEnded(shot_id=shot_id, outcome="cancelled", charged=charged)
            self._set(shot_id, "cancelled", detail)
        else:
            result.cost += unit_cost
            event = ShotEnded(shot_id=shot_id, outcome="done", charged=True)
            self._set(shot_id, "done", str(result.file))
        finally:
            result.seconds += self._clock() - started
            self._running.pop(shot_id, None)
            self._release_turn(shot_id)
        self._apply(event)

    def _set(self, shot_id: str, state: ShotState, detail: str = "") -> None:
        result = self._results[shot_id]
        result.state = state
        self._reporter.shot_changed(result, detail)

    # One take, start to finish.

    async def _render(self, unit: PlannedTake, result: ShotResult) -> None:
        key, shot = unit.id, unit.shot
        resume = self._records.resume.get(key) if result.attempts == 1 else None
        prediction, attempt_id = await self._continue(unit, resume)
        if prediction is None:
            prediction, attempt_id = await self._start_task(unit)
        result.task_id = prediction.id
        if prediction.id not in result.task_ids:
            result.task_ids.append(prediction.id)
        self._set(key, "processing", f"task {prediction.id}")
        try:
            final = await self._watcher.until_final(prediction, result)
        except WatchError as exc:
            raise _ShotFailedError(str(exc), charged=True, fatal=exc.fatal) from None
        finally:
            if attempt_id is not None:
                self._store.record_polls(attempt_id, result.polls)
        if attempt_id is not None:
            self._store.record_final(
                attempt_id,
                completed=final.succeeded,
                error="" if final.succeeded else final.failure_reason,
                code=final.code,
            )
        if not final.succeeded:
            # WaveSpeed refunds a failed task, so a new attempt may be worth paying for.
            raise _ShotFailedError(
                final.failure_reason, charged=False, retryable=True, code=final.code
            )
        self._set(key, "downloading")
        video = await self._deliver(unit, prediction.id, final.outputs[0], attempt_id)
        result.file, result.sha256, result.bytes = video.path, video.sha256, video.size
        if attempt_id is not None:
            self._store.record_download(
                attempt_id,
                file=relative_to_shotlist(video.path, self._shotlist),
                sha256=video.sha256,
                size=video.size,
            )
        if result.picked:
            await self._place_pick(shot.id, video, result)

    async def _deliver(
        self, unit: PlannedTake, task_id: str, url: str, attempt_id: int | None
    ) -> Download:
        """Download the take's video to its own file (`layout.take`); a bad one fails the take."""
        shot = unit.shot
        pick = self._picks.get(shot.id, 1)
        try:
            return await self._delivery.fetch(
                shot_id=unit.id,
                duration=shot.duration,
                task_id=task_id,
                url=url,
                dest=self._delivery.layout.take(shot.id, unit.take, pick),
            )
        except DeliveryError as failure:
            if failure.rejected and attempt_id is not None:
                self._store.record_rejected(attempt_id, str(failure))
            raise _ShotFailedError(str(failure), charged=True) from None

    async def _place_pick(self, shot_id: str, video: Download, result: ShotResult) -> None:
        """Make ``<id>.mp4`` the picked take just delivered, unless it was delivered there.

        The take is rendered and recorded by now: a file that cannot be placed (a full disk)
        is a warning, not a failed take, and the next run places it before anything else.
        """
        try:
            await self._delivery.place_pick(shot_id, video)
        except OSError as exc:
            placed = self._delivery.layout.picked(shot_id)
            result.warnings.append(f"{placed} could not be made this take ({exc}); run again")

    async def _continue(
        self, unit: PlannedTake, resume: Resume | None
    ) -> tuple[Prediction | None, int | None]:
        """Pick up a task an earlier run created; (None, None) when there is none to continue."""
        if resume is None or resume.attempt is None:
            return None, None
        key, attempt = unit.id, resume.attempt
        if resume.kind in ("poll", "refetch") and attempt.task_id is not None:
            self._set(key, "processing", f"resuming task {attempt.task_id}")
            return await self._fetch(attempt.task_id, key), attempt.id
        if resume.kind == "reconcile":
            self._set(key, "submitting", "settling a lost answer through the history")
            settling = self._settling.get(key)
            try:
                if settling is None:  # its subject could not be made at the start: try now
                    found = await self._protocol.settle_recorded(await self._subject(unit), attempt)
                else:
                    found, error = await asyncio.shield(settling)
                    if error is not None:
                        raise error
            except SubmitFailedError as failure:
                raise _ShotFailedError(
                    str(failure), charged=failure.charged, state=failure.state
                ) from None
            if found is not None:
                return found, attempt.id
        return None, None

    async def _fetch(self, task_id: str, shot_id: str) -> Prediction:
        try:
            return await self._backend.get_prediction(task_id)
        except NotFoundError:
            raise _ShotFailedError(
                f"task {task_id} from an earlier run is unknown to the server (expired or "
                f"deleted); run again with --rerender {shot_id} to render it anew (costs money)",
                charged=False,
            ) from None
        except AuthError as exc:
            raise _ShotFailedError(str(exc), charged=False, fatal=True) from None
        except BackendError as exc:
            raise _ShotFailedError(
                f"task {task_id} could not be looked up: {exc}", charged=False
            ) from None

    async def _start_task(self, unit: PlannedTake) -> tuple[Prediction, int | None]:
        key, shot = unit.id, unit.shot
        self._set(key, "uploading")
        try:
            image_url = await self._inputs.url(shot.image)
            last_url = None if shot.last_image is None else await self._inputs.url(shot.last_image)
        except AuthError as exc:
            raise _ShotFailedError(str(exc), charged=False, fatal=True) from None
        except InputError as exc:
            raise _ShotFailedError(str(exc), charged=False) from None
        except (BackendError, OSError) as exc:
            raise _ShotFailedError(
                f"preparing the input images failed: {exc}", charged=False
            ) from None
        request = SubmitRequest(
            model=self._plan.model,
            prompt=shot.final_prompt,
            image_url=image_url,
            last_image_url=last_url,
            duration=shot.duration,
        )
        self._set(key, "submitting")
        return await self._submit(unit, request)

    # Submitting, never twice: the protocol is `kling_pipe._running.submitting`.

    async def _subject(self, unit: PlannedTake) -> Subject:
        """Describe a take for the submit protocol: what it records, and what proves a task."""
        key, shot = unit.id, unit.shot
        try:
            first_id, first = await self._inputs.proof_image(shot.image)
            last_id, last = (None, None)
            if shot.last_image is not None:
                last_id, last = await self._inputs.proof_image(shot.last_image)
        except InputError as exc:
            raise _ShotFailedError(str(exc), charged=False) from None
        resume = self._records.resume.get(key)
        fingerprint = "" if resume is None else resume.fingerprint
        inputs = json.dumps(self._records.inputs.get(key, {}), sort_keys=True)
        return Subject(
            shot_id=key,
            owner=f"{self._owner_prefix}#{key}",
            fingerprint=fingerprint,
            inputs=inputs,
            model=self._plan.model,
            duration=shot.duration,
            cost=self._admission.cost(key) or rules.shot_cost(self._plan.model, shot.duration),
            key=(first_id, last_id),
            first=first,
            last=last,
            has_last=shot.last_image is not None,
        )

    async def _submit(
        self, unit: PlannedTake, request: SubmitRequest
    ) -> tuple[Prediction, int | None]:
        subject = await self._subject(unit)
        try:
            return await self._protocol.submit(subject, request)
        except SubmitFailedError as failure:
            raise _ShotFailedError(
                str(failure), charged=failure.charged, fatal=failure.fatal, state=failure.state
            ) from None

    async def _wait_for_rate_slot(self, shot_id: str) -> None:
        if self._limiter is not None:
            delay = self._limiter.reserve(self._clock())
            if delay > 0:
                self._set(shot_id, "submitting", f"waiting for the rate limit ({delay:.0f} s)")
                await self._sleep(delay)

    def _protocol_waits(self, shot_id: str, what: str) -> None:
        self._set(shot_id, "submitting", what)

    def _protocol_task(self, shot_id: str, task_id: str) -> None:
        self._results[shot_id].task_id = task_id
