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
    """Newest first, filtered by time; or (`ignores_page`) the first page always, or pages of
    at most `cap` whatever was asked, or (`ignores_window`) every task whatever its time."""

    def __init__(
        self,
        tasks: list[Prediction],
        *,
        ignores_page: bool = False,
        cap: int = 100,
        ignores_window: bool = False,
    ) -> None:
        self.tasks = sorted(tasks, key=lambda t: t.created_at, reverse=True)
        self.ignores_page = ignores_page
        self.cap = cap
        self.ignores_window = ignores_window
        self.pages = 0

    async def list_predictions(self, *, created_after, created_before, page, page_size, **_):
        self.pages += 1
        inside = [
            t
            for t in self.tasks
            if self.ignores_window or created_after <= t.created_at <= created_before
        ]
        size = min(page_size, self.cap)
        first = 0 if self.ignores_page else (page - 1) * size
        return inside[first : first + size]


async def test_a_busy_window_is_read_to_its_last_page():
    """2,001 tasks of the model in the window: the oldest, ours, is on page 21."""
    tasks = [task(n, START + timedelta(seconds=0.25 * n)) for n in range(2001)]
    history = History(tasks)
    read = await read_window(history, model="m", start=START, end=END)  # type: ignore[arg-type]
    assert read.complete
    assert len(read.tasks) == 2001
    assert tasks[0].id in {t.id for t in read.tasks}
    assert history.pages == 22  # the 22nd, empty, shows that the 21st was the last


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


async def test_a_history_that_caps_its_page_size_is_read_to_its_last_page():
    """A server answering 20 a page when asked for 100: a short page is not the last one."""
    ours = task(0, START)
    tasks = [ours] + [task(n, START + timedelta(seconds=n)) for n in range(1, 31)]
    read = await read_window(History(tasks, cap=20), model="m", start=START, end=END)  # type: ignore[arg-type]
    assert read.complete
    assert ours.id in {t.id for t in read.tasks}
    assert len(read.tasks) == 31


async def test_tasks_dated_outside_a_filtered_window_make_the_read_incomplete():
    """The server listed them for the window: its dates and ours disagree, so nothing listed
    can be placed, and the read cannot show that the window holds no task of ours."""
    before = task(1, START - timedelta(hours=1))
    after = task(2, END + timedelta(hours=1))
    for listed in (before, after):
        history = History([listed], ignores_window=True)
        read = await read_window(history, model="m", start=START, end=END)  # type: ignore[arg-type]
        assert not read.complete
