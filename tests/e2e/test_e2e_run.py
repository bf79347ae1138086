"""Rendering end to end: the real client and scheduler against the mock over real sockets."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import attrs
import pytest

from kling_pipe import _files
from kling_pipe._outputs import media
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import ChainImage, Shot
from kling_pipe.exceptions import ShotListError
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig
from tests.e2e.e2e_support import board, local_shot, url_shots
from tests.settling import FAST_SETTLE

FAST = RunOptions(settle=FAST_SETTLE)


def submits(mock) -> list[dict]:
    return [e for e in mock.journal() if e["method"] == "POST" and "/api/v3/kwaivgi/" in e["path"]]


async def test_the_demo_renders_every_shot_as_an_mp4_of_its_duration(tmp_path, specs):
    result = await render(
        tmp_path / "specs" / "demo.toml", options=RunOptions(mock_processing_s=0.2)
    )
    assert result.exit_code == 0, result.as_json()
    assert [s.state for s in result.shots] == ["done"] * 6
    assert result.spent == Decimal("3.108")
    for s in result.shots:
        assert s.file is not None
        # The bundled mock's renders go to mock/, never where a paid render would be.
        # Each render is the shot's first version; <id>.mp4 beside it is a copy.
        out = tmp_path / "specs" / "renders" / "paper-boat" / "mock"
        assert s.file == out / "versions" / f"{s.id}.v1.mp4"
        assert _files.sha256_file(out / f"{s.id}.mp4") == s.sha256
        assert media.is_mp4(s.file)
        assert abs(media.probe_duration_s(s.file) - s.duration) < 0.2
        assert s.sha256 == _files.sha256_file(s.file)


async def test_the_concurrency_limit_holds_and_is_reached(tmp_path, start_mock, client_for):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.3)))
    result = await render(
        board(tmp_path, *url_shots(12)),
        backend=client_for(mock),
        options=attrs.evolve(FAST, concurrency=3),
    )
    assert result.exit_code == 0
    assert mock.stats()["peak_concurrent"] == 3


async def test_a_chained_shot_is_submitted_only_after_its_source_is_downloaded(
    tmp_path, start_mock, client_for
):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.2)))
    source, *_ = url_shots(1)
    chained = Shot(id="next", prompt="p", image=ChainImage(shot=source.id, frame="last"))
    result = await render(board(tmp_path, chained, source), backend=client_for(mock), options=FAST)
    assert result.exit_code == 0
    journal = mock.journal()
    first_download = next(
        i
        for i, e in enumerate(journal)
        if e["path"].startswith("/outputs") or "output" in e["path"]
    )
    posts = [i for i, e in enumerate(journal) if e in submits(mock)]
    assert posts[0] < first_download < posts[1]
    assert (tmp_path / "renders" / "e2e" / "local" / "frames" / f"{source.id}.last.png").exists()


async def test_a_local_image_used_by_many_shots_is_uploaded_once(
    tmp_path, frames, start_mock, client_for
):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05)))
    shots = [local_shot(f"l{i}", frames) for i in range(4)]
    result = await render(board(tmp_path, *shots), backend=client_for(mock), options=FAST)
    assert result.exit_code == 0
    tickets = [e for e in mock.journal() if e["path"] == "/api/v3/media/uploads"]
    assert len(tickets) == 1


async def test_a_plan_over_budget_sends_nothing(tmp_path, start_mock, client_for):
    mock = await start_mock(MockConfig())
    with pytest.raises(ShotListError, match=r"more than 0\.50; nothing was submitted"):
        await render(board(tmp_path, *url_shots(2), max_cost="0.50"), backend=client_for(mock))
    assert mock.journal() == []


async def test_a_failed_task_is_reported_with_its_code_and_refunded(
    tmp_path, start_mock, client_for
):
    faults = FaultConfig(rules=(FaultRule(kind="task_failure", codes=(1200,), limit=1),))
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05), faults=faults))
    result = await render(board(tmp_path, *url_shots(2)), backend=client_for(mock), options=FAST)
    assert result.exit_code == 1
    failed = [s for s in result.shots if s.state == "failed"]
    assert len(failed) == 1
    assert failed[0].code == 1200
    assert failed[0].error.startswith("failed (code 1200)")
    assert failed[0].cost == Decimal("0.000")
    assert result.spent == Decimal("0.420")


async def test_retry_failed_resubmits_a_failed_task(tmp_path, start_mock, client_for):
    faults = FaultConfig(rules=(FaultRule(kind="task_failure", codes=(5003,), limit=1),))
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05), faults=faults))
    options = RunOptions(retry_failed=1, settle=FAST_SETTLE)
    result = await render(board(tmp_path, *url_shots(1)), backend=client_for(mock), options=options)
    assert result.exit_code == 0
    assert len(result.shots[0].task_ids) == 2
    assert result.shots[0].attempts == 2


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(kind="rate_limit", rate=0.3),
        FaultRule(kind="server_error", rate=0.3),
        FaultRule(kind="drop_before", rate=0.3),
        FaultRule(kind="drop_after", rate=0.3),
        FaultRule(kind="truncated_download", rate=0.3),
        FaultRule(kind="task_failure", rate=0.3),
    ],
    ids=lambda r: r.kind,
)
async def test_under_faults_every_shot_ends_done_or_failed_with_a_reason_and_nothing_twice(
    tmp_path, start_mock, client_for, rule
):
    faults = FaultConfig(seed=7, rules=(rule,))
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05), faults=faults))
    result = await render(
        board(tmp_path, *url_shots(10), max_cost="4.20"),
        backend=client_for(mock),
        options=attrs.evolve(FAST, concurrency=4),
    )
    for s in result.shots:
        assert s.state in ("done", "failed", "uncertain"), s
        if s.state != "done":
            assert s.error
        else:
            assert s.file is not None
            assert media.is_mp4(s.file)
    # Zero duplicate submissions: one task per shot at most, and the server agrees.
    tasks = [t for s in result.shots for t in s.task_ids]
    assert len(tasks) == len(set(tasks))
    assert all(len(s.task_ids) <= 1 for s in result.shots)
    assert mock.stats()["tasks_created"] == len(tasks) + result.count("uncertain")
    ledger = mock.ledger()
    assert Decimal(str(1000)) - Decimal(ledger["balance_usd"]) <= Decimal("4.20")
    assert Counter(s.state for s in result.shots)["done"] >= 1
