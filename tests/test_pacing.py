"""Poll timing, duration learning, retry backoff and the submit rate limit: pure arithmetic."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.pacing import (
    DurationEstimate,
    DurationEstimator,
    PollPolicy,
    RateLimiter,
    backoff_delay,
    next_poll_delay,
    parse_retry_after,
)

POLICY = PollPolicy()
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def schedule(estimate, *, until, policy=POLICY, start=0.0):
    """The poll times (seconds after submission) the policy produces until *until*."""
    times = []
    t = start
    polls = 0
    while t < until:
        t += next_poll_delay(now=t, submitted_at=0.0, polls=polls, estimate=estimate, policy=policy)
        polls += 1
        times.append(t)
    return times


# ------------------------------------------------------------------ next_poll_delay


durations = st.floats(min_value=0.05, max_value=3600, allow_nan=False)


@st.composite
def estimates(draw):
    typical = draw(durations)
    low = typical * draw(st.floats(min_value=0.0, max_value=1.0))
    high = typical * draw(st.floats(min_value=1.0, max_value=5.0))
    return DurationEstimate(typical_s=typical, low_s=low, high_s=high)


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    polls=st.integers(min_value=0, max_value=10_000),
)
def test_poll_delays_stay_within_floor_and_cap(estimate, elapsed, polls):
    """Whatever the estimate and however long the task has run, floor <= delay <= cap."""
    delay = next_poll_delay(now=elapsed, submitted_at=0.0, polls=polls, estimate=estimate)
    assert POLICY.floor_s <= delay <= POLICY.cap_s


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    retry_after=st.floats(min_value=0, max_value=600, allow_nan=False),
)
def test_retry_after_is_a_lower_bound_even_past_the_cap(estimate, elapsed, retry_after):
    """A server's Retry-After always wins over a shorter planned delay."""
    delay = next_poll_delay(
        now=elapsed, submitted_at=0.0, polls=3, estimate=estimate, retry_after_s=retry_after
    )
    assert delay >= retry_after
    assert delay >= POLICY.floor_s


@given(polls=st.integers(min_value=0, max_value=200))
def test_without_an_estimate_delays_grow_geometrically_to_the_cap(polls):
    """Probing from the floor: each delay is the previous one times the growth, capped."""
    now = next_poll_delay(now=0, submitted_at=0, polls=polls, estimate=None)
    later = next_poll_delay(now=0, submitted_at=0, polls=polls + 1, estimate=None)
    assert later >= now
    assert later == pytest.approx(min(POLICY.cap_s, now * POLICY.probe_growth))


def test_first_poll_waits_for_the_expected_window():
    """With tasks known to take 20 s +/- 20 %, nothing is polled before 15 s (the cap)."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.0, high_s=24.0)
    assert next_poll_delay(now=0, submitted_at=0, polls=0, estimate=estimate) == 15.0
    # Then on the 0.9 s grid through the median: 16.4, 17.3, ... 20.0.
    assert next_poll_delay(now=15, submitted_at=0, polls=1, estimate=estimate) == pytest.approx(1.4)


def test_a_window_of_twenty_seconds_costs_about_ten_polls_at_one_second_resolution():
    """20 s +/- 20 %: about ten polls up to the window's end, none more than 1 s apart inside."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.0, high_s=24.0)
    times = schedule(estimate, until=24.0)
    assert len(times) <= 11
    inside = [t for t in times if 16.0 <= t <= 24.0]
    gaps = [b - a for a, b in itertools.pairwise(inside)]
    assert max(gaps) <= 1.0
    assert any(t == pytest.approx(20.0) for t in times)


def test_identical_tasks_are_seen_on_the_first_poll():
    """When every task takes 1.5 s, the one poll lands on 1.5 s, not a floor step later."""
    estimator = DurationEstimator()
    for _ in range(6):
        estimator.record(done_elapsed_s=1.6, pending_elapsed_s=1.3, inference_s=1.5)
    times = schedule(estimator.estimate(), until=1.5)
    assert times == [pytest.approx(1.5)]


def test_overdue_tasks_back_off_towards_the_cap():
    """Past the window the gaps grow, but never beyond the cap."""
    estimate = DurationEstimate(typical_s=2.0, low_s=1.8, high_s=2.2)
    times = schedule(estimate, until=200.0, start=2.2)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))
    assert max(gaps) == pytest.approx(POLICY.cap_s)


def test_a_wide_window_is_covered_in_a_bounded_number_of_polls():
    """A window from 10 s to 300 s still costs at most max_window_polls (plus cap polls)."""
    estimate = DurationEstimate(typical_s=100.0, low_s=10.0, high_s=300.0)
    times = schedule(estimate, until=300.0)
    inside = [t for t in times if 10.0 <= t <= 300.0]
    assert len(inside) <= 1 + 290 / POLICY.cap_s + 1


# ------------------------------------------------------------------ DurationEstimator


def test_nothing_known_means_no_estimate():
    assert DurationEstimator().estimate() is None


def test_a_prior_gives_a_window_around_it():
    estimate = DurationEstimator(prior_s=60.0).estimate()
    assert estimate == DurationEstimate(typical_s=60.0, low_s=48.0, high_s=72.0)


def test_the_servers_inference_time_is_used_when_the_polls_bracket_it():
    """Seen pending at 18 s and done at 21 s, with inference 19.2 s: 19.2 s is recorded."""
    estimator = DurationEstimator()
    assert estimator.record(done_elapsed_s=21, pending_elapsed_s=18, inference_s=19.2) == 19.2


def test_an_inference_time_outside_the_bracket_is_clamped_into_it():
    """Queueing is not in `timings.inference`: the observed bracket wins when they disagree."""
    estimator = DurationEstimator()
    assert estimator.record(done_elapsed_s=30, pending_elapsed_s=25, inference_s=10) == 25
    assert estimator.record(done_elapsed_s=30, pending_elapsed_s=25, inference_s=99) == 30


def test_without_inference_the_bracket_decides():
    estimator = DurationEstimator()
    assert estimator.record(done_elapsed_s=10, pending_elapsed_s=8) == 9
    assert estimator.record(done_elapsed_s=10) == 10


def test_few_samples_keep_the_prior_spread():
    """One sample of 20 s still gives a +/- 20 % window; many identical ones a tight one."""
    estimator = DurationEstimator()
    estimator.record(done_elapsed_s=20)
    assert estimator.estimate() == DurationEstimate(typical_s=20, low_s=16, high_s=24)
    for _ in range(9):
        estimator.record(done_elapsed_s=20)
    assert estimator.estimate() == DurationEstimate(typical_s=20, low_s=20, high_s=20)


@given(st.lists(st.floats(min_value=0.1, max_value=1000, allow_nan=False), min_size=1))
def test_estimates_are_ordered_and_inside_the_samples_range(samples):
    """low <= typical <= high, and with enough samples all three lie within what was seen."""
    estimator = DurationEstimator(keep=1000)
    for s in samples:
        estimator.record(done_elapsed_s=s)
    estimate = estimator.estimate()
    assert estimate is not None
    assert estimate.low_s <= estimate.typical_s <= estimate.high_s
    if len(samples) >= 5:
        assert min(samples) <= estimate.low_s
        assert estimate.high_s <= max(samples)


def test_only_recent_samples_are_kept():
    estimator = DurationEstimator(keep=3)
    for s in (100, 100, 100, 1, 1, 1):
        estimator.record(done_elapsed_s=s)
    assert estimator.sample_count == 3
    estimate = estimator.estimate()
    assert estimate is not None
    assert estimate.typical_s == 1


# ------------------------------------------------------------------ backoff_delay


def test_backoff_doubles_up_to_the_cap():
    delays = [
        backoff_delay(n, base=0.5, cap=5.0, jitter_fraction=0.0, rng_value=0.9) for n in range(1, 7)
    ]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=10, allow_nan=False),
    cap=st.floats(min_value=0.001, max_value=600, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1),
    rng=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_monotone_and_capped_for_a_given_draw(attempt, base, cap, jitter, rng):
    """Jitter only shortens a wait: never above the cap, never shrinking with attempts."""
    kw = {"base": base, "cap": cap, "jitter_fraction": jitter, "rng_value": rng}
    now = backoff_delay(attempt, **kw)
    later = backoff_delay(attempt + 1, **kw)
    assert 0 <= now <= later <= cap
    raw = min(cap, base * 2.0 ** min(attempt - 1, 100))
    assert now >= raw * (1 - jitter) - 1e-9


# ------------------------------------------------------------------ parse_retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("inf", None),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        (format_datetime(NOW - timedelta(seconds=42), usegmt=True), 0.0),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


# ------------------------------------------------------------------ RateLimiter


def test_rate_limiter_lets_a_burst_through_then_spaces_by_the_window():
    limiter = RateLimiter(3, window_s=60)
    assert [limiter.reserve(0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve(10.0) == 50.0
    assert limiter.reserve(70.0) == 0.0


def test_rate_limiter_refuses_a_non_positive_rate():
    with pytest.raises(ValueError, match="max_events"):
        RateLimiter(0)


@given(
    limit=st.integers(min_value=1, max_value=10),
    window=st.floats(min_value=0.5, max_value=120, allow_nan=False),
    gaps=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=60),
)
def test_rate_limiter_never_allows_more_than_n_per_window(limit, window, gaps):
    """Wherever a window of *window* seconds is placed, it holds at most *limit* submissions."""
    limiter = RateLimiter(limit, window_s=window)
    now = 0.0
    starts = []
    for gap in gaps:
        now += gap
        delay = limiter.reserve(now)
        assert delay >= 0
        starts.append(now + delay)
    # In order, to within float rounding (`now + delay` may differ from the slot by an ulp).
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(starts))
    for i in range(len(starts) - limit):
        assert starts[i + limit] - starts[i] >= window - 1e-9
