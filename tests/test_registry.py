"""The user-level registry: one owner per task, answers over proofs, submits on the wire."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import attrs

from kling_pipe._records.registry import OnTheWire, Registry

SENT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def wire(storyboard: str, attempt: int = 1, frame: str = "abc") -> OnTheWire:
    return OnTheWire(
        storyboard=storyboard, attempt=attempt, model="m", frame=frame, origin="o", sent_at=SENT
    )


def test_a_task_has_one_owner_and_a_second_claim_fails():
    registry = Registry.in_memory()
    assert registry.claim("t1", owner="/a.toml#s", origin="o")
    assert registry.claim("t1", owner="/a.toml#s", origin="o")  # the same owner again: fine
    assert not registry.claim("t1", owner="/b.toml#s", origin="o")
    assert registry.owner("t1") == "/a.toml#s"


def test_a_runs_own_answer_takes_a_task_over_from_a_proof():
    """A proved another run's task by its frames; that run's answer is the stronger fact."""
    registry = Registry.in_memory()
    assert registry.claim("t1", owner="/a.toml#s", origin="o", proved=True)
    assert registry.claim("t1", owner="/b.toml#s", origin="o")
    assert registry.owner("t1") == "/b.toml#s"


def test_a_proof_never_takes_a_task_from_an_answer_or_another_proof():
    registry = Registry.in_memory()
    assert registry.claim("t1", owner="/b.toml#s", origin="o")
    assert not registry.claim("t1", owner="/a.toml#s", origin="o", proved=True)
    assert registry.claim("t2", owner="/a.toml#s", origin="o", proved=True)
    assert not registry.claim("t2", owner="/c.toml#s", origin="o", proved=True)
    assert registry.owner("t2") == "/a.toml#s"


def test_a_submit_is_on_the_wire_from_before_it_is_sent_until_its_fate_is_known():
    registry = Registry.in_memory()
    registry.open_wire(wire("/a.toml", attempt=3))
    registry.open_wire(wire("/b.toml", attempt=3, frame="other"))
    assert registry.on_the_wire(model="m", frame="abc", origin="o") == [wire("/a.toml", 3)]
    registry.close_wire("/a.toml", 3)
    assert registry.on_the_wire(model="m", frame="abc", origin="o") == []


def test_a_registry_of_an_earlier_version_opens_and_its_claims_count_as_answers(tmp_path):
    path = tmp_path / "tasks.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
        "origin TEXT NOT NULL, claimed_at TEXT NOT NULL);"
        "INSERT INTO tasks VALUES ('t1', '/a.toml#s', 'o', '2026-01-01T00:00:00+00:00');"
    )
    old.commit()
    old.close()
    with Registry.open(path) as registry:
        assert not registry.claim("t1", owner="/b.toml#s", origin="o")
        registry.open_wire(wire("/a.toml"))
        assert registry.on_the_wire(model="m", frame="abc", origin="o")


def test_a_submit_on_the_wire_keeps_the_server_clock_offset_its_run_read():
    registry = Registry.in_memory()
    entry = attrs.evolve(wire("/a.toml"), clock_offset=timedelta(minutes=-10, milliseconds=250))
    registry.open_wire(entry)
    assert registry.on_the_wire(model="m", frame="abc", origin="o") == [entry]


def test_entries_on_the_wire_of_an_earlier_version_stay_without_an_offset(tmp_path):
    """A wire table without offsets: its entries are kept (placed with the clock's doubt)."""
    path = tmp_path / "tasks.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
        "origin TEXT NOT NULL, claimed_at TEXT NOT NULL, proved INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE wire (storyboard TEXT NOT NULL, attempt INTEGER NOT NULL, "
        "model TEXT NOT NULL, frame TEXT NOT NULL, origin TEXT NOT NULL, sent_at TEXT NOT NULL, "
        "PRIMARY KEY (storyboard, attempt));"
        "INSERT INTO wire VALUES ('/a.toml', 1, 'm', 'abc', 'o', '2026-12-06T12:00:00.000+00:00');"
    )
    old.commit()
    old.close()
    with Registry.open(path) as registry:
        assert registry.on_the_wire(model="m", frame="abc", origin="o") == [wire("/a.toml")]


def test_a_renamed_shot_list_takes_its_submits_on_the_wire_along():
    """Its own submit, left on the wire by a killed run, is not another run's after a rename."""
    registry = Registry.in_memory()
    registry.open_wire(wire("/a.toml", attempt=1))
    registry.claim("t1", owner="/a.toml#s", origin="o")
    assert registry.rename_owner("/a.toml", "/film.toml") == 1
    assert registry.on_the_wire(model="m", frame="abc", origin="o") == [wire("/film.toml")]


def test_a_submit_left_uncertain_stays_on_the_wire_with_when_it_was_given_up():
    registry = Registry.in_memory()
    registry.open_wire(wire("/a.toml", attempt=1))
    registry.leave_uncertain("/a.toml", 1, SENT + timedelta(seconds=30))
    (entry,) = registry.on_the_wire(model="m", frame="abc", origin="o")
    assert entry.uncertain
    assert entry.gave_up_at == SENT + timedelta(seconds=30)


def test_a_claim_of_ones_own_does_not_hide_a_task_from_ones_own_settling():
    registry = Registry.in_memory()
    registry.claim("t1", owner="/a.toml#s", origin="o")
    registry.claim("t2", owner="/b.toml#s", origin="o")
    assert registry.owned(["t1", "t2", "t3"]) == {"t1", "t2"}
    assert registry.owned(["t1", "t2", "t3"], but="/a.toml#s") == {"t2"}
