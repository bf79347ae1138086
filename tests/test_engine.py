"""The scheduler's decisions, driven with plain events: no event loop, no server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.engine import (
    Admission,
    CancelRunning,
    RunFinished,
    RunStarted,
    ShotEnded,
    SkipShot,
    StartShot,
    StopRequested,
    decide,
)
from kling_pipe._decisions.plan import plan
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage


def shot(sid: str, source: str | None = None, duration: int = 5) -> Shot:
    image = (
        UrlImage(url="https://x/y.png") if source is None else ChainImage(shot=source, frame="last")
    )
    return Shot(id=sid, prompt="p", image=image, duration=duration)


def admission(*shots: Shot, cached: tuple[str, ...] = (), **kwargs: object) -> Admission:
    shotlist = ShotList(storyboard=Storyboard(name="b"), shots=shots)
    return Admission(plan=plan(shotlist, cached), **kwargs)  # type: ignore[arg-type]


def done(sid: str) -> ShotEnded:
    return ShotEnded(shot_id=sid, outcome="done", charged=True)


def test_starts_no_more_than_the_concurrency_limit_in_plan_order():
    state = admission(shot("a"), shot("b"), shot("c"), concurrency=2)
    assert decide(state, RunStarted()) == [StartShot("a", 1), StartShot("b", 1)]


def test_a_finished_shot_frees_its_slot_for_the_next():
    state = admission(shot("a"), shot("b"), shot("c"), concurrency=2)
    decide(state, RunStarted())
    assert decide(state, done("b")) == [StartShot("c", 1)]


def test_a_chained_shot_waits_for_its_source_but_others_do_not():
    state = admission(shot("a"), shot("b", source="a"), shot("c"), concurrency=4)
    assert decide(state, RunStarted()) == [StartShot("a", 1), StartShot("c", 1)]
    assert decide(state, done("a")) == [StartShot("b", 1)]


def test_shots_chained_from_a_failed_shot_are_skipped_transitively():
    state = admission(shot("a"), shot("b", source="a"), shot("c", source="b"), concurrency=4)
    decide(state, RunStarted())
    actions = decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False))
    assert actions == [
        SkipShot("b", "chained from 'a', which has no video"),
        SkipShot("c", "chained from 'b', which has no video"),
        RunFinished(),
    ]


def test_cached_shots_are_not_started_and_their_dependants_are():
    state = admission(shot("a"), shot("b", source="a"), cached=("a",), concurrency=1)
    assert decide(state, RunStarted()) == [StartShot("b", 1)]


def test_the_run_finishes_when_every_shot_is_final():
    state = admission(shot("a"), concurrency=1)
    decide(state, RunStarted())
    assert decide(state, done("a")) == [RunFinished()]


def test_a_shot_that_does_not_fit_the_budget_waits_for_a_refund():
    state = admission(shot("a"), shot("b"), concurrency=2, max_cost=Decimal("0.50"))
    assert decide(state, RunStarted()) == [StartShot("a", 1)]
    # "a" failed and was refunded: its reservation is released, so "b" fits.
    assert decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False)) == [
        StartShot("b", 1)
    ]


def test_shots_that_can_never_fit_the_budget_are_skipped_once_nothing_runs():
    state = admission(shot("a"), shot("b"), concurrency=2, max_cost=Decimal("0.50"))
    decide(state, RunStarted())
    actions = decide(state, done("a"))
    assert actions == [
        SkipShot(
            "b",
            "not started: 0.420 USD is committed and this shot's 0.420 would pass max_cost 0.50",
        ),
        RunFinished(),
    ]


def test_an_uncertain_submit_keeps_its_reservation():
    state = admission(shot("a"), shot("b"), concurrency=1, max_cost=Decimal("0.84"))
    decide(state, RunStarted())
    decide(state, ShotEnded(shot_id="a", outcome="uncertain", charged=True))
    assert state.committed == Decimal("0.840")


def test_a_failed_task_is_resubmitted_only_as_often_as_allowed():
    state = admission(shot("a"), concurrency=1, retry_failed=1)
    decide(state, RunStarted())
    failed = ShotEnded(shot_id="a", outcome="failed", charged=False, retryable=True)
    assert decide(state, failed) == [StartShot("a", 2)]
    assert decide(state, failed) == [RunFinished()]
    assert state.phase["a"] == "failed"


def test_a_failure_that_is_not_retryable_is_not_resubmitted():
    state = admission(shot("a"), concurrency=1, retry_failed=3)
    decide(state, RunStarted())
    assert decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False)) == [RunFinished()]


def test_fail_fast_starts_nothing_after_the_first_failure():
    state = admission(shot("a"), shot("b"), shot("c"), concurrency=2, fail_fast=True)
    decide(state, RunStarted())
    actions = decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False))
    assert actions == [SkipShot("c", "not started: the run was stopped")]
    assert decide(state, done("b")) == [RunFinished()]


def test_a_fatal_error_stops_the_run_like_fail_fast():
    state = admission(shot("a"), shot("b"), concurrency=1)
    decide(state, RunStarted())
    actions = decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False, fatal=True))
    assert actions == [SkipShot("b", "not started: the run was stopped"), RunFinished()]


def test_stop_cancels_what_runs_and_skips_the_rest():
    state = admission(shot("a"), shot("b"), concurrency=1)
    decide(state, RunStarted())
    assert decide(state, StopRequested()) == [
        CancelRunning(),
        SkipShot("b", "not started: the run was stopped"),
    ]
    assert decide(state, ShotEnded(shot_id="a", outcome="cancelled", charged=True)) == [
        RunFinished()
    ]


def test_an_end_for_a_shot_that_is_not_running_is_a_bug():
    state = admission(shot("a"), concurrency=1)
    with pytest.raises(ValueError, match="was not running"):
        decide(state, done("a"))


@given(
    durations=st.lists(st.sampled_from([5, 10]), min_size=1, max_size=12),
    concurrency=st.integers(min_value=1, max_value=5),
    cap=st.decimals(min_value=0, max_value=6, places=2),
    outcomes=st.lists(st.sampled_from(["done", "failed", "refunded", "uncertain"]), max_size=40),
)
def test_the_committed_spend_never_passes_the_budget_whatever_happens(
    durations, concurrency, cap, outcomes
):
    shots = [shot(f"s{i}", duration=d) for i, d in enumerate(durations)]
    state = admission(*shots, concurrency=concurrency, max_cost=cap, retry_failed=2)
    decide(state, RunStarted())
    for outcome in outcomes:
        if not state.running:
            break
        sid = state.running[0]
        event = ShotEnded(
            shot_id=sid,
            outcome="failed" if outcome == "refunded" else outcome,  # type: ignore[arg-type]
            charged=outcome != "refunded",
            retryable=outcome == "refunded",
        )
        decide(state, event)
        assert state.committed <= cap
        assert len(state.running) <= concurrency
    assert state.committed <= cap
