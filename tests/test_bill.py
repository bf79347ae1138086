"""The bill: what the records say was spent against WaveSpeed's items, or its balance."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.attempts import CHARGED_STATES, Attempt, AttemptState
from kling_pipe._decisions.bill import (
    BLUR_WARNING,
    Billed,
    reconcile_balance,
    reconcile_itemised,
)
from tests.strategies import money

SENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
STATES: tuple[AttemptState, ...] = (
    "intent",
    "submitted",
    "completed",
    "failed",
    "downloaded",
    "refused",
    "uncertain",
    "rejected",
    "expired",
)


def attempt(
    shot: str, task: str | None, cost: str = "0.420", state: AttemptState = "downloaded"
) -> Attempt:
    return Attempt(
        id=1,
        shot_id=shot,
        fingerprint="f",
        inputs="{}",
        model=MODEL,
        duration=5,
        cost=Decimal(cost),
        state=state,
        task_id=task,
        sent_at=SENT,
        completed_at=None,
        error="",
        code=None,
        file=None,
        sha256=None,
        bytes=None,
        polls=0,
    )


A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_itemised_charges_matching_the_records_reconcile_to_the_cent() -> None:
    bill = reconcile_itemised(
        [attempt("one", A), attempt("two", B, "0.840"), attempt("bad", C, state="failed")],
        {
            A: Billed(charged=Decimal("0.42")),
            B: Billed(charged=Decimal("0.84")),
            C: Billed(charged=Decimal("0.42"), refunded=Decimal("0.42")),
            "f" * 32: Billed(charged=Decimal(9)),  # another client's task: not ours
        },
    )
    assert bill.reconciles
    assert (bill.recorded, bill.charged, bill.difference) == (
        Decimal("1.260"),
        Decimal("1.26"),
        0,
    )
    assert bill.summary() == (
        "bill: recorded 1.260 USD, WaveSpeed charged 1.260 USD per task: reconciles"
    )


def test_every_difference_is_named_with_its_shot_and_task() -> None:
    bill = reconcile_itemised(
        [attempt("one", A), attempt("two", B), attempt("bad", C, state="failed")],
        {A: Billed(charged=Decimal("0.63")), C: Billed(charged=Decimal("0.42"))},
    )
    assert not bill.reconciles
    assert [line.shot_id for line in bill.differences] == ["one", "two", "bad"]
    described = [line.describe() for line in bill.differences]
    assert "WaveSpeed took 0.630 USD net, the records say 0.420 USD" in described[0]
    assert "WaveSpeed has no charge for it" in described[1]
    assert "the records say it cost nothing" in described[2]
    assert bill.difference == Decimal("0.630") - Decimal("0.420") * 2 + Decimal("0.42")


def test_a_task_recorded_twice_counts_once_at_its_highest_cost() -> None:
    bill = reconcile_itemised(
        [attempt("one", A), attempt("copy", A, "0")], {A: Billed(charged=Decimal("0.42"))}
    )
    assert [(line.shot_id, line.recorded) for line in bill.lines] == [("one", Decimal("0.420"))]
    assert bill.reconciles


def test_a_submit_that_names_no_task_keeps_the_bill_from_reconciling() -> None:
    bill = reconcile_itemised([attempt("lost", None, state="intent")], {})
    assert not bill.reconciles
    assert bill.untasked == Decimal("0.420")
    assert "name no task" in bill.warnings()[0]


def test_the_balance_checks_the_run_as_one_number_with_the_warning() -> None:
    bill = reconcile_balance(
        [attempt("one", A), attempt("two", B, "0.840")], Decimal(10), Decimal("8.74")
    )
    assert bill.mode == "balance"
    assert bill.reconciles
    assert bill.warnings() == [BLUR_WARNING]
    assert "by the balance" in bill.summary()
    other_client = reconcile_balance([attempt("one", A)], Decimal(10), Decimal(9))
    assert not other_client.reconciles
    assert other_client.difference == Decimal("0.580")


@given(
    st.lists(
        st.tuples(st.sampled_from(STATES), money, st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_itemised_bill_reconciles_exactly_when_each_task_is_charged_its_recorded_cost(
    rows: list[tuple[AttemptState, Decimal, bool]],
) -> None:
    """WaveSpeed charging every charged task its cost (and refunding the failed) reconciles;
    any task charged otherwise is named."""
    attempts = [
        attempt(f"s{i}", f"{i:032x}", str(cost), state) for i, (state, cost, _) in enumerate(rows)
    ]
    billed = {}
    for i, (state, cost, honest) in enumerate(rows):
        charge = cost if state in CHARGED_STATES else Decimal(0)
        billed[f"{i:032x}"] = Billed(charged=charge if honest else charge + Decimal("0.01"))
    bill = reconcile_itemised(attempts, billed)
    dishonest = {f"s{i}" for i, (_, _, honest) in enumerate(rows) if not honest}
    assert {line.shot_id for line in bill.differences} == dishonest
    assert bill.reconciles == (not dishonest)
