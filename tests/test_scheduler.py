"""The scheduler's shell against an in-memory backend: no server, no real waiting."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from kling_pipe._backends.base import Download, Prediction, SubmitRequest
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe.exceptions import ServerError, SubmitOutcomeUnknown
from tests.videofiles import write_mp4


class FakeTime:
    """One clock for the backend and the client; sleeping advances it, nothing really waits."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        await asyncio.sleep(0)


from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage


class FakeBackend:
    """Tasks complete after `polls_to_finish` result requests; faults are scripted."""

    origin = "FakeBackend"
    clock_offset = timedelta(0)  # as learned from the Date header of the first answer

    def __init__(self, video: Path, *, polls_to_finish: int = 2) -> None:
        self.time = FakeTime()
        self.video = video
        self.polls_to_finish = polls_to_finish
        self.tasks: dict[str, dict] = {}
        self.submits = 0
        #: Per submit call, in order: "ok", "lost-after" (task created, answer lost),
        #: "lost-before" (nothing created, answer lost), "refused" (a 503).
        self.script: list[str] = []
        self.final_status = "completed"
        self.polls = 0

    def _prediction(self, task_id: str) -> Prediction:
        task = self.tasks[task_id]
        done = task["polls"] >= self.polls_to_finish
        status = self.final_status if done else "processing"
        return Prediction(
            id=task_id,
            model=task["model"],
            status=status,
            created_at=task["created_at"],
            outputs=(f"https://cdn.test/{task_id}.mp4",) if status == "completed" else (),
            error="boom" if status == "failed" else "",
            code=1403 if status == "failed" else None,
        )

    async def upload_image(self, path: Path) -> str:
        return f"https://cdn.test/{path.name}"

    async def submit(self, request: SubmitRequest) -> Prediction:
        self.submits += 1
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "refused":
            raise ServerError("503", status=503)
        if mode == "lost-before":
            raise SubmitOutcomeUnknown("lost", model=request.model, sent_at=self.time.now())
        task_id = hashlib.sha256(f"{self.submits}".encode()).hexdigest()[:32]
        self.tasks[task_id] = {
            "polls": 0,
            "created_at": self.time.now(),
            "prompt": request.prompt,
            "image": request.image_url,
            "model": request.model,
        }
        if mode == "lost-after":
            await self.time.sleep(0.01)  # the answer is lost on the way: others may send meanwhile
            raise SubmitOutcomeUnknown("lost", model=request.model, sent_at=self.time.now())
        return self._prediction(task_id)

    async def get_prediction(self, task_id: str) -> Prediction:
        self.polls += 1
        self.tasks[task_id]["polls"] += 1
        return self._prediction(task_id)

    async def list_predictions(self, **filters: object) -> list[Prediction]:
        page = int(filters.get("page", 1))  # type: ignore[call-overload]
        size = int(filters.get("page_size", 100))  # type: ignore[call-overload]
        after, before = filters.get("created_after"), filters.get("created_before")
        listed = [
            self._prediction(t)
            for t, task in reversed(self.tasks.items())  # newest first, as the API lists
            if (not isinstance(after, datetime) or task["created_at"] >= after)
            and (not isinstance(before, datetime) or task["created_at"] <= before)
        ]
        return listed[(page - 1) * size : page * size]

    async def download(self, url: str, dest: Path) -> Download:  # noqa: ARG002 - one video for all
        return await asyncio.to_thread(self._copy, dest)

    def _copy(self, dest: Path) -> Download:
        shutil.copyfile(self.video, dest)
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        return Download(path=dest, size=dest.stat().st_size, sha256=digest)


@pytest.fixture
def video(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("v") / "clip.mp4")


def board(tmp_path: Path, count: int) -> ShotList:
    shots = tuple(
        Shot(id=f"s{i}", prompt=f"p{i}", image=UrlImage(url=f"https://x.test/{i}.png"))
        for i in range(count)
    )
    return ShotList(storyboard=Storyboard(name="b"), shots=shots, source=tmp_path / "b.toml")


class FakeProver:
    """A candidate is the shot's when the fake server says it was made from the shot's image."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    async def can_prove(self, _subject):
        return True

    async def indistinct(self, one, other):

        return one.key[0] == other.key[0]

    async def verdict(self, candidate, subject):
        made_from = self.backend.tasks[candidate.id]["image"]
        return "match" if made_from == subject.key[0] else "mismatch"


FAST_SETTLE = SettleOptions(
    act_window=timedelta(seconds=30), history_lag=timedelta(seconds=10), poll_s=1.0
)


async def run(shotlist, backend, sleeps=None, **options):
    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        await backend.time.sleep(seconds)

    # Records in memory: the scheduler and its units alone, as a script embedding them runs.
    opts = RunOptions(settle=FAST_SETTLE, keep_records=False, report=False, **options)
    return await render(
        shotlist,
        backend=backend,
        options=opts,
        timing=Timing(now=backend.time.now, sleep=fake_sleep),
        prover=FakeProver(backend),
    )


async def test_every_shot_is_rendered_once(tmp_path, video):
    backend = FakeBackend(video)
    result = await run(board(tmp_path, 5), backend, concurrency=2)
    assert result.ok
    assert backend.submits == 5
    assert {s.polls for s in result.shots} == {2}


async def test_the_submit_rate_limit_makes_the_third_submit_wait_a_minute(tmp_path, video):
    sleeps: list[float] = []
    result = await run(
        board(tmp_path, 3), FakeBackend(video), sleeps, rate_per_min=2, concurrency=3
    )
    assert result.ok
    assert any(59.0 < s <= 60.0 for s in sleeps)


async def test_a_lost_answer_whose_task_exists_is_adopted_not_resent(tmp_path, video):
    backend = FakeBackend(video)
    backend.script = ["lost-after"]
    result = await run(board(tmp_path, 1), backend)
    assert result.ok
    assert backend.submits == 1
    assert len(backend.tasks) == 1


async def test_a_lost_answer_whose_task_never_existed_is_sent_again(tmp_path, video):
    backend = FakeBackend(video)
    backend.script = ["lost-before"]
    result = await run(board(tmp_path, 1), backend)
    assert result.ok
    assert backend.submits == 2
    assert len(backend.tasks) == 1


@pytest.mark.parametrize(
    "script",
    [["lost-after", "lost-after"], ["lost-before", "lost-after"], ["lost-after", "lost-before"]],
)
async def test_lost_answers_never_swap_tasks_nor_pay_twice(tmp_path, video, script):
    """Each task found in the history is adopted only by the shot its frames prove."""
    backend = FakeBackend(video)
    backend.script = list(script)
    shotlist = board(tmp_path, 4)
    result = await run(shotlist, backend, concurrency=4)
    assert result.ok
    assert len(backend.tasks) == 4  # one paid task per shot
    for shot in result.shots:
        (task_id,) = shot.task_ids
        assert backend.tasks[task_id]["prompt"] == shotlist.shot(shot.id).final_prompt


async def test_an_explicit_refusal_costs_nothing_and_is_reported(tmp_path, video):
    backend = FakeBackend(video)
    backend.script = ["refused"]
    result = await run(board(tmp_path, 1), backend)
    assert result.shots[0].state == "failed"
    assert result.shots[0].error.startswith("submit refused")
    assert str(result.spent) == "0.000"


async def test_a_failed_task_carries_the_servers_code_and_reason(tmp_path, video):
    backend = FakeBackend(video)
    backend.final_status = "failed"
    result = await run(board(tmp_path, 1), backend)
    assert (result.shots[0].state, result.shots[0].code) == ("failed", 1403)
    assert result.shots[0].error == "failed (code 1403): boom"


async def test_an_unknown_status_forever_ends_at_the_task_timeout(tmp_path, video):
    backend = FakeBackend(video)
    backend.final_status = "mystery"
    result = await run(board(tmp_path, 1), backend, task_timeout_s=0.2)
    shot = result.shots[0]
    assert shot.state == "failed"
    assert "did not finish within 0.2 s (last status 'mystery')" in shot.error
    assert str(shot.cost) == "0.420"  # it may still be charged: the budget keeps it


async def test_a_video_of_the_wrong_duration_fails_its_shot_and_is_kept_aside(
    tmp_path, tmp_path_factory, video
):
    short = write_mp4(tmp_path_factory.mktemp("v") / "short.mp4", seconds=2)
    backend = FakeBackend(short)
    result = await run(board(tmp_path, 2), backend, concurrency=1)
    first, second = result.shots
    assert (first.state, second.state) == ("failed", "failed")
    assert "lasts 2.00 s; the shot asked for 5 s" in first.error
    assert first.cost == Decimal("0.420")  # paid for, even if unusable
    assert first.file is None
    out = tmp_path / "renders" / "b"
    assert not (out / "s0.mp4").exists()  # never put in place, never cached
    assert len(list((out / "rejected").glob("s0.*.mp4"))) == 1


async def test_a_malformed_output_url_fails_one_shot_and_the_run_goes_on(tmp_path, video):
    class BadUrl(FakeBackend):
        def _prediction(self, task_id):
            prediction = super()._prediction(task_id)
            if self.tasks[task_id]["prompt"] == "p0" and prediction.outputs:
                return attrs.evolve(prediction, outputs=("file:///etc/passwd",))
            return prediction

        async def download(self, url, dest):
            if not url.startswith("https://"):
                raise ValueError(f"output URL {url} is not an http(s) URL")
            return await super().download(url, dest)

    result = await run(board(tmp_path, 3), BadUrl(video), concurrency=3)
    states = {s.id: s.state for s in result.shots}
    assert states == {"s0": "failed", "s1": "done", "s2": "done"}
    assert "not an http(s) URL" in result.shots[0].error


async def test_a_malformed_task_id_fails_one_shot_and_the_run_goes_on(tmp_path, video):
    class BadId(FakeBackend):
        async def get_prediction(self, task_id):
            if self.tasks[task_id]["prompt"] == "p1":
                raise ValueError(f"task id {task_id!r} is not a WaveSpeed task id")
            return await super().get_prediction(task_id)

    result = await run(board(tmp_path, 3), BadId(video), concurrency=3)
    states = {s.id: s.state for s in result.shots}
    assert states == {"s0": "done", "s1": "failed", "s2": "done"}
