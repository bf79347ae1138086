"""The scheduler's decisions, driven with plain events: no event loop, no server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.attempts import CHARGED_STATES
from kling_pipe._decisions.engine import (
    Admission,
    CancelRunning,
    Compare,
    Ending,
    RunFinished,
    RunStarted,
    ShotEnded,
    SkipShot,
    StartShot,
    StopRequested,
    SubmitAsked,
    SubmitGo,
    SubmitSettled,
    attempt_ended,
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


@given(
    durations=st.lists(st.sampled_from([5, 10]), min_size=1, max_size=12),
    concurrency=st.integers(min_value=1, max_value=5),
    cap=st.none() | st.decimals(min_value=0, max_value=6, places=2),
    left=st.decimals(min_value=0, max_value=6, places=2),
    outcomes=st.lists(st.sampled_from(["done", "failed", "refunded", "uncertain"]), max_size=40),
)
def test_the_committed_spend_never_passes_what_the_film_budget_leaves_whatever_happens(
    durations, concurrency, cap, left, outcomes
):
    """The storyboard's budget is one more cap on the same reservations, retries included."""
    shots = [shot(f"s{i}", duration=d) for i, d in enumerate(durations)]
    state = admission(
        *shots, concurrency=concurrency, max_cost=cap, budget_left=left, retry_failed=2
    )
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
        assert state.committed <= left
        assert cap is None or state.committed <= cap
    assert state.committed <= left
    assert state.finished or state.running


def test_a_shot_that_would_pass_the_film_budget_is_skipped_saying_so():
    state = admission(shot("a"), shot("b"), concurrency=2, budget_left=Decimal("0.50"))
    assert decide(state, RunStarted()) == [StartShot("a", 1)]
    assert decide(state, done("a")) == [
        SkipShot(
            "b",
            "not started: 0.420 USD is committed and this shot's 0.420 would pass what the "
            "storyboard's budget still allows (0.50)",
        ),
        RunFinished(),
    ]


# --only: units left out are final from the start and never started.


def test_units_not_in_only_are_never_started_and_the_run_still_finishes():
    shots = (shot("a"), shot("b", "a"), shot("c"))
    shotlist = ShotList(storyboard=Storyboard(name="b"), shots=shots)
    state = Admission(plan=plan(shotlist, only=["c"]), concurrency=4)
    assert decide(state, RunStarted()) == [StartShot("c", 1)]
    assert state.phase == {"a": "excluded", "b": "excluded", "c": "running"}
    assert decide(state, done("c")) == [RunFinished()]


@given(
    chains=st.lists(st.integers(min_value=-1, max_value=8), min_size=1, max_size=8),
    data=st.data(),
)
def test_a_subset_run_starts_nothing_left_out_and_always_finishes(chains, data):
    shots = [
        shot(f"s{i}", source=f"s{src}" if 0 <= src < i else None) for i, src in enumerate(chains)
    ]
    shotlist = ShotList(storyboard=Storyboard(name="b"), shots=tuple(shots))
    named = data.draw(st.lists(st.sampled_from([x.id for x in shots]), min_size=1))
    p = plan(shotlist, only=named)
    state = Admission(plan=p, concurrency=2)
    started: list[str] = []
    actions = decide(state, RunStarted())
    for _ in range(4 * len(shots) + 2):
        started += [a.shot_id for a in actions if isinstance(a, StartShot)]
        if state.finished:
            break
        actions = decide(state, done(state.running[0]))
    assert state.finished
    left_out = {u.id for u in p.excluded}
    assert left_out.isdisjoint(started)
    assert set(started) == {u.id for u in p.units} - left_out


# How an attempt ended: charged or not comes from the recorded state alone.

ATTEMPT_STATES = [
    None,
    "intent",
    "submitted",
    "completed",
    "failed",
    "downloaded",
    "refused",
    "uncertain",
    "rejected",
]


@given(
    recorded=st.sampled_from(ATTEMPT_STATES),
    outcome=st.sampled_from(["failed", "uncertain", "cancelled"]),
    retryable=st.booleans(),
    fatal=st.booleans(),
)
def test_an_attempt_is_charged_exactly_when_its_recorded_state_may_have_cost(
    recorded, outcome, retryable, fatal
):
    event = attempt_ended("a", Ending(outcome=outcome, retryable=retryable, fatal=fatal), recorded)
    assert event.charged == (recorded in CHARGED_STATES)
    assert event.fatal == fatal
    # A retry pays for a new task: only an attempt that cost nothing may have one.
    assert not (event.retryable and event.charged)
    assert event.retryable <= (outcome == "failed")


def test_a_done_attempt_must_be_recorded_downloaded():
    assert attempt_ended("a", Ending(outcome="done"), "downloaded").charged
    with pytest.raises(ValueError, match="done"):
        attempt_ended("a", Ending(outcome="done"), "submitted")


# The ledger: one count of the run's spend.


@given(
    durations=st.lists(st.sampled_from([5, 10]), min_size=1, max_size=6),
    concurrency=st.integers(1, 4),
    ends=st.lists(st.sampled_from([*ATTEMPT_STATES[1:], None]), max_size=30),
)
def test_the_ledger_is_the_reservations_of_running_units_plus_what_was_spent(
    durations, concurrency, ends
):
    shots = [shot(f"s{i}", duration=d) for i, d in enumerate(durations)]
    state = admission(*shots, concurrency=concurrency, retry_failed=1)
    decide(state, RunStarted())
    for recorded in ends:
        if not state.running:
            break
        sid = state.running[0]
        outcome = "done" if recorded == "downloaded" else "failed"
        decide(state, attempt_ended(sid, Ending(outcome=outcome, retryable=True), recorded))
        running = sum((state.reserved[s] for s in state.running), Decimal(0))
        assert state.committed == sum(state.spent.values(), Decimal(0)) + running
    assert all(v >= 0 for v in state.spent.values())


# The submit turn.


def turn_state(*names: str, concurrency: int = 8, **kwargs) -> Admission:
    state = admission(*(shot(n) for n in names), concurrency=concurrency, **kwargs)
    decide(state, RunStarted())
    return state


def test_a_submit_alike_to_none_goes_at_once():
    state = turn_state("a", "b")
    assert decide(state, SubmitAsked(subject="a")) == [SubmitGo("a", 0.0)]
    assert decide(state, SubmitAsked(subject="b", compared=frozenset({"a"}))) == [
        SubmitGo("b", 0.0)
    ]


def test_a_submit_is_compared_with_every_holder_before_it_may_go():
    state = turn_state("a", "b")
    decide(state, SubmitAsked(subject="a"))
    assert decide(state, SubmitAsked(subject="b")) == [Compare("b", frozenset({"a"}))]
    # Alike: it waits until a's fate is known.
    assert (
        decide(state, SubmitAsked(subject="b", compared=frozenset({"a"}), alike=frozenset({"a"})))
        == []
    )
    assert decide(state, SubmitSettled("a")) == [SubmitGo("b", 0.0)]


def test_nothing_is_granted_while_a_comparison_is_under_way():
    """A holder leaving while b compares does not hand b a turn it has not answered for."""
    state = turn_state("a", "b")
    decide(state, SubmitAsked(subject="a"))
    decide(state, SubmitAsked(subject="b"))  # -> Compare(b, {a})
    assert decide(state, SubmitSettled("a")) == []
    assert decide(state, SubmitAsked(subject="b", compared=frozenset({"a"}))) == [
        SubmitGo("b", 0.0)
    ]


def test_an_earlier_runs_intent_holds_its_turn_from_the_start():
    state = admission(shot("a"), concurrency=2)
    decide(state, RunStarted(holding=("intent:7",)))
    assert decide(state, SubmitAsked(subject="a")) == [Compare("a", frozenset({"intent:7"}))]
    decide(
        state,
        SubmitAsked(subject="a", compared=frozenset({"intent:7"}), alike=frozenset({"intent:7"})),
    )
    assert decide(state, SubmitSettled("intent:7")) == [SubmitGo("a", 0.0)]


def test_a_unit_that_ends_gives_its_turn_up():
    state = turn_state("a", "b")
    decide(state, SubmitAsked(subject="a"))
    decide(state, SubmitAsked(subject="b", compared=frozenset({"a"}), alike=frozenset({"a"})))
    actions = decide(state, ShotEnded(shot_id="a", outcome="failed", charged=False))
    assert SubmitGo("b", 0.0) in actions


def test_the_rate_limit_is_booked_when_the_turn_is_granted():
    state = turn_state("a", "b", "c", rate_per_min=2)
    assert decide(state, SubmitAsked(subject="a"), now=0.0) == [SubmitGo("a", 0.0)]
    decide(state, SubmitSettled("a"), now=1.0)
    assert decide(state, SubmitAsked(subject="b", compared=frozenset()), now=1.0) == [
        SubmitGo("b", 0.0)
    ]
    decide(state, SubmitSettled("b"), now=2.0)
    [go] = decide(state, SubmitAsked(subject="c"), now=2.0)
    assert go == SubmitGo("c", 58.0)


def assert_no_alike_holders(holders, alike, held):
    for i, a in enumerate(holders):
        for b in holders[i + 1 :]:
            if a in held and b in held:
                continue  # earlier runs' intents: already on the wire, nothing to keep apart
            assert frozenset((a, b)) not in alike, f"{a} and {b} are alike and both hold"


@given(
    data=st.data(),
    names=st.integers(2, 6),
    intents=st.integers(0, 2),
)
def test_model_two_alike_submits_are_never_unsettled_together(data, names, intents):
    """Whatever the order of asks, comparisons, settlements and ends, and the likeness."""
    units = [f"u{i}" for i in range(names)]
    held = tuple(f"intent:{i}" for i in range(intents))
    everyone = units + list(held)
    # A random likeness relation, symmetric, as the prover would answer it.
    pairs = data.draw(
        st.sets(st.tuples(st.sampled_from(everyone), st.sampled_from(everyone)), max_size=12)
    )
    alike = {frozenset(p) for p in pairs if p[0] != p[1]}
    state = admission(*(shot(n) for n in units), concurrency=names)
    pending_compare: dict[str, frozenset[str]] = {}
    compared: dict[str, frozenset[str]] = {}
    actions = decide(state, RunStarted(holding=held))
    asked: set[str] = set()
    for _ in range(60):
        for action in actions:
            if isinstance(action, Compare):
                pending_compare[action.subject] = action.against
        holders = state.holders
        assert_no_alike_holders(holders, alike, held)
        choices = []
        choices += [("ask", u) for u in units if state.phase[u] == "running" and u not in asked]
        choices += [("answer", u) for u in pending_compare]
        choices += [("settle", h) for h in holders]
        choices += [("end", u) for u in units if state.phase[u] == "running"]
        if not choices:
            break
        kind, who = data.draw(st.sampled_from(choices))
        if kind == "ask":
            asked.add(who)
            actions = decide(state, SubmitAsked(subject=who))
        elif kind == "answer":
            against = pending_compare.pop(who)
            compared[who] = compared.get(who, frozenset()) | against
            likes = frozenset(o for o in against if frozenset((who, o)) in alike)
            actions = decide(state, SubmitAsked(subject=who, compared=compared[who], alike=likes))
        elif kind == "settle":
            actions = decide(state, SubmitSettled(who))
        else:
            pending_compare.pop(who, None)
            asked.discard(who)
            actions = decide(state, ShotEnded(shot_id=who, outcome="failed", charged=False))
