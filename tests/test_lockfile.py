"""The lock file read at the border: each entry a checked record, or a line saying what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.lockfile import (
    LOCAL_SECTION,
    MOCK_SECTION,
    REAL_SECTION,
    UNKNOWN_ORIGIN,
    Lock,
    Section,
    lock_document,
    parse_lock,
    read_picks,
    section_for,
)
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage

FP = "a" * 64
SHA = "b" * 64


def entry(**changes: Any) -> dict[str, Any]:
    """A downloaded take's entry, as a run writes it."""
    fields: dict[str, Any] = {
        "fingerprint": FP,
        "model": "kwaivgi/kling-video-o1-std/image-to-video",
        "duration": 5,
        "status": "downloaded",
        "origin": "https://api.wavespeed.ai",
        "task_id": "0a1b2c3d",
        "cost": "0.420",
        "file": "renders/x/puddle.mp4",
        "sha256": SHA,
        "bytes": 1234,
        "submitted_at": "2026-01-02T03:04:05.000+00:00",
        "completed_at": "2026-01-02T03:05:05.000+00:00",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not ...}


def parse(tmp_path: Path, section: str = REAL_SECTION, mock_tasks=(), **entries: Any) -> Lock:
    document = {"lock_version": 1, "shots": {}, section: entries}
    return parse_lock(
        document,
        path=tmp_path / "film.toml.lock.json",
        base_dir=tmp_path,
        output_dir=tmp_path / "renders" / "x",
        mock_tasks=mock_tasks,
    )


def test_a_well_formed_entry_is_a_checked_record(tmp_path):
    lock = parse(tmp_path, puddle=entry())
    assert lock.damaged == ()
    take = lock.entries(REAL_SECTION)["puddle"].picked
    assert (take.origin, take.task_id, take.size, str(take.cost)) == (
        "https://api.wavespeed.ai",
        "0a1b2c3d",
        1234,
        "0.420",
    )
    assert take.file == Path("renders/x/puddle.mp4")
    assert take.submitted_at is not None
    assert take.submitted_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"bytes": "2e5"}, "bytes", 'must be a whole number of bytes, not a string ("2e5")'),
        ({"duration": "five"}, "duration", 'must be a number of seconds, not a string ("five")'),
        ({"task_id": 7}, "task_id", "must be a task id, not a number (7)"),
        ({"task_id": "a b/c"}, "task_id", "must be a task id (letters, digits, _ and -)"),
        ({"cost": 0.42}, "cost", "must be an amount in USD written as a string"),
        ({"cost": "NaN"}, "cost", "must be an amount in USD written as a string"),
        ({"sha256": "xyz"}, "sha256", "must be a 64-digit hex sha256"),
        ({"status": "done"}, "status", '"done" is not one of'),
        ({"submitted_at": "yesterday"}, "submitted_at", "must be a time with its UTC offset"),
        ({"submitted_at": "2026-01-02T03:04:05"}, "submitted_at", "with its UTC offset"),
        ({"fingerprint": ...}, "fingerprint", "missing"),
        ({"file": "../notes.txt"}, "file", '"../notes.txt" leads outside the output folder'),
        ({"file": "/etc/passwd"}, "file", '"/etc/passwd" leads outside the output folder'),
    ],
)
def test_a_wrong_field_damages_its_entry_and_names_the_shot_and_the_field(
    tmp_path, changes, field, message
):
    lock = parse(tmp_path, puddle=entry(**changes), dusk=entry())
    assert set(lock.entries(REAL_SECTION)) == {"dusk"}
    [damaged] = lock.damaged
    assert (damaged.section, damaged.shot_id, damaged.field) == (REAL_SECTION, "puddle", field)
    assert message in damaged.problem
    [note] = lock.notes()
    assert note.startswith(f"film.toml.lock.json: shots.puddle.{field}: ")
    assert "the shot counts as not recorded" in note


def test_a_file_reached_through_a_symlink_out_of_the_output_folder_is_refused(tmp_path):
    out = tmp_path / "renders" / "x"
    out.mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "puddle.mp4").symlink_to(tmp_path / "notes.txt")
    lock = parse(tmp_path, puddle=entry())
    assert [(d.field, "leads outside" in d.problem) for d in lock.damaged] == [("file", True)]


def test_a_damaged_take_damages_the_whole_entry_with_its_path(tmp_path):
    takes = [
        {"take": 1, **entry()},
        {"take": 2, **entry(bytes=-1)},
    ]
    lock = parse(tmp_path, storm=entry(pick=2, takes=takes))
    [damaged] = lock.damaged
    assert damaged.field == "takes[1].bytes"
    assert read_picks(lock, REAL_SECTION) == {}


def test_a_whole_section_of_the_wrong_type_is_one_line(tmp_path):
    lock = parse_lock(
        {"shots": {}, "simulated": 5},
        path=tmp_path / "f.lock.json",
        base_dir=tmp_path,
        output_dir=tmp_path / "out",
    )
    assert [str(d) for d in lock.damaged] == [
        "simulated: must be an object of shot entries, not a number (5)"
    ]


def test_an_entry_without_an_origin_is_the_mocks_only_when_the_mock_knows_its_task(tmp_path):
    legacy = entry(origin=...)
    known = parse(tmp_path, mock_tasks={"0a1b2c3d"}, puddle=legacy)
    assert known.entries(REAL_SECTION)["puddle"].picked.origin == "mock"
    assert known.notes() == []
    unknown = parse(tmp_path, puddle=legacy)
    assert unknown.entries(REAL_SECTION)["puddle"].picked.origin == UNKNOWN_ORIGIN
    [note] = unknown.notes()
    assert "shots.puddle: written by an older kling-pipe without its origin" in note


def test_the_mocks_section_is_the_mocks_whatever_an_entry_says(tmp_path):
    lock = parse(tmp_path, MOCK_SECTION, puddle=entry(origin="https://api.wavespeed.ai"))
    assert lock.entries(MOCK_SECTION)["puddle"].picked.origin == "mock"


def test_each_kind_of_origin_has_its_own_section():
    assert section_for("mock") == MOCK_SECTION
    assert section_for("http://127.0.0.1:8189") == LOCAL_SECTION
    assert section_for("http://localhost:8189/api") == LOCAL_SECTION
    assert section_for("http://[::1]:9") == LOCAL_SECTION
    assert section_for("https://api.wavespeed.ai") == REAL_SECTION
    assert section_for("https://proxy.example.com") == REAL_SECTION


def test_a_local_servers_section_lists_every_shot_as_wavespeeds_does(tmp_path):
    """Once a local server rendered anything, its section has the shape ``shots`` has."""
    shots = tuple(
        Shot(id=sid, prompt=sid, image=UrlImage(url=f"https://x.test/{sid}.png"))
        for sid in ("dawn", "dusk")
    )
    shotlist = ShotList(storyboard=Storyboard(name="x"), shots=shots, source=tmp_path / "x.toml")
    done = Attempt(
        id=1,
        shot_id="dawn",
        fingerprint=FP,
        inputs="{}",
        model="m",
        duration=5,
        cost=Decimal("0.420"),
        state="downloaded",
        task_id="t1",
        sent_at=datetime.now(UTC),
        completed_at=None,
        error="",
        code=None,
        file="renders/x/dawn.mp4",
        sha256=SHA,
        bytes=3,
        polls=1,
        origin="http://127.0.0.1:8189",
    )
    fingerprints = {"dawn": FP, "dusk": FP}
    sections = {
        REAL_SECTION: Section(attempts={}, fingerprints=fingerprints),
        LOCAL_SECTION: Section(attempts={"dawn": done}, fingerprints=fingerprints),
        MOCK_SECTION: Section(attempts={}, fingerprints=fingerprints),
    }
    document = lock_document(shotlist, sections, version="0")
    assert {k: e["status"] for k, e in document["local"].items()} == {
        "dawn": "downloaded",
        "dusk": "pending",
    }
    assert document["local_totals"]["shots"] == 2
    assert "simulated" not in document
