"""Helpers of the reliability suite (a module of its own: conftest is not for importing)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from kling_pipe import _files
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from kling_pipe._decisions.results import RunResult
from kling_pipe._outputs import media
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import lock_path_for, section_for, totals_key
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from mockserver import MockConfig, MockServer

PRICE_5S = Decimal("0.420")
#: Retries as in production, minus most of the waiting.
FAST_RETRY = RetryPolicy(wait_initial_s=0.005, wait_max_s=0.02, timeout_s=20.0)


def url_board(folder: Path, count: int, *, max_cost: Decimal | None = None) -> ShotList:
    """*count* 5 s shots with distinct prompts (the mock's tasks are traced back by prompt)."""
    return ShotList(
        storyboard=Storyboard(name="rel", max_cost=max_cost),
        shots=tuple(
            Shot(
                id=f"s{i:05d}",
                prompt=f"reliability shot {i}",
                image=UrlImage(url="https://rel.example/frame.png"),
            )
            for i in range(count)
        ),
        source=folder / "rel.toml",
    )


@asynccontextmanager
async def mock_and_client(config: MockConfig) -> AsyncIterator[tuple[MockServer, WaveSpeedClient]]:
    """An in-process mock and the real client pointed at it."""
    async with MockServer(config) as mock, aiohttp.ClientSession() as session:
        yield (
            mock,
            WaveSpeedClient(
                session=session, base_url=mock.base_url, api_key=mock.api_key, retry=FAST_RETRY
            ),
        )


def tasks_by_prompt(mock: MockServer) -> dict[str, list[Any]]:
    """The mock's tasks grouped by the prompt they were submitted with."""
    grouped: dict[str, list[Any]] = {}
    for task in mock.state.book.tasks.values():
        grouped.setdefault(task.input["prompt"], []).append(task)
    return grouped


def net_spend(mock: MockServer) -> Decimal:
    """Charges minus refunds, from the mock's ledger (where a charge is a negative amount)."""
    return -sum((Decimal(e["amount_usd"]) for e in mock.ledger()["entries"]), Decimal("0.000"))


def check_run(  # noqa: PLR0913 - one place for every invariant of a run under faults
    result: RunResult,
    mock: MockServer,
    shotlist: ShotList,
    *,
    budget: Decimal,
    retry_failed: int = 0,
    records: bool = True,
) -> Counter[str]:
    """Assert the invariants every run must keep, whatever the faults; return the states."""
    states = Counter(s.state for s in result.shots)
    # Every shot ends done, or failed with a reason. "uncertain" is the failure kling-pipe
    # reports when a submit's answer was lost and the history cannot say which task is its
    # own: it is left alone (never resubmitted), and its reason says what to do.
    for s in result.shots:
        assert s.state in ("done", "failed", "uncertain"), (s.id, s.state, s.error)
        if s.state == "done":
            assert s.file is not None
            assert s.file.exists()
            assert media.is_mp4(s.file)
            assert _files.sha256_file(s.file) == s.sha256
        else:
            assert s.error.strip(), s
            assert "Traceback" not in s.error
        if s.state == "uncertain":
            assert "answer was lost" in s.error, s.error
    # Zero duplicate submissions: per shot, at most one task that did not fail on the server,
    # and more than one task only with --retry-failed, each extra one after a failed one, or
    # after a lost answer whose task failed (refunded, and not a candidate: nothing ties a
    # failed task to the request, so the submit is sent again once the window shows no other).
    by_prompt = tasks_by_prompt(mock)
    client_tasks = [t for s in result.shots for t in s.task_ids]
    for prompt, tasks in by_prompt.items():
        not_failed = [t for t in tasks if t.status.value != "failed"]
        assert len(not_failed) <= 1, (prompt, [t.id for t in tasks])
        known = [t for t in tasks if t.id in client_tasks]
        assert len(known) <= 1 + retry_failed, (prompt, [t.id for t in tasks])
    # Every task the server created that was not refunded is one the client knows, except at
    # most one per shot left uncertain (a lost answer whose task the history could not pin down).
    assert len(client_tasks) == len(set(client_tasks))
    unknown = {
        t.id
        for t in mock.state.book.tasks.values()
        if t.id not in client_tasks and t.status.value != "failed"
    }
    assert len(unknown) <= states["uncertain"], ("tasks the client never heard of", unknown)
    assert set(client_tasks) <= set(mock.state.book.tasks)
    # Spend within budget; the client's accounting agrees with the server's ledger (an
    # uncertain shot is counted as paid, since it may be).
    spent = net_spend(mock)
    assert spent <= budget
    assert result.spent <= budget
    if states["uncertain"]:
        assert spent <= result.spent, (spent, result.spent)
    else:
        assert spent == result.spent, (spent, result.spent)
    if records:
        check_lock_agrees(result, shotlist, mock.base_url)
    return states


def check_lock_agrees(result: RunResult, shotlist: ShotList, origin: str) -> None:
    """*origin*'s lock section lists exactly the done shots, with the files and hashes."""
    section = section_for(origin)
    lock = json.loads(lock_path_for(shotlist.source).read_text(encoding="utf-8"))
    assert set(lock[section]) == {s.id for s in result.shots}
    # Where this origin's renders go: a local server's into its own folder, `local/`.
    folder = OutputLayout.of(shotlist, origin).folder
    for s in result.shots:
        entry = lock[section][s.id]
        if s.state == "done":
            assert entry["status"] == "downloaded", entry
            assert entry["task_id"] == s.task_id
            path = shotlist.base_dir / entry["file"]
            assert path == s.file
            assert entry["sha256"] == _files.sha256_file(path) == s.sha256
            assert entry["bytes"] == path.stat().st_size
        else:
            assert entry["status"] != "downloaded", entry
            assert not (folder / f"{s.id}.mp4").exists()
    # Nothing half-written left beside the outputs, and a video for each done shot only.
    files = [p for p in shotlist.output_path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".part")]
    videos = sorted(p.name for p in files if p.suffix == ".mp4" and p.parent == folder)
    assert videos == sorted(f"{s.id}.mp4" for s in result.shots if s.state == "done")
    assert lock[totals_key(section)]["rendered"] == sum(s.state == "done" for s in result.shots)


def open_fds() -> dict[str, int]:
    """Open file descriptors of this process: all of them, and how many are sockets."""
    total = sockets = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed between listing and reading
            continue
        total += 1
        sockets += target.startswith("socket:")
    return {"total": total, "sockets": sockets}
