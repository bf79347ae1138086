"""Which shot starts when, what it cost, and which submits may be on the wire together.

All of a run's decision state lives in one `Admission` object, changed only by
`decide(state, event)`, which returns the actions to take. The async shell (`scheduler`)
carries the actions out and feeds what happened back as events, so every policy here is
tested with plain events and no event loop. What may run together is stated here and nowhere
else:

* **Render units**: at most `concurrency` rendering; a chained unit starts once its source is
  done, a copy of an identical unit once that unit is done; none starts past the budget. A
  unit whose task is final on the server (`TaskFinal`) only downloads: it keeps its
  reservation and its place in the run, but no longer its slot, so the next submit goes out
  while the video comes down (at most as many downloads as slots hold none). Once the watch
  learns the account's processing limit (`AccountLimited`) the slots are the lower of
  `concurrency` and that limit plus one (`ACCOUNT_LOOKAHEAD`: one task waits in the
  account's queue, to start the moment a place frees), and while one of the run's tasks
  waits there behind its rendering ones (`AccountQueue`), none starts: it would only wait
  behind that one.
* **Which ready unit starts first**: the one with the longest chain of work from it
  (`chain_ranks`: its own expected task time plus its dependants' longest chain), ties in
  plan order; on a board without chains every unit ranks the same, so it starts in file
  order. A task's expected time is its video's duration in seconds, scaled by
  what this run learns of tasks of that duration (`TaskTimed`).
* **The submit turn**: a submit holds it from its grant until its fate is known (a task id,
  refused, uncertain) or its unit ends, through its rate-limit wait too. It is granted only
  when no holder is *alike* (the proof could not tell their first frames apart), so two like
  submits are never on the wire or unsettled together.
* **Earlier runs' intents** hold their turns from the run's start until settled, outside the
  concurrency limit (they are already on the wire).
* **The rate limit**: submits per minute, booked when a turn is granted (`SubmitGo.wait_s`).
* Frames are decoded on threads of their own (`kling_pipe._outputs.frames`), which no rule
  here concerns: they never hold a slot or a turn.

The budget is kept by reservation: a unit's cost is reserved before it starts and released
only when its attempt is known to have cost nothing, which `attempt_ended` decides from the
attempt's recorded state (`attempts.CHARGED_STATES`, the one definition). What a run spent is
counted here, once (`Admission.spent`), and the results are filled from it.

The budget is kept by reservation: a shot's cost is reserved before it starts and released
only when its task is known to cost nothing (refused, or failed and refunded). A submit whose
outcome is unknown keeps its reservation, so no sequence of events can take the committed
spend past `max_cost` (one run's cap), nor past `budget_left` (what the storyboard's
``budget``, the whole film's cap, still allows after what earlier runs spent): each is a cap
on the same reservations, and a unit starts only when it fits both.

What the engine admits are the plan's *render units* (`Plan.units`): one per take of each
shot, named by its unit key (the shot's id for take 1, ``id#k`` for take k), each with its
own reservation. Events and actions carry unit keys in their ``shot_id``; a chained take
waits for the picked take of its source (`PlannedTake.sources`). A unit the plan leaves out
(``excluded``: not in ``--only``) or cannot render (``expired``, ``uncertain``) is final from
the start and never started.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Final, Literal

import attrs

from kling_pipe._decisions.attempts import CHARGED_STATES, AttemptState
from kling_pipe._decisions.pacing import RateLimiter
from kling_pipe._decisions.plan import Plan, PlannedTake
from kling_pipe._shotlist.rules import ZERO_USD

Outcome = Literal["done", "failed", "uncertain", "cancelled"]
Phase = Literal[
    "queued",
    "running",
    "done",
    "failed",
    "uncertain",
    "cancelled",
    "skipped",
    "expired",
    "excluded",
]
TERMINAL: frozenset[str] = frozenset(
    {"done", "failed", "uncertain", "cancelled", "skipped", "expired", "excluded"}
)
#: The phase a unit starts the run in, by its plan status (any other: queued).
#: Units sent beyond the account's processing limit, to wait in its queue (`Admission.slots`).
ACCOUNT_LOOKAHEAD: Final = 1

_INITIAL: dict[str, Phase] = {
    "cached": "done",
    "approved": "done",
    "uncertain": "uncertain",
    "expired": "expired",
    "excluded": "excluded",
}


# Events: what happened.


@attrs.frozen
class RunStarted:
    """The run begins; start what can start.

    *holding* names the intents earlier runs left unsettled: each holds a submit turn from
    now until `SubmitSettled` says it is settled.
    """

    holding: tuple[str, ...] = ()


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


@attrs.frozen(kw_only=True)
class SubmitAsked:
    """A running unit wants the submit turn.

    The shell compared its first frame with the subjects in *compared* (it is asked to compare
    with more by `Compare`) and found it alike to those in *alike*.
    """

    subject: str
    compared: frozenset[str] = frozenset()
    alike: frozenset[str] = frozenset()


@attrs.frozen
class SubmitSettled:
    """The fate of *subject*'s submit is known (a task id, refused, uncertain): its turn ends."""

    subject: str


@attrs.frozen
class TaskFinal:
    """*shot_id*'s task is final on the server: it only downloads now, its slot is free."""

    shot_id: str


@attrs.frozen(kw_only=True)
class TaskTimed:
    """A task of a *video_s*-second video took *seconds* to render (queue time excluded)."""

    video_s: int
    seconds: float


@attrs.frozen
class AccountLimited:
    """The account processes at most *processing* tasks at once; more wait on the server.

    Learned by the watch from tasks that stay ``created`` while others process: units
    started beyond it would only queue there, costing polls, so the engine keeps that many
    rendering and one more (`ACCOUNT_LOOKAHEAD`) waiting to take the next place that frees.
    """

    processing: int


@attrs.frozen
class AccountQueue:
    """*waiting* of the run's tasks wait in the account's queue behind its rendering ones.

    Learned by the watch (`pacing.waiting_in_queue`): while one waits, the account is busy
    with the run's own tasks, so a unit started now would only queue behind it; the waiting
    one takes the next place the account frees. No unit starts until none waits.
    """

    waiting: int


Event = (
    RunStarted
    | AccountLimited
    | AccountQueue
    | ShotEnded
    | StopRequested
    | SubmitAsked
    | SubmitSettled
    | TaskFinal
    | TaskTimed
)


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


@attrs.frozen
class Compare:
    """Compare *subject*'s first frame with those of *against*, then ask again."""

    subject: str
    against: frozenset[str]


@attrs.frozen
class SubmitGo:
    """*subject* holds the submit turn: it may send after *wait_s* (the rate limit)."""

    subject: str
    wait_s: float = 0.0


Action = StartShot | SkipShot | CancelRunning | RunFinished | Compare | SubmitGo


@attrs.frozen(kw_only=True)
class Ending:
    """How an attempt ended, as the shell saw it; what it cost is for the records to say."""

    outcome: Outcome
    #: True when a new attempt could succeed (the task failed on the server's side).
    retryable: bool = False
    #: True when no other shot can succeed either (a bad API key).
    fatal: bool = False


def attempt_ended(unit: str, ending: Ending, recorded: AttemptState | None) -> ShotEnded:
    """Decide the event an attempt's end is: the one place that says whether it was charged.

    *recorded* is the state the store holds for the attempt once it ended (None when it
    never wrote an intent). Charged means the task cost money or may have: an intent whose
    answer was lost, a task that exists, a video paid for. Only an attempt that cost nothing
    may be retried, so a retry never pays twice for one task.
    """
    if ending.outcome == "done" and recorded != "downloaded":
        raise ValueError(f"unit {unit!r} is done but its attempt is {recorded!r}")
    charged = recorded in CHARGED_STATES
    return ShotEnded(
        shot_id=unit,
        outcome=ending.outcome,
        charged=charged,
        retryable=ending.retryable and ending.outcome == "failed" and not charged,
        fatal=ending.fatal,
    )


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
    #: What the storyboard's budget still allows this run (budget minus what was spent
    #: before), or None when it has no budget: a cap on reservations like `max_cost`.
    budget_left: Decimal | None = None
    retry_failed: int = 0
    fail_fast: bool = False
    #: Submits per minute at most (an account tier's limit), or None for no limit.
    rate_per_min: int | None = None
    #: Tasks the account processes at once, once learned (`AccountLimited`): the slots are
    #: the lower of it and `concurrency`.
    account_limit: int | None = None
    #: The run's tasks seen waiting in the account's queue (`AccountQueue`): while there is
    #: one, no unit starts.
    account_waiting: int = 0
    phase: dict[str, Phase] = attrs.field(init=False)
    attempts: dict[str, int] = attrs.field(init=False)
    #: Money reserved for units started and not known to be free, plus money spent.
    committed: Decimal = attrs.field(init=False, default=ZERO_USD)
    #: What each unit's current attempt reserved (a resumed task was paid for earlier).
    reserved: dict[str, Decimal] = attrs.field(init=False)
    #: What each unit's attempts of this run cost: the one count of the run's spend.
    spent: dict[str, Decimal] = attrs.field(init=False)
    stopping: bool = attrs.field(init=False, default=False)
    finished: bool = attrs.field(init=False, default=False)
    _by_id: dict[str, PlannedTake] = attrs.field(init=False)
    _pos: dict[str, int] = attrs.field(init=False)
    _sources: dict[str, tuple[str, ...]] = attrs.field(init=False)
    _dependants: dict[str, list[str]] = attrs.field(init=False)
    #: Sources of each shot that are not done yet.
    _waiting: dict[str, int] = attrs.field(init=False)
    _running: dict[str, None] = attrs.field(init=False, factory=dict)
    #: Running units whose task is final on the server: they download, holding no slot.
    _delivering: set[str] = attrs.field(init=False, factory=set)
    _queued: set[str] = attrs.field(init=False, factory=set)
    #: (minus rank, plan position) of queued shots whose sources are done, so the longest
    #: chain comes out first (stale entries are skipped).
    _ready: list[tuple[float, int]] = attrs.field(init=False, factory=list)
    #: Each unit's rank: the expected work of the longest chain from it (`chain_ranks`).
    _rank: dict[str, float] = attrs.field(init=False, factory=dict)
    #: Expected task seconds per second of video, by video duration, as the ranks used them.
    _pace: dict[int, float] = attrs.field(init=False, factory=dict)
    #: What this run learned: (sum of task seconds, count) by video duration.
    _timed: dict[int, tuple[float, int]] = attrs.field(init=False, factory=dict)
    #: The video durations of the plan's units, found once.
    _durations: frozenset[int] = attrs.field(init=False, factory=frozenset)
    #: Shots that ended without a video since the last look at their dependants.
    _lost: list[str] = attrs.field(init=False, factory=list)
    _unfinished: int = attrs.field(init=False, default=0)
    #: The submit turn: its holders, and who asks for it (in order), with what was compared.
    _holders: dict[str, None] = attrs.field(init=False, factory=dict)
    _asking: dict[str, _Ask] = attrs.field(init=False, factory=dict)
    _limiter: RateLimiter | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        shots = self.plan.units
        self._by_id = {p.id: p for p in shots}
        self._pos = {p.id: n for n, p in enumerate(shots)}
        # A copy of an identical unit waits for it as a chain waits for its source.
        self._sources = {
            p.id: tuple(s for s in (*p.sources, *_copied(p)) if s in self._by_id) for p in shots
        }
        self._dependants = {p.id: [] for p in shots}
        for sid, sources in self._sources.items():
            for src in sources:
                self._dependants[src].append(sid)
        self.attempts = dict.fromkeys(self._by_id, 0)
        self.reserved = dict.fromkeys(self._by_id, ZERO_USD)
        self.spent = dict.fromkeys(self._by_id, ZERO_USD)
        if self.rate_per_min is not None:
            self._limiter = RateLimiter(max_events=self.rate_per_min)
        self.phase = {p.id: _INITIAL.get(p.status, "queued") for p in shots}
        self._durations = frozenset(p.shot.duration for p in shots)
        self._rank = chain_ranks(shots, self._dependants, self._expected_s)
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
                    self._push_ready(p.id)
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

    def awaited(self, shot_id: str) -> bool:
        """Whether a shot of the plan waits for *shot_id*'s video: a chain from it, not started."""
        return any(self.phase[d] == "queued" for d in self._dependants.get(shot_id, ()))

    def _push_ready(self, shot_id: str) -> None:
        heapq.heappush(self._ready, (-self._rank[shot_id], self._pos[shot_id]))

    def _expected_s(self, planned: PlannedTake) -> float:
        """Return the task time a unit is expected to take, in the ranks' unit."""
        if planned.copy_of is not None:
            return 0.0  # a copy renders nothing
        video_s = planned.shot.duration
        return video_s * self._pace.get(video_s, 1.0)

    def _learn(self, video_s: int, seconds: float) -> None:
        """Learn a task time; rank again when it moves a duration's pace by a tenth or more.

        Only the ratio between durations can change the order, so a board of one duration
        never ranks again, and a mixed one only while the run's figures still move.
        """
        if video_s <= 0 or not math.isfinite(seconds) or seconds <= 0:
            return
        total, count = self._timed.get(video_s, (0.0, 0))
        self._timed[video_s] = (total + seconds, count + 1)
        durations = self._durations
        if len(durations) < 2:
            return
        # Per second of video, relative to the duration learned most: unlearned ones stay 1.
        base_d = max(self._timed, key=lambda d: self._timed[d][1])
        base = self._timed[base_d][0] / self._timed[base_d][1] / base_d
        pace = {d: (t / n / d) / base for d, (t, n) in self._timed.items() if t > 0}
        if all(abs(pace.get(d, 1.0) - self._pace.get(d, 1.0)) < 0.1 for d in durations):
            return
        self._pace = pace
        self._rank = chain_ranks(self.plan.units, self._dependants, self._expected_s)
        self._ready = [(-self._rank[self.plan.units[p].id], p) for _, p in self._ready]
        heapq.heapify(self._ready)

    def _on_task_news(self, event: TaskFinal | TaskTimed | AccountLimited | AccountQueue) -> None:
        """Take in what the watch learned of a task, or of the account."""
        match event:
            case TaskFinal(shot_id=sid):
                # Its slot is free while it downloads, unless a chain waits on this video,
                # or as many videos download already as there are slots (downloads slower
                # than tasks must not let the run start without bound).
                if (
                    self.phase.get(sid) == "running"
                    and not self._unblocks(sid)
                    and len(self._delivering) < self.slots
                ):
                    self._delivering.add(sid)
            case TaskTimed(video_s=video_s, seconds=seconds):
                self._learn(video_s, seconds)
            case AccountLimited(processing=processing):
                self.account_limit = max(1, processing)
            case AccountQueue(waiting=waiting):
                self.account_waiting = max(0, waiting)

    def _unblocks(self, shot_id: str) -> bool:
        """Whether a queued unit waits on *shot_id* alone: its slot is kept for that one.

        Given away at once, the slot would go to a unit of a shorter chain, and the chain
        waiting on this video would wait for a slot again once the download is done.
        """
        return any(
            self.phase[d] == "queued" and self._waiting[d] == 1 for d in self._dependants[shot_id]
        )

    def _leave(self, shot_id: str, old: Phase) -> None:
        if old == "running":
            del self._running[shot_id]
            self._delivering.discard(shot_id)
        elif old == "queued":
            self._queued.discard(shot_id)

    def _enter(self, shot_id: str, new: Phase) -> None:
        if new == "running":
            self._running[shot_id] = None
        elif new == "queued":
            self._queued.add(shot_id)
            if self._waiting[shot_id] == 0:
                self._push_ready(shot_id)
        elif new == "done":
            for dep in self._dependants[shot_id]:
                self._waiting[dep] -= 1
                if self._waiting[dep] == 0 and self.phase[dep] == "queued":
                    self._push_ready(dep)
        elif new in _NO_VIDEO:
            self._lost.append(shot_id)

    # Decisions: what an event calls for. `decide` is the one way in.

    def handle(self, event: Event, now: float = 0.0) -> list[Action]:
        """Apply *event* (at monotonic time *now*) and return the actions it calls for."""
        actions: list[Action] = []
        match event:
            case RunStarted(holding=holding):
                self._holders.update(dict.fromkeys(holding))
            case StopRequested():
                if not self.stopping:
                    self.stopping = True
                    if self.running:
                        actions.append(CancelRunning())
            case ShotEnded():
                self._on_shot_ended(event)
            case SubmitAsked():
                self._on_submit_asked(event)
            case SubmitSettled(subject=subject):
                self._holders.pop(subject, None)
            case TaskFinal() | TaskTimed() | AccountLimited() | AccountQueue():
                self._on_task_news(event)
                # No submit turn changes hands: only a slot may have freed.
                return self._admit()
        actions.extend(self._grant_turns(now))
        actions.extend(self._admit())
        return actions

    @property
    def holders(self) -> tuple[str, ...]:
        """The subjects holding a submit turn (on the wire, or lost and unsettled)."""
        return tuple(self._holders)

    def _on_shot_ended(self, event: ShotEnded) -> None:
        sid = event.shot_id
        if self.phase.get(sid) != "running":
            raise ValueError(f"shot {sid!r} ended but was not running")
        # Whatever the attempt was doing, its turn is over.
        self._holders.pop(sid, None)
        self._asking.pop(sid, None)
        if event.charged:
            self.spent[sid] += self.reserved[sid]
        else:
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

    @property
    def slots(self) -> int:
        """How many units may render at once: `concurrency`, or the account's lower limit.

        Beyond the account's limit, one more (`ACCOUNT_LOOKAHEAD`) waits in its queue: the
        account starts it the moment one of the run's tasks ends there, not once the run has
        seen that end and sent the next, so its places never stand idle for the run's
        polls. No second one waits (no unit starts while one does: `account_waiting`).
        """
        if self.account_limit is None:
            return self.concurrency
        return min(self.concurrency, self.account_limit + ACCOUNT_LOOKAHEAD)

    @property
    def rendering(self) -> int:
        """How many units hold a slot: running, and their task not yet final on the server."""
        return len(self._running) - len(self._delivering)

    def _start_ready(self) -> list[Action]:
        """Start ready shots, longest chain first, while slots and the budget allow.

        None starts while one of the run's tasks waits in the account's queue: the account
        is full of the run's own work, and a new task would only wait behind that one.
        """
        actions: list[Action] = []
        set_aside: list[tuple[float, int]] = []
        free = 0 if self.account_waiting else self.slots - self.rendering
        while free > 0 and self._ready:
            entry = heapq.heappop(self._ready)
            sid = self.plan.units[entry[1]].id
            if self.phase[sid] != "queued" or entry in set_aside:
                continue
            cost = self.cost(sid)
            if self._passes_a_cap(cost) is not None:
                set_aside.append(entry)  # a cheaper shot further on may still fit
                continue
            self.committed += cost
            self.reserved[sid] = cost
            self.attempts[sid] += 1
            self.set_phase(sid, "running")
            actions.append(StartShot(sid, self.attempts[sid]))
            free -= 1
        for entry in set_aside:
            heapq.heappush(self._ready, entry)
        return actions

    def _skip_orphans(self) -> list[Action]:
        """Skip queued shots chained from a shot that ended without a video, transitively."""
        actions: list[Action] = []
        while self._lost:
            source = self._lost.pop(0)
            for dep in self._in_plan_order(self._dependants[source]):
                if self.phase[dep] == "queued":
                    self.set_phase(dep, "skipped")  # appends dep to `_lost`: its chain follows
                    how = "same inputs as" if self._by_id[dep].copy_of == source else "chained from"
                    actions.append(SkipShot(dep, f"{how} {source!r}, which has no video"))
        return actions

    def _passes_a_cap(self, cost: Decimal) -> str | None:
        """Name the cap that reserving *cost* more would pass, or None when it fits both."""
        after = self.committed + cost
        if self.max_cost is not None and after > self.max_cost:
            return f"max_cost {self.max_cost}"
        if self.budget_left is not None and after > self.budget_left:
            return f"what the storyboard's budget still allows ({self.budget_left})"
        return None

    def _skip_over_budget(self) -> list[Action]:
        """When nothing runs and the next shot still does not fit the budget, none ever will."""
        capped = self.max_cost is not None or self.budget_left is not None
        if self.running or not capped or not self._queued:
            return []
        actions: list[Action] = []
        for sid in self._in_plan_order(self._queued):
            cap = self._passes_a_cap(self.cost(sid)) or "the budget"
            self.set_phase(sid, "skipped")
            actions.append(
                SkipShot(
                    sid,
                    f"not started: {self.committed} USD is committed and this shot's "
                    f"{self.cost(sid)} would pass {cap}",
                )
            )
        self._lost.clear()  # their dependants were all queued, and are skipped too
        return actions

    # The submit turn.

    def _on_submit_asked(self, event: SubmitAsked) -> None:
        subject = event.subject
        if self.phase.get(subject) != "running" or subject in self._holders:
            raise ValueError(f"unit {subject!r} asked for the submit turn but cannot")
        ask = self._asking.setdefault(subject, _Ask())
        ask.compared |= event.compared
        ask.alike |= event.alike
        ask.requested = frozenset()

    def _grant_turns(self, now: float) -> list[Action]:
        """Grant the turn, in order of asking, to each subject no holder is alike to.

        A subject must have been compared with every holder first: one it was not compared
        with (a holder granted after it asked) is a `Compare` away, and a subject whose
        comparison is under way is granted nothing until it answers with `SubmitAsked`.
        """
        actions: list[Action] = []
        for subject, ask in list(self._asking.items()):
            if ask.requested:
                continue  # it is comparing: nothing is granted on a question not answered
            unknown = frozenset(self._holders) - ask.compared - {subject}
            if unknown:
                ask.requested = unknown
                actions.append(Compare(subject, unknown))
                continue
            if ask.alike & self._holders.keys():
                continue
            del self._asking[subject]
            self._holders[subject] = None
            wait = 0.0 if self._limiter is None else self._limiter.reserve(now)
            actions.append(SubmitGo(subject, wait))
        return actions


@attrs.define
class _Ask:
    """A subject waiting for the submit turn: who it was compared with, who it is alike to."""

    compared: frozenset[str] = frozenset()
    alike: frozenset[str] = frozenset()
    #: Subjects a `Compare` was sent for and not answered yet.
    requested: frozenset[str] = frozenset()


def chain_ranks(
    units: Sequence[PlannedTake],
    dependants: Mapping[str, Sequence[str]],
    expected_s: Callable[[PlannedTake], float],
) -> dict[str, float]:
    """Rank each unit by the expected work of the longest chain from it, itself included.

    Starting the highest rank first is the classic critical-path rule (highest level
    first), which keeps a chained board's makespan near its lower bound
    ``max(longest chain, total work / slots)``. On a board without chains every unit ranks
    0, so that it starts in the plan's order exactly as before (ranking would only sort
    its units by duration). Dependants come later in chain order (`Plan.units`), so the
    walk from the end mostly settles each rank in one step.
    """
    by_id = {u.id: u for u in units}
    deps = {u.id: [d for d in dependants.get(u.id, ()) if d in by_id] for u in units}
    if not any(deps.values()):
        return dict.fromkeys(by_id, 0.0)
    tail: dict[str, float] = {}
    for unit in reversed(units):
        stack = [unit.id]
        while stack:
            uid = stack[-1]
            if uid in tail:
                stack.pop()
                continue
            todo = [d for d in deps[uid] if d not in tail]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            longest = max((tail[d] for d in deps[uid]), default=0.0)
            tail[uid] = expected_s(by_id[uid]) + longest
    return tail


def _copied(planned: PlannedTake) -> tuple[str, ...]:
    return () if planned.copy_of is None else (planned.copy_of,)


#: Phases that leave a unit without a video: the units chained from it cannot start. An
#: excluded unit is one of them only as a guard: a subset includes every source it needs.
_NO_VIDEO: frozenset[str] = frozenset(
    {"failed", "uncertain", "cancelled", "skipped", "expired", "excluded"}
)


def decide(state: Admission, event: Event, *, now: float = 0.0) -> list[Action]:
    """Apply *event* (at monotonic time *now*) to *state*; return the actions, in order."""
    return state.handle(event, now)
