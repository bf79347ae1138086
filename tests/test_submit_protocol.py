"""The submit protocol against an account in fake time: the scenarios that broke it, then a model.

`FakeAccount` knows which request made which task, which the real history does not; each test
checks, after the run (and the resumes after kills), that every shot has a task its own
request made and that no input was paid for twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from tests.fakeaccount import MODEL, FakeAccount, FakeProver
from tests.killswitch import kills_stop_writes
from tests.videofiles import write_mp4

SETTLE = SettleOptions(
    act_window=timedelta(seconds=60), history_lag=timedelta(seconds=20), poll_s=5.0
)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("v") / "clip.mp4")


def board(folder: Path, images: list[str], name: str = "b") -> ShotList:
    folder.mkdir(parents=True, exist_ok=True)
    shots = tuple(
        Shot(id=f"s{i}", prompt=f"{name} shot {i}", image=UrlImage(url=image))
        for i, image in enumerate(images)
    )
    return ShotList(storyboard=Storyboard(name=name), shots=shots, source=folder / f"{name}.toml")


async def render_until_done(shotlist, account, *, concurrency=4, kills=(), gap_s=0.0, **options):
    """Render; each kill point in *kills* kills one run; then resume until a run ends."""
    timing = Timing(
        now=account.time.now, monotonic=account.time.monotonic, sleep=account.time.sleep
    )
    opts = RunOptions(settle=SETTLE, **options)
    pending = list(kills)
    with kills_stop_writes(account):
        while True:
            account.calls, account.killed = 0, False
            account.kill_at = pending.pop(0) if pending else None
            try:
                result = await render(
                    shotlist,
                    backend=account,
                    timing=timing,
                    prover=FakeProver(account),
                    options=attrs.evolve(attrs.evolve(opts, concurrency=concurrency), report=False),
                )
            except BaseException as exc:
                if not account.killed:
                    raise
                del exc
                account.time.advance(gap_s)
                continue
            account.kill_at = None
            return result


def check_no_double_pay_and_own_tasks(shotlist: ShotList, result, account: FakeAccount) -> None:
    by_prompt: dict[str, list] = {}
    for task in account.client_made():
        by_prompt.setdefault(task.prompt, []).append(task)
    for shot in result.shots:
        spec = shotlist.shot(shot.id)
        made = by_prompt.get(spec.final_prompt, [])
        assert len(made) <= 1, f"{shot.id} paid {len(made)} times"
        if shot.state in ("done", "cached"):
            task = account.tasks[shot.task_id]
            assert task.made_by == "client", f"{shot.id} took another client's task"
            assert task.prompt == spec.final_prompt, f"{shot.id} took another shot's task"


def attempts(shotlist: ShotList):
    with Store.open(state_dir_for(shotlist.source)) as store:
        return store.attempts()


# The scenarios of the issue, each a regression test.


async def test_a_resumed_shot_never_takes_the_task_of_the_shot_that_was_on_the_wire(
    tmp_path, video
):
    """Kill while one submit is on the wire and others wait: only that one has an intent."""
    account = FakeAccount(video)
    shotlist = board(tmp_path, [f"https://img.test/{i}.png" for i in range(4)])
    # Calls: 4 submits in a row (URL images need no upload); kill on the third.
    result = await render_until_done(shotlist, account, kills=[3])
    assert all(s.state in ("done", "cached") for s in result.shots)
    check_no_double_pay_and_own_tasks(shotlist, result, account)


async def test_an_intent_is_written_only_when_its_submit_owns_the_wire(tmp_path, video):
    account = FakeAccount(video)
    account.kill_at = 2
    shotlist = board(tmp_path, ["https://img.test/same.png"] * 3)
    with kills_stop_writes(account), contextlib.suppress(BaseException):
        await render(
            shotlist,
            backend=account,
            timing=Timing(now=account.time.now, sleep=account.time.sleep),
            prover=FakeProver(account),
            options=RunOptions(concurrency=3, settle=SETTLE, report=False),
        )
    assert account.killed
    open_intents = [a for a in attempts(shotlist) if a.state == "intent"]
    assert len(open_intents) <= 1


async def test_another_storyboards_task_is_never_adopted(tmp_path, video):
    """Two storyboards on one key, one lost answer each: each gets its own task."""
    account = FakeAccount(video, script=["lost-after"])
    first = board(tmp_path / "one", ["https://img.test/a.png", "https://img.test/b.png"], "one")
    second = board(tmp_path / "two", ["https://img.test/c.png", "https://img.test/d.png"], "two")
    r1 = await render_until_done(first, account, kills=[2])
    account.script = ["lost-after", "lost-after"]
    r2 = await render_until_done(second, account)
    for shotlist, result in ((first, r1), (second, r2)):
        assert all(s.state == "done" for s in result.shots)
        check_no_double_pay_and_own_tasks(shotlist, result, account)
    assert len(account.client_made()) == 4


async def test_a_teammates_task_in_the_window_is_never_adopted(tmp_path, video):
    account = FakeAccount(video, script=["lost-before"], foreign=[(0.0, "https://other.test/x")])
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    result = await render_until_done(shotlist, account)
    assert result.shots[0].state == "done"
    check_no_double_pay_and_own_tasks(shotlist, result, account)
    assert account.submits == 2  # the teammate's task was refused as a candidate: sent again


async def test_a_task_the_history_shows_late_is_adopted_not_paid_twice(tmp_path, video):
    account = FakeAccount(video, script=["lost-after"], lag_s=45.0)
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    result = await render_until_done(shotlist, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1
    check_no_double_pay_and_own_tasks(shotlist, result, account)


async def test_a_task_the_server_creates_after_the_client_gave_up_is_adopted(tmp_path, video):
    account = FakeAccount(video, script=["late"], late_s=50.0)
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    result = await render_until_done(shotlist, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1
    check_no_double_pay_and_own_tasks(shotlist, result, account)


@pytest.mark.parametrize("offset_s", [-180.0, 180.0, 3600.0])
async def test_a_server_clock_minutes_off_still_finds_the_lost_task(tmp_path, video, offset_s):
    account = FakeAccount(video, script=["lost-after"], offset_s=offset_s)
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    result = await render_until_done(shotlist, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1
    check_no_double_pay_and_own_tasks(shotlist, result, account)


async def test_nothing_is_resent_before_the_window_closes_on_the_servers_clock(tmp_path, video):
    account = FakeAccount(video, script=["lost-before"], offset_s=-120.0)
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    result = await render_until_done(shotlist, account)
    assert result.shots[0].state == "done"
    assert len(account.sent) == 2
    waited = account.sent[1][0] - account.sent[0][0]
    assert waited >= SETTLE.act_window + SETTLE.history_lag - SETTLE.slack


async def test_a_lost_answer_does_not_stall_other_shots(tmp_path, video):
    account = FakeAccount(video, script=["lost-before"])
    shotlist = board(tmp_path, [f"https://img.test/{i}.png" for i in range(3)])
    result = await render_until_done(shotlist, account, concurrency=3)
    assert all(s.state == "done" for s in result.shots)
    first_sends: dict[str, object] = {}
    for at, prompt in account.sent:
        first_sends.setdefault(prompt, at)
    start = min(first_sends.values())
    # The other two were sent long before the lost one's window closed.
    assert max(first_sends.values()) - start < SETTLE.act_window


async def test_shots_with_the_same_frames_are_never_lost_together(tmp_path, video):
    account = FakeAccount(video, script=["lost-after", "lost-after"])
    shotlist = board(tmp_path, ["https://img.test/same.png"] * 2)
    result = await render_until_done(shotlist, account, concurrency=2)
    assert all(s.state == "done" for s in result.shots)
    check_no_double_pay_and_own_tasks(shotlist, result, account)
    assert account.submits == 2


async def test_an_unprovable_candidate_leaves_the_shot_uncertain_with_its_id(tmp_path, video):
    account = FakeAccount(video, script=["lost-after"])
    shotlist = board(tmp_path, ["https://img.test/a.png"])

    class Undecided:
        async def can_prove(self, _subject):
            return True

        async def indistinct(self, one, other):
            return one.key[0] == other.key[0]

        async def verdict(self, _candidate, _subject):
            return "undecided"

    result = await render(
        shotlist,
        backend=account,
        timing=Timing(now=account.time.now, sleep=account.time.sleep),
        prover=Undecided(),
        options=RunOptions(settle=SETTLE, report=False),
    )
    shot = result.shots[0]
    assert shot.state == "uncertain"
    (task,) = account.client_made()
    assert task.id in shot.error
    assert "--resubmit-uncertain" in shot.error
    assert account.submits == 1
    assert shot.cost == Decimal("0.420")  # it may have been charged: the budget keeps it


# The model: schedules of faults, other clients, skewed clocks, lags and kills.

FAULTS = st.sampled_from(["ok", "ok", "lost-before", "lost-after", "late", "refused"])


@st.composite
def schedules(draw):
    shots = draw(st.integers(1, 4))
    # Some shots share their frames: the proof cannot tell their tasks apart.
    images = [f"https://img.test/{draw(st.integers(0, 2))}.png" for _ in range(shots)]
    return {
        "images": images,
        "script": draw(st.lists(FAULTS, max_size=6)),
        "offset_s": draw(st.sampled_from([0.0, -150.0, 150.0, 7.5])),
        # Within what the settle options assume (the guarantee's premise): the history lags
        # by at most `history_lag`, the server acts within `act_window`.
        "lag_s": draw(st.sampled_from([0.0, 10.0, 19.5])),
        "late_s": draw(st.floats(0.0, 59.0)),
        "foreign": draw(
            st.lists(
                st.tuples(st.floats(0.0, 200.0), st.sampled_from(["https://other.test/x"])),
                max_size=3,
            )
        ),
        "kills": draw(st.lists(st.integers(1, 12), max_size=3)),
        "gap_s": draw(st.sampled_from([0.0, 30.0, 600.0])),
        "concurrency": draw(st.integers(1, 4)),
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=schedules())
async def test_model_no_schedule_pays_twice_or_takes_a_foreign_task(
    tmp_path_factory, video, schedule
):
    folder = tmp_path_factory.mktemp("model")
    account = FakeAccount(
        video,
        script=list(schedule["script"]),
        offset_s=schedule["offset_s"],
        lag_s=schedule["lag_s"],
        late_s=schedule["late_s"],
        foreign=list(schedule["foreign"]),
    )
    shotlist = board(folder, schedule["images"])
    result = await render_until_done(
        shotlist,
        account,
        concurrency=schedule["concurrency"],
        kills=schedule["kills"],
        gap_s=schedule["gap_s"],
        retry_failed=0,
    )
    check_no_double_pay_and_own_tasks(shotlist, result, account)
    for shot in result.shots:
        # Refused submits fail the shot (a 503 envelope here); nothing else may be left over.
        assert shot.state in ("done", "cached", "failed"), (shot.id, shot.state, shot.error)
        if shot.state == "failed":
            assert shot.error
    assert account.client_made() or all(s.state == "failed" for s in result.shots)
    assert {t.model for t in account.client_made()} <= {MODEL}


async def test_ctrl_c_while_a_submit_is_on_the_wire_records_and_reports_its_task(tmp_path, video):
    """The answer is awaited, so the summary names the task and the next run polls it."""
    account = FakeAccount(video)
    shotlist = board(tmp_path, ["https://img.test/a.png"])
    answer = asyncio.Event()
    real_submit = FakeAccount.submit

    async def slow_submit(self, request):
        # Ctrl-C arrives while the submit is on the wire; the answer comes after it.
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_soon(answer.set)
        await answer.wait()
        return await real_submit(self, request)

    timing = Timing(
        now=account.time.now, monotonic=account.time.monotonic, sleep=account.time.sleep
    )
    FakeAccount.submit = slow_submit
    try:
        result = await render(
            shotlist,
            backend=account,
            options=RunOptions(settle=SETTLE, report=False, handle_signals=True),
            prover=FakeProver(account),
            timing=timing,
        )
    finally:
        FakeAccount.submit = real_submit
    (shot,) = result.shots
    (task,) = account.client_made()
    assert shot.state == "cancelled"
    assert shot.task_id == task.id
    assert task.id in shot.error
    assert result.interrupted
