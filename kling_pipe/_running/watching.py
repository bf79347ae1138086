"""Waiting for a task to end, cheaply: polls paced by what finished tasks took.

A task takes minutes; polling it every second wastes requests and rate limit, polling it
every minute notices it late. The pacing (`kling_pipe._decisions.pacing`) starts from an
estimate of how long tasks take, learned from this run's finished tasks and WaveSpeed's
`timings` (seeded from earlier runs' records until then), and polls densely only around the
expected end. Until the run's first task completes, every task probes on its own phase of a
sparse grid; the first completion any of them sees wakes the others to re-plan with what it
taught, so a wave of tasks submitted together is not left sleeping through its own end. The
time-out is measured on the injected clock, so tests in fake time cover it too.

A task beyond the account's processing limit waits on the server in ``created``. Its queue
time is neither render time (the estimate counts from when it started processing, half-way
between the last poll that saw it created and the first that did not) nor a reason to time
it out (the time-out counts from the first poll that saw it processing, or from its wake).
How many tasks process at once is learned from what the run's tasks ahead of a queued one
show (`pacing.processing_ahead`) and handed to *on_limit*; how many of the run's tasks wait
behind its own rendering ones (`pacing.waiting_in_queue`) goes to *on_queue*, and no unit
starts while one does. A queued task is polled sparsely (`pacing.queued_poll_delay`: only at
the cap while the run's own tasks fill the limit, since only their end can start it). When
one of the run's tasks ends while fewer than the limit are started, the oldest task sent
that is still queued is woken, as the account starts it then; if every task sent before it
is started, it is watched as rendering from the wake without a poll to be told so. Once the
limit is known, a task sent while the run's tasks fill it is queued from its submit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from kling_pipe._backends.base import Backend, Prediction
from kling_pipe._decisions.pacing import (
    DurationEstimator,
    PollPolicy,
    next_poll_delay,
    probe_phase,
    processing_ahead,
    queued_poll_delay,
    waiting_in_queue,
)
from kling_pipe.exceptions import (
    AuthError,
    BackendError,
    KlingPipeError,
    NotFoundError,
    RateLimitedError,
    WrongTaskError,
)

log = logging.getLogger("kling_pipe")


class WatchError(KlingPipeError):
    """The task did not reach a final status we could see; it exists, so it may be charged."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        #: True when nothing else can succeed either (the key was refused).
        self.fatal = fatal
        super().__init__(message)


class PollCount(Protocol):
    """Where the number of result requests is kept (a shot's result)."""

    polls: int


class TaskWatcher:
    """Polls tasks until they end; one per run, so every task teaches the estimate."""

    def __init__(  # noqa: PLR0913 - the watch's whole context, keyword-only
        self,
        backend: Backend,
        *,
        timeout_s: float,
        policy: PollPolicy,
        estimator: DurationEstimator,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_limit: Callable[[int], None] = lambda _: None,
        on_queue: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._backend = backend
        self._on_limit = on_limit
        self._on_queue = on_queue
        #: How many tasks *on_queue* was last told wait in the account's queue.
        self._waiting_told = 0
        #: The account's processing limit as last learned (None: no task seen queued).
        self.account_limit: int | None = None
        #: Each watched task's last seen status, in submission order.
        self._statuses: dict[str, str] = {}
        #: Wake-ups of the tasks last seen ``created`` (queued, or only starting), in
        #: submission order: the oldest is woken when one ends, as the account starts it.
        self._queued: dict[str, asyncio.Event] = {}
        #: What each completed task took to render, queue time excluded, until the walk asks.
        self._rendered: dict[str, float] = {}
        self._timeout_s = timeout_s
        self._policy = policy
        self._estimator = estimator
        self._clock = clock
        self._sleep = sleep
        #: Each watched task's clocks.
        self._clocks: dict[str, _Clocks] = {}
        #: For each woken task, when the task whose end woke it was last known not ended.
        self._woken_after: dict[str, float] = {}
        #: How many tasks this watcher has watched: each probes on its own phase.
        self._watched = 0
        #: How many it watches now: while nothing is known, they share the watch.
        self._watching = 0
        #: Set when a task of this run completed: the estimate is no longer a guess.
        self._learned = asyncio.Event()

    async def until_final(
        self,
        prediction: Prediction,
        count: PollCount,
        *,
        awaited: Callable[[], bool] = lambda: False,
    ) -> Prediction:
        """Poll *prediction* until its status is final; raise WatchError when it cannot be.

        *awaited* says, each time it is asked, whether shots of the run wait for this task
        (a chain's source): such a task is polled more densely (`pacing.awaited_policy`).
        """
        self._watching += 1
        # Sent while the run's own tasks fill the account: it waits in the queue from the
        # start, and is watched as queued (woken by their ends) rather than as rendering.
        queued = (
            self.account_limit is not None
            and prediction.status == "created"
            and processing_ahead(self._view()) >= self.account_limit
        )
        self._statuses[prediction.id] = "created" if queued else "submitted"
        if queued:
            self._queued[prediction.id] = asyncio.Event()
            self._tell_queue()
        try:
            return await self._watch(prediction, count, awaited, queued=queued)
        finally:
            self._watching -= 1
            self._statuses.pop(prediction.id, None)
            self._queued.pop(prediction.id, None)
            self._woken_after.pop(prediction.id, None)
            clocks = self._clocks.pop(prediction.id, None)
            self._wake_oldest_queued(None if clocks is None else clocks.alive_at)
            self._tell_queue()

    def rendered_s(self, task_id: str) -> float | None:
        """Return (once) what a completed task took to render, its queue time excluded."""
        return self._rendered.pop(task_id, None)

    def _wake_oldest_queued(self, alive_at: float | None) -> None:
        """Wake the oldest queued task: one ended, so the account starts its oldest now.

        *alive_at* is when the task that ended was last known not to have ended: the woken
        one started no sooner.

        Oldest by submission (the watched tasks' order), not by when each was first seen
        queued: the account starts them in the order they were sent. Only while fewer of the
        run's tasks are started than the account's limit: an end whose place a task already
        took (seen processing before the end was) starts no other, and before any limit is
        known a task still ``created`` is as likely only starting.
        """
        if self.account_limit is None or processing_ahead(self._view()) >= self.account_limit:
            return
        for task_id in self._statuses:
            waiting = self._queued.get(task_id)
            if waiting is not None and not waiting.is_set():
                waiting.set()
                if alive_at is not None:
                    self._woken_after[task_id] = alive_at
                return

    def _view(self, before: str | None = None) -> list[str]:
        """Return the watched tasks' statuses in submission order (before *before* only).

        A queued task woken by another's end counts as ``"woken"``: the account started it.
        """
        view = []
        for other, seen in self._statuses.items():
            if other == before:
                break
            woken = other in self._queued and self._queued[other].is_set()
            view.append("woken" if woken else seen)
        return view

    def _tell_queue(self) -> None:
        """Tell *on_queue* how many of the run's tasks wait in the queue, when that changed."""
        waiting = waiting_in_queue(self._view())
        if waiting != self._waiting_told:
            self._waiting_told = waiting
            self._on_queue(waiting)

    def _seen(self, task_id: str, status: str, queued_for: float) -> None:
        """Note a task's status; a task still queued tells the account's processing limit."""
        self._statuses[task_id] = status
        if status == "created":
            self._queued.setdefault(task_id, asyncio.Event()).clear()
        else:
            self._queued.pop(task_id, None)
        self._tell_queue()
        if status != "created" or queued_for < self._policy.queue_evidence_s:
            return
        limit = processing_ahead(self._view(before=task_id))
        if limit >= 1 and limit != self.account_limit:
            self.account_limit = limit
            log.info("the account processes %d task(s) at once; more wait in its queue", limit)
            self._on_limit(limit)

    async def _watch(
        self,
        prediction: Prediction,
        count: PollCount,
        awaited: Callable[[], bool],
        *,
        queued: bool,
    ) -> Prediction:
        clocks = self._clocks[prediction.id] = _Clocks.at(self._clock(), queued=queued)
        phase = probe_phase(self._watched)
        self._watched += 1
        retry_after: float | None = None
        woken = False
        while not prediction.is_final:
            now = self._clock()
            deadline = clocks.since + self._timeout_s
            if clocks.queued_at is None and now >= deadline:
                raise WatchError(
                    f"task {prediction.id} did not finish within {self._timeout_s:g} s "
                    f"(last status {prediction.status!r}); it may still complete and be charged"
                )
            freed_at: float | None = None
            if clocks.queued_at is not None:
                freed_at = await self._wait_queued(prediction.id, clocks, retry_after)
                if freed_at is not None and self._started_unseen(prediction.id, clocks):
                    clocks.woken(freed_at)
                    continue
                # Never faster than the floor after its last poll.
                rest = self._policy.floor_s - (self._clock() - clocks.answered)
                await self._sleep(max(0.0, rest))
            else:
                delay = next_poll_delay(
                    now=now,
                    submitted_at=clocks.started,
                    estimate=self._estimator.estimate(),
                    policy=self._policy,
                    retry_after_s=retry_after,
                    phase=phase,
                    probing=self._watching,
                    last_poll_at=clocks.answered if woken else None,
                    awaited=awaited(),
                )
                woken = await self._nap(min(delay, max(0.0, deadline - now)))
                if woken:
                    continue  # the run learned how long tasks take: plan again with it
            asked = prediction
            prediction, retry_after = await self._poll(prediction, count)
            if prediction is asked:
                clocks.answered = self._clock()
                continue  # no answer: nothing new of the task, nor of the account's queue
            clocks.answer(
                prediction,
                self._clock(),
                freed_at=freed_at,
                evidence_s=self._policy.queue_evidence_s,
            )
            self._seen(prediction.id, prediction.status, clocks.answered - clocks.submitted)
        if prediction.status == "completed":
            inference = None if prediction.inference_ms is None else prediction.inference_ms / 1000
            self._rendered[prediction.id] = self._estimator.record(
                done_elapsed_s=self._clock() - clocks.started,
                pending_elapsed_s=clocks.last_pending,
                inference_s=inference,
            )
            self._learned.set()
        return prediction

    async def _wait_queued(
        self, task_id: str, clocks: _Clocks, retry_after: float | None
    ) -> float | None:
        """Wait while a task is queued: until one of the run's tasks ends, or the sparse poll.

        Returns when it was woken by a task's end (None: the sparse poll is due).
        """
        ahead = self._view(before=task_id)
        delay = queued_poll_delay(
            queued_for=clocks.answered - clocks.submitted,
            estimate=self._estimator.estimate(),
            policy=self._policy,
            ahead_processing=sum(1 for seen in ahead if seen in {"processing", "woken"}),
            limit=self.account_limit,
        )
        if retry_after is not None:
            delay = max(delay, retry_after)
        waiting = self._queued.get(task_id)
        if waiting is None:
            await self._sleep(delay)
            return None
        nap = asyncio.ensure_future(self._sleep(delay))
        wake = asyncio.ensure_future(waiting.wait())
        try:
            await asyncio.wait((nap, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (nap, wake):
                waiter.cancel()
            await asyncio.gather(nap, wake, return_exceptions=True)
        return self._clock() if waiting.is_set() else None

    def _started_unseen(self, task_id: str, clocks: _Clocks) -> bool:
        """Whether woken *task_id* surely started just now and surely has not ended yet.

        Surely started: every task of the run sent before it is known to have started, so
        the end that woke it started this one (the account starts its queued tasks in
        submission order); if one ahead might still wait, that one started instead. Not
        ended: the task whose end woke it was known not ended recently enough that this one,
        started no sooner, cannot have rendered even the shortest recent task's time since.
        Otherwise a poll tells.
        """
        if not all(seen in {"processing", "woken"} for seen in self._view(before=task_id)):
            return False
        estimate = self._estimator.estimate()
        after = self._woken_after.pop(task_id, None)
        if estimate is None or after is None:
            return False
        return self._clock() - max(clocks.submitted, after) < estimate.shortest_s

    async def _nap(self, seconds: float) -> bool:
        """Sleep *seconds*; return True if cut short because the run's first task completed.

        Once the run has learned, a nap is a plain sleep: only probing tasks can be woken, so
        the extra bookkeeping lasts for the first wave alone.
        """
        if self._learned.is_set():
            await self._sleep(seconds)
            return False
        nap = asyncio.ensure_future(self._sleep(seconds))
        learned = asyncio.ensure_future(self._learned.wait())
        try:
            await asyncio.wait((nap, learned), return_when=asyncio.FIRST_COMPLETED)
            woken = not nap.done()
        finally:
            for waiter in (nap, learned):
                waiter.cancel()
            await asyncio.gather(nap, learned, return_exceptions=True)
        return woken

    async def _poll(
        self, prediction: Prediction, count: PollCount
    ) -> tuple[Prediction, float | None]:
        """Ask for the task once; return it as now known, and a Retry-After to honour.

        A poll that got no answer returns *prediction* itself: the caller tells the two
        apart by identity (an old answer's ``created`` is no news of the account's queue).
        """
        try:
            polled = await self._backend.get_prediction(prediction.id)
        except RateLimitedError as exc:
            return prediction, exc.retry_after_s
        except NotFoundError:
            raise WatchError(f"task {prediction.id} is unknown to the server") from None
        except AuthError as exc:
            raise WatchError(str(exc), fatal=True) from None
        except WrongTaskError as exc:
            # Its video would be another shot's: this take fails rather than follow it.
            raise WatchError(str(exc)) from None
        except BackendError as exc:
            log.warning("polling task %s failed: %s", prediction.id, exc)
            return prediction, None
        finally:
            count.polls += 1
        if polled.is_unknown_status:
            log.warning("task %s has unknown status %r", polled.id, polled.status)
        return polled, None


@attrs.define
class _Clocks:
    """One task's times as its watch learns them, from its submit's answer and each poll's."""

    #: When the submit's answer arrived.
    submitted: float
    #: When rendering began: the submit, or (after a wait in the account's queue) about
    #: when the task left it. The estimate and the time-out count from here.
    started: float
    #: When the latest answer about the task arrived (its submit's, then each poll's).
    answered: float
    #: When a poll last saw the task queued (``created``), while it still is (its submit,
    #: when it was sent into a full account).
    queued_at: float | None = None
    #: When the last poll that saw it ``created`` came, until one sees it rendering.
    created_until: float | None = None
    #: Seconds from `started` to the last poll that saw it pending.
    last_pending: float | None = None
    #: When a poll first saw it processing: the time-out counts from there (a wait in the
    #: queue that no poll saw is no reason to give up on it either).
    processing_at: float | None = None
    #: When an end of one of the run's tasks woke it from the queue: the time-out counts
    #: from there until a poll sees it processing.
    left_queue_at: float | None = None
    #: When it was last known not to have ended: its submit, a poll that saw it pending, or
    #: a wake it cannot have rendered the shortest recent task's time before.
    alive_at: float = 0.0

    @classmethod
    def at(cls, submitted: float, *, queued: bool) -> _Clocks:
        """Start the clocks of a task whose submit was answered at *submitted*."""
        return cls(
            submitted=submitted,
            started=submitted,
            answered=submitted,
            queued_at=submitted if queued else None,
            created_until=submitted if queued else None,
            alive_at=submitted,
        )

    @property
    def since(self) -> float:
        """When the time-out starts counting."""
        for at in (self.processing_at, self.left_queue_at):
            if at is not None:
                return at
        return self.submitted

    def woken(self, freed_at: float) -> None:
        """One of the run's tasks ended at *freed_at*, and the account started this one.

        It is watched as rendering from the wake at once rather than polled to be told so;
        a poll that still finds it queued (another client's task took the place) queues it
        again. The wake comes when the run saw that end, a little after it was: this task's
        own end is seen as late, which costs the run nothing while the next one waits in the
        queue to take its place.
        """
        self.started = self.left_queue_at = self.alive_at = freed_at
        self.queued_at = self.last_pending = self.created_until = None

    def answer(
        self, prediction: Prediction, at: float, *, freed_at: float | None, evidence_s: float
    ) -> None:
        """Take in a poll's answer, which arrived at *at* (*freed_at*: a wake before it)."""
        self.answered = at
        if prediction.status == "created":
            self.created_until = at
            if self.queued_at is not None or at - self.submitted >= evidence_s:
                self.queued_at = at
        elif self.created_until is not None or self.queued_at is not None:
            # It began to render between the last poll that saw it created (queued, or only
            # starting) and this one: it renders from about then, and no sooner than the end
            # of the run's task that woke it, if one did (the account starts the next queued
            # task when one ends). Whatever else it says, it waits in the queue no more.
            last_created = max(t for t in (self.created_until, self.queued_at) if t is not None)
            since = last_created if freed_at is None else max(last_created, freed_at)
            self.started = (since + at) / 2.0
            self.queued_at = self.created_until = None
        if prediction.status == "processing" and self.processing_at is None:
            self.processing_at = at
        if prediction.is_pending:
            self.alive_at = at
            if self.queued_at is None:
                self.last_pending = at - self.started
