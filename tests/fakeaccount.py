"""A WaveSpeed account in fake time, for checking the submit protocol against many schedules.

It knows which request created which task (the real history does not), so a test can check
that every shot got a task its own request made. Faults are scripted per submit:

* ``ok``: created, answered;
* ``lost-before``: nothing created, the answer lost;
* ``lost-after``: created, the answer lost (a broken connection, a gateway's 502 after the API
  acted);
* ``late``: the answer lost, the task created `late_s` later (the server acted after the
  client gave up);
* ``refused``: WaveSpeed's own 503 envelope: nothing created.

Other clients on the account are `foreign` tasks created at given times. The history lags
creation by `lag_s`; the server's clock runs `offset_s` ahead of the client's.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs

from kling_pipe._backends.base import Download, Prediction, SubmitRequest
from kling_pipe.exceptions import ServerError, SubmitOutcomeUnknown
from tests.killswitch import Killed

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"


class FakeTime:
    """The client's clock; sleeping advances it, nothing really waits."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)
        self.mono = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=max(0.0, seconds))
        self.mono += max(0.0, seconds)


@attrs.define
class Task:
    id: str
    model: str
    image: str
    last_image: str | None
    prompt: str
    #: Server time.
    created_at: datetime
    done_at: datetime
    #: "client" for tasks our requests made, "foreign" for other clients'.
    made_by: str
    status: str = "completed"


@attrs.define
class FakeAccount:
    video: Path
    time: FakeTime = attrs.Factory(FakeTime)
    offset_s: float = 0.0
    #: Error of the client's estimate of the offset (the Date header has whole seconds).
    offset_error_s: float = 0.4
    lag_s: float = 0.0
    late_s: float = 30.0
    processing_s: float = 20.0
    script: list[str] = attrs.Factory(list)
    #: (client time offset from start in s, image URL) of other clients' tasks.
    foreign: list[tuple[float, str]] = attrs.Factory(list)
    tasks: dict[str, Task] = attrs.Factory(dict)
    #: Tasks not created yet: (server time of creation, task).
    scheduled: list[Task] = attrs.Factory(list)
    submits: int = 0
    #: (server time, prompt) of every submit that reached the server.
    sent: list[tuple[datetime, str]] = attrs.Factory(list)
    #: The backend call number at which the process is killed (None: never).
    kill_at: int | None = None
    calls: int = 0
    killed: bool = False
    _started: datetime | None = None
    salt: str = attrs.Factory(lambda: uuid.uuid4().hex)

    def server_now(self) -> datetime:
        return self.time.now() + timedelta(seconds=self.offset_s)

    def _materialise(self) -> None:
        now = self.server_now()
        if self._started is None:
            self._started = self.time.now()
        for at, image in list(self.foreign):
            when = self._started + timedelta(seconds=at + self.offset_s)
            if when <= now:
                self.foreign.remove((at, image))
                self._create(image, None, "foreign prompt", when, "foreign")
        for task in list(self.scheduled):
            if task.created_at <= now:
                self.scheduled.remove(task)
                self.tasks[task.id] = task

    def _create(
        self, image: str, last: str | None, prompt: str, when: datetime, made_by: str
    ) -> Task:
        number = len(self.tasks) + len(self.scheduled) + 1
        # Task ids are unique across accounts, as WaveSpeed's are: the registry is per user.
        task_id = hashlib.sha256(f"{self.salt}-task-{number}".encode()).hexdigest()[:32]
        task = Task(
            id=task_id,
            model=MODEL,
            image=image,
            last_image=last,
            prompt=prompt,
            created_at=when,
            done_at=when + timedelta(seconds=self.processing_s),
            made_by=made_by,
        )
        if when <= self.server_now():
            self.tasks[task_id] = task
        else:
            self.scheduled.append(task)
        return task

    def _prediction(self, task: Task) -> Prediction:
        done = self.server_now() >= task.done_at
        status = task.status if done else "processing"
        return Prediction(
            id=task.id,
            model=task.model,
            status=status,
            created_at=task.created_at,
            outputs=(f"https://cdn.test/{task.id}.mp4",) if status == "completed" else (),
        )

    def _call(self) -> None:
        """Every backend call is an await point where the process may be killed."""
        self.calls += 1
        if self.kill_at is not None and self.calls >= self.kill_at:
            self.killed = True
            raise Killed
        self._materialise()

    def client_made(self) -> list[Task]:
        return [t for t in [*self.tasks.values(), *self.scheduled] if t.made_by == "client"]

    # The Backend protocol.

    origin = "FakeAccount"

    @property
    def clock_offset(self) -> timedelta | None:
        return timedelta(seconds=self.offset_s + self.offset_error_s)

    async def upload_image(self, path: Path) -> str:
        self._call()
        return f"https://uploads.test/{path.name}"

    async def submit(self, request: SubmitRequest) -> Prediction:
        self._call()
        self.submits += 1
        self.sent.append((self.server_now(), request.prompt))
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "refused":
            raise ServerError("503: busy", status=503)
        if mode == "lost-before":
            raise SubmitOutcomeUnknown("lost", model=request.model, sent_at=self.time.now())
        when = self.server_now() + timedelta(seconds=self.late_s if mode == "late" else 0)
        task = self._create(
            request.image_url, request.last_image_url, request.prompt, when, "client"
        )
        if mode in ("lost-after", "late"):
            raise SubmitOutcomeUnknown("lost", model=request.model, sent_at=self.time.now())
        if mode == "replayed":  # a proxy answers with the first task it ever saw created
            first = min(self.client_made(), key=lambda t: t.created_at)
            return self._prediction(first)
        return self._prediction(task)

    async def get_prediction(self, task_id: str) -> Prediction:
        self._call()
        return self._prediction(self.tasks[task_id])

    async def list_predictions(self, **filters: object) -> list[Prediction]:
        self._call()
        visible_before = self.server_now() - timedelta(seconds=self.lag_s)
        after = filters.get("created_after")
        before = filters.get("created_before")
        page = int(filters.get("page", 1))  # type: ignore[call-overload]
        size = int(filters.get("page_size", 100))  # type: ignore[call-overload]
        items = [
            self._prediction(t)
            for t in sorted(self.tasks.values(), key=lambda t: t.created_at, reverse=True)
            if t.created_at <= visible_before
            and (not isinstance(after, datetime) or t.created_at >= after)
            and (not isinstance(before, datetime) or t.created_at <= before)
        ]
        return items[(page - 1) * size : page * size]

    async def download(self, url: str, dest: Path) -> Download:  # noqa: ARG002 - one video
        self._call()
        return _copy(self.video, dest)


class FakeProver:
    """A candidate is the shot's when the account says it was made from the shot's frames.

    Shots in these tests use URL images, so a proof key is the pair of URLs.
    """

    def __init__(self, account: FakeAccount) -> None:
        self.account = account

    async def can_prove(self, _subject):
        return True

    async def indistinct(self, one, other):

        return one.key[0] == other.key[0]

    async def verdict(self, candidate: Prediction, subject) -> str:
        task = self.account.tasks[candidate.id]
        return "match" if (task.image, task.last_image) == subject.key else "mismatch"


def _copy(video: Path, dest: Path) -> Download:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(video, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return Download(path=dest, size=dest.stat().st_size, sha256=digest)
