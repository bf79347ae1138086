"""An account that processes fewer tasks at once than the run's concurrency.

The mock's ``concurrency_limit`` keeps tasks beyond it in ``created``, as WaveSpeed does
past a tier's limit. The run learns the limit from them, keeps that many rendering, never
times a task out for its wait in the queue, and says in its summary that the account, not
``concurrency``, was the limit.
"""

from __future__ import annotations

import asyncio
import sqlite3

import attrs

from kling_pipe._decisions.results import format_summary
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig, RandomTime
from tests.e2e.e2e_support import board, url_shots
from tests.settling import FAST_SETTLE


async def test_a_run_above_the_accounts_limit_learns_it_and_times_no_queued_task_out(
    tmp_path, start_mock, client_for, private_task_registry
):
    mock = await start_mock(
        MockConfig(processing=FixedTime(seconds=1.2), concurrency_limit=2, max_side_px=160)
    )
    # The fifth task of the first wave waits about 2.4 s in the queue, the time-out is 2 s:
    # only the time it renders (1.2 s) may count.
    options = RunOptions(settle=FAST_SETTLE, concurrency=5, task_timeout_s=2.0)
    result = await render(board(tmp_path, *url_shots(8)), backend=client_for(mock), options=options)
    assert result.exit_code == 0, format_summary(result)
    assert mock.stats()["peak_concurrent"] == 2
    assert result.account_limit == 2
    assert "limited by the account: 2 tasks processing at once, concurrency 5" in (
        format_summary(result)
    )
    assert result.as_json()["totals"]["account_limit"] == 2
    # Kept for `plan`, by the account's origin.
    with sqlite3.connect(private_task_registry) as db:
        assert db.execute("SELECT processing_limit FROM accounts").fetchall() == [(2,)]


async def test_a_run_above_the_accounts_limit_polls_no_more_per_task_than_a_run_at_it(
    tmp_path, start_mock, client_for
):
    """Concurrency 5 against 2 on an account of 2, the same tasks: GETs counted by the mock.

    Before the limit is known the first wave sends three tasks too many; each costs a poll
    too early to tell it waits, and one that tells it does. Once it is known the run keeps
    two tasks rendering and one waiting in the account's queue, polled only when one of the
    two ends, so every later task costs no more than at concurrency 2. The counts vary a
    little with timing: the later tasks are compared per task, the whole run with the first
    wave's six polls as the margin.
    """
    polls: dict[int, list[int]] = {}
    for concurrency in (2, 5):
        mock = await start_mock(
            MockConfig(
                processing=RandomTime(mean_s=1.2, jitter_s=0.6, seed=7),
                concurrency_limit=2,
                max_side_px=160,
                fps=2,
            )
        )
        options = RunOptions(settle=FAST_SETTLE, concurrency=concurrency)
        folder = tmp_path / f"c{concurrency}"
        folder.mkdir()
        result = await render(
            board(folder, *url_shots(12)), backend=client_for(mock), options=options
        )
        assert result.exit_code == 0, format_summary(result)
        tasks = sorted(mock.stats()["tasks"].values(), key=lambda t: t["submitted_at"])
        polls[concurrency] = [t["polls"] for t in tasks]
        assert mock.stats()["peak_concurrent"] == 2
    first_wave = 5
    later = {c: sum(p[first_wave:]) / len(p[first_wave:]) for c, p in polls.items()}
    assert later[5] <= later[2], polls
    assert sum(polls[5]) <= sum(polls[2]) + 2 * (5 - 2), polls


async def test_a_run_within_the_accounts_limit_says_nothing_of_it(tmp_path, start_mock, client_for):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.3), concurrency_limit=4))
    options = attrs.evolve(RunOptions(settle=FAST_SETTLE), concurrency=2)
    result = await render(board(tmp_path, *url_shots(4)), backend=client_for(mock), options=options)
    assert result.exit_code == 0
    assert result.account_limit is None
    assert "limited by the account" not in format_summary(result)


class Timed:
    """The real client, noting when each submit was sent and each download ended."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.events: list[tuple[str, float]] = []

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    async def submit(self, request):
        self.events.append(("submit", asyncio.get_running_loop().time()))
        return await self._backend.submit(request)

    async def download(self, url, dest):
        try:
            return await self._backend.download(url, dest)
        finally:
            self.events.append(("downloaded", asyncio.get_running_loop().time()))


async def test_the_next_submit_goes_out_while_the_last_video_downloads(
    tmp_path, start_mock, client_for
):
    """One slot: the second shot's submit does not wait for the first shot's slow download."""
    slow = FaultRule(kind="slow_download", bytes_per_s=20_000)
    mock = await start_mock(
        MockConfig(
            processing=FixedTime(seconds=0.2),
            max_side_px=160,
            fps=2,
            faults=FaultConfig(seed=1, rules=(slow,)),
        )
    )
    backend = Timed(client_for(mock))
    options = RunOptions(settle=FAST_SETTLE, concurrency=1)
    result = await render(board(tmp_path, *url_shots(2)), backend=backend, options=options)
    assert result.exit_code == 0
    assert [kind for kind, _ in backend.events] == [
        "submit",
        "submit",  # the first video still downloads
        "downloaded",
        "downloaded",
    ]
