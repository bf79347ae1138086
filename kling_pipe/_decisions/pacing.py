"""When to poll, when to retry, when to submit: pure arithmetic on times, no sleeping.

Every function here takes the current time (monotonic seconds, or an aware datetime for HTTP
dates) and returns a delay in seconds; the scheduler is the only code that waits. That keeps
the policies testable with plain numbers and property tests.

Polling design (`next_poll_delay` with a `DurationEstimate` from `DurationEstimator`):

* Nothing known yet (no task of this run finished, nothing from earlier runs): each task
  probes on a geometric grid of times (x1.5 per point), whose phase differs from task to
  task (`probe_phase`). A wave of tasks submitted together therefore looks at the server
  often while each task looks rarely, and the first completion any of them sees gives the
  run its estimate; the watcher then wakes every probing task to re-plan with it
  (`kling_pipe._running.watching`). A task probing alone has nobody to share the watch
  with: it polls every second (or every 4.5 % of its time so far), as the SDK would; k
  tasks together each k times less often. This lasts only until the first task of the run
  completes.
* A task's duration estimated as a window ``[low, high]`` (5th and 95th percentiles of recent
  durations, widened by +/-20 % around the median until five tasks have finished): sleep until
  the window, then poll every ``spacing`` through it, where ``spacing`` is 4.5 % of the
  typical duration (so completion is noticed within 5 %) but wide enough that the window costs
  at most `PollPolicy.max_window_polls` polls. In a narrow window the polls fall on a grid
  through the median, so tasks that all take the same time are seen right away. In a wide
  one the first poll comes one spacing after its start, where a poll finds more than the
  fastest few done: after the shortest recent duration for long tasks (even the fastest are
  seen within one spacing), after ``low`` for short ones (the spacing is the floor: two
  floors late is still well within the goal, and it saves polls). Past ``high`` the spacing
  holds for one window's width (an estimate from the first finishers of a wave is short),
  then the overdue time grows by x1.5 per poll. A task woken because the estimate changed
  is polled at once if the new plan would have polled it since its last poll.
* An estimate seeded from earlier runs (not yet confirmed by this run's tasks) is trusted to
  within a factor of two: the probe grid runs too, from half the window's ``low``, so tasks
  that got faster since are still seen soon after they finish.
* A task other shots of the run wait for (a chain's source, `awaited`) is polled on both the
  plan above and one of half its spacing, floor and probe share (`awaited_policy`): each
  moment it is seen late, every shot chained from it starts late, so its noticing is worth
  a few more GETs; the tasks nothing waits for keep the plain plan.
* Every delay is at least the floor (0.22 s: never hammer the API; half of it for an awaited
  task) and at most the cap (15 s: a failed or cancelled task is noticed within the cap). A
  server's Retry-After is a lower bound on top of all this.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

import attrs

#: The window's ends: quantiles of recent durations.
_LOW_QUANTILE: Final = 0.05
_HIGH_QUANTILE: Final = 0.95
#: Below this many finished tasks, the window is widened to the prior spread around the median.
_MIN_SAMPLES_FOR_QUANTILES: Final = 5
#: A wake-up this close before the window opens counts as inside it (timers fire a little early).
_EARLY_WAKE_TOLERANCE_S: Final = 0.01
#: The golden ratio's fractional part: its multiples spread any number of phases evenly.
_GOLDEN: Final = (math.sqrt(5.0) - 1.0) / 2.0


@attrs.frozen(kw_only=True)
class PollPolicy:
    """The knobs of `next_poll_delay`; the defaults meet the benchmark targets of issue 13."""

    #: The shortest delay between two polls of one task.
    floor_s: float = 0.22
    #: The longest delay between two polls of one task.
    cap_s: float = 15.0
    #: Poll spacing inside the expected window, as a fraction of the typical duration.
    resolution: float = 0.045
    #: The window is covered in at most this many polls (the spacing widens if need be).
    max_window_polls: int = 10
    #: The probe grid's first point, before the task's phase stretches it by up to one
    #: growth factor: a task done sooner is still seen about a second after its submit.
    probe_start_s: float = 0.75
    #: Growth factor of the probe grid's times while nothing is known about durations.
    probe_growth: float = 1.5
    #: A task probing alone polls at least this often (or within `resolution` of its time):
    #: as often as WaveSpeed's own SDK, which polls every second. Tasks probing together
    #: share the watch, so each may look that many times less often.
    probe_alone_s: float = 1.0
    #: Growth factor of the overdue time once a task runs past the window (and one more
    #: window's width).
    overdue_growth: float = 1.5
    #: A seeded estimate's window is trusted down to this fraction of its ``low``.
    seed_trust: float = 0.5
    #: A task still ``created`` this long after its submit waits in the account's queue
    #: (beyond its processing limit); sooner, it may only be starting.
    queue_evidence_s: float = 1.0
    #: A task that shots of the run wait for (a chain's source) is polled this much more
    #: densely: its floor, its spacing in the window and its probes' share all shrink by
    #: this factor. Each second it is seen late, the chained shots start a second late;
    #: the cost is a few more GETs for those tasks alone.
    awaited_share: float = 0.5


@attrs.frozen(kw_only=True)
class DurationEstimate:
    """Seconds from submission to completion: typical, earliest and latest expected."""

    typical_s: float
    low_s: float
    high_s: float
    #: The shortest recent duration (``low_s`` when there are too few to tell).
    shortest_s: float = attrs.field(default=attrs.Factory(lambda e: e.low_s, takes_self=True))
    #: False while it rests only on what came before this run (a seed or a prior).
    learned: bool = True


def probe_phase(ordinal: int) -> float:
    """Return the probe-grid phase, in ``[0, 1)``, of the *ordinal*-th task a run watches.

    Successive ordinals land evenly spread (multiples of the golden ratio), so however many
    tasks probe together, their polls interleave rather than coincide.
    """
    return (ordinal * _GOLDEN) % 1.0


def next_poll_delay(  # noqa: PLR0913 -- keyword-only: every input of a pure policy
    *,
    now: float,
    submitted_at: float,
    estimate: DurationEstimate | None,
    policy: PollPolicy = PollPolicy(),
    retry_after_s: float | None = None,
    phase: float = 0.0,
    probing: int = 1,
    last_poll_at: float | None = None,
    awaited: bool = False,
) -> float:
    """Return how long to wait before polling a task again.

    *now* and *submitted_at* are monotonic seconds (*submitted_at* is when the submit's answer
    arrived); *estimate* is the run's current estimate (None when nothing is known);
    *retry_after_s* is the server's Retry-After from the last poll, if any, and is honoured
    as a lower bound even past the cap; *phase* is the task's `probe_phase` and *probing*
    how many tasks the run watches now, this one included (while nothing is known, they
    all probe).

    *last_poll_at* is when the task's last poll (or its submit) was answered, if that was
    not just now: a task woken because the estimate changed. If the plan as it is now would
    have polled it since then, it is polled at once (the floor counts from that poll).

    *awaited* says shots of the run wait for this task (it is a chain's source): it waits for
    whichever comes first of the plain plan's next poll and the denser plan's
    (`awaited_policy`), so from any moment its next poll is never later than the plain
    plan's. (Not every point of the plain plan is kept: the floor and an overdue task's
    growing delay count from the last poll, which the denser plan moves.)
    """
    if awaited:
        both = functools.partial(
            next_poll_delay,
            now=now,
            submitted_at=submitted_at,
            estimate=estimate,
            retry_after_s=retry_after_s,
            phase=phase,
            probing=probing,
            last_poll_at=last_poll_at,
        )
        return min(both(policy=policy), both(policy=awaited_policy(policy)))
    if last_poll_at is not None and now > last_poll_at:
        planned = next_poll_delay(
            now=last_poll_at,
            submitted_at=submitted_at,
            estimate=estimate,
            policy=policy,
            phase=phase,
            probing=probing,
        )
        if last_poll_at + planned <= now:  # the plan as it is now has missed a poll: poll now
            delay = max(0.0, policy.floor_s - (now - last_poll_at))
            return delay if retry_after_s is None else max(delay, retry_after_s)
    elapsed = max(0.0, now - submitted_at)
    if estimate is None:
        share = max(policy.probe_alone_s, policy.resolution * elapsed) * max(1, probing)
        delay = _probe_delay(elapsed, policy.probe_start_s, phase, policy)
        if probing <= 1 or (elapsed + delay) * (1.0 - 1.0 / policy.probe_growth) > share:
            delay = share  # alone, or the grid is sparser than a share: keep to the share
    else:
        delay = _window_delay(elapsed, estimate, policy)
        if not estimate.learned:
            trusted = max(policy.probe_start_s, policy.seed_trust * estimate.low_s)
            delay = min(delay, _probe_delay(elapsed, trusted, phase, policy))
    delay = min(policy.cap_s, max(policy.floor_s, delay))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


@functools.cache
def awaited_policy(policy: PollPolicy) -> PollPolicy:
    """Return the denser plan of a task other shots wait for: `awaited_share` of the spacing."""
    share = policy.awaited_share
    return attrs.evolve(
        policy,
        floor_s=policy.floor_s * share,
        resolution=policy.resolution * share,
        probe_alone_s=policy.probe_alone_s * share,
        max_window_polls=math.ceil(policy.max_window_polls / share),
        awaited_share=1.0,
    )


def queued_poll_delay(
    *,
    queued_for: float,
    estimate: DurationEstimate | None,
    policy: PollPolicy = PollPolicy(),
    ahead_processing: int = 0,
    limit: int | None = None,
) -> float:
    """Return how long to wait before polling again a task waiting in the account's queue.

    A task beyond the account's processing limit stays ``created`` until one of the account's
    tasks ends; the watch wakes the run's oldest queued task whenever one of the run's own
    tasks ends, so this poll only has to catch a slot freed by another client: it is spaced
    like a task's typical time (or half the time queued so far, when nothing is known yet),
    between the floor and the cap.

    When *ahead_processing* of the run's own tasks ahead of it are seen processing and they
    fill the account's *limit*, no other client's task can free a place it would get: only
    one of those ends, which wakes it, can start it. It then waits for that wake, polled
    only at the cap (a task cancelled on the server is still seen within it).
    """
    if limit is not None and ahead_processing >= limit:
        return policy.cap_s
    base = estimate.typical_s if estimate is not None else max(policy.probe_alone_s, queued_for / 2)
    return min(policy.cap_s, max(policy.floor_s, base))


def waiting_in_queue(statuses: Iterable[str]) -> int:
    """Count the tasks, in submission order, seen ``created`` behind one seen processing.

    The account starts tasks in submission order, so a task still waiting while one sent
    before it renders says the account is busy with the run's own tasks: another submit
    now would only wait behind it (`engine.AccountQueue`), and the waiting one takes the
    next place the account frees. A task ``"woken"`` (one of the run's tasks ended, so the
    account started it) no longer waits. Its age is not asked: a task barely past its submit
    may still be starting, but holding one submit back until its next poll costs little,
    while sending one more into a queue costs its whole wait in polls.
    """
    waiting = 0
    rendering = False
    for status in statuses:
        if status in {"processing", "woken"}:
            rendering = True
        elif status == "created" and rendering:
            waiting += 1
    return waiting


def processing_ahead(statuses: Iterable[str]) -> int:
    """Count the tasks a queued task's *statuses* ahead show processing: the account's limit.

    The account starts queued tasks in submission order, so while a task waits in
    ``created``, every task processing was submitted before it: of the run's tasks before it
    and not yet final, those not last seen ``created``. One that ended unseen is balanced by
    the queued one that started in its place, still seen ``created``; one seen to end wakes
    the oldest queued task, which counts as processing (``"woken"``) until polled.
    """
    return sum(1 for status in statuses if status != "created")


def _probe_delay(elapsed: float, start: float, phase: float, policy: PollPolicy) -> float:
    """Delay to the next point of the grid ``start * growth ** (n + phase)``, n = 0, 1, ..."""
    growth = policy.probe_growth
    ahead = elapsed + _EARLY_WAKE_TOLERANCE_S
    first = start * math.pow(growth, phase)
    if ahead < first:
        return first - elapsed
    n = math.floor(math.log(ahead / start, growth) - phase) + 1
    point = start * math.pow(growth, n + phase)
    if point <= ahead:  # rounding in the logarithm
        point *= growth
    return point - elapsed


def _window_delay(elapsed: float, estimate: DurationEstimate, policy: PollPolicy) -> float:
    """Delay to the next poll planned from the estimated window (see the module docstring)."""
    width = estimate.high_s - estimate.low_s
    spacing = max(
        policy.floor_s,
        policy.resolution * estimate.typical_s,
        width / max(1, policy.max_window_polls),
    )
    spacing = min(spacing, policy.cap_s)
    if width > 2 * spacing:
        # A wide window: a poll at its start would find only the fastest few done, so the
        # first poll comes one spacing after it. For long tasks that start is the shortest
        # recent duration, so that even the fastest finishers are seen within one spacing
        # (the noticing goal); for short ones (the spacing is the floor, and seeing a task
        # two floors late is still well within the goal) the 5th percentile saves polls.
        start = estimate.low_s if spacing == policy.floor_s else estimate.shortest_s
        first = start + spacing
    else:
        # Polls inside the window fall on a grid through the typical duration, so that when
        # tasks all take about the same time (the usual case), one poll lands right on it.
        below = math.floor(max(0.0, estimate.typical_s - estimate.low_s) / spacing)
        first = estimate.typical_s - below * spacing
    overdue = elapsed - estimate.high_s
    if overdue < max(width, spacing):
        # Inside the window, and for one window's width past it: an estimate drawn from the
        # first tasks of a wave to finish is short, and the rest finish just after it.
        steps = math.floor((elapsed + _EARLY_WAKE_TOLERANCE_S - first) / spacing) + 1
        return first + max(0, steps) * spacing - elapsed
    return max(spacing, overdue * (policy.overdue_growth - 1.0))


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of a non-empty sorted list."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    low, high = ordered[below], ordered[above]
    # Written so that rounding can never step outside [low, high].
    return min(high, low + (high - low) * fraction)


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(values)


@attrs.define
class DurationEstimator:
    """Learns how long tasks take, from the tasks that completed in this run.

    Feed it every completed task with `record`; ask it for `estimate` before each poll. Failed
    tasks are not recorded: they end early for reasons unrelated to rendering time. Until a
    task of this run completes, the estimate comes from *prior_s* (the caller's own
    expectation) or else from *seed_s* (what earlier runs' tasks took), marked not `learned`.
    """

    #: What to assume before any task finished (e.g. the user's expectation), or None.
    prior_s: float | None = None
    #: Relative half-width of the window assumed around the median until samples show it.
    default_spread: float = 0.2
    #: How many recent durations are kept: recent ones reflect the server's current load.
    keep: int = 64
    #: Durations of earlier runs' tasks (from the records), newest last; used like samples
    #: until this run has its own.
    seed_s: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    _samples: deque[float] = attrs.field(init=False, factory=deque)
    #: The estimate for the samples as they are, or None when it must be worked out again.
    _cached: DurationEstimate | None = attrs.field(init=False, default=None)

    @property
    def sample_count(self) -> int:
        """How many finished tasks of this run the estimate rests on."""
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
        self._cached = None
        return sample

    def estimate(self) -> DurationEstimate | None:
        """Return the current estimate, or None when neither a task nor a prior says anything."""
        if self._samples:
            if self._cached is None:  # worked out once per completion, not once per poll
                self._cached = self._window(self._samples, learned=True)
            return self._cached
        if self.prior_s is not None:
            return DurationEstimate(
                typical_s=self.prior_s,
                low_s=self.prior_s * (1.0 - self.default_spread),
                high_s=self.prior_s * (1.0 + self.default_spread),
                learned=False,
            )
        if self.seed_s:
            if self._cached is None:  # the seed never changes; samples replace it
                self._cached = self._window(self.seed_s[-self.keep :], learned=False)
            return self._cached
        return None

    def _window(self, durations: Iterable[float], *, learned: bool) -> DurationEstimate:
        ordered = sorted(durations)
        typical = _quantile(ordered, 0.5)
        low = _quantile(ordered, _LOW_QUANTILE)
        high = _quantile(ordered, _HIGH_QUANTILE)
        if len(ordered) < _MIN_SAMPLES_FOR_QUANTILES:
            low = min(low, typical * (1.0 - self.default_spread))
            high = max(high, typical * (1.0 + self.default_spread))
        return DurationEstimate(
            typical_s=typical,
            low_s=low,
            high_s=high,
            shortest_s=min(low, ordered[0]),
            learned=learned,
        )


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
