"""Poll timing, duration learning, retry backoff and the submit rate limit: pure arithmetic.

And whole runs of the real `TaskWatcher` in virtual time: how soon tasks are seen done, for
how many GETs, against what WaveSpeed's SDK would spend on the same tasks.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import math
import random
import selectors
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._backends.base import Prediction
from kling_pipe._decisions.pacing import (
    DurationEstimate,
    DurationEstimator,
    PollPolicy,
    RateLimiter,
    backoff_delay,
    next_poll_delay,
    parse_retry_after,
    probe_phase,
    processing_ahead,
    queued_poll_delay,
    waiting_in_queue,
)
from kling_pipe._records.store import Store
from kling_pipe._running.watching import TaskWatcher, _Clocks
from kling_pipe.exceptions import BackendError

POLICY = PollPolicy()
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def schedule(estimate, *, until, policy=POLICY, start=0.0, **extra):
    """The poll times (seconds after submission) the policy produces until *until*."""
    times = []
    t = start
    while t < until:
        t += next_poll_delay(now=t, submitted_at=0.0, estimate=estimate, policy=policy, **extra)
        times.append(t)
    return times


# ------------------------------------------------------------------ next_poll_delay


durations = st.floats(min_value=0.05, max_value=3600, allow_nan=False)


@st.composite
def estimates(draw):
    typical = draw(durations)
    low = typical * draw(st.floats(min_value=0.0, max_value=1.0))
    high = typical * draw(st.floats(min_value=1.0, max_value=5.0))
    return DurationEstimate(typical_s=typical, low_s=low, high_s=high, learned=draw(st.booleans()))


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    phase=st.floats(min_value=0, max_value=1, exclude_max=True),
    probing=st.integers(min_value=1, max_value=500),
)
def test_poll_delays_stay_within_floor_and_cap(estimate, elapsed, phase, probing):
    """Whatever the estimate and however long the task has run, floor <= delay <= cap."""
    delay = next_poll_delay(
        now=elapsed, submitted_at=0.0, estimate=estimate, phase=phase, probing=probing
    )
    assert POLICY.floor_s <= delay <= POLICY.cap_s


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    retry_after=st.floats(min_value=0, max_value=600, allow_nan=False),
)
def test_retry_after_is_a_lower_bound_even_past_the_cap(estimate, elapsed, retry_after):
    """A server's Retry-After always wins over a shorter planned delay."""
    delay = next_poll_delay(
        now=elapsed, submitted_at=0.0, estimate=estimate, retry_after_s=retry_after
    )
    assert delay >= retry_after
    assert delay >= POLICY.floor_s


def test_without_an_estimate_a_wave_probes_a_sparse_grid_each_on_its_own_phase():
    """Probing together, tasks poll at 0.75 s x 1.5^(n + phase): rarely each, often together."""
    wave = 50
    grids = [schedule(None, until=20.0, phase=probe_phase(i), probing=wave) for i in range(wave)]
    for grid in grids:
        assert len(grid) <= 10  # a grid point every x1.5: 0.75 s to 20 s is 9 steps
        growth = [b / a for a, b in itertools.pairwise(grid)]
        assert growth == pytest.approx([POLICY.probe_growth] * len(growth))
    # Together they look at the server every few tenths of a second around 16 s.
    together = sorted(t for grid in grids for t in grid if 14.0 <= t <= 18.0)
    assert max(b - a for a, b in itertools.pairwise(together)) < 0.5


@pytest.mark.parametrize("task_s", [1.0, 1.5, 5.0, 20.0, 60.0, 120.0])
def test_a_task_probing_alone_polls_no_less_often_than_the_goal_and_no_more_than_the_sdk(task_s):
    """Alone, nobody shares the watch: a poll at least every max(1 s, 4.5 % of the time)."""
    times = schedule(None, until=task_s, probing=1)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert max(gaps) <= max(1.0, 0.05 * task_s) + 1e-9
    assert len(times) <= sdk_gets(task_s)


def test_probe_phases_interleave_however_many_tasks_there_are():
    for n in (2, 5, 50, 500):
        phases = sorted(probe_phase(i) for i in range(n))
        assert all(0.0 <= p < 1.0 for p in phases)
        # No two phases closer than a fifth of an even spread (the golden ratio's property).
        assert min(b - a for a, b in itertools.pairwise(phases)) > 0.2 / n


def test_first_poll_waits_for_the_expected_window():
    """With tasks known to take 20 s +/- 20 %, nothing is polled before 15 s (the cap)."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.0, high_s=24.0)
    assert next_poll_delay(now=0, submitted_at=0, estimate=estimate) == 15.0
    # The window is wide: the first poll comes one spacing (0.9 s) after its start.
    assert next_poll_delay(now=15, submitted_at=0, estimate=estimate) == pytest.approx(1.9)


def test_a_window_of_twenty_seconds_costs_about_ten_polls_at_one_second_resolution():
    """20 s +/- 20 %: about ten polls up to the window's end, none more than 1 s apart inside."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.0, high_s=24.0)
    times = schedule(estimate, until=24.0)
    assert len(times) <= 11
    inside = [t for t in times if 16.0 <= t <= 24.0]
    gaps = [b - a for a, b in itertools.pairwise(inside)]
    assert max(gaps) <= 1.0
    assert inside[0] <= 16.0 + 1.0  # the fastest task is seen within the goal too


def test_the_window_starts_from_the_shortest_recent_task_for_long_tasks():
    """Long tasks: the first poll is one spacing after the shortest seen, not after q05."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.4, high_s=23.6, shortest_s=16.0)
    assert schedule(estimate, until=17.0, start=15.0)[0] == pytest.approx(16.9)


def test_short_tasks_in_a_wide_window_are_first_polled_a_floor_after_its_start():
    """1.5 s +/- 20 %: a poll at 1.2 s would find almost nothing done; the first is at low+floor."""
    estimate = DurationEstimate(typical_s=1.5, low_s=1.23, high_s=1.77, shortest_s=1.2)
    times = schedule(estimate, until=1.8)
    assert times[0] == pytest.approx(1.23 + POLICY.floor_s)
    assert all(b - a == pytest.approx(POLICY.floor_s) for a, b in itertools.pairwise(times))


def test_identical_tasks_are_seen_on_the_first_poll():
    """When every task takes 1.5 s, the one poll lands on 1.5 s, not a floor step later."""
    estimator = DurationEstimator()
    for _ in range(6):
        estimator.record(done_elapsed_s=1.6, pending_elapsed_s=1.3, inference_s=1.5)
    times = schedule(estimator.estimate(), until=1.5)
    assert times == [pytest.approx(1.5)]


def test_overdue_tasks_hold_the_spacing_for_a_window_then_back_off_towards_the_cap():
    """Just past the window the estimate may be short (first finishers): the spacing holds."""
    estimate = DurationEstimate(typical_s=20.0, low_s=16.0, high_s=24.0)
    times = schedule(estimate, until=400.0, start=24.0)
    gaps = [b - a for a, b in itertools.pairwise([24.0, *times])]
    held = [g for t, g in zip(times, gaps, strict=True) if t <= 24.0 + 8.0]
    assert max(held) <= 1.0
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))
    assert max(gaps) == pytest.approx(POLICY.cap_s)


def test_a_wide_window_is_covered_in_a_bounded_number_of_polls():
    """A window from 10 s to 300 s still costs at most max_window_polls (plus cap polls)."""
    estimate = DurationEstimate(typical_s=100.0, low_s=10.0, high_s=300.0)
    times = schedule(estimate, until=300.0)
    inside = [t for t in times if 10.0 <= t <= 300.0]
    assert len(inside) <= 1 + 290 / POLICY.cap_s + 1


def test_a_seeded_estimate_is_checked_by_probes_from_half_its_start():
    """Earlier runs say 40 s; the probe grid still runs from 16 s in case tasks got faster."""
    seeded = DurationEstimate(typical_s=40.0, low_s=32.0, high_s=48.0, learned=False)
    learned = attrs.evolve(seeded, learned=True)
    assert [t for t in schedule(learned, until=33.0) if t < 32.0] == [15.0, 30.0]  # the cap
    probes = [t for t in schedule(seeded, until=33.0) if 16.0 <= t < 32.0]
    assert len(probes) >= 2
    assert probes[0] == pytest.approx(POLICY.seed_trust * 32.0)


@given(
    estimate=st.none() | estimates(),
    last=st.floats(min_value=0, max_value=100, allow_nan=False),
    slept=st.floats(min_value=0, max_value=100, allow_nan=False),
    phase=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_a_woken_task_is_polled_at_once_if_the_new_plan_passed_a_poll(estimate, last, slept, phase):
    """Woken by a new estimate: a poll the plan would have made since the last one is due now."""
    now = last + slept
    kw = {"submitted_at": 0.0, "estimate": estimate, "phase": phase, "probing": 50}
    woken = next_poll_delay(now=now, last_poll_at=last, **kw)
    if slept > 0 and last + next_poll_delay(now=last, **kw) <= now:
        assert woken == pytest.approx(max(0.0, POLICY.floor_s - slept), abs=1e-9)
    else:
        assert woken == next_poll_delay(now=now, **kw)


# ------------------------------------------------------------------ DurationEstimator


def test_nothing_known_means_no_estimate():
    assert DurationEstimator().estimate() is None


def test_a_prior_gives_a_window_around_it_not_yet_learned():
    estimate = DurationEstimator(prior_s=60.0).estimate()
    assert estimate == DurationEstimate(typical_s=60.0, low_s=48.0, high_s=72.0, learned=False)


def test_earlier_runs_seed_the_window_until_this_run_learns():
    estimator = DurationEstimator(seed_s=[float(s) for s in range(16, 25)])
    seeded = estimator.estimate()
    assert seeded is not None
    assert not seeded.learned
    assert (seeded.shortest_s, seeded.typical_s) == (16.0, 20.0)
    estimator.record(done_elapsed_s=9.0)
    learned = estimator.estimate()
    assert learned is not None
    assert learned.learned
    assert learned.typical_s == 9.0


def test_the_callers_prior_wins_over_earlier_runs():
    estimate = DurationEstimator(prior_s=60.0, seed_s=[20.0] * 10).estimate()
    assert estimate is not None
    assert estimate.typical_s == 60.0


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
    """shortest <= low <= typical <= high, and with enough samples all lie within what was seen."""
    estimator = DurationEstimator(keep=1000)
    for s in samples:
        estimator.record(done_elapsed_s=s)
    estimate = estimator.estimate()
    assert estimate is not None
    assert estimate.shortest_s <= estimate.low_s <= estimate.typical_s <= estimate.high_s
    if len(samples) >= 5:
        assert min(samples) == estimate.shortest_s
        assert estimate.high_s <= max(samples)


def test_only_recent_samples_are_kept():
    estimator = DurationEstimator(keep=3)
    for s in (100, 100, 100, 1, 1, 1):
        estimator.record(done_elapsed_s=s)
    assert estimator.sample_count == 3
    estimate = estimator.estimate()
    assert estimate is not None
    assert estimate.typical_s == 1


# ------------------------------------------------------- whole runs, in virtual time


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it.

    Timers, `asyncio.sleep` and the order of callbacks are asyncio's own; only waiting is
    skipped, so a run of minutes takes milliseconds and every figure is exact.
    """

    def __init__(self) -> None:
        self.virtual_s = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self.virtual_s


class _JumpingSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout=None):
        if timeout is None:
            raise AssertionError("every task waits for something that never comes")
        self._loop.virtual_s += max(0.0, timeout)
        return []


class FakeServer:
    """Tasks that complete at drawn times; answers like WaveSpeed's, `timings` included."""

    def __init__(self, loop: VirtualTimeLoop, durations: list[float]) -> None:
        self._loop = loop
        self._durations = iter(durations)
        self.done_at: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.gets: dict[str, int] = {}

    def submit(self) -> Prediction:
        task_id = f"t{len(self.done_at)}"
        self.took[task_id] = next(self._durations)
        self.done_at[task_id] = self._loop.time() + self.took[task_id]
        self.gets[task_id] = 0
        return self._answer(task_id)

    async def get_prediction(self, task_id: str) -> Prediction:
        self.gets[task_id] += 1
        return self._answer(task_id)

    def _answer(self, task_id: str) -> Prediction:
        done = self._loop.time() >= self.done_at[task_id]
        return Prediction(
            id=task_id,
            model="m",
            status="completed" if done else "processing",
            outputs=("https://out.example/v.mp4",) if done else (),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            inference_ms=round(self.took[task_id] * 1000) if done else None,
        )


@attrs.define
class Polls:
    polls: int = 0


@attrs.frozen
class Race:
    """What a run of tasks showed: noticing delays and GETs, against the SDK's on the same."""

    delays: list[float]
    gets_per_task: float
    sdk_gets_per_task: float

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.delays, n=100, method="inclusive")[94]


def sdk_gets(task_s: float) -> int:
    """WaveSpeed's SDK: a GET as the task is submitted, then one a second until it is done."""
    return 1 + math.ceil(task_s - 1e-9)


def race(durations: list[float], concurrency: int, *, seed_s=()) -> Race:
    """Render *durations* on *concurrency* slots with the real `TaskWatcher`, in virtual time.

    As the scheduler does: a slot submits its next task as soon as its last one is seen done
    (20 ms for the download), submits go one at a time (5 ms each), polls take 5 ms.
    """
    loop = VirtualTimeLoop()
    server = FakeServer(loop, durations)
    noticed: dict[str, float] = {}

    class Backend:
        async def get_prediction(self, task_id: str) -> Prediction:
            await asyncio.sleep(0.005)
            return await server.get_prediction(task_id)

    async def run() -> None:
        watcher = TaskWatcher(
            Backend(),
            timeout_s=3600.0,
            policy=POLICY,
            estimator=DurationEstimator(seed_s=seed_s),
            clock=loop.time,
            sleep=asyncio.sleep,
        )
        queue = iter(range(len(durations)))
        submitting = asyncio.Lock()

        async def slot() -> None:
            for _ in queue:
                async with submitting:
                    await asyncio.sleep(0.005)
                    prediction = server.submit()
                final = await watcher.until_final(prediction, Polls())
                noticed[final.id] = loop.time()
                await asyncio.sleep(0.02)

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(slot())

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return Race(
        delays=[noticed[t] - server.done_at[t] for t in server.done_at],
        gets_per_task=statistics.fmean(server.gets.values()),
        sdk_gets_per_task=statistics.fmean(sdk_gets(t) for t in server.took.values()),
    )


def drawn(task_s: float, count: int, seed: int) -> list[float]:
    """Task times as the benchmarks' mock draws them: uniform within +/- 20 %."""
    rng = random.Random(seed)
    return [task_s * rng.uniform(0.8, 1.2) for _ in range(count)]


def allowance(task_s: float) -> float:
    """The noticing goal: within 5 % of the task's time, or a second for short tasks."""
    return max(0.05 * task_s, 1.0)


TASK_TIMES = [1.0, 1.5, 5.0, 20.0, 60.0, 120.0]


@pytest.mark.parametrize("task_s", TASK_TIMES)
@pytest.mark.parametrize("seeded", [False, True], ids=["no seed", "seeded"])
def test_waves_are_noticed_within_the_goal_for_fewer_gets_than_the_sdk(task_s, seeded):
    """Four waves of 50 tasks: p95 noticing within max(5 %, 1 s), fewer GETs than the SDK.

    Without a seed the first wave probes; with one (an earlier run's times) it starts from a
    window. From 20 s on, kling-pipe needs at most half the SDK's GETs.
    """
    seed_s = drawn(task_s, 64, seed=99) if seeded else ()
    result = race(drawn(task_s, 200, seed=1), 50, seed_s=seed_s)
    assert result.p95 <= allowance(task_s)
    assert result.gets_per_task < result.sdk_gets_per_task
    if task_s >= 20.0:
        assert result.gets_per_task <= 0.5 * result.sdk_gets_per_task


@pytest.mark.parametrize("task_s", TASK_TIMES)
def test_a_task_alone_is_noticed_within_the_goal_for_no_more_gets_than_the_sdk(task_s):
    """Nobody to share the watch with: it polls as the SDK would, and sees its end as soon."""
    result = race([task_s], 1)
    assert max(result.delays) <= allowance(task_s) + 0.01  # one poll's round trip
    assert result.gets_per_task <= result.sdk_gets_per_task


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_a_wrong_seed_costs_the_first_wave_at_most(factor):
    """Earlier runs twice too slow (or fast): from the second wave on, the goal holds again."""
    seed_s = [factor * s for s in drawn(20.0, 64, seed=99)]
    result = race(drawn(20.0, 200, seed=1), 50, seed_s=seed_s)
    later = result.delays[50:]
    assert statistics.quantiles(later, n=100, method="inclusive")[94] <= allowance(20.0)
    # Trusted within a factor of two: even the first wave is seen well within the task's time.
    assert max(result.delays[:50]) <= 0.25 * 20.0


def test_the_first_completion_wakes_the_probing_wave():
    """Without the wake-up a wave sleeps through its own end: a 5 s gap at 16 s on the grid."""
    result = race([16.0 + 0.01 * i for i in range(50)], 50)
    assert max(result.delays) <= allowance(16.0)


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


# ------------------------------------------------------- earlier runs as the seed


def _recorded(store, seconds, *, state="downloaded", **where):
    """An attempt sent *seconds* ago whose completion is recorded now (*where*: its columns)."""
    columns = {"model": "m", "origin": "mock", "duration": 5, **where}
    attempt = store.record_intent(
        shot_id="s",
        fingerprint="f",
        inputs="{}",
        cost=Decimal("0.42"),
        sent_at=datetime.now(UTC) - timedelta(seconds=seconds),
        **columns,
    )
    store.record_task(attempt, f"task{attempt}")
    store.record_final(attempt, completed=state != "failed")
    if state == "downloaded":
        store.record_download(attempt, file="x.mp4", sha256="0" * 64, size=1)
    return attempt


def test_earlier_runs_seed_the_estimate_with_their_tasks_times():
    """Same model, origin and video durations only; failed tasks teach nothing; oldest first."""
    with Store.in_memory() as store:
        for seconds in (100.0, 20.0, 21.0):
            _recorded(store, seconds)
        _recorded(store, 22.0, state="completed")  # not downloaded (yet): still its time
        _recorded(store, 3.0, state="failed")
        _recorded(store, 50.0, model="other")
        _recorded(store, 60.0, origin="https://api.wavespeed.ai")
        _recorded(store, 70.0, duration=10)
        seconds = functools.partial(store.task_durations, "m", origin="mock")
        seed = seconds(durations={5})
        assert [round(s) for s in seed] == [100, 20, 21, 22]
        assert [round(s) for s in seconds(durations={5}, limit=2)] == [21, 22]
        assert [round(s) for s in seconds(durations={5, 10})][-1] == 70
        assert seconds(durations=()) == []
    estimate = DurationEstimator(seed_s=seed).estimate()
    assert estimate is not None
    assert not estimate.learned
    assert estimate.typical_s == pytest.approx(21.5, abs=0.1)  # the median of 20, 21, 22, 100


# The account's queue.


def test_the_tasks_ahead_of_a_queued_one_that_are_not_queued_are_the_accounts_limit():
    assert processing_ahead(["processing", "submitted", "created", "woken"]) == 3
    assert processing_ahead(["created", "created"]) == 0


def test_a_task_waits_in_the_queue_when_seen_created_behind_one_seen_rendering():
    assert waiting_in_queue(["processing", "created", "woken", "created"]) == 2
    assert waiting_in_queue(["woken", "created"]) == 1
    # Nothing ahead is known to render: it may be only starting, or behind other clients.
    assert waiting_in_queue(["created", "submitted", "created"]) == 0
    assert waiting_in_queue([]) == 0


statuses = st.lists(st.sampled_from(("submitted", "created", "processing", "woken")), max_size=12)


@given(seen=statuses)
def test_the_tasks_waiting_are_those_created_after_the_first_seen_rendering(seen):
    first = next((n for n, s in enumerate(seen) if s in {"processing", "woken"}), len(seen))
    assert waiting_in_queue(seen) == seen[first:].count("created")
    assert waiting_in_queue(seen) <= seen.count("created")


@given(
    queued_for=st.floats(0.0, 1e6),
    typical=st.floats(0.01, 1e5),
    limit=st.integers(1, 8),
    ahead=st.integers(0, 10),
)
def test_a_task_behind_the_runs_own_tasks_filling_the_account_waits_for_their_end(
    queued_for, typical, limit, ahead
):
    """Only one of their ends (which wakes it) can start it: polled at the cap meanwhile."""
    estimate = DurationEstimate(typical_s=typical, low_s=typical, high_s=typical)
    delay = queued_poll_delay(
        queued_for=queued_for, estimate=estimate, ahead_processing=ahead, limit=limit
    )
    unknown = queued_poll_delay(queued_for=queued_for, estimate=estimate, ahead_processing=ahead)
    assert unknown == min(POLICY.cap_s, max(POLICY.floor_s, typical))
    assert delay == (POLICY.cap_s if ahead >= limit else unknown)


@given(queued_for=st.floats(0.0, 1e6), typical=st.one_of(st.none(), st.floats(0.01, 1e5)))
def test_a_queued_task_is_polled_between_the_floor_and_the_cap(queued_for, typical):
    policy = PollPolicy()
    estimate = (
        None
        if typical is None
        else DurationEstimate(typical_s=typical, low_s=typical, high_s=typical)
    )
    delay = queued_poll_delay(queued_for=queued_for, estimate=estimate, policy=policy)
    assert policy.floor_s <= delay <= policy.cap_s


class QueueServer:
    """An account that processes *limit* tasks at once; later ones wait in ``created``."""

    def __init__(
        self, loop: VirtualTimeLoop, limit: int, task_s: float, durations: tuple[float, ...] = ()
    ) -> None:
        self._loop = loop
        self._free = [0.0] * limit
        self._task_s = task_s
        #: Each task's time in submission order, where given (else *task_s*).
        self._durations = durations
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.gets: dict[str, int] = {}
        #: Polls answered ``created``, by task.
        self.queued_gets: dict[str, int] = {}
        #: When a poll first answered a task completed.
        self.seen_done: dict[str, float] = {}

    def submit(self) -> Prediction:
        task_id = f"t{len(self.started)}"
        start = max(self._loop.time(), heapq.heappop(self._free))
        n = len(self.started)
        seconds = self._durations[n] if n < len(self._durations) else self._task_s
        self.started[task_id], self.ended[task_id] = start, start + seconds
        heapq.heappush(self._free, self.ended[task_id])
        self.gets[task_id] = self.queued_gets[task_id] = 0
        return attrs.evolve(self._answer(task_id), status="created")  # as WaveSpeed answers

    async def get_prediction(self, task_id: str) -> Prediction:
        await asyncio.sleep(0.005)
        self.gets[task_id] += 1
        answer = self._answer(task_id)
        self.queued_gets[task_id] += answer.status == "created"
        if answer.status == "completed":
            self.seen_done.setdefault(task_id, self._loop.time())
        return answer

    def _answer(self, task_id: str) -> Prediction:
        now = self._loop.time()
        status = (
            "created"
            if now < self.started[task_id]
            else "processing"
            if now < self.ended[task_id]
            else "completed"
        )
        return Prediction(
            id=task_id,
            model="m",
            status=status,
            outputs=("https://out.example/v.mp4",) if status == "completed" else (),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_tasks_queued_beyond_the_accounts_limit_are_neither_timed_out_nor_timed_with_the_queue():
    """Six 10 s tasks at once on an account of two: the last waits 20 s, the time-out is 15 s."""
    loop = VirtualTimeLoop()
    server = QueueServer(loop, limit=2, task_s=10.0)
    limits: list[int] = []
    rendered: dict[str, float | None] = {}

    async def run() -> None:
        watcher = TaskWatcher(
            server,
            timeout_s=15.0,
            policy=POLICY,
            estimator=DurationEstimator(),
            clock=loop.time,
            sleep=asyncio.sleep,
            on_limit=limits.append,
        )

        async def one() -> None:
            final = await watcher.until_final(server.submit(), Polls())
            assert final.status == "completed"
            rendered[final.id] = watcher.rendered_s(final.id)

        async with asyncio.TaskGroup() as group:
            for _ in range(6):
                group.create_task(one())

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert limits
    assert limits[-1] == 2
    # What each task took to render, its queue time left out (polls bracket the start).
    for task_id, seconds in rendered.items():
        assert seconds is not None
        assert 10.0 - 2.0 <= seconds <= 10.0 + 2.0, (task_id, seconds)
    # A queued task is polled rarely through its wait (20 s: the SDK's poll a second would
    # ask 20 times), and at once when a task ends.
    assert server.queued_gets["t5"] <= 10
    assert server.gets["t5"] - server.queued_gets["t5"] <= server.gets["t0"] + 2


def test_a_task_sent_into_an_account_its_run_fills_waits_unpolled_for_their_end():
    """Known limit 2, two of the run's tasks rendering: the next one sent waits in the queue.

    It is not polled while they render (only one of their ends can start it), nor polled to
    be told it started when one does: it is watched as rendering from that end on.
    """
    loop = VirtualTimeLoop()
    server = QueueServer(loop, limit=2, task_s=10.0)
    waiting: list[int] = []

    async def run() -> None:
        watcher = TaskWatcher(
            server,
            timeout_s=60.0,
            policy=POLICY,
            estimator=DurationEstimator(),
            clock=loop.time,
            sleep=asyncio.sleep,
            on_queue=waiting.append,
        )
        async with asyncio.TaskGroup() as group:
            for _ in range(4):  # t2 and t3 wait 10 s: the limit is learned from them
                group.create_task(watcher.until_final(server.submit(), Polls()))
            await asyncio.sleep(12.0)
            assert watcher.account_limit == 2
            late = group.create_task(watcher.until_final(server.submit(), Polls()))
        assert late.result().status == "completed"

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert server.started["t4"] == server.ended["t2"]  # it waited for t2's end
    assert server.queued_gets["t4"] == 0
    assert server.gets["t4"] <= server.gets["t2"]
    assert waiting[-1] == 0


def _answer(status: str) -> Prediction:
    return Prediction(id="t", model="m", status=status, created_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_a_task_sent_into_a_full_account_leaves_the_queue_when_a_poll_sees_it_render():
    """Queued from its submit, no poll saw it created: the first that sees it rendering ends
    the wait, and it renders from half-way between the submit and that poll."""
    clocks = _Clocks.at(10.0, queued=True)
    clocks.answer(_answer("processing"), 20.0, freed_at=None, evidence_s=1.0)
    assert clocks.queued_at is None
    assert clocks.started == 15.0
    assert clocks.since == 20.0  # the time-out counts from the poll that saw it processing


def test_a_task_seen_created_however_young_renders_from_after_that_poll():
    clocks = _Clocks.at(0.0, queued=False)
    clocks.answer(_answer("created"), 0.8, freed_at=None, evidence_s=1.0)
    assert clocks.queued_at is None  # too young to tell it waits in a queue
    clocks.answer(_answer("processing"), 1.2, freed_at=None, evidence_s=1.0)
    assert clocks.started == pytest.approx(1.0)
    assert clocks.last_pending == pytest.approx(0.2)


def test_a_woken_task_renders_from_its_wake_until_a_poll_finds_it_still_queued():
    clocks = _Clocks.at(0.0, queued=True)
    clocks.answer(_answer("created"), 5.0, freed_at=None, evidence_s=1.0)
    clocks.woken(30.0)
    assert (clocks.queued_at, clocks.started, clocks.since) == (None, 30.0, 30.0)
    clocks.answer(_answer("created"), 40.0, freed_at=None, evidence_s=1.0)
    assert clocks.queued_at == 40.0  # another client's task took the place: queued again
    clocks.answer(_answer("processing"), 50.0, freed_at=None, evidence_s=1.0)
    assert (clocks.queued_at, clocks.started, clocks.since) == (None, 45.0, 50.0)


def _queue_run(seed: int) -> tuple[QueueServer, int, list[int], list[int]]:
    """A wave sent at once to an account of 1 to 3, tasks of 5 to 15 s, and a few sent later
    (the limit known by then, some into an account the run fills); what the watch did.
    """
    rng = random.Random(seed)
    limit = rng.randint(1, 3)
    wave = rng.randint(limit + 1, 8)
    later = sorted(rng.uniform(5.0, 40.0) for _ in range(rng.randint(0, 4)))
    durations = tuple(rng.uniform(5.0, 15.0) for _ in range(wave + len(later)))
    loop = VirtualTimeLoop()
    server = QueueServer(loop, limit=limit, task_s=10.0, durations=durations)
    limits: list[int] = []
    waiting: list[int] = []

    async def run() -> None:
        watcher = TaskWatcher(
            server,
            timeout_s=20.0,  # shorter than the queue's longest wait: it must not count
            policy=POLICY,
            estimator=DurationEstimator(),
            clock=loop.time,
            sleep=asyncio.sleep,
            on_limit=limits.append,
            on_queue=waiting.append,
        )
        async with asyncio.TaskGroup() as group:
            for _ in range(wave):
                group.create_task(watcher.until_final(server.submit(), Polls()))
            for at in later:
                await asyncio.sleep(at - loop.time())
                group.create_task(watcher.until_final(server.submit(), Polls()))

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return server, limit, limits, waiting


@pytest.mark.parametrize("seed", range(40))
def test_a_wave_beyond_the_accounts_limit_never_learns_it_too_low_nor_polls_its_queue_often(
    seed: int,
):
    """The wake goes to the oldest task sent, and only while fewer than the limit are started.

    A limit learned too low would leave the account's places idle; a wake given to the wrong
    task taught one (an end whose place a task had already taken woke another). A task
    waiting behind the run's own tasks is polled twice to learn it waits (once too young to
    tell), then at the cap until an end of theirs wakes it, and not at all once woken.
    """
    server, limit, limits, waiting = _queue_run(seed)
    for task_id, ended in server.ended.items():
        # Seen ended within the cap: no task is left to the queue's rare poll.
        assert server.seen_done[task_id] - ended < POLICY.cap_s, task_id
    assert all(learned >= limit for learned in limits)
    assert limits
    assert waiting
    assert waiting[-1] == 0  # the queue is told empty once the tasks are gone
    for task_id, started in server.started.items():
        assert server.queued_gets[task_id] <= 2 + math.ceil(started / POLICY.cap_s), task_id


def test_a_poll_that_gets_no_answer_is_no_news_of_the_accounts_queue():
    """The submit's answer says ``created``; polls that fail say nothing: no limit is learned.

    Four tasks are seen processing while the polls of four more fail: those four are not
    queued behind the first four (an account of ten runs them all).
    """
    loop = VirtualTimeLoop()
    server = QueueServer(loop, limit=10, task_s=5.0)
    limits: list[int] = []

    class Flaky:
        async def get_prediction(self, task_id: str) -> Prediction:
            if loop.time() < 4.0 and int(task_id[1:]) >= 4:
                await asyncio.sleep(0.005)
                raise BackendError("the server did not answer")
            return await server.get_prediction(task_id)

    async def run() -> None:
        watcher = TaskWatcher(
            Flaky(),
            timeout_s=60.0,
            policy=POLICY,
            estimator=DurationEstimator(),
            clock=loop.time,
            sleep=asyncio.sleep,
            on_limit=limits.append,
        )
        async with asyncio.TaskGroup() as group:
            for _ in range(8):
                group.create_task(watcher.until_final(server.submit(), Polls()))

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert limits == []


# ------------------------------------------------------------------ a task shots wait for


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    phase=st.floats(min_value=0, max_value=1, exclude_max=True),
    probing=st.integers(min_value=1, max_value=500),
)
def test_an_awaited_task_polls_within_its_own_floor_and_the_cap(estimate, elapsed, phase, probing):
    """Denser, never unbounded: a chain's source is polled no sooner than half the floor."""
    delay = next_poll_delay(
        now=elapsed,
        submitted_at=0.0,
        estimate=estimate,
        phase=phase,
        probing=probing,
        awaited=True,
    )
    assert POLICY.floor_s * POLICY.awaited_share <= delay <= POLICY.cap_s


@given(
    estimate=st.none() | estimates(),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    phase=st.floats(min_value=0, max_value=1, exclude_max=True),
    probing=st.integers(min_value=1, max_value=500),
    since=st.none() | st.floats(min_value=0, max_value=30, allow_nan=False),
    retry_after=st.none() | st.floats(min_value=0, max_value=600, allow_nan=False),
)
def test_an_awaited_task_never_waits_longer_than_a_plain_one_from_the_same_moment(  # noqa: PLR0913, PLR0917 - every input of the policy
    estimate, elapsed, phase, probing, since, retry_after
):
    """From any moment, a chain's source is polled no later than the plain plan would poll.

    (Not "at every point of the plain plan": the floor and an overdue task's growing delay
    count from the last poll, and the denser plan polls in between. hypothesis found a
    completion at the window's end seen 0.03 s later that way.)
    """
    common = {
        "now": elapsed,
        "submitted_at": 0.0,
        "estimate": estimate,
        "phase": phase,
        "probing": probing,
        "retry_after_s": retry_after,
        "last_poll_at": None if since is None else max(0.0, elapsed - since),
    }
    assert next_poll_delay(**common, awaited=True) <= next_poll_delay(**common)


def test_an_awaited_short_task_is_polled_twice_as_often_in_its_window():
    """At a hundredth of a Kling task's time the floor decides: half of it for a chain's source."""
    estimate = DurationEstimate(typical_s=1.2, low_s=0.7, high_s=1.8)
    plain = schedule(estimate, until=1.8)
    dense = schedule(estimate, until=1.8, awaited=True)
    assert len(dense) >= 2 * len(plain) - 1
    spacing = [b - a for a, b in itertools.pairwise(dense)]
    assert min(spacing) == pytest.approx(POLICY.floor_s * POLICY.awaited_share)


def _watch_one(task_s: float, *, awaited: bool) -> tuple[int, float]:
    """Watch one task of *task_s* on a run that knows such tasks; return (GETs, late by)."""
    loop = VirtualTimeLoop()
    server = QueueServer(loop, limit=1, task_s=task_s)
    noticed: list[float] = []

    async def run() -> None:
        watcher = TaskWatcher(
            server,
            timeout_s=3600.0,
            policy=POLICY,
            estimator=DurationEstimator(seed_s=[task_s * 0.8, task_s, task_s * 1.3] * 3),
            clock=loop.time,
            sleep=asyncio.sleep,
        )
        await watcher.until_final(server.submit(), Polls(), awaited=lambda: awaited)
        noticed.append(loop.time())

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return server.gets["t0"], noticed[0] - server.ended["t0"]


@pytest.mark.parametrize("task_s", [1.1, 13.0, 140.0])
def test_the_watch_polls_a_task_shots_wait_for_more_densely(task_s: float) -> None:
    """The walk passes `awaited` for a chain's source: more GETs, and seen no later.

    No later to within one GET's answer (5 ms here): each delay is planned from when the last
    answer came, and the two plans' polls are answered at different moments.
    """
    plain_gets, plain_late = _watch_one(task_s, awaited=False)
    dense_gets, dense_late = _watch_one(task_s, awaited=True)
    assert dense_gets > plain_gets
    assert dense_late <= plain_late + 0.005 + 1e-6
