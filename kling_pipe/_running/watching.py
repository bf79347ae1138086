"""Waiting for a task to end, cheaply: polls paced by what finished tasks took.

A task takes minutes; polling it every second wastes requests and rate limit, polling it
every minute notices it late. The pacing (`kling_pipe._decisions.pacing`) starts from an estimate of
how long tasks take, learned from this run's finished tasks and WaveSpeed's `timings`, and
polls densely only around the expected end. The time-out is measured on the injected clock,
so tests in fake time cover it too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from kling_pipe._backends.base import Backend, Prediction
from kling_pipe._decisions.pacing import DurationEstimator, PollPolicy, next_poll_delay
from kling_pipe.exceptions import (
    AuthError,
    BackendError,
    KlingPipeError,
    NotFoundError,
    RateLimitedError,
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
    ) -> None:
        self._backend = backend
        self._timeout_s = timeout_s
        self._policy = policy
        self._estimator = estimator
        self._clock = clock
        self._sleep = sleep

    async def until_final(self, prediction: Prediction, count: PollCount) -> Prediction:
        """Poll *prediction* until its status is final; raise WatchError when it cannot be."""
        submitted = self._clock()
        deadline = submitted + self._timeout_s
        last_pending: float | None = None
        retry_after: float | None = None
        while not prediction.is_final:
            if self._clock() >= deadline:
                raise WatchError(
                    f"task {prediction.id} did not finish within {self._timeout_s:g} s "
                    f"(last status {prediction.status!r}); it may still complete and be charged"
                )
            delay = next_poll_delay(
                now=self._clock(),
                submitted_at=submitted,
                polls=count.polls,
                estimate=self._estimator.estimate(),
                policy=self._policy,
                retry_after_s=retry_after,
            )
            await self._sleep(min(delay, max(0.0, deadline - self._clock())))
            prediction, retry_after = await self._poll(prediction, count)
            if prediction.is_pending:
                last_pending = self._clock() - submitted
        if prediction.status == "completed":
            inference = None if prediction.inference_ms is None else prediction.inference_ms / 1000
            self._estimator.record(
                done_elapsed_s=self._clock() - submitted,
                pending_elapsed_s=last_pending,
                inference_s=inference,
            )
        return prediction

    async def _poll(
        self, prediction: Prediction, count: PollCount
    ) -> tuple[Prediction, float | None]:
        """Ask for the task once; return it as now known, and a Retry-After to honour."""
        try:
            polled = await self._backend.get_prediction(prediction.id)
        except RateLimitedError as exc:
            return prediction, exc.retry_after_s
        except NotFoundError:
            raise WatchError(f"task {prediction.id} is unknown to the server") from None
        except AuthError as exc:
            raise WatchError(str(exc), fatal=True) from None
        except BackendError as exc:
            log.warning("polling task %s failed: %s", prediction.id, exc)
            return prediction, None
        finally:
            count.polls += 1
        if polled.is_unknown_status:
            log.warning("task %s has unknown status %r", polled.id, polled.status)
        return polled, None
