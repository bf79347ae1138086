"""When to poll, when to retry, when to submit: pure arithmetic on times, no sleeping.

Every function here takes the current time (monotonic seconds, or an aware datetime for HTTP
dates) and returns a delay in seconds; the scheduler is the only code that waits. That keeps
the policies testable with plain numbers and property tests.

Polling design (`next_poll_delay` with a `DurationEstimate` from `DurationEstimator`):

* Nothing known yet (no task finished, no prior): poll on an exponential schedule from the
  floor (0.25 s, then x1.3 each poll), so a 1 s task is seen within a few tens of ms and a
  minutes-long one costs a logarithmic number of polls. This lasts only until the first task
  of the run completes.
* A task's duration estimated as a window ``[low, high]`` (5th and 95th percentiles of recent
  durations, widened by +/-20 % around the median until five tasks have finished): sleep until
  ``low``, then poll every ``spacing`` through the window, where ``spacing`` is 4.5 % of the
  typical duration (so completion is noticed within 5 %) but wide enough that the window costs
  at most `PollPolicy.max_window_polls` polls. The polls fall on a grid through the median,
  so tasks that all take the same time are seen right away. Past ``high`` the overdue time
  grows by x1.5 per poll.
* Every delay is at least the floor (0.25 s: never hammer the API) and at most the cap (15 s:
  a failed or cancelled task is noticed within the cap). A server's Retry-After is a lower
  bound on top of all this.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

import attrs

#: Below this many finished tasks, the window is widened to the prior spread around the median.
_MIN_SAMPLES_FOR_QUANTILES: Final = 5
#: A wake-up this close before the window opens counts as inside it (timers fire a little early).
_EARLY_WAKE_TOLERANCE_S: Final = 0.01


@attrs.frozen(kw_only=True)
class PollPolicy:
    """The knobs of `next_poll_delay`; the defaults meet the benchmark targets of issue 4."""

    #: The shortest delay between two polls of one task.
    floor_s: float = 0.25
    #: The longest delay between two polls of one task.
    cap_s: float = 15.0
    #: Poll spacing inside the expected window, as a fraction of the typical duration.
    resolution: float = 0.045
    #: The window is covered in at most this many polls (the spacing widens if need be).
    max_window_polls: int = 10
    #: Growth factor of the delays while nothing is known about durations.
    probe_growth: float = 1.3
    #: Growth factor of the overdue time once a task runs past the window.
    overdue_growth: float = 1.5


@attrs.frozen(kw_only=True)
class DurationEstimate:
    """Seconds from submission to completion: typical, earliest and latest expected."""

    typical_s: float
    low_s: float
    high_s: float


def next_poll_delay(  # noqa: PLR0913 -- keyword-only: every input of a pure policy
    *,
    now: float,
    submitted_at: float,
    polls: int,
    estimate: DurationEstimate | None,
    policy: PollPolicy = PollPolicy(),
    retry_after_s: float | None = None,
) -> float:
    """Return how long to wait before polling a task again.

    *now* and *submitted_at* are monotonic seconds (*submitted_at* is when the submit's answer
    arrived); *polls* counts the result requests already made for this task; *estimate* is
    the run's current estimate (None when nothing is known); *retry_after_s* is the server's
    Retry-After from the last poll, if any, and is honoured as a lower bound even past the cap.
    """
    elapsed = max(0.0, now - submitted_at)
    if estimate is None:
        delay = policy.floor_s * policy.probe_growth ** min(polls, 64)
    else:
        spacing = max(
            policy.floor_s,
            policy.resolution * estimate.typical_s,
            (estimate.high_s - estimate.low_s) / max(1, policy.max_window_polls),
        )
        spacing = min(spacing, policy.cap_s)
        # Polls inside the window fall on a grid through the typical duration, so that when
        # tasks all take about the same time (the usual case), one poll lands right on it.
        first = (
            estimate.typical_s
            - math.floor(max(0.0, estimate.typical_s - estimate.low_s) / spacing) * spacing
        )
        if elapsed < estimate.high_s:
            steps = math.floor((elapsed + _EARLY_WAKE_TOLERANCE_S - first) / spacing) + 1
            delay = first + max(0, steps) * spacing - elapsed
        else:
            overdue = elapsed - estimate.high_s
            delay = max(spacing, overdue * (policy.overdue_growth - 1.0))
    delay = min(policy.cap_s, max(policy.floor_s, delay))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of a non-empty sorted list."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    low, high = ordered[below], ordered[above]
    # Written so that rounding can never step outside [low, high].
    return min(high, low + (high - low) * fraction)


@attrs.define
class DurationEstimator:
    """Learns how long tasks take, from the tasks that completed in this run.

    Feed it every completed task with `record`; ask it for `estimate` before each poll. Failed
    tasks are not recorded: they end early for reasons unrelated to rendering time.
    """

    #: What to assume before any task finished (e.g. from a previous run), or None to probe.
    prior_s: float | None = None
    #: Relative half-width of the window assumed around the median until samples show it.
    default_spread: float = 0.2
    #: How many recent durations are kept: recent ones reflect the server's current load.
    keep: int = 64
    _samples: deque[float] = attrs.field(init=False, factory=deque)

    @property
    def sample_count(self) -> int:
        """How many finished tasks the estimate rests on."""
        return len(self._samples)

    def record(
        self,
        *,
        done_elapsed_s: float,
        pending_elapsed_s: float | None = None,
        inference_s: float | None = None,
    ) -> float:
        """Learn from one completed task and return the duration recorded.

        *done_elapsed_s* is the time from submission to the poll that saw it completed,
        *pending_elapsed_s* the time to the last poll that saw it pending (None if there was
        none), and *inference_s* the server's ``timings.inference``. The true completion lies
        between the two polls; the server's figure is the most precise one when it falls
        there. Otherwise (queueing excluded from it, clock skew) the bracket decides: its
        middle, or its end when no poll came before.
        """
        low = pending_elapsed_s if pending_elapsed_s is not None else 0.0
        high = max(done_elapsed_s, low)
        if inference_s is not None:
            sample = min(high, max(low, inference_s))
        elif pending_elapsed_s is None:
            sample = high
        else:
            sample = (low + high) / 2.0
        self._samples.append(sample)
        while len(self._samples) > self.keep:
            self._samples.popleft()
        return sample

    def estimate(self) -> DurationEstimate | None:
        """Return the current estimate, or None when neither a task nor a prior says anything."""
        if not self._samples:
            if self.prior_s is None:
                return None
            return DurationEstimate(
                typical_s=self.prior_s,
                low_s=self.prior_s * (1.0 - self.default_spread),
                high_s=self.prior_s * (1.0 + self.default_spread),
            )
        ordered = sorted(self._samples)
        typical = _quantile(ordered, 0.5)
        low = _quantile(ordered, 0.05)
        high = _quantile(ordered, 0.95)
        if len(ordered) < _MIN_SAMPLES_FOR_QUANTILES:
            low = min(low, typical * (1.0 - self.default_spread))
            high = max(high, typical * (1.0 + self.default_spread))
        return DurationEstimate(typical_s=typical, low_s=low, high_s=high)


def backoff_delay(  # noqa: PLR0913 -- keyword-only: every input of a pure policy
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter_fraction: float,
    rng_value: float,
    factor: float = 2.0,
) -> float:
    """Return the wait before retry number *attempt* (1-based): exponential, capped, jittered.

    The un-jittered delay is ``min(cap, base * factor ** (attempt - 1))``; jitter then takes
    away up to *jitter_fraction* of it, scaled by *rng_value* in ``[0, 1)`` (a random draw the
    caller makes, so this stays pure). Jitter only shortens the wait, so the cap holds, and for
    a given draw the delay never shrinks as attempts grow.
    """
    exponent = max(0, attempt - 1)
    try:
        raw = min(cap, base * factor**exponent)
    except OverflowError:
        raw = cap
    return raw * (1.0 - jitter_fraction * rng_value)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return a Retry-After header's wait in seconds (0 or more), or None if absent or garbled.

    Both forms of RFC 9110 are read: delay-seconds (``"3"``) and an HTTP-date, measured from
    *now* (an aware datetime).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@attrs.define
class RateLimiter:
    """A sliding-window limit on submissions: at most *max_events* in any *window_s* seconds.

    A sliding window (not a token bucket) because an account tier's "N per minute" must hold
    for every minute: a full bucket plus its refill would allow nearly 2N in one minute. Each
    `reserve` books a slot for one submission; a retried submit books another.
    """

    max_events: int = attrs.field(validator=attrs.validators.ge(1))
    window_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))
    _booked: deque[float] = attrs.field(init=False, factory=deque)

    def reserve(self, now: float) -> float:
        """Book the earliest slot at or after *now* and return how long to wait for it."""
        slot = now
        if self._booked:
            slot = max(slot, self._booked[-1])
        if len(self._booked) >= self.max_events:
            slot = max(slot, self._booked[-self.max_events] + self.window_s)
        self._booked.append(slot)
        while len(self._booked) > self.max_events:
            self._booked.popleft()
        return slot - now
