"""The mock's mutable heart: tasks, billing, uploads, outputs, webhooks and their persistence.

Handlers call into `MockState`; it calls the pure `TaskBook` with the clock's time and turns
what ended into refunds, webhook deliveries, wake-ups of sync-mode requests and a save.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import uuid
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import attrs

from mockserver import catalogue
from mockserver.billing import InsufficientBalanceError, Ledger
from mockserver.config import RUNTIME_OPTIONS
from mockserver.faults import TASK_ERRORS, FaultInjector, echo_key
from mockserver.journal import Journal
from mockserver.media import Upload, request_key
from mockserver.outputs import Renderer
from mockserver.storage import Snapshot, Storage, dump_snapshot, load_snapshot, write_atomically
from mockserver.tasks import (
    FINAL,
    Answer,
    Provenance,
    Status,
    Task,
    TaskBook,
    draw_processing_s,
)
from mockserver.webhooks import Delivery, deliver, new_delivery, new_secret
from mockserver.wire import ApiError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mockserver.clock import Clock
    from mockserver.config import MockConfig
    from mockserver.faults import Burst, SecondClient

T = TypeVar("T")

#: Where a second client's "other" first image lives: a host the mock never serves, so its
#: output is a placeholder drawn from the URL (and differs from the client's first frame).
SECOND_CLIENT_IMAGE_BASE = "https://playground.wavespeed.invalid/second-client"
#: The codes a burst's failed tasks fail with.
BURST_FAILURES = (1200, 1403, 5000)


def second_client_input(
    model: str, client_input: dict[str, Any], drawn: SecondClient
) -> dict[str, Any]:
    """Return another client's input for *model*, built from the intercepted client's.

    It keeps the duration (so the same price) and other fields, with its own prompt and,
    unless drawn ``same_image``, its own first and last images (placeholders to the mock).
    """
    body = copy.deepcopy(client_input)
    body["prompt"] = f"another client's shot {drawn.token}"
    if catalogue.MODELS[model].takes_image and not drawn.same_image:
        body["image"] = f"{SECOND_CLIENT_IMAGE_BASE}/{drawn.token}-first.png"
        if body.get("last_image") is not None:
            body["last_image"] = f"{SECOND_CLIENT_IMAGE_BASE}/{drawn.token}-last.png"
    return body


#: Run-time options that are on or off.
_SWITCHES: Final = frozenset({"quotes", "billings_search"})


def _price_factor(value: float | str) -> Decimal:
    """Read a price factor: a finite number above 0 (a string keeps its decimals exact)."""
    try:
        factor = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"price_factor: {value!r} is not a number") from None
    if not factor.is_finite() or factor <= 0:
        raise ValueError(f"price_factor: must be a finite number above 0, not {value}")
    return factor


def iso_ms(at: float) -> str:
    """Format epoch seconds as WaveSpeed does: ISO 8601, UTC, milliseconds, ``Z``."""
    text = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class MockState:
    """All state of one mock server; use from the event loop's thread only."""

    def __init__(self, config: MockConfig, clock: Clock) -> None:
        self.config = config
        #: The config as started, restored by `reset` after `set_options` changed it.
        self._configured = config
        self.clock = clock
        self.storage = Storage.plan(config.state_dir)
        self.journal = Journal(config.journal_limit)
        self.faults = FaultInjector(config.faults)
        self.webhook_secret = config.webhook_secret or new_secret()
        #: Host names clients reached the mock by, to recognise its own upload URLs.
        self.hosts: set[str] = set()
        self.renderer = Renderer(self.storage, config)
        self._final_events: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Creations waiting for the mock clock (``late_create``, a later ``second_client``).
        self._pending: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        #: The origin (``http://host:port``) of the latest submission, for webhook bodies.
        self.origin = f"http://{config.host}"
        self._clear()

    def open(self) -> None:
        """Create the storage folder and load the persisted state, if any."""
        self.storage.create()
        document = self.storage.load_state()
        if document is not None:
            self._restore(load_snapshot(document))

    def _clear(self) -> None:
        self.book = TaskBook(self.config.processing, self.config.concurrency_limit)
        self.ledger = Ledger(self.config.balance_usd)
        self.uploads: dict[str, Upload] = {}
        self.deliveries: list[Delivery] = []
        self._submit_times: deque[float] = deque()
        self._seq = 0
        #: Tasks made so far per request (`request_key`): the next twin's `Task.take` - 1.
        self._takes: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring every task up to the clock's time."""
        self._ended(self.book.advance(self.clock.now()))

    # -- the server's clock and runtime options --------------------------------------------

    def server_time(self, at: float) -> float:
        """Convert a mock-clock time to the server's clock (``clock_offset_s`` added)."""
        return at + self.config.clock_offset_s

    def server_now(self) -> float:
        """Return the server's idea of now: what ``created_at`` and ``Date`` headers show."""
        return self.server_time(self.clock.now())

    def in_history(self, task: Task) -> bool:
        """Say whether the history lists *task* yet (``history_lag_s`` after its creation)."""
        return task.created_at + self.config.history_lag_s <= self.clock.now()

    def options(self) -> dict[str, Any]:
        """Return the options that may change at run time (the price factor as a string)."""
        shown = {name: getattr(self.config, name) for name in RUNTIME_OPTIONS}
        shown["price_factor"] = str(self.config.price_factor)
        return shown

    def price(self, model: str, duration_s: int) -> Decimal:
        """Return what this server charges for *model*: the catalogue's price x ``price_factor``."""
        return catalogue.cost(model, duration_s) * self.config.price_factor

    def set_options(self, **changes: Any) -> dict[str, Any]:
        """Change run-time options (`RUNTIME_OPTIONS`); `reset` restores the configured ones.

        Raises TypeError for an unknown option and ValueError for a bad value.
        """
        unknown = sorted(set(changes) - set(RUNTIME_OPTIONS))
        if unknown:
            raise TypeError(f"{', '.join(unknown)}: not an option that changes at run time")
        updates: dict[str, Any] = {}
        for name, value in changes.items():
            if name in _SWITCHES:
                if not isinstance(value, bool):
                    raise TypeError(f"{name}: must be true or false")
                updates[name] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError(f"{name}: must be a number")
            if name == "price_factor":
                updates[name] = _price_factor(value)
                continue
            if isinstance(value, str):
                raise TypeError(f"{name}: must be a number of seconds")
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be finite")
            updates[name] = float(value)
        self.config = attrs.evolve(self.config, **updates)
        return self.options()

    # -- creating tasks --------------------------------------------------------------------

    def submit(  # noqa: PLR0913 - the submit's parts, keyword-only
        self,
        model: str,
        body: dict[str, Any],
        *,
        webhook: str | None,
        planned_failure: int | None,
        provenance: Provenance | None = None,
        failure_echo: str | None = None,
    ) -> Task:
        """Accept a validated task: rate limit, charge, queue or start. Raises `ApiError`.

        *failure_echo* (an `ECHO_KEY_FORMS` name): a planned failure's error text echoes the
        API key in that disguise.
        """
        now = self.clock.now()
        self.refresh()
        self._check_rate(now)
        task = self._create(model, body, at=now, webhook=webhook, planned_failure=planned_failure)
        self._number(task)
        if planned_failure is not None and failure_echo is not None:
            text = TASK_ERRORS[planned_failure]
            task.planned_error = f"{text}: {echo_key(self.config.api_key, failure_echo)}"
        self._submit_times.append(now)
        if provenance is not None:
            provenance.add_made(task)
        self._commit(task, now)
        if planned_failure is None:  # its video is ready by the time it completes, as on WaveSpeed
            self.renderer.prepare(task, self.uploads, frozenset(self.hosts))
        return task

    def second_client(
        self,
        model: str,
        client_input: dict[str, Any],
        drawn: SecondClient,
        provenance: Provenance,
        *,
        planned_failure: int | None = None,
    ) -> Task | None:
        """Create another client's task of *model* now, or *gap_s* ago if drawn ``before``.

        It is charged like any task but skips the per-minute limit; if the balance cannot
        pay for it, that other client got the 402 and nothing happens here.
        """
        now = self.clock.now()
        self.refresh()
        body = second_client_input(model, client_input, drawn)
        at = now - drawn.gap_s if drawn.before else now
        try:
            task = self._create(model, body, at=at, webhook=None, planned_failure=planned_failure)
        except ApiError:
            return None
        self._number(task)
        task.created_by = "second_client"
        provenance.add_provoked(task)
        self._commit(task, now)
        return task

    def burst(
        self, model: str, client_input: dict[str, Any], drawn: Burst, provenance: Provenance
    ) -> int:
        """Create another client's batch of *model* tasks just after now; return how many.

        ``drawn.count`` tasks, created at even steps over the next ``drawn.within_s`` seconds
        (each shows in the history once the clock passes its ``created_at`` and the lag),
        so every one is newer than the submit's task. They are born ended, as a batch that
        ran elsewhere: a ``drawn.completed`` fraction completed (one shared placeholder
        picture, so their videos are rendered once, and only if downloaded), the rest failed
        and refunded. They take no quota and are charged like any task, as far as the
        balance goes.
        """
        now = self.clock.now()
        self.refresh()
        rng = random.Random(drawn.token)  # noqa: S311 - reproducible, not secret
        image = f"{SECOND_CLIENT_IMAGE_BASE}/{drawn.token}-batch.png"
        made = 0
        for i in range(drawn.count):
            body = {
                "prompt": f"another client's batch {drawn.token}, shot {i}",
                "image": image,
                "duration": client_input.get("duration", catalogue.DEFAULT_DURATION),
            }
            at = now + (i + 1) * drawn.within_s / drawn.count
            failure = None if rng.random() < drawn.completed else rng.choice(BURST_FAILURES)
            try:
                task = self._create(model, body, at=at, webhook=None, planned_failure=failure)
            except ApiError:
                break  # the balance is spent: that client got 402s
            task.created_by = "burst"
            self.book.add_ended(task, at)
            if task.status is Status.FAILED:
                self.ledger.refund(task.id, at)
            provenance.add_provoked(task)
            made += 1
        self._save()
        return made

    def other_task(self, task_id: str) -> Task | None:
        """Return what a caching proxy answers for *task_id* instead: another task.

        The latest other task a client's request made that completed with the same duration
        (its video would pass a duration check), else the latest other completed one, else
        the latest other one; None when there is no other task.
        """
        asked = self.book.get(task_id)
        duration = None if asked is None else asked.input.get("duration")
        now = self.clock.now()
        best: tuple[int, Task] | None = None
        for task in reversed(self.book.tasks.values()):
            if task.id == task_id or task.created_at > now:
                continue
            rank = 3
            if task.status is Status.COMPLETED:
                rank = 2
                if task.created_by == "request":
                    rank = 0 if task.input.get("duration") == duration else 1
            if best is None or rank < best[0]:
                best = (rank, task)
            if rank == 0:
                break
        return None if best is None else best[1]

    def _create(
        self,
        model: str,
        body: dict[str, Any],
        *,
        at: float,
        webhook: str | None,
        planned_failure: int | None,
    ) -> Task:
        duration = int(body.get("duration", catalogue.DEFAULT_DURATION))
        task_id = uuid.uuid4().hex
        cost = self.price(model, duration)
        try:
            self.ledger.charge(task_id, cost, at)
        except InsufficientBalanceError as exc:
            raise ApiError(402, str(exc)) from exc
        self._seq += 1
        return Task(
            id=task_id,
            seq=self._seq,
            model=model,
            input=body,
            cost_usd=cost,
            created_at=at,
            processing_s=draw_processing_s(self.config.processing, self._seq),
            planned_failure=planned_failure,
            webhook=webhook,
        )

    def _number(self, task: Task) -> None:
        """Give *task* its place among the account's tasks of its very request (`Task.take`).

        WaveSpeed's API takes no seed: two takes of one shot send identical requests, and only
        their order tells them apart. (A ``burst``'s tasks each have a prompt of their own, so
        they are all first takes, and are not counted.)
        """
        key = request_key(task.model, task.input)
        task.take = self._takes.get(key, 0) + 1
        self._takes[key] = task.take

    def _commit(self, task: Task, now: float) -> None:
        self._ended(self.book.add(task, now))
        self._save()
        self._wake.set()

    def later(self, deadline: float, make: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``make()`` once the mock clock reaches *deadline*, whoever still waits for it.

        The job belongs to the state, not to a request: a client that disconnects (or a
        handler that is cancelled) does not stop it. `reset` and `close` do.
        """

        async def run() -> T:
            await self.clock.sleep_until(deadline)
            return make()

        job = asyncio.ensure_future(run())
        self._pending.add(job)
        job.add_done_callback(self._forget_pending)
        return job

    def _forget_pending(self, job: asyncio.Future[Any]) -> None:
        self._pending.discard(job)
        if not job.cancelled():
            job.exception()  # retrieved here; a waiting handler still gets it from result()

    @property
    def pending_creations(self) -> int:
        """Count creations still waiting for the mock clock."""
        return len(self._pending)

    def settle(self, provenance: Provenance, seq: int, answer: Answer, status: int | None) -> None:
        """Record how a submit request ended on the tasks it made or provoked."""
        provenance.settle(seq, answer, status)
        if provenance.made or provenance.provoked:
            self._save()

    def _check_rate(self, now: float) -> None:
        limit = self.config.submits_per_minute
        window = self._submit_times
        while window and window[0] <= now - 60:
            window.popleft()
        if limit is not None and len(window) >= limit:
            retry = max(1, math.ceil(window[0] + 60 - now))
            raise ApiError(
                429,
                f"rate limit exceeded: at most {limit} submissions per minute",
                headers={"Retry-After": str(retry)},
            )

    def poll(self, task: Task) -> None:
        """Count one result request for *task* (which may end it under `AfterPolls`)."""
        self._ended(self.book.poll(task, self.clock.now()))

    def finish(self, task_id: str, *, code: int | None = None, error: str = "") -> Task:
        """End a task by hand: completed, or failed with *code*. KeyError/ValueError if not."""
        if code is not None and code not in TASK_ERRORS:
            raise ValueError(f"code: {code} is not a documented task-level code")
        self.refresh()
        task = self.book.tasks[task_id]
        self._ended(self.book.finish(task, self.clock.now(), code=code, error=error))
        self._wake.set()
        return task

    def expire_output(self, task_id: str) -> Task:
        """Make a completed task's output expire: its URL answers 404, the task still answers.

        KeyError for an unknown task, ValueError for one that has no output.
        """
        self.refresh()
        task = self.book.tasks[task_id]
        if task.status is not Status.COMPLETED:
            raise ValueError(f"task {task_id} is {task.status}: it has no output to expire")
        task.output_expired = True
        self._save()
        return task

    def delete(self, ids: list[str]) -> int:
        """Delete predictions; return how many existed."""
        self.refresh()
        count, ended = self.book.delete(ids, self.clock.now())
        self._ended(ended)
        self._save()
        self._wake.set()
        return count

    def _ended(self, tasks: list[Task]) -> None:
        """Refund failures, wake sync-mode waiters, send webhooks, save."""
        if not tasks:
            return
        for task in tasks:
            if task.status is Status.FAILED:
                self.ledger.refund(task.id, task.ended_at or self.clock.now())
            event = self._final_events.pop(task.id, None)
            if event is not None:
                event.set()
            if task.webhook:
                self._send_webhook(task)
        self._save()

    async def wait_final(self, task: Task, deadline: float) -> None:
        """Wait until *task* ends or the clock reaches *deadline*, whichever comes first."""
        self.refresh()
        if task.status in FINAL:
            return
        event = self._final_events.setdefault(task.id, asyncio.Event())
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self.clock.sleep_until(deadline)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self.refresh()

    async def run_ticker(self) -> None:
        """End tasks at their deadlines even when nobody polls (for webhooks and sync mode)."""
        while True:
            self.refresh()
            self._wake.clear()
            deadline = self.book.next_deadline()
            waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            if deadline is not None:
                waiters.add(asyncio.ensure_future(self.clock.sleep_until(deadline)))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

    # -- answers ---------------------------------------------------------------------------

    def prediction(self, task: Task, origin: str) -> dict[str, Any]:
        """Return the prediction object (``data``) exactly as WaveSpeed shapes it."""
        completed = task.status is Status.COMPLETED
        outputs = [f"{origin}/media/outputs/{task.id}.mp4"] if completed else []
        inference_ms = 0
        if task.ended_at is not None and task.started_at is not None:
            inference_ms = round((task.ended_at - task.started_at) * 1000)
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "outputs": outputs,
            "urls": {"get": f"{origin}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [False] * len(outputs),
            "status": task.status.value,
            "created_at": iso_ms(self.server_time(task.created_at)),
            "error": task.error,
            "timings": {"inference": inference_ms},
        }
        if task.code is not None:
            data["code"] = task.code
        return data

    def describe_tasks(self) -> list[dict[str, Any]]:
        """Return every task with its full input and who created it (for ``/_mock/tasks``).

        ``created_by`` is ``request`` (with the journal ``request_seq`` of the submit that
        created it and what that request got as ``answer``) or ``second_client`` (with the
        ``trigger_seq`` of the submit it accompanied). ``take`` numbers the tasks of one
        identical request in arrival order: they render differently.
        """
        self.refresh()
        return [
            {
                "id": task.id,
                "model": task.model,
                "input": copy.deepcopy(task.input),
                "status": task.status.value,
                "created_at": iso_ms(self.server_time(task.created_at)),
                "created_wall": task.created_at,
                "cost_usd": str(task.cost_usd),
                "in_history": self.in_history(task),
                "created_by": task.created_by,
                "request_seq": task.request_seq,
                "answer": task.answer,
                "answer_status": task.answer_status,
                "trigger_seq": task.trigger_seq,
                "take": task.take,
            }
            for task in self.book.tasks.values()
        ]

    # -- uploads and outputs ---------------------------------------------------------------

    def new_upload(self, filename: str, size: int, content_type: str) -> Upload:
        """Open an upload ticket."""
        upload = Upload(
            id=uuid.uuid4().hex,
            filename=filename,
            size=size,
            content_type=content_type,
            token=uuid.uuid4().hex,
            created_at=self.clock.now(),
        )
        self.uploads[upload.id] = upload
        self._save()
        return upload

    async def store_upload(self, upload: Upload, data: bytes) -> None:
        """Keep an upload's bytes (written from a thread) and mark it complete."""
        await asyncio.to_thread(write_atomically, self.storage.upload_path(upload.id), data)
        upload.size = len(data)
        upload.complete = True
        self._save()

    async def output_path(self, task: Task) -> Path:
        """Return the file of *task*'s video, rendering it in a thread the first time."""
        return await self.renderer.path(task, self.uploads, frozenset(self.hosts))

    # -- webhooks ---------------------------------------------------------------------------

    def _send_webhook(self, task: Task) -> None:
        assert task.webhook is not None
        body = json.dumps(self.prediction(task, self.origin)).encode()
        delivery = new_delivery(task.id, task.webhook)
        self.deliveries.append(delivery)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        job = deliver(
            self._session,
            delivery,
            secret=self.webhook_secret,
            body=body,
            attempts=self.config.webhook_attempts,
            retry_s=self.config.webhook_retry_s,
        )
        background = asyncio.ensure_future(job)
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    # -- persistence, reset, shutdown ------------------------------------------------------

    def _save(self) -> None:
        if not self.storage.persistent:
            return
        state = Snapshot(
            seq=self._seq,
            balance_usd=self.ledger.balance_usd,
            ledger=tuple(self.ledger.entries),
            tasks=tuple(self.book.tasks.values()),
            uploads=tuple(self.uploads.values()),
            webhook_secret=self.webhook_secret,
            submit_times=tuple(self._submit_times),
            peak_concurrent=self.book.peak_concurrent,
        )
        self.storage.save_state(dump_snapshot(state))

    def _restore(self, state: Snapshot) -> None:
        self._seq = state.seq
        self.ledger = Ledger(state.balance_usd, list(state.ledger))
        tasks = {t.id: t for t in state.tasks}
        self.book = TaskBook(self.config.processing, self.config.concurrency_limit, tasks)
        self.book.peak_concurrent = state.peak_concurrent
        for task in state.tasks:
            if task.created_by != "burst":
                key = request_key(task.model, task.input)
                self._takes[key] = max(self._takes.get(key, 0), task.take)
        self.uploads = {u.id: u for u in state.uploads}
        self._submit_times = deque(state.submit_times)
        if self.config.webhook_secret is None:
            self.webhook_secret = state.webhook_secret

    def reset(self) -> None:
        """Forget every task, upload, output, journal entry and counter; refill the balance.

        Pending late creations are cancelled and run-time options return to the config.
        """
        for job in list(self._pending):
            job.cancel()
        self.config = self._configured
        self._clear()
        self.journal.clear()
        self.faults = FaultInjector(self.config.faults)
        self.renderer.times.clear()
        self.storage.clear()
        self._save()
        self._wake.set()

    async def close(self) -> None:
        """Stop webhook deliveries and renders, close the HTTP session, drop a temp folder."""
        jobs = [*self._background, *self._pending]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await self.renderer.close()
        if self._session is not None:
            await self._session.close()
        self.storage.close()
