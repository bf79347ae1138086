"""Reading a window of the history whole, or saying that it was not read whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kling_pipe._backends.base import Prediction
from kling_pipe._running.history import read_window

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)


def task(n: int, at: datetime) -> Prediction:
    return Prediction(id=f"{n:032x}", model="m", status="completed", created_at=at)


class History:
    """Newest first, 100 a page, filtered by time, or (`ignores_page`) the first page always."""

    def __init__(self, tasks: list[Prediction], *, ignores_page: bool = False) -> None:
        self.tasks = sorted(tasks, key=lambda t: t.created_at, reverse=True)
        self.ignores_page = ignores_page
        self.pages = 0

    async def list_predictions(self, *, created_after, created_before, page, page_size, **_):
        self.pages += 1
        inside = [t for t in self.tasks if created_after <= t.created_at <= created_before]
        first = 0 if self.ignores_page else (page - 1) * page_size
        return inside[first : first + page_size]


async def test_a_busy_window_is_read_to_its_last_page():
    """2,001 tasks of the model in the window: the oldest, ours, is on page 21."""
    tasks = [task(n, START + timedelta(seconds=0.25 * n)) for n in range(2001)]
    history = History(tasks)
    read = await read_window(history, model="m", start=START, end=END)  # type: ignore[arg-type]
    assert read.complete
    assert len(read.tasks) == 2001
    assert tasks[0].id in {t.id for t in read.tasks}
    assert history.pages == 21


async def test_a_server_that_ignores_the_page_gives_an_incomplete_read():
    tasks = [task(n, START + timedelta(seconds=0.25 * n)) for n in range(300)]
    read = await read_window(
        History(tasks, ignores_page=True),  # type: ignore[arg-type]
        model="m",
        start=START,
        end=END,
    )
    assert not read.complete
    assert len(read.tasks) == 100


async def test_a_read_that_hits_the_page_limit_is_incomplete():
    tasks = [task(n, START + timedelta(seconds=0.25 * n)) for n in range(500)]
    read = await read_window(History(tasks), model="m", start=START, end=END, max_pages=2)  # type: ignore[arg-type]
    assert not read.complete


async def test_an_empty_window_is_read_complete_in_one_page():
    history = History([])
    read = await read_window(history, model="m", start=START, end=END)  # type: ignore[arg-type]
    assert read.complete
    assert read.tasks == ()
    assert history.pages == 1
