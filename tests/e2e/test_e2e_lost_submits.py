"""Lost submit answers against the real mock over real sockets: each reported scenario.

The mock knows which request created which task (`MockServer.tasks()`); every test checks
that each shot's task was made by that shot's own request and that no shot was paid twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import attrs
import pytest

from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import LocalImage, Shot, ShotList, Storyboard
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig
from mockserver.threaded import ThreadedMockServer
from tests.cli_support import Running, kp, wait_until
from tests.settling import FAST_SETTLE

FRAMES = ("puddle.png", "river.png", "dusk.png", "sea.jpg")
OPTIONS = RunOptions(settle=FAST_SETTLE)


def board(folder: Path, frames: Path, name: str, images=FRAMES) -> ShotList:
    folder.mkdir(parents=True, exist_ok=True)
    shots = tuple(
        Shot(id=f"{name}{i}", prompt=f"{name} shot {i}", image=LocalImage(path=str(frames / img)))
        for i, img in enumerate(images)
    )
    return ShotList(storyboard=Storyboard(name=name), shots=shots, source=folder / f"{name}.toml")


def config(*rules: FaultRule, **options: float) -> MockConfig:
    return MockConfig(
        processing=FixedTime(seconds=0.2),
        max_side_px=160,
        fps=2,
        faults=FaultConfig(seed=1, rules=rules),
        **options,
    )


def check_own_tasks_paid_once(mock, shotlist: ShotList, result) -> None:
    tasks = {t["id"]: t for t in mock.tasks()}
    paid = Counter(
        t["input"]["prompt"]
        for t in tasks.values()
        if t["created_by"] == "request" and t["status"] != "failed"
    )
    for shot in result.shots:
        prompt = shotlist.shot(shot.id).final_prompt
        assert paid[prompt] <= 1, f"{shot.id} was paid {paid[prompt]} times"
        assert shot.state in ("done", "cached"), (shot.id, shot.state, shot.error)
        task = tasks[shot.task_id]
        assert task["created_by"] == "request", f"{shot.id} took another client's task"
        assert task["input"]["prompt"] == prompt, f"{shot.id} took another shot's task"


async def test_a_lost_answer_is_adopted_by_proof_while_the_history_lags_and_the_clock_is_off(
    tmp_path, frames, start_mock, client_for
):
    mock = await start_mock(
        config(
            FaultRule(kind="drop_after", routes=["submit"], limit=2),
            history_lag_s=0.3,
            clock_offset_s=-150.0,
        )
    )
    shotlist = board(tmp_path / "a", frames, "a")
    result = await render(
        shotlist, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)
    )
    check_own_tasks_paid_once(mock, shotlist, result)
    assert mock.state.faults.injected["drop_after"] == 2


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_bare_error_after_the_task_was_made_is_never_paid_twice(
    tmp_path, frames, start_mock, client_for, status
):
    mock = await start_mock(
        config(FaultRule(kind="gateway_error", routes=["submit"], status=status, limit=1))
    )
    shotlist = board(tmp_path / "g", frames, "g")
    result = await render(
        shotlist, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)
    )
    check_own_tasks_paid_once(mock, shotlist, result)


async def test_a_task_the_server_creates_after_the_client_gave_up_is_adopted(
    tmp_path, frames, start_mock, client_for
):
    """The answer is dropped and the task is only created later, inside the act window."""
    mock = await start_mock(
        config(
            FaultRule(kind="late_create", routes=["submit"], delay_s=0.4, limit=1),
            FaultRule(kind="drop_after", routes=["submit"], limit=1),
        )
    )
    shotlist = board(tmp_path / "l", frames, "l", images=FRAMES[:2])
    result = await render(
        shotlist, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)
    )
    check_own_tasks_paid_once(mock, shotlist, result)


async def test_another_clients_task_on_the_account_is_never_adopted(
    tmp_path, frames, start_mock, client_for
):
    """A lost submit that created nothing, and a teammate's task in the window: resent."""
    mock = await start_mock(
        config(
            FaultRule(kind="second_client", routes=["submit"], image="other", limit=1),
            FaultRule(kind="drop_before", routes=["submit"], limit=1),
        )
    )
    shotlist = board(tmp_path / "t", frames, "t", images=FRAMES[:1])
    result = await render(
        shotlist, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)
    )
    check_own_tasks_paid_once(mock, shotlist, result)


async def test_two_storyboards_on_one_account_never_take_each_others_tasks(
    tmp_path, frames, start_mock, client_for
):
    mock = await start_mock(config(FaultRule(kind="drop_after", routes=["submit"], rate=0.5)))
    first = board(tmp_path / "one", frames, "one", images=FRAMES[:2])
    second = board(tmp_path / "two", frames, "two", images=FRAMES[2:])
    results = await asyncio.gather(
        render(first, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)),
        render(second, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)),
    )
    for shotlist, result in zip((first, second), results, strict=True):
        check_own_tasks_paid_once(mock, shotlist, result)


async def test_a_lost_answer_with_the_same_frames_as_a_teammates_task_is_left_uncertain(
    tmp_path, frames, start_mock, client_for
):
    """Two tasks show the shot's frames (ours and a teammate's): neither is adopted."""
    mock = await start_mock(
        config(
            # Within half a second of ours: inside the one-second window, whatever the draw.
            # (At the default 2 s, a teammate's task drawn after the window closed is rightly
            # not a candidate, and ours was adopted: the test failed one run in two.)
            FaultRule(kind="second_client", routes=["submit"], image="same", within_s=0.5, limit=1),
            FaultRule(kind="drop_after", routes=["submit"], limit=1),
        )
    )
    shotlist = board(tmp_path / "u", frames, "u", images=FRAMES[:1])
    result = await render(
        shotlist, backend=client_for(mock), options=attrs.evolve(OPTIONS, report=False)
    )
    (shot,) = result.shots
    assert shot.state == "uncertain"
    made = [t for t in mock.tasks() if t["input"]["image"]]
    assert len(made) == 2
    for task in made:
        assert task["id"] in shot.error
    assert "--resubmit-uncertain" in shot.error
    # The way on that pays nothing is named too, with the shot to name.
    assert "`kling-pipe adopt FILE u0 TASK_ID` makes the one that is the shot's" in shot.error


def test_kill_9_while_a_slow_answer_is_on_the_wire_resumes_without_paying_twice(tmp_path, frames):
    """The process dies with the submit's answer held back; the next run adopts its task."""
    toml = tmp_path / "k.toml"
    toml.write_text(
        'version = 1\n[storyboard]\nname = "k"\n'
        '[[shots]]\nid = "one"\nprompt = "the slow one"\nimage = "frames/puddle.png"\n',
        encoding="utf-8",
    )
    rule = FaultRule(kind="late_answer", routes=["submit"], delay_s=30.0, limit=1)
    with ThreadedMockServer(config(rule)) as mock:
        env = {"WAVESPEED_API_KEY": mock.api_key}
        args = (
            "run", str(toml), "--backend", "wavespeed", "--yes", "--base-url", mock.base_url,
            "--act-window", "1", "--history-lag", "0.5", "--json",
        )  # fmt: skip
        run = Running(*args, env=env, cwd=tmp_path)
        try:
            # Wait for the event: the submit has reached the mock (its answer is held). The
            # mock announces it by no line the run prints, so its task list is polled.
            wait_until(
                lambda: mock.tasks() or run.process.poll() is not None,
                what="the submit reaching the mock",
            )
            assert mock.tasks(), "the run ended before its submit arrived"
        finally:
            run.kill()
        again = kp(*args, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        (shot,) = json.loads(again.stdout)["shots"]
        (task,) = mock.tasks()
        assert shot["status"] == "done"
        assert shot["task_id"] == task["id"]
        assert shot["task_ids"] == [task["id"]]
