"""Task state: the lifecycle created → processing → completed | failed, as a small simulation.

`TaskBook` never reads a clock: callers pass ``now``. `advance(now)` replays every deadline
that has passed, in time order, so a queued task starts exactly when a slot freed up, even
if nobody asked in between. That keeps the lifecycle exact under a manual clock and cheap.
"""

from __future__ import annotations

import bisect
import enum
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs

from mockserver.config import AfterPolls, FixedTime, Manual, Processing, RandomTime
from mockserver.faults import TASK_ERRORS


class Status(enum.StrEnum):
    """A prediction's status as WaveSpeed spells it."""

    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


FINAL = frozenset({Status.COMPLETED, Status.FAILED})


@attrs.define(kw_only=True)
class Task:
    """One prediction and everything the mock knows about it."""

    id: str
    seq: int
    model: str
    input: dict[str, Any]
    cost_usd: Decimal
    created_at: float
    status: Status = Status.CREATED
    #: Drawn processing time; None when the task ends on polls or by hand.
    processing_s: float | None = None
    #: Decided at submission (fault injection, unreachable media): the code it will fail with.
    planned_failure: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str = ""
    code: int | None = None
    polls: int = 0
    webhook: str | None = None
    #: Who made the task: ``request`` (a client's submit), ``second_client`` or ``burst``
    #: (another client on the account, injected by those faults).
    created_by: str = "request"
    #: The journal sequence number of the request that created it, once that request ended.
    request_seq: int | None = None
    #: What that request got: ``pending``, ``answered``, ``gateway_error``, ``dropped`` or
    #: ``client_gone``; and the HTTP status it was (or would have been) answered with.
    answer: str | None = None
    answer_status: int | None = None
    #: For ``second_client`` and ``burst`` tasks: the journal sequence number of the submit
    #: it accompanied.
    trigger_seq: int | None = None
    #: The error text a planned failure ends with (else the code's documented text).
    planned_error: str = ""
    #: How many tasks of this very request (`mockserver.media.request_key`) the account
    #: had, this one included: its video differs from its twins' (see docs/mock.md).
    take: int = 1
    #: The output is gone (WaveSpeed keeps outputs 7 days): its URL answers 404, the task
    #: itself still answers. Set by hand (`MockState.expire_output`).
    output_expired: bool = False

    @property
    def deadline(self) -> float | None:
        """When a processing task with a drawn time ends."""
        if self.started_at is None or self.processing_s is None:
            return None
        return self.started_at + self.processing_s


class Answer(enum.StrEnum):
    """What became of the request that created a task."""

    PENDING = "pending"
    ANSWERED = "answered"
    GATEWAY_ERROR = "gateway_error"
    DROPPED = "dropped"
    CLIENT_GONE = "client_gone"
    #: Answered, but with the task id rewritten into a hostile form (``hostile_id``).
    MANGLED = "mangled"


@attrs.define
class Provenance:
    """Ties one submit request to the tasks it created or provoked, until and after it ends.

    A task may be created after its request ended (``late_create``), so whichever comes
    second (the task or the request's end) completes the record on the task.
    """

    made: list[Task] = attrs.field(factory=list)
    provoked: list[Task] = attrs.field(factory=list)
    seq: int | None = None
    answer: Answer | None = None
    status: int | None = None

    def add_made(self, task: Task) -> None:
        """Record a task the request created."""
        self.made.append(task)
        self._stamp(task)

    def add_provoked(self, task: Task) -> None:
        """Record a ``second_client`` task created alongside the request."""
        self.provoked.append(task)
        task.trigger_seq = self.seq

    def settle(self, seq: int, answer: Answer, status: int | None) -> None:
        """Record how the request ended, on every task it touched so far."""
        self.seq, self.answer, self.status = seq, answer, status
        for task in self.made:
            self._stamp(task)
        for task in self.provoked:
            task.trigger_seq = seq

    def _stamp(self, task: Task) -> None:
        task.request_seq = self.seq
        task.answer = (self.answer or Answer.PENDING).value
        task.answer_status = self.status


def draw_processing_s(processing: Processing, seq: int) -> float | None:
    """Return the processing time of the *seq*-th task, or None if it ends otherwise.

    Each task gets its own stream seeded by (seed, seq), so concurrency never changes a draw.
    """
    match processing:
        case FixedTime(seconds=seconds):
            return seconds
        case RandomTime(mean_s=mean, jitter_s=jitter, seed=seed):
            rng = random.Random(f"{seed}:{seq}")  # noqa: S311
            return max(0.0, mean + rng.uniform(-jitter, jitter))
        case AfterPolls() | Manual():
            return None


@attrs.define
class TaskBook:
    """All tasks, in submission order, and the concurrency quota they share."""

    processing: Processing
    concurrency_limit: int
    tasks: dict[str, Task] = attrs.field(factory=dict)
    peak_concurrent: int = 0
    #: Tasks not yet final, in submission order: what every scan needs, kept small.
    _active: dict[str, Task] = attrs.field(factory=dict, init=False)
    #: (created_at, seq, id) of every task, ascending: the history's index, so a page of a
    #: window costs the window's size, not the account's.
    _by_time: list[tuple[float, int, str]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self._active = {i: t for i, t in self.tasks.items() if t.status not in FINAL}
        self._by_time = sorted((t.created_at, t.seq, t.id) for t in self.tasks.values())

    def _index(self, task: Task) -> None:
        bisect.insort(self._by_time, (task.created_at, task.seq, task.id))

    def newest_first(self, *, since: float, until: float) -> Iterator[Task]:
        """Yield the tasks created in ``[since, until]`` (mock clock), newest first.

        Equal times come in creation order, latest first. Deleted tasks are skipped.
        """
        low = bisect.bisect_left(self._by_time, (since,))
        high = bisect.bisect_right(self._by_time, (until, float("inf")))
        for _, _, task_id in reversed(self._by_time[low:high]):
            task = self.tasks.get(task_id)
            if task is not None:
                yield task

    def get(self, task_id: str) -> Task | None:
        """Return the task or None."""
        return self.tasks.get(task_id)

    def running(self) -> int:
        """Count tasks in ``processing``."""
        return sum(1 for t in self._active.values() if t.status is Status.PROCESSING)

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of a processing task, if any has one."""
        deadlines = [d for t in self._active.values() if (d := t.deadline) is not None]
        return min(deadlines, default=None)

    def add(self, task: Task, now: float) -> list[Task]:
        """Add a new task (after `advance`); start it if the quota allows. Return ended tasks."""
        self.tasks[task.id] = task
        self._active[task.id] = task
        self._index(task)
        return self._start_queued(now)

    def add_ended(self, task: Task, at: float) -> None:
        """Add a task that ended as it was created, at *at*: another client's, made in bulk.

        It takes no quota; it completed, or failed with its planned failure.
        """
        task.started_at = at
        self._end(task, at)
        self.tasks[task.id] = task
        self._index(task)

    def advance(self, now: float) -> list[Task]:
        """Replay every deadline up to *now*; return the tasks that ended, in order."""
        ended: list[Task] = []
        while True:
            due = [
                t
                for t in self._active.values()
                if t.status is Status.PROCESSING and (d := t.deadline) is not None and d <= now
            ]
            if not due:
                return ended
            task = min(due, key=lambda t: (t.deadline, t.seq))
            at = task.deadline
            assert at is not None
            self._end(task, at)
            ended.append(task)
            ended.extend(self._start_queued(at))

    def poll(self, task: Task, now: float) -> list[Task]:
        """Count a result request; under `AfterPolls` the N-th one ends the task."""
        task.polls += 1
        if (
            isinstance(self.processing, AfterPolls)
            and task.status is Status.PROCESSING
            and task.polls >= self.processing.polls
        ):
            self._end(task, now)
            return [task, *self._start_queued(now)]
        return []

    def finish(self, task: Task, now: float, *, code: int | None, error: str) -> list[Task]:
        """End *task* now by hand, completed (code None) or failed with *code*."""
        if task.status in FINAL:
            raise ValueError(f"task {task.id} already {task.status}")
        if task.started_at is None:
            task.started_at = now
        task.planned_failure = code
        self._end(task, now, error=error)
        return [task, *self._start_queued(now)]

    def delete(self, ids: list[str], now: float) -> tuple[int, list[Task]]:
        """Forget tasks; return how many existed and the tasks that ended meanwhile."""
        count = 0
        for i in ids:
            self._active.pop(i, None)
            count += self.tasks.pop(i, None) is not None
        if count:
            self._by_time = [entry for entry in self._by_time if entry[2] in self.tasks]
        return count, self._start_queued(now)

    def _end(self, task: Task, at: float, *, error: str = "") -> None:
        task.ended_at = at
        self._active.pop(task.id, None)
        if task.planned_failure is None:
            task.status = Status.COMPLETED
            return
        task.status = Status.FAILED
        task.code = task.planned_failure
        task.error = error or task.planned_error or TASK_ERRORS[task.planned_failure]

    def _start_queued(self, at: float) -> list[Task]:
        """Start waiting tasks in submission order while the quota allows.

        A task drawn to take 0 s ends as it starts; those are returned as ended.
        """
        ended: list[Task] = []
        running = self.running()
        for task in list(self._active.values()):
            if running >= self.concurrency_limit:
                break
            if task.status is not Status.CREATED:
                continue
            task.status = Status.PROCESSING
            task.started_at = at
            running += 1
            self.peak_concurrent = max(self.peak_concurrent, running)
            if task.processing_s is not None and task.processing_s <= 0:
                self._end(task, at)
                ended.append(task)
                running -= 1
        return ended
