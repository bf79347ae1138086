"""Which shot starts when: the scheduler's decisions as a pure state machine.

All admission state lives in one `Admission` object, changed only by `decide(state, event)`,
which returns the actions to take. The async shell (`scheduler`) carries the actions out and
feeds what happened back as events, so every policy here (concurrency, chains, the budget,
retries of failed tasks, fail-fast, Ctrl-C) is tested with plain events and no event loop.

The budget is kept by reservation: a shot's cost is reserved before it starts and released
only when its task is known to cost nothing (refused, or failed and refunded). A submit whose
outcome is unknown keeps its reservation, so no sequence of events can take the committed
spend past `max_cost`.

What the engine admits are the plan's *render units* (`Plan.units`): one per take of each
shot, named by its unit key (the shot's id for take 1, ``id#k`` for take k), each with its
own reservation. Events and actions carry unit keys in their ``shot_id``; a chained take
waits for the picked take of its source (`PlannedTake.sources`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe._decisions.plan import Plan, PlannedTake
from kling_pipe._shotlist.rules import ZERO_USD

Outcome = Literal["done", "failed", "uncertain", "cancelled"]
Phase = Literal["queued", "running", "done", "failed", "uncertain", "cancelled", "skipped"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "uncertain", "cancelled", "skipped"})


# Events: what happened.


@attrs.frozen
class RunStarted:
    """The run begins; start what can start."""


@attrs.frozen(kw_only=True)
class ShotEnded:
    """A render unit's worker finished one attempt (`shot_id` is the unit key)."""

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
    """Run attempt number `attempt` (1-based) of a render unit (`shot_id` is its key)."""

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
    """The scheduler's whole decision state; change it only through `decide`.

    Besides each shot's phase it keeps indexes (shots running, queued, ready to start, and
    how many sources each still waits for) so that an event costs time in proportion to
    what it changes, not to the length of the storyboard.
    """

    plan: Plan
    concurrency: int
    max_cost: Decimal | None = None
    retry_failed: int = 0
    fail_fast: bool = False
    phase: dict[str, Phase] = attrs.field(init=False)
    attempts: dict[str, int] = attrs.field(init=False)
    #: Money reserved for shots started and not known to be free.
    committed: Decimal = attrs.field(init=False, default=ZERO_USD)
    #: What each shot's current attempt reserved (a resumed task was paid for earlier).
    reserved: dict[str, Decimal] = attrs.field(init=False)
    stopping: bool = attrs.field(init=False, default=False)
    finished: bool = attrs.field(init=False, default=False)
    _by_id: dict[str, PlannedTake] = attrs.field(init=False)
    _pos: dict[str, int] = attrs.field(init=False)
    _sources: dict[str, tuple[str, ...]] = attrs.field(init=False)
    _dependants: dict[str, list[str]] = attrs.field(init=False)
    #: Sources of each shot that are not done yet.
    _waiting: dict[str, int] = attrs.field(init=False)
    _running: dict[str, None] = attrs.field(init=False, factory=dict)
    _queued: set[str] = attrs.field(init=False, factory=set)
    #: Plan positions of queued shots whose sources are done (stale entries are skipped).
    _ready: list[int] = attrs.field(init=False, factory=list)
    #: Shots that ended without a video since the last look at their dependants.
    _lost: list[str] = attrs.field(init=False, factory=list)
    _unfinished: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        shots = self.plan.units
        self._by_id = {p.id: p for p in shots}
        self._pos = {p.id: n for n, p in enumerate(shots)}
        self._sources = {p.id: tuple(s for s in p.sources if s in self._by_id) for p in shots}
        self._dependants = {p.id: [] for p in shots}
        for sid, sources in self._sources.items():
            for src in sources:
                self._dependants[src].append(sid)
        self.attempts = dict.fromkeys(self._by_id, 0)
        self.reserved = dict.fromkeys(self._by_id, ZERO_USD)
        initial: dict[str, Phase] = {"cached": "done", "uncertain": "uncertain"}
        self.phase = {p.id: initial.get(p.status, "queued") for p in shots}
        self._waiting = {
            sid: sum(1 for s in sources if self.phase[s] != "done")
            for sid, sources in self._sources.items()
        }
        for p in shots:
            phase = self.phase[p.id]
            if phase == "queued":
                self._queued.add(p.id)
                self._unfinished += 1
                if self._waiting[p.id] == 0:
                    heapq.heappush(self._ready, self._pos[p.id])
            elif phase in _NO_VIDEO:
                self._lost.append(p.id)

    @property
    def running(self) -> tuple[str, ...]:
        """Ids of the shots with an attempt in progress."""
        return tuple(self._running)

    def cost(self, shot_id: str) -> Decimal:
        """Return what the next attempt at *shot_id* may cost this run.

        The first attempt costs what the plan says (nothing for a task paid for in an earlier
        run); a retry is a new task, at the full price.
        """
        planned = self._by_id[shot_id]
        return planned.cost if self.attempts[shot_id] == 0 else planned.unit_cost

    def set_phase(self, shot_id: str, new: Phase) -> None:
        """Move a shot to *new*, keeping every index in step."""
        old = self.phase[shot_id]
        if old == new:
            return
        self.phase[shot_id] = new
        self._leave(shot_id, old)
        self._enter(shot_id, new)
        self._unfinished += (new not in TERMINAL) - (old not in TERMINAL)

    def _leave(self, shot_id: str, old: Phase) -> None:
        if old == "running":
            del self._running[shot_id]
        elif old == "queued":
            self._queued.discard(shot_id)

    def _enter(self, shot_id: str, new: Phase) -> None:
        if new == "running":
            self._running[shot_id] = None
        elif new == "queued":
            self._queued.add(shot_id)
            if self._waiting[shot_id] == 0:
                heapq.heappush(self._ready, self._pos[shot_id])
        elif new == "done":
            for dep in self._dependants[shot_id]:
                self._waiting[dep] -= 1
                if self._waiting[dep] == 0 and self.phase[dep] == "queued":
                    heapq.heappush(self._ready, self._pos[dep])
        elif new in _NO_VIDEO:
            self._lost.append(shot_id)

    # Decisions: what an event calls for. `decide` is the one way in.

    def handle(self, event: Event) -> list[Action]:
        """Apply *event* and return the actions it calls for, in order."""
        actions: list[Action] = []
        match event:
            case RunStarted():
                pass
            case StopRequested():
                if not self.stopping:
                    self.stopping = True
                    if self.running:
                        actions.append(CancelRunning())
            case ShotEnded():
                self._on_shot_ended(event)
        actions.extend(self._admit())
        return actions

    def _on_shot_ended(self, event: ShotEnded) -> None:
        sid = event.shot_id
        if self.phase.get(sid) != "running":
            raise ValueError(f"shot {sid!r} ended but was not running")
        if not event.charged:
            self.committed -= self.reserved[sid]
            self.reserved[sid] = ZERO_USD
        if event.fatal:
            self.stopping = True
        if (
            event.outcome == "failed"
            and event.retryable
            and not self.stopping
            and self.attempts[sid] <= self.retry_failed
        ):
            self.set_phase(sid, "queued")
            return
        self.set_phase(sid, event.outcome)
        if event.outcome == "failed" and self.fail_fast:
            self.stopping = True

    def _in_plan_order(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=self._pos.__getitem__)

    def _admit(self) -> list[Action]:
        """Start every shot that may start now; skip those that never can."""
        actions = self._skip_orphans()
        if self.stopping:
            reason = "not started: the run was stopped"
            for sid in self._in_plan_order(self._queued):
                self.set_phase(sid, "skipped")
                actions.append(SkipShot(sid, reason))
            actions.extend(self._skip_orphans())
        else:
            actions.extend(self._start_ready())
        actions.extend(self._skip_over_budget())
        if not self.finished and self._unfinished == 0:
            self.finished = True
            actions.append(RunFinished())
        return actions

    def _start_ready(self) -> list[Action]:
        """Start ready shots in plan order while slots and the budget allow."""
        actions: list[Action] = []
        set_aside: list[int] = []
        free = self.concurrency - len(self.running)
        while free > 0 and self._ready:
            position = heapq.heappop(self._ready)
            sid = self.plan.units[position].id
            if self.phase[sid] != "queued" or position in set_aside:
                continue
            cost = self.cost(sid)
            if self.max_cost is not None and self.committed + cost > self.max_cost:
                set_aside.append(position)  # a cheaper shot further on may still fit
                continue
            self.committed += cost
            self.reserved[sid] = cost
            self.attempts[sid] += 1
            self.set_phase(sid, "running")
            actions.append(StartShot(sid, self.attempts[sid]))
            free -= 1
        for position in set_aside:
            heapq.heappush(self._ready, position)
        return actions

    def _skip_orphans(self) -> list[Action]:
        """Skip queued shots chained from a shot that ended without a video, transitively."""
        actions: list[Action] = []
        while self._lost:
            source = self._lost.pop(0)
            for dep in self._in_plan_order(self._dependants[source]):
                if self.phase[dep] == "queued":
                    self.set_phase(dep, "skipped")  # appends dep to `_lost`: its chain follows
                    actions.append(SkipShot(dep, f"chained from {source!r}, which has no video"))
        return actions

    def _skip_over_budget(self) -> list[Action]:
        """When nothing runs and the next shot still does not fit the budget, none ever will."""
        if self.running or self.max_cost is None or not self._queued:
            return []
        actions: list[Action] = []
        for sid in self._in_plan_order(self._queued):
            self.set_phase(sid, "skipped")
            actions.append(
                SkipShot(
                    sid,
                    f"not started: {self.committed} USD is committed and this shot's "
                    f"{self.cost(sid)} would pass max_cost {self.max_cost}",
                )
            )
        self._lost.clear()  # their dependants were all queued, and are skipped too
        return actions


_NO_VIDEO: frozenset[str] = frozenset({"failed", "uncertain", "cancelled", "skipped"})


def decide(state: Admission, event: Event) -> list[Action]:
    """Apply *event* to *state* and return the actions it calls for, in order."""
    return state.handle(event)
