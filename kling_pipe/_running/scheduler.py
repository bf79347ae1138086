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
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import attrs

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.engine import (
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


class Reporter(Protocol):
    """Where progress goes: a live table, plain log lines, or nowhere."""

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Show that a shot moved to `result.state`; *detail* says more (a task id, an error)."""

    def spent_changed(self, spent: Decimal) -> None:
        """Show the money committed so far."""


@attrs.frozen
class EarlierIntent:
    """An intent an earlier run left unsettled: it holds its turn from the start.

    With *settle_now* it is settled at once, outside the concurrency limit; else its take
    settles it when it starts (its frame could not be had before).
    """

    subject: Subject
    attempt: Attempt
    settle_now: bool = True


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
        #: Intents earlier runs left, being settled, by attempt id.
        self._settling: dict[int, asyncio.Task[Settled]] = {}
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
        self._walk = walk
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for intent in intents:
                    self._subjects[intent.subject.name] = intent.subject
                    if intent.settle_now:
                        self._settling[intent.attempt.id] = group.create_task(
                            _settle_quietly(protocol, intent.subject, intent.attempt),
                            name=intent.subject.name,
                        )
                self._say_what_chains_wait_for()
                self._apply(RunStarted(holding=tuple(i.subject.name for i in intents)))
                await self._finished.wait()
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
        )

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
        event = attempt_ended(unit, ending, self._walk.recorded_state(unit))
        self._apply(event)
        result.cost = self._admission.spent[unit]
        self.report(unit, state, detail)

    def task_known(self, unit: str, task_id: str) -> None:
        """Note the task a unit's submit created (printed if the run is stopped now)."""
        if unit in self._results:
            self._results[unit].task_id = task_id

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
    """Return every take's result before the run: queued, or as the records leave it."""
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
        if u.status in ("cached", "uncertain"):
            results[u.id].state = u.status
        elif u.status == "approved":  # a take of an approved shot: as it is, like a cached one
            results[u.id].state = "cached"
    return results
