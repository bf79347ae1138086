"""The run's one loop: carries out the engine's actions and feeds back what happened.

The engine (`kling_pipe._decisions.engine`) decides which take starts, when a submit may go,
what an attempt's end cost and when the run is over; this shell holds no rule of its own. It
starts one asyncio task per attempt (the walk of one take, `kling_pipe._running.walk`) and
one per intent an earlier run left, all in one `TaskGroup`; each attempt's end becomes an
event through `engine.attempt_ended`, from what the records say it cost. Submits ask it for
their turn (`ask`), which it hands out as the engine says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.engine import (
    AccountLimited,
    AccountQueue,
    Admission,
    CancelRunning,
    Compare,
    Ending,
    Event,
    RunFinished,
    RunStarted,
    SkipShot,
    StartShot,
    StopRequested,
    SubmitAsked,
    SubmitGo,
    SubmitSettled,
    TaskFinal,
    TaskTimed,
    attempt_ended,
    decide,
)
from kling_pipe._decisions.plan import Plan, PlannedTake
from kling_pipe._decisions.results import RunResult, ShotResult, ShotState
from kling_pipe._running.proving import Prover, Subject
from kling_pipe._running.submitting import SubmitFailedError, SubmitProtocol
from kling_pipe._running.walk import AttemptError, Settled, Walk
from kling_pipe.exceptions import BackendError, KlingPipeError

log = logging.getLogger("kling_pipe")

#: The ends of a take that leave it without a video (`engine`'s phases).
_NO_VIDEO: frozenset[str] = frozenset({"failed", "uncertain", "cancelled", "skipped"})


class Reporter(Protocol):
    """Where progress goes: a live table, plain log lines, or nowhere."""

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Show that a shot moved to `result.state`; *detail* says more (a task id, an error)."""

    def spent_changed(self, spent: Decimal) -> None:
        """Show the money committed so far."""


@runtime_checkable
class RunReporter(Reporter, Protocol):
    """A reporter that also wants every take of the run up front (the live table's rows)."""

    def run_started(self, results: Sequence[ShotResult]) -> None:
        """Show the run's takes, in the plan's order, as they stand before anything starts."""


@attrs.frozen
class EarlierIntent:
    """An intent an earlier run left unsettled: it holds its turn from the start.

    With *settle_now* it is settled at once, outside the concurrency limit; else its frame
    could not be had before: its take settles it when it starts, or, for an intent of inputs
    no take has any more, the run does once the take *waits_for* (the source of its chain
    frame) has its video, or has ended without one (then unproved: `settle` rules 2 and 3).
    """

    subject: Subject
    attempt: Attempt
    settle_now: bool = True
    #: Whether it is a take's of this plan (its settling shows on the take's row); an intent
    #: of inputs no take has any more (an edited shot's old version) only logs.
    current: bool = True
    waits_for: str | None = None


class Scheduler:
    """Renders the takes of one plan as the engine decides; use once."""

    def __init__(  # noqa: PLR0913 - the run's decisions and where their results go
        self,
        plan: Plan,
        admission: Admission,
        *,
        prover: Prover,
        reporter: Reporter,
        results: Mapping[str, ShotResult],
        output_dir: Path,
        clock: Callable[[], float],
    ) -> None:
        self._plan = plan
        self._admission = admission
        self._prover = prover
        self._reporter = reporter
        self._results = dict(results)
        self._output_dir = output_dir
        self._clock = clock
        self._units: dict[str, PlannedTake] = {u.id: u for u in plan.units}
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Who waits for the submit turn, and what the engine answered them.
        self._turn_answers: dict[str, asyncio.Future[Compare | SubmitGo]] = {}
        self._subjects: dict[str, Subject] = {}
        #: Subjects of earlier intents no take of the plan has (`EarlierIntent.current`).
        self._elsewhere: set[str] = set()
        #: Intents earlier runs left, being settled, by attempt id.
        self._settling: dict[int, asyncio.Task[Settled]] = {}
        #: Intents of no current take waiting for a take's video, by that take's unit key.
        self._waiting: dict[str, list[EarlierIntent]] = {}
        self._protocol: SubmitProtocol | None = None
        self._finished = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._walk: Walk | None = None
        self._interrupted = False
        self._stop_signal: int = signal.SIGINT

    @property
    def results(self) -> dict[str, ShotResult]:
        """Every take's result so far, by unit key (live while the run goes on)."""
        return self._results

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop starting takes and cancel running ones (the first Ctrl-C or SIGTERM)."""
        self._interrupted = True
        self._stop_signal = signum
        self._apply(StopRequested())

    async def run(
        self,
        walk: Walk,
        protocol: SubmitProtocol,
        intents: Sequence[EarlierIntent] = (),
    ) -> RunResult:
        """Render every take the plan renders and return what happened.

        *intents* are the submits earlier runs left unsettled, each with what proves its
        task: they hold their turns from the start until settled.
        """
        started = self._clock()
        self._walk, self._protocol = walk, protocol
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for intent in intents:
                    self._subjects[intent.subject.name] = intent.subject
                    if not intent.current:
                        self._elsewhere.add(intent.subject.name)
                    if intent.settle_now:
                        self._settle(intent.subject, intent.attempt)
                    elif intent.waits_for is not None:
                        self._waiting.setdefault(intent.waits_for, []).append(intent)
                for unit in list(self._waiting):
                    result = self._results.get(unit)
                    if result is None or result.state != "queued":  # no video is coming
                        self._settle_unproved(unit)
                if isinstance(self._reporter, RunReporter):
                    self._reporter.run_started([self._results[u.id] for u in self._plan.units])
                self._say_what_chains_wait_for()
                self._apply(RunStarted(holding=tuple(i.subject.name for i in intents)))
                await self._finished.wait()
                # Earlier intents no take waits for (an edited shot's old version) are settled
                # before the run ends, unless it was stopped: their tasks may be paid, and a
                # run that ended first would leave them to the next run to find.
                unsettled = [t for t in self._settling.values() if not t.done()]
                if unsettled and not self._interrupted:
                    log.info("settling %d earlier submit(s) before the run ends", len(unsettled))
                    await asyncio.wait(unsettled)
                for settling in self._settling.values():
                    settling.cancel()
        finally:
            self._group = None
        return RunResult(
            storyboard=self._plan.storyboard,
            output_dir=self._output_dir,
            shots=tuple(self._results[u.id] for u in self._plan.units),
            wall_s=self._clock() - started,
            interrupted=self._interrupted,
            stop_signal=self._stop_signal,
            concurrency=self._admission.concurrency,
            account_limit=self._admission.account_limit,
        )

    def _settle(self, subject: Subject, attempt: Attempt) -> None:
        """Settle an earlier run's intent in a task of the run's own (outside the limit)."""
        if self._group is None or self._protocol is None:
            return  # the run is over: the next run settles it
        work = _settle_quietly(self._protocol, subject, attempt)
        try:
            self._settling[attempt.id] = self._group.create_task(work, name=subject.name)
        except RuntimeError:  # the group is shutting down: the next run settles it
            work.close()

    async def _settle_landed(self, unit: str) -> None:
        """Describe the intents that waited for *unit*'s video with its frame, and settle them.

        Done before the take's end is told to the engine: a take chained from the same video
        starts after, so the submit turn compares it with the intent's frame, not its
        placeholder, and never lets both be lost side by side.
        """
        assert self._walk is not None
        for intent in self._waiting.pop(unit, ()):
            subject = intent.subject
            try:
                subject = await self._walk.intent_subject(intent.attempt, None)
            except (OSError, KlingPipeError) as exc:
                log.warning("%s cannot be proved: %s", subject.name, exc)
            self._subjects[subject.name] = subject
            self._settle(subject, intent.attempt)

    def _settle_unproved(self, unit: str) -> None:
        """Settle the intents that waited for *unit*, which ended without a video, unproved.

        Their frame cannot be had in this run: each is settled as a submit that cannot be
        proved (`settle`: uncertain once a finished task sits in its window, refused once
        the window shows none), which ends its turn either way. A run that ends first leaves
        it an intent, settled by a later run (when the source may have its video again).
        """
        for intent in self._waiting.pop(unit, ()):
            log.warning(
                "%s (shot %s) cannot be proved: shot %s, whose video its first frame came "
                "from, has no video in this run",
                intent.subject.name,
                intent.attempt.shot_id,
                unit,
            )
            self._settle(intent.subject, intent.attempt)

    def awaited(self, unit: str) -> bool:
        """Whether shots of the run wait for *unit*'s video (its task is polled more densely)."""
        return self._admission.awaited(unit)

    def earlier(self, attempt_id: int) -> Awaitable[Settled] | None:
        """Return how an earlier run's intent is being settled (None: it is not)."""
        settling = self._settling.get(attempt_id)
        return None if settling is None else asyncio.shield(settling)

    # The submit turn, as the engine hands it out (`submitting.Turns`).

    async def ask(self, subject: Subject) -> float:
        """Wait until the engine grants *subject* the turn; return the rate limit's wait."""
        self._subjects[subject.name] = subject
        compared: frozenset[str] = frozenset()
        alike: frozenset[str] = frozenset()
        while True:
            answer = asyncio.get_running_loop().create_future()
            self._turn_answers[subject.name] = answer
            self._apply(SubmitAsked(subject=subject.name, compared=compared, alike=alike))
            if not answer.done():
                self.report(
                    subject.shot_id, "submitting", "waiting: a like first frame is on the wire"
                )
            match await answer:
                case SubmitGo(wait_s=wait):
                    return wait
                case Compare(against=against):
                    others = [self._subjects[name] for name in against]
                    alike |= {o.name for o in others if await self._prover.indistinct(subject, o)}
                    compared |= against

    def settled(self, subject: Subject) -> None:
        """End *subject*'s turn: its fate is known (once its take ended, this changes nothing)."""
        self._apply(SubmitSettled(subject.name))

    # The engine loop.

    def _apply(self, event: Event) -> None:
        for action in decide(self._admission, event, now=self._clock()):
            match action:
                case StartShot(shot_id=unit, attempt=attempt):
                    self._start(unit, attempt)
                case SkipShot(shot_id=unit, reason=reason):
                    self._results[unit].error = reason
                    self.report(unit, "skipped", reason)
                case CancelRunning():
                    for task in self._running.values():
                        task.cancel()
                case RunFinished():
                    self._finished.set()
                case Compare(subject=subject) | SubmitGo(subject=subject):
                    answer = self._turn_answers.pop(subject, None)
                    if answer is not None and not answer.done():
                        answer.set_result(action)
        for unit in [u for u in self._waiting if self._admission.phase.get(u) in _NO_VIDEO]:
            self._settle_unproved(unit)
        self._reporter.spent_changed(self._admission.committed)

    def _start(self, unit: str, attempt: int) -> None:
        assert self._group is not None
        work = self._attempt(unit, attempt)
        try:
            self._running[unit] = self._group.create_task(work, name=unit)
        except RuntimeError:  # the group is shutting down after an error
            work.close()

    async def _attempt(self, unit: str, attempt: int) -> None:
        assert self._walk is not None
        result = self._results[unit]
        result.attempts = attempt
        result.error, result.code, result.task_id = "", None, None
        started = self._clock()
        state: ShotState
        try:
            await self._walk.walk(self._units[unit], result)
        except AttemptError as failure:
            ending, state, detail = failure.ending, failure.state, str(failure)
            result.error, result.code = detail, failure.code
        except (ValueError, OSError, sqlite3.Error, KlingPipeError) as exc:
            # One bad answer, a full disk or a locked database fails this take only.
            ending, state = Ending(outcome="failed"), "failed"
            result.error = detail = f"{type(exc).__name__}: {exc}"
            log.warning("shot %s failed: %s", unit, result.error)
        except asyncio.CancelledError:
            # Our own cancellation after Ctrl-C: record it and let the run finish cleanly.
            ending, state = Ending(outcome="cancelled"), "cancelled"
            recorded = self._walk.recorded_state(unit)
            in_flight = result.task_id is not None and recorded != "downloaded"
            detail = f"task {result.task_id} may still be rendering" if in_flight else ""
            result.error = "cancelled" + (f"; {detail}" if detail else "")
        else:
            ending, state, detail = Ending(outcome="done"), "done", str(result.file)
        finally:
            result.seconds += self._clock() - started
            self._running.pop(unit, None)
            self._turn_answers.pop(unit, None)
        if state == "done" and unit in self._waiting:
            # Cancelled meanwhile (the run is stopping): what waits is left to the next run.
            with contextlib.suppress(asyncio.CancelledError):
                await self._settle_landed(unit)
        event = attempt_ended(unit, ending, self._walk.recorded_state(unit))
        self._apply(event)
        result.cost = self._admission.spent[unit]
        self.report(unit, state, detail)

    def task_known(self, unit: str, task_id: str) -> None:
        """Note the task a unit's submit created (printed if the run is stopped now).

        *unit* is the submit's subject: an earlier run's intent names no unit, and leaves the
        take of the same shot (perhaps of other inputs now) as it is.
        """
        if unit in self._results:
            self._results[unit].task_id = task_id

    def task_final(self, unit: PlannedTake, rendered_s: float | None) -> None:
        """Teach the engine a completed task's time and free its slot while it downloads."""
        if rendered_s is not None:
            self._apply(TaskTimed(video_s=unit.shot.duration, seconds=rendered_s))
        self._apply(TaskFinal(unit.id))

    def account_limited(self, processing: int) -> None:
        """Tell the engine how many tasks the account processes at once (the watch learned it)."""
        self._apply(AccountLimited(processing))

    def account_queue(self, waiting: int) -> None:
        """Tell the engine how many of the run's tasks wait in the account's queue."""
        self._apply(AccountQueue(waiting))

    def waiting(self, subject: Subject, what: str) -> None:
        """Show what a submit waits for, on its take's row unless it is an old version's."""
        if subject.name in self._elsewhere:
            log.info("shot %s (an earlier version's submit): %s", subject.shot_id, what)
            return
        self.report(subject.shot_id, "submitting", what)

    def report(self, unit: str, state: ShotState, detail: str = "") -> None:
        """Show that *unit* moved to *state* (an intent of a shot no longer here: a log line)."""
        result = self._results.get(unit)
        if result is None:
            log.info("shot %s (no longer in the shot list): %s %s", unit, state, detail)
            return
        result.state = state
        self._reporter.shot_changed(result, detail)

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


async def _settle_quietly(protocol: SubmitProtocol, subject: Subject, attempt: Attempt) -> Settled:
    """Settle an earlier run's intent; the take it belongs to (if any) takes the outcome.

    Never raises (but for cancellation): an error in a task of the run's group would cancel
    every take.
    """
    try:
        return await protocol.settle_recorded(subject, attempt), None
    except (SubmitFailedError, BackendError, ValueError, OSError, sqlite3.Error) as exc:
        return None, exc


def initial_results(plan: Plan, *, picks: Mapping[str, int]) -> dict[str, ShotResult]:
    """Return every take's result before the run: queued, or as the records leave it.

    A take not in ``--only`` is ``excluded`` from the start and stays so: nothing is done.
    """
    results = {
        u.id: ShotResult(
            id=u.id,
            duration=u.shot.duration,
            state="queued",
            shot=u.shot.id,
            take=u.take,
            picked=u.take == picks.get(u.shot.id, 1),
        )
        for u in plan.units
    }
    for u in plan.units:
        if u.status in ("cached", "uncertain", "expired", "excluded"):
            results[u.id].state = u.status
        if u.status == "excluded":
            results[u.id].error = "not in --only"
        elif u.status == "approved":  # a take of an approved shot: as it is, like a cached one
            results[u.id].state = "cached"
    return results
