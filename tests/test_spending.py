"""What a storyboard spent across runs, for its budget: read from the records, once per task."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from kling_pipe._records.spending import spent_on_storyboard
from kling_pipe._records.store import Store

WAVESPEED = "https://api.wavespeed.ai"
LOCAL = "http://127.0.0.1:8089"


def attempt(store: Store, *, origin: str, task: str | None, state: str, cost: str = "0.420") -> int:
    attempt_id = store.record_intent(
        shot_id="a",
        fingerprint="f",
        inputs="{}",
        model="m",
        duration=5,
        cost=Decimal(cost),
        sent_at=datetime.now(UTC),
        origin=origin,
    )
    if task is not None:
        store.record_task(attempt_id, task)
    if state == "failed":
        store.record_final(attempt_id, completed=False, error="refunded")
    elif state == "refused":
        store.record_refused(attempt_id, "no task")
    return attempt_id


def test_every_attempt_that_cost_or_may_have_counts_across_runs_and_shots(tmp_path):
    with Store.open(tmp_path) as store:
        attempt(store, origin=WAVESPEED, task="t1", state="submitted")
        attempt(store, origin=WAVESPEED, task="t2", state="submitted", cost="0.840")
        attempt(store, origin=WAVESPEED, task=None, state="intent")  # a lost answer: may have
        attempt(store, origin=WAVESPEED, task="t3", state="failed")  # refunded
        attempt(store, origin=WAVESPEED, task=None, state="refused")  # nothing created
        assert spent_on_storyboard(store, None, WAVESPEED) == Decimal("1.680")


def test_the_mocks_and_a_local_servers_money_are_each_their_own(tmp_path):
    with Store.open(tmp_path) as store:
        attempt(store, origin=WAVESPEED, task="t1", state="submitted")
        attempt(store, origin="mock", task="m1", state="submitted", cost="5.00")
        attempt(store, origin=LOCAL, task="l1", state="submitted", cost="2.00")
        attempt(store, origin="http://localhost:9000", task="l2", state="submitted", cost="1.00")
        assert spent_on_storyboard(store, None, WAVESPEED) == Decimal("0.420")
        assert spent_on_storyboard(store, None, "mock") == Decimal("5.00")
        # A local server on another port (`kling-pipe mock` picks one each start) is local too.
        assert spent_on_storyboard(store, None, LOCAL) == Decimal("3.00")


def test_a_task_recorded_twice_is_counted_once(tmp_path):
    with Store.open(tmp_path) as store:
        attempt(store, origin=WAVESPEED, task="t1", state="submitted")
        attempt(store, origin=WAVESPEED, task="t1", state="submitted", cost="0")  # a copy
        assert spent_on_storyboard(store, None, WAVESPEED) == Decimal("0.420")


def test_no_records_spent_nothing():
    assert spent_on_storyboard(None, None, WAVESPEED) == 0
