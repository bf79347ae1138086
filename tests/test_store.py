"""The records: every fact survives closing and reopening; one run at a time."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kling_pipe._records.store import RunLock, Store, StoreBusyError, state_dir_for


def intent(store: Store, shot_id: str = "a", fp: str = "f1") -> int:
    return store.record_intent(
        shot_id=shot_id,
        fingerprint=fp,
        inputs="{}",
        model="m",
        duration=5,
        cost=Decimal("0.420"),
        sent_at=datetime.now(UTC),
        origin="mock",
    )


def test_the_state_folder_sits_beside_the_shot_list(tmp_path):
    assert state_dir_for(tmp_path / "demo.toml") == tmp_path / "demo.toml.kling-state"


def test_an_attempts_whole_story_survives_reopening(tmp_path):
    with Store.open(tmp_path) as store:
        attempt = intent(store)
        store.record_task(attempt, "t1")
        store.record_final(attempt, completed=True)
        store.record_download(attempt, file="renders/a.mp4", sha256="ab", size=3)
    with Store.open(tmp_path) as store:
        latest = store.latest("a", "f1")
    assert latest is not None
    assert (latest.state, latest.task_id, latest.file, latest.sha256, latest.bytes) == (
        "downloaded",
        "t1",
        "renders/a.mp4",
        "ab",
        3,
    )
    assert latest.completed_at is not None


def test_an_intent_is_on_disk_before_the_submit_could_be_sent(tmp_path):
    store = Store.open(tmp_path)
    intent(store)
    # A second connection (as after a kill) sees it without the first closing.
    with Store.open(tmp_path) as other:
        latest = other.latest("a")
    assert latest is not None
    assert latest.state == "intent"
    assert latest.task_id is None
    store.close()


def test_latest_is_per_fingerprint(tmp_path):
    with Store.open(tmp_path) as store:
        intent(store, fp="old")
        newer = intent(store, fp="new")
        assert store.latest("a", "old") is not None
        assert store.latest("a", "new").id == newer  # type: ignore[union-attr]
        assert store.latest("a").id == newer  # type: ignore[union-attr]
        assert store.latest("a", "other") is None


def test_spent_counts_what_cost_or_may_have_cost_money(tmp_path):
    with Store.open(tmp_path) as store:
        done = intent(store)
        store.record_task(done, "t1")
        refused = intent(store, "b")
        store.record_refused(refused, "400")
        failed = intent(store, "c")
        store.record_task(failed, "t3")
        store.record_final(failed, completed=False, error="x", code=1200)
        lost = intent(store, "d")
        store.record_uncertain(lost, "ambiguous")
        assert store.spent() == Decimal("0.840")
        assert store.known_task_ids() == {"t1", "t3"}


def test_uploads_are_reused_only_for_the_same_server_and_while_valid(tmp_path):
    with Store.open(tmp_path) as store:
        store.record_upload("h", "https://api", "https://cdn/x.png", 10)
        now = datetime.now(UTC)
        assert store.upload_url("h", "https://api", now=now) == "https://cdn/x.png"
        assert store.upload_url("h", "http://127.0.0.1:9", now=now) is None
        assert store.upload_url("h", "https://api", now=now + timedelta(days=6)) is None


def test_a_second_run_is_refused_with_the_first_ones_pid(tmp_path):
    with RunLock(tmp_path), pytest.raises(StoreBusyError) as info:
        RunLock(tmp_path).acquire()
    assert info.value.pid == os.getpid()
    assert f"pid {os.getpid()}" in str(info.value)
    # Released: the next run may start.
    with RunLock(tmp_path):
        pass


def test_a_read_only_open_sees_what_a_running_writer_committed_to_its_log(tmp_path):
    with Store.open(tmp_path) as writer:
        intent(writer)  # committed to state.sqlite-wal, not yet checkpointed
        assert (tmp_path / "state.sqlite-wal").exists()
        with Store.open_read_only(tmp_path) as reader:
            latest = reader.latest("a", "f1")
    assert latest is not None
    assert latest.state == "intent"


def test_a_store_that_sqlite_cannot_open_read_only_is_read_from_a_copy(tmp_path):
    from kling_pipe._records import store as store_module  # noqa: PLC0415

    with Store.open(tmp_path) as writer:
        intent(writer)
        copied = store_module._copied(tmp_path)  # the log replayed in the copy
        try:
            rows = copied.execute("SELECT state FROM attempts").fetchall()
        finally:
            copied.close()
    assert rows == [("intent",)]


def test_a_read_only_store_never_writes(tmp_path):
    with Store.open(tmp_path) as store:
        intent(store)
    with Store.open_read_only(tmp_path) as reader:
        reader.record_file("renders/a.mp4", kind="cut", origin="mock", sha256="ab")
        assert reader.files() == []
        with pytest.raises(sqlite3.OperationalError):
            intent(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite"]


def test_attempts_at_a_fingerprint_are_found_by_an_index_not_a_scan(tmp_path):
    """The lock file asks for every take's attempts at its fingerprint after each run: by a
    scan each, writing it was quadratic in the shots."""
    with Store.open(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / "state.sqlite")
    try:
        for query in (
            "SELECT * FROM attempts WHERE fingerprint = ? ORDER BY id DESC",
            "SELECT * FROM attempts WHERE fingerprint = ? AND origin = ? ORDER BY id DESC",
        ):
            plan = " ".join(
                str(row[-1])
                for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ("f", "o")[: query.count("?")])
            )
            assert "USING INDEX attempts_by_fingerprint" in plan, plan
    finally:
        db.close()
