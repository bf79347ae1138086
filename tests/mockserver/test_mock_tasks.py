"""The pure task book: deadlines replayed in order, the quota, polls and manual endings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mockserver import AfterPolls, FixedTime, Manual
from mockserver.config import Processing
from mockserver.tasks import Status, Task, TaskBook, draw_processing_s


def task(seq: int, at: float, processing: Processing | None = None) -> Task:
    return Task(
        id=f"{seq:032x}",
        seq=seq,
        model="m",
        input={},
        cost_usd=Decimal("0.42"),
        created_at=at,
        processing_s=draw_processing_s(processing or FixedTime(seconds=10), seq),
    )


def test_advance_replays_deadlines_in_time_order_starting_queued_tasks() -> None:
    """Quota 1: three 10 s tasks end at 10, 20, 30 even if nobody looked until 100."""
    book = TaskBook(FixedTime(seconds=10), concurrency_limit=1)
    tasks = [task(i, 0.0) for i in range(1, 4)]
    for t in tasks:
        book.add(t, 0.0)
    assert [t.status for t in tasks] == [Status.PROCESSING, Status.CREATED, Status.CREATED]
    ended = book.advance(100.0)
    assert ended == tasks
    assert [(t.started_at, t.ended_at) for t in tasks] == [(0, 10), (10, 20), (20, 30)]
    assert book.peak_concurrent == 1
    assert book.next_deadline() is None


def test_zero_processing_time_ends_as_it_starts() -> None:
    """FixedTime(0): the task is completed by the time add() returns."""
    book = TaskBook(FixedTime(seconds=0), concurrency_limit=5)
    t = task(1, 5.0, FixedTime(seconds=0))
    assert book.add(t, 5.0) == [t]
    assert (t.status, t.ended_at) == (Status.COMPLETED, 5.0)


def test_planned_failures_end_failed_with_their_code() -> None:
    """A task planned to fail with 5003 ends failed, code and error set."""
    book = TaskBook(FixedTime(seconds=10), concurrency_limit=5)
    t = task(1, 0.0)
    t.planned_failure = 5003
    book.add(t, 0.0)
    book.advance(10.0)
    assert (t.status, t.code, t.error) == (Status.FAILED, 5003, "Service unavailable")


def test_after_polls_counts_polls_and_ends_on_the_nth() -> None:
    """AfterPolls(2): the second poll ends the task and frees its slot."""
    book = TaskBook(AfterPolls(polls=2), concurrency_limit=1)
    first, second = task(1, 0.0, AfterPolls(polls=2)), task(2, 0.0, AfterPolls(polls=2))
    book.add(first, 0.0)
    book.add(second, 0.0)
    assert book.poll(first, 1.0) == []
    assert book.poll(first, 2.0) == [first]
    assert (first.status, second.status, second.started_at) == (
        Status.COMPLETED,
        Status.PROCESSING,
        2.0,
    )


def test_finish_and_delete_free_slots_for_waiting_tasks() -> None:
    """Manual endings and deletions start the next waiting task at that moment."""
    book = TaskBook(Manual(), concurrency_limit=1)
    a, b, c = (task(i, 0.0, Manual()) for i in range(1, 4))
    for t in (a, b, c):
        book.add(t, 0.0)
    book.finish(a, 5.0, code=None, error="")
    assert (a.status, b.started_at) == (Status.COMPLETED, 5.0)
    assert book.delete([b.id, "nope"], 7.0) == (1, [])
    assert (c.status, c.started_at) == (Status.PROCESSING, 7.0)
    with pytest.raises(ValueError, match="already completed"):
        book.finish(a, 8.0, code=None, error="")


def test_manual_and_poll_modes_draw_no_processing_time() -> None:
    """Only time-based modes draw a processing time."""
    assert draw_processing_s(Manual(), 1) is None
    assert draw_processing_s(AfterPolls(), 1) is None
    assert draw_processing_s(FixedTime(seconds=3), 1) == 3
