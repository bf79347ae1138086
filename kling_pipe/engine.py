"""Which shot starts when: the scheduler's decisions as a pure state machine.

All admission state lives in one `Admission` object, changed only by `decide(state, event)`,
which returns the actions to take. The async shell (`scheduler`) carries the actions out and
feeds what happened back as events, so every policy here (concurrency, chains, the budget,
retries of failed tasks, fail-fast, Ctrl-C) is tested with plain events and no event loop.

The budget is kept by reservation: a shot's cost is reserved before it starts and released
only when its task is known to cost nothing (refused, or failed and refunded). A submit whose
outcome is unknown keeps its reservation, so no sequence of events can take the committed
spend past `max_cost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe.plan import Plan, PlannedShot

Outcome = Literal["done", "failed", "uncertain", "cancelled"]
Phase = Literal["queued", "running", "done", "failed", "uncertain", "cancelled", "skipped"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "uncertain", "cancelled", "skipped"})


# Events: what happened.


@attrs.frozen
class RunStarted:
    """The run begins; start what can start."""


@attrs.frozen(kw_only=True)
class ShotEnded:
    """A shot's worker finished one attempt."""

    shot_id: str
    outcome: Outcome
    #: False when the attempt is known to have cost nothing (refused, or failed and refunded).
    charged: bool
    #: True when a new attempt could succeed (a task that failed on the server side).
    retryable: bool = False
    #: True when no other shot can succeed either (a bad API key): stop starting shots.
    fatal: bool = False


@attrs.frozen
class StopRequested:
    """Ctrl-C: start nothing more; the shell cancels what is running."""


Event = RunStarted | ShotEnded | StopRequested


# Actions: what to do.


@attrs.frozen
class StartShot:
    """Run attempt number `attempt` (1-based) of a shot."""

    shot_id: str
    attempt: int


@attrs.frozen
class SkipShot:
    """Give up on a shot without spending anything, saying why."""

    shot_id: str
    reason: str


@attrs.frozen
class CancelRunning:
    """Cancel every running shot (after Ctrl-C)."""


@attrs.frozen
class RunFinished:
    """Every shot has reached a final phase."""


Action = StartShot | SkipShot | CancelRunning | RunFinished


@attrs.define
class Admission:
    """The scheduler's whole decision state; change it only through `decide`."""

    plan: Plan
    concurrency: int
    max_cost: Decimal | None = None
    retry_failed: int = 0
    fail_fast: bool = False
    phase: dict[str, Phase] = attrs.field(init=False)
    attempts: dict[str, int] = attrs.field(init=False)
    #: Money reserved for shots started and not known to be free.
    committed: Decimal = attrs.field(init=False, default=Decimal("0.000"))
    #: What each shot's current attempt reserved (a resumed task was paid for earlier).
    reserved: dict[str, Decimal] = attrs.field(init=False)
    stopping: bool = attrs.field(init=False, default=False)
    finished: bool = attrs.field(init=False, default=False)
    _by_id: dict[str, PlannedShot] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._by_id = {p.id: p for p in self.plan.shots}
        initial: dict[str, Phase] = {"cached": "done", "uncertain": "uncertain"}
        self.phase = {p.id: initial.get(p.status, "queued") for p in self.plan.shots}
        self.attempts = dict.fromkeys(self._by_id, 0)
        self.reserved = dict.fromkeys(self._by_id, Decimal("0.000"))

    @property
    def running(self) -> tuple[str, ...]:
        """Ids of the shots with an attempt in progress."""
        return tuple(i for i, ph in self.phase.items() if ph == "running")

    def cost(self, shot_id: str) -> Decimal:
        """Return what the next attempt at *shot_id* may cost this run.

        The first attempt costs what the plan says (nothing for a task paid for in an earlier
        run); a retry is a new task, at the full price.
        """
        planned = self._by_id[shot_id]
        return planned.cost if self.attempts[shot_id] == 0 else planned.unit_cost


def decide(state: Admission, event: Event) -> list[Action]:
    """Apply *event* to *state* and return the actions it calls for, in order."""
    actions: list[Action] = []
    match event:
        case RunStarted():
            pass
        case StopRequested():
            if not state.stopping:
                state.stopping = True
                if state.running:
                    actions.append(CancelRunning())
        case ShotEnded():
            actions.extend(_on_shot_ended(state, event))
    actions.extend(_admit(state))
    return actions


def _on_shot_ended(state: Admission, event: ShotEnded) -> list[Action]:
    sid = event.shot_id
    if state.phase.get(sid) != "running":
        raise ValueError(f"shot {sid!r} ended but was not running")
    if not event.charged:
        state.committed -= state.reserved[sid]
        state.reserved[sid] = Decimal("0.000")
    if event.fatal:
        state.stopping = True
    if (
        event.outcome == "failed"
        and event.retryable
        and not state.stopping
        and state.attempts[sid] <= state.retry_failed
    ):
        state.phase[sid] = "queued"
        return []
    state.phase[sid] = event.outcome
    if event.outcome == "failed" and state.fail_fast:
        state.stopping = True
    return []


def _admit(state: Admission) -> list[Action]:
    """Start every shot that may start now; skip those that never can."""
    actions: list[Action] = []
    actions.extend(_skip_orphans(state))
    if state.stopping:
        reason = "not started: the run was stopped"
        for p in state.plan.shots:
            if state.phase[p.id] == "queued":
                state.phase[p.id] = "skipped"
                actions.append(SkipShot(p.id, reason))
    free = state.concurrency - len(state.running)
    for p in state.plan.shots:
        if free <= 0 or state.stopping:
            break
        if state.phase[p.id] != "queued" or not _sources_done(state, p):
            continue
        cost = state.cost(p.id)
        if state.max_cost is not None and state.committed + cost > state.max_cost:
            continue
        state.committed += cost
        state.reserved[p.id] = cost
        state.attempts[p.id] += 1
        state.phase[p.id] = "running"
        actions.append(StartShot(p.id, state.attempts[p.id]))
        free -= 1
    actions.extend(_skip_over_budget(state))
    if not state.finished and all(ph in TERMINAL for ph in state.phase.values()):
        state.finished = True
        actions.append(RunFinished())
    return actions


def _sources_done(state: Admission, p: PlannedShot) -> bool:
    return all(state.phase.get(src) == "done" for src in p.shot.chained_from)


def _skip_orphans(state: Admission) -> list[Action]:
    """Skip queued shots whose source shot ended without a video, transitively."""
    actions: list[Action] = []
    changed = True
    while changed:
        changed = False
        for p in state.plan.shots:
            if state.phase[p.id] != "queued":
                continue
            lost = _lost_sources(state, p.shot.chained_from)
            if lost:
                state.phase[p.id] = "skipped"
                actions.append(SkipShot(p.id, f"chained from {lost[0]!r}, which has no video"))
                changed = True
    return actions


def _lost_sources(state: Admission, sources: Sequence[str]) -> list[str]:
    ended = {"failed", "uncertain", "cancelled", "skipped"}
    return [s for s in sources if state.phase.get(s) in ended]


def _skip_over_budget(state: Admission) -> list[Action]:
    """When nothing runs and the next shot still does not fit the budget, nothing ever will."""
    if state.running or state.max_cost is None:
        return []
    actions: list[Action] = []
    for p in state.plan.shots:
        if state.phase[p.id] == "queued":
            state.phase[p.id] = "skipped"
            actions.append(
                SkipShot(
                    p.id,
                    f"not started: {state.committed} USD is committed and this shot's "
                    f"{state.cost(p.id)} would pass max_cost {state.max_cost}",
                )
            )
    return actions
