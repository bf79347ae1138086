"""Never pay twice, between runs: the money items of "trust between runs", each a regression.

Against `FakeAccount` in fake time: it knows which request made which task, so each test
checks who paid for what, not only the exit state.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from kling_pipe._backends.base import Prediction, SubmitRequest
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import ServerError, WrongTaskError
from tests.fakeaccount import FakeAccount, FakeProver
from tests.killswitch import Killed, kills_stop_writes
from tests.videofiles import write_mp4

SETTLE = SettleOptions(
    act_window=timedelta(seconds=60), history_lag=timedelta(seconds=20), poll_s=5.0
)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("v") / "clip.mp4")


def board(folder: Path, shots: list[tuple[str, str, str]], name: str = "b") -> ShotList:
    """A storyboard of (id, prompt, image URL) shots."""
    folder.mkdir(parents=True, exist_ok=True)
    return ShotList(
        storyboard=Storyboard(name=name),
        shots=tuple(Shot(id=i, prompt=p, image=UrlImage(url=u)) for i, p, u in shots),
        source=folder / f"{name}.toml",
    )


def timing(account: FakeAccount) -> Timing:
    return Timing(now=account.time.now, monotonic=account.time.monotonic, sleep=account.time.sleep)


async def run(shotlist: ShotList, account, **options):
    real = account.account if isinstance(account, _View) else account
    return await render(
        shotlist,
        backend=account,
        options=RunOptions(settle=SETTLE, report=False, **options),
        timing=timing(real),
        prover=FakeProver(real),
    )


async def killed_run(shotlist: ShotList, account: FakeAccount, at: int) -> None:
    account.calls, account.kill_at = 0, at
    with kills_stop_writes(account), contextlib.suppress(BaseException):
        await run(shotlist, account)
    assert account.killed
    account.kill_at, account.killed = None, False


def attempts(shotlist: ShotList):
    with Store.open(state_dir_for(shotlist.source)) as store:
        return store.attempts()


async def test_a_history_read_that_did_not_cover_the_window_never_concludes_no_task(
    tmp_path, video
):
    """A busy account: 2,000 tasks of the model in the window; ours on the last page.

    The history lags 10 s: by the first read that shows ours, all 2,000 are newer than it.
    """
    foreign = [(0.1 + i * 0.002, "https://other.test/busy.png") for i in range(2000)]
    account = FakeAccount(video, script=["lost-after"], foreign=foreign, lag_s=10.0)
    shotlist = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    result = await run(shotlist, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1  # found on page 21, not paid again
    (task,) = account.client_made()
    assert result.shots[0].task_id == task.id


async def test_locked_never_submits_whatever_the_engine_decides(tmp_path, video):
    """A task in flight in the lock file fails on the server; --retry-failed may not pay."""
    account = FakeAccount(video)
    shotlist = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    await killed_run(shotlist, account, at=3)  # submit answered, killed while polling
    assert lock_path_for(shotlist.source).exists() or attempts(shotlist)
    (task,) = account.client_made()
    task.status = "failed"
    result = await run(shotlist, account, locked=True, retry_failed=2)
    assert account.submits == 1
    assert result.shots[0].state == "failed"
    assert result.exit_code == 1


async def test_two_identical_shots_present_from_the_start_are_paid_once(tmp_path, video):
    account = FakeAccount(video)
    shotlist = board(
        tmp_path,
        [("a", "a boat", "https://img.test/a.png"), ("b", "a boat", "https://img.test/a.png")],
    )
    result = await run(shotlist, account)
    assert [s.state for s in result.shots] == ["done", "done"]
    assert account.submits == 1
    a, b = result.shots
    assert a.task_id == b.task_id
    assert b.cost == 0
    assert b.file is not None
    assert b.file.read_bytes() == a.file.read_bytes()  # type: ignore[union-attr]


async def test_an_edited_shot_never_adopts_its_old_prompts_task(tmp_path, video):
    """Killed while the server was slow to create the task; the prompt edited; a lost submit."""
    account = FakeAccount(video, script=["late"], late_s=40.0)
    before = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    await killed_run(before, account, at=2)  # the submit's answer lost, then killed
    assert [a.state for a in attempts(before)] == ["intent"]
    account.time.advance(5)
    after = board(tmp_path, [("a", "a boat at dusk", "https://img.test/a.png")])
    account.script = ["lost-after"]
    result = await run(after, account)
    (shot,) = result.shots
    assert shot.state == "done"
    assert account.tasks[shot.task_id].prompt == "a boat at dusk"
    # The old prompt's task was found and kept by the old prompt's intent, not paid again.
    old = [a for a in attempts(after) if a.fingerprint != attempts(after)[-1].fingerprint]
    assert [a.state for a in old] == ["submitted"]
    assert account.tasks[old[0].task_id].prompt == "a boat"


async def test_a_renamed_shots_unsettled_intent_is_settled_not_paid_again(tmp_path, video):
    account = FakeAccount(video, script=["lost-after"])
    before = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    await killed_run(before, account, at=2)
    renamed = board(tmp_path, [("boat", "a boat", "https://img.test/a.png")])
    result = await run(renamed, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1


@attrs.define
class _View:
    """One storyboard's view of the shared account, with hooks on its submit and history."""

    account: FakeAccount
    before_history: object = None
    after_submit: object = None

    def __getattr__(self, name: str):
        return getattr(self.account, name)

    @property
    def origin(self) -> str:
        return self.account.origin

    @property
    def clock_offset(self) -> timedelta | None:
        return self.account.clock_offset

    async def submit(self, request: SubmitRequest) -> Prediction:
        prediction = await self.account.submit(request)
        if self.after_submit is not None:
            await self.after_submit()
        return prediction

    async def list_predictions(self, **filters: object) -> list[Prediction]:
        if self.before_history is not None:
            await self.before_history()
        return await self.account.list_predictions(**filters)


async def test_a_task_on_the_wire_in_another_run_is_never_taken_by_proof(tmp_path, video):
    """A's answer lost; B (same first frame, other prompt) answered late: each its own task.

    The order is forced by events: B's task exists (its answer held back) before A reads the
    history, and B's answer arrives only after A has read it three times.
    """
    account = FakeAccount(video, script=["lost-before"])
    a_board = board(tmp_path / "a", [("a", "a boat", "https://img.test/same.png")], "a")
    b_board = board(tmp_path / "b", [("b", "a ship", "https://img.test/same.png")], "b")
    a_lost, b_made, b_answer = asyncio.Event(), asyncio.Event(), asyncio.Event()
    a_reads = 0

    async def a_reads_history() -> None:
        nonlocal a_reads
        a_lost.set()
        await b_made.wait()
        a_reads += 1
        if a_reads >= 3:
            b_answer.set()

    async def b_answer_held() -> None:
        b_made.set()
        await b_answer.wait()

    async def run_b():
        await a_lost.wait()
        return await run(b_board, _View(account, after_submit=b_answer_held))

    a_result, b_result = await asyncio.gather(
        run(a_board, _View(account, before_history=a_reads_history)), run_b()
    )
    a, b = a_result.shots[0], b_result.shots[0]
    assert a.state == "done"
    assert b.state == "done"
    assert a.task_id != b.task_id
    assert account.tasks[a.task_id].prompt == "a boat"
    assert account.tasks[b.task_id].prompt == "a ship"


@attrs.define
class _ClockUnknownUntilAsked(FakeAccount):
    """A server whose clock the client learns only from its first answer (a Date header)."""

    answered: bool = False

    @property
    def clock_offset(self) -> timedelta | None:
        return FakeAccount.clock_offset.fget(self) if self.answered else None  # type: ignore[attr-defined]

    def _call(self) -> None:
        super()._call()
        self.answered = True


async def test_a_clock_corrected_between_a_kill_and_the_resume_never_pays_twice(tmp_path, video):
    """The machine's clock is 10 minutes slow, the first submit's answer lost, then killed."""
    account = _ClockUnknownUntilAsked(video, script=["lost-after"], offset_s=600.0)
    shotlist = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    await killed_run(shotlist, account, at=3)
    (intent,) = attempts(shotlist)
    assert intent.state == "intent"
    assert intent.clock_offset is not None  # learned before the intent was written
    # NTP corrects the clock before the resume: ours now agrees with the server's.
    account.time.at += timedelta(seconds=600)
    account.offset_s = 0.0
    result = await run(shotlist, account)
    assert result.shots[0].state == "done"
    assert account.submits == 1


async def test_a_duplicate_of_a_shot_in_flight_gets_its_video_and_its_chain_renders(
    tmp_path, video
):
    """Added while its twin's task is in flight: a copy once delivered, never 'cached' empty."""
    account = FakeAccount(video)
    first = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    await killed_run(first, account, at=3)  # a's task submitted, then killed while polling
    twin = ShotList(
        storyboard=first.storyboard,
        shots=(
            *first.shots,
            Shot(id="twin", prompt="a boat", image=UrlImage(url="https://img.test/a.png")),
            Shot(id="after", prompt="then", image=ChainImage(shot="twin", frame="last")),
        ),
        source=first.source,
    )
    result = await run(twin, account)
    states = {s.id: s.state for s in result.shots}
    assert states == {"a": "done", "twin": "done", "after": "done"}, [
        (s.id, s.error) for s in result.shots
    ]
    by_id = {s.id: s for s in result.shots}
    assert by_id["twin"].file is not None
    assert by_id["twin"].task_id == by_id["a"].task_id
    assert by_id["twin"].cost == 0
    assert account.submits == 2  # a's, once, and after's


async def test_a_poll_answer_naming_another_task_fails_the_shot_never_delivers_it(tmp_path, video):
    """A caching proxy answers every /result with the first task's body."""
    account = FakeAccount(video)
    shotlist = board(
        tmp_path,
        [("a", "a boat", "https://img.test/a.png"), ("b", "a ship", "https://img.test/b.png")],
    )
    first_task: list[str] = []

    @attrs.define
    class Proxy(_View):
        async def get_prediction(self, task_id):
            if not first_task:
                first_task.append(task_id)
            if task_id != first_task[0]:
                raise WrongTaskError(
                    f"GET /api/v3/predictions/{task_id}/result: the answer is about another task"
                )
            return await self.account.get_prediction(task_id)

    result = await run(shotlist, Proxy(account))
    states = sorted(s.state for s in result.shots)
    assert states == ["done", "failed"]
    failed = next(s for s in result.shots if s.state == "failed")
    assert failed.file is None
    assert "another task" in failed.error


@attrs.define
class _HistoryDownAtFirst(_ClockUnknownUntilAsked):
    """The history fails its first reads (the client's retries spent): no answer, no clock."""

    failures: int = 2

    async def list_predictions(self, **filters: object) -> list[Prediction]:
        if self.failures:
            self.failures -= 1
            raise ServerError("HTTP 503 Service Unavailable", status=503)
        return await super().list_predictions(**filters)


async def test_a_first_submit_waits_for_the_servers_clock_while_the_history_fails(tmp_path, video):
    """An intent written without the server's clock could never conclude "no task" (its
    settling would wait out the clock's doubt, an hour): the clock is read again first."""
    account = _HistoryDownAtFirst(video, offset_s=90.0)
    shotlist = board(tmp_path, [("a", "a boat", "https://img.test/a.png")])
    result = await run(shotlist, account)
    assert result.shots[0].state == "done"
    (attempt,) = attempts(shotlist)
    assert attempt.clock_offset is not None
    assert account.failures == 0


async def test_a_submit_answered_with_another_shots_task_never_takes_that_task(tmp_path, video):
    """A caching proxy replays a's submit answer to b: b's own task, paid, is found through the
    history by its frames; b never holds a's task nor a's video."""
    account = FakeAccount(video, script=["ok", "replayed"])
    shotlist = board(
        tmp_path,
        [("a", "a boat", "https://img.test/a.png"), ("b", "a ship", "https://img.test/b.png")],
    )
    result = await run(shotlist, account, concurrency=1)
    a, b = result.shots
    assert (a.state, b.state) == ("done", "done")
    assert a.task_id != b.task_id
    assert account.tasks[b.task_id].prompt == "a ship"
    assert account.submits == 2


async def killed_after_chained_submit_lost(tmp_path: Path, account: FakeAccount) -> ShotList:
    """Run 1: src rendered; next's submit (chained from src's last frame) lost, then killed.

    The submit created nothing ("lost-before"): the next run's reading of the history shows
    no task, so the old intent is settled refused once its window closes.
    """
    first = ShotList(
        storyboard=Storyboard(name="b"),
        shots=(
            Shot(id="src", prompt="a boat", image=UrlImage(url="https://img.test/a.png")),
            Shot(id="next", prompt="it sails", image=ChainImage(shot="src", frame="last")),
        ),
        source=tmp_path / "b.toml",
    )
    account.script = ["ok", "lost-before"]

    async def killed() -> None:  # the lost answer's first reading of the history
        account.killed = True
        raise Killed

    with kills_stop_writes(account), contextlib.suppress(BaseException):
        await run(first, _View(account, before_history=killed))
    account.killed = False
    assert [(a.shot_id, a.state) for a in attempts(first)] == [
        ("src", "downloaded"),
        ("next", "intent"),
    ]
    return ShotList(
        storyboard=first.storyboard,
        shots=(first.shots[0], attrs.evolve(first.shots[1], prompt="it sails at dusk")),
        source=first.source,
    )


async def test_an_edited_chained_shot_s_old_intent_waits_for_its_source_s_new_video(
    tmp_path, video
):
    """The source renders again (same inputs): the old intent of the chained shot, edited
    since, holds its turn until the source's video lands, is described with its frame and
    settled then (here: no task, refused), and only then is the edited shot's submit sent."""
    account = FakeAccount(video)
    edited = await killed_after_chained_submit_lost(tmp_path, account)
    result = await run(edited, account, rerender=("src",))
    assert [(s.id, s.state) for s in result.shots] == [("src", "done"), ("next", "done")]
    old = attempts(edited)[1]
    assert (old.shot_id, old.state) == ("next", "refused")
    assert [prompt for _, prompt in account.sent] == [
        "a boat",
        "it sails",
        "a boat",
        "it sails at dusk",
    ]
    # The edited shot's submit went after the old intent was settled, never beside it.
    assert account.sent[-1][0] >= old.sent_at + SETTLE.act_window


async def test_an_old_intent_whose_source_fails_to_render_releases_its_turn(tmp_path, video):
    """The source fails this run: the old intent's frame cannot be had; it blocks nothing,
    and it is settled before the run ends (the history shows it made nothing: refused), never
    resent."""
    account = FakeAccount(video)
    edited = await killed_after_chained_submit_lost(tmp_path, account)
    account.script = ["refused"]
    result = await run(edited, account, rerender=("src",), retry_failed=0)
    assert [(s.id, s.state) for s in result.shots] == [("src", "failed"), ("next", "skipped")]
    assert [a.state for a in attempts(edited) if a.shot_id == "next"] == ["refused"]
    assert account.submits == 3
