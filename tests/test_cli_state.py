"""`kling-pipe status` and `kling-pipe gc`, run as a user runs them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kling_pipe import _files
from kling_pipe._records.store import state_dir_for
from tests.cli_support import copy_specs, kp


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    return copy_specs(tmp_path) / "chain.toml"


def test_status_before_any_run_shows_every_shot_pending(chain):
    done = kp("status", chain)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "  a-start     pending    new",
        "  b-continue  pending    new",
        "  c-reverse   pending    new",
        "the bundled mock (simulated money, nothing charged): 0.000 USD so far; 1.344 USD to "
        "go. Real renders: status --backend wavespeed",
    ]


def test_status_after_an_edit_says_what_is_stale_and_why(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    chain.write_text(chain.read_text().replace("keeps going", "keeps going on"))
    done = kp("status", chain, "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    by_id = {s["id"]: (s["status"], s["detail"]) for s in status["shots"]}
    assert by_id["a-start"][0] == "cached"
    assert by_id["b-continue"] == ("stale", "prompt changed")
    assert by_id["c-reverse"] == ("stale", "last_image: its source shot changed")
    assert status["spent"] == "1.344"
    assert status["to_spend"] == "0.924"


def test_plan_shows_cached_shots_at_no_cost(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    done = kp("plan", chain, "--json")
    assert {s["status"] for s in json.loads(done.stdout)["shots"]} == {"cached"}
    assert json.loads(done.stdout)["total_cost"] == "0.000"


def test_gc_removes_only_what_kling_pipe_wrote_and_no_current_shot_needs(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    out = chain.parent / "renders" / "chain" / "mock"
    # The user's own files in the folder: never touched, whatever their names.
    (out / "holiday.mp4").write_bytes(b"mine")
    (out / "film.mp4").write_bytes(b"a cut")
    (out / "frames" / "storyboard-sketch.png").write_bytes(b"mine")
    (out / ".someone-elses.mp4.abc.part").write_bytes(b"x")
    # Drop c-reverse from the list: its video (and thumbnails) are no longer needed.
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text[: text.index('[[shots]]\nid = "c-reverse"')], encoding="utf-8")
    listed = kp("gc", chain, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    # Its video and its two thumbnails on the contact sheet.
    assert "would remove 3 files" in listed.stdout
    assert "c-reverse.mp4" in listed.stdout
    assert (out / "c-reverse.mp4").exists()
    removed = kp("gc", chain)
    assert "removed 3 files" in removed.stdout
    assert sorted(p.name for p in out.glob("*.mp4")) == [
        "a-start.mp4",
        "b-continue.mp4",
        "film.mp4",
        "holiday.mp4",
    ]
    assert (out / "frames" / "storyboard-sketch.png").exists()
    assert (out / ".someone-elses.mp4.abc.part").exists()
    assert (out / "frames" / "a-start.first.png").exists()


def test_gc_never_deletes_a_file_that_changed_since_kling_pipe_wrote_it(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    out = chain.parent / "renders" / "chain" / "mock"
    (out / "c-reverse.mp4").write_bytes(b"the user replaced it with their own edit")
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text[: text.index('[[shots]]\nid = "c-reverse"')], encoding="utf-8")
    removed = kp("gc", chain)
    assert "c-reverse.mp4" not in removed.stdout  # only its untouched thumbnails go
    assert (out / "c-reverse.mp4").exists()


def test_gc_dry_run_on_a_shot_list_never_run_writes_nothing(chain):
    listed = kp("gc", chain, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert not list(chain.parent.glob("*.kling-state"))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under *folder* with its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def test_gc_dry_run_after_runs_writes_nothing_at_all(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text[: text.index('[[shots]]\nid = "c-reverse"')], encoding="utf-8")
    before = tree(chain.parent)
    listed = kp("gc", chain, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert "would remove 3 files" in listed.stdout
    assert tree(chain.parent) == before  # not even the run lock's pid file


def test_gc_with_an_unreadable_lock_file_refuses_and_removes_nothing(chain):
    """The lock file's picks and approvals say what to keep: unread, nothing is garbage."""
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text[: text.index('[[shots]]\nid = "c-reverse"')], encoding="utf-8")
    lock_file = chain.parent / "chain.toml.lock.json"
    lock_file.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    before = tree(chain.parent)
    for extra in ((), ("--dry-run",), ("--versions",)):
        refused = kp("gc", chain, *extra)
        assert refused.returncode == 2, refused.stdout
        assert refused.stderr == (
            f"kling-pipe: {lock_file}: cannot read the lock file: nested too deep\n"
        ), refused.stderr
    assert tree(chain.parent) == before


def test_gc_never_deletes_a_file_outside_the_output_folder_that_a_lock_entry_names(chain):
    """A fresh checkout's lock file says c-reverse's video is ../notes.txt, with its sha256."""
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    notes = chain.parent.parent / "notes.txt"
    notes.write_text("my notes, not a video", encoding="utf-8")
    shutil.rmtree(chain.parent / "chain.toml.kling-state")  # a fresh checkout of the project
    (chain.parent / "renders" / "chain" / "mock" / "c-reverse.mp4").unlink()
    lock_file = chain.parent / "chain.toml.lock.json"
    lock = json.loads(lock_file.read_text(encoding="utf-8"))
    lock["simulated"]["c-reverse"].update(
        file="../notes.txt",
        sha256=hashlib.sha256(notes.read_bytes()).hexdigest(),
        bytes=notes.stat().st_size,
    )
    lock_file.write_text(json.dumps(lock), encoding="utf-8")
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0  # adopts the lock
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text[: text.index('[[shots]]\nid = "c-reverse"')], encoding="utf-8")
    removed = kp("gc", chain)
    assert removed.returncode == 0, removed.stderr
    assert "notes.txt" not in removed.stdout
    assert notes.read_text(encoding="utf-8") == "my notes, not a video"


def test_status_calls_a_duplicate_shot_a_copy_not_a_rename(chain):
    """A new shot with the same inputs as one still in the list is a copy: nothing to pay."""
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    text = chain.read_text(encoding="utf-8")
    copy = text[text.index("[[shots]]") : text.index('[[shots]]\nid = "b-continue"')]
    chain.write_text(text + "\n" + copy.replace('"a-start"', '"a-again"'), encoding="utf-8")
    done = kp("status", chain, "--json")
    assert done.returncode == 0, done.stderr
    by_id = {s["id"]: (s["status"], s["detail"]) for s in json.loads(done.stdout)["shots"]}
    assert by_id["a-start"][0] == "cached"
    assert by_id["a-again"] == ("copied", 'same inputs as shot "a-start": copied, nothing to pay')
    assert "renamed" not in kp("status", chain).stdout


def test_status_still_calls_a_renamed_shot_renamed(chain):
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    chain.write_text(chain.read_text(encoding="utf-8").replace('"c-reverse"', '"c-back"'))
    done = kp("status", chain, "--json")
    by_id = {s["id"]: (s["status"], s["detail"]) for s in json.loads(done.stdout)["shots"]}
    assert by_id["c-back"] == (
        "renamed",
        'same inputs as shot "c-reverse": taken over, nothing to pay',
    )


def rendered_then(chain: Path, change) -> dict[str, Any]:
    """Render *chain* on the mock, let *change* edit its lock document, and write it back."""
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    path = chain.parent / "chain.toml.lock.json"
    lock = json.loads(path.read_text(encoding="utf-8"))
    change(lock)
    path.write_text(json.dumps(lock, indent=2), encoding="utf-8")
    return lock


def test_a_wrongly_typed_lock_field_is_one_line_naming_the_shot_not_a_traceback(chain):
    """A hand-merged lock: its damaged entries are ignored as records, named, never a crash."""

    def damage(lock):
        lock["simulated"]["a-start"]["bytes"] = "2e5"
        lock["simulated"]["b-continue"]["duration"] = "five"
        lock["simulated"]["c-reverse"]["task_id"] = 7

    rendered_then(chain, damage)
    shutil.rmtree(state_dir_for(chain))  # a fresh checkout: the lock file is the only record
    status = kp("status", chain)
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stderr
    assert (
        "chain.toml.lock.json: simulated.a-start.bytes: must be a whole number of bytes, not "
        'a string ("2e5"); the entry is ignored, the shot counts as not recorded'
    ) in status.stdout.splitlines()
    assert "simulated.b-continue.duration: must be a number of seconds" in status.stdout
    assert "simulated.c-reverse.task_id: must be a task id, not a number (7)" in status.stdout
    shown = json.loads(kp("status", chain, "--json").stdout)
    assert {s["status"] for s in shown["shots"]} == {"pending"}
    assert len(shown["notes"]) == 3
    plan = kp("plan", chain, "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["total_cost"] == "1.344"  # rendered again, as planned
    assert "simulated.a-start.bytes" in plan.stderr
    locked = kp("run", chain, "--locked", "-q")
    assert locked.returncode == 2, locked.stderr
    assert "shots (a-start): --locked: would be rendered" in locked.stderr
    assert "Traceback" not in locked.stderr


def older_lock(lock: dict[str, Any]) -> None:
    """Rewrite a lock as kling-pipe wrote it before records named their origin."""
    for entry in lock["simulated"].values():
        del entry["origin"]
    lock["shots"] = lock.pop("simulated")
    lock["totals"] = lock.pop("simulated_totals")


def test_a_lock_entry_without_an_origin_is_never_taken_for_a_real_render(chain):
    rendered_then(chain, older_lock)
    shutil.rmtree(state_dir_for(chain))  # nothing here knows whose renders they were
    real = ("--backend", "wavespeed")
    status = kp("status", chain, "--json", *real)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert "cached" not in {s["status"] for s in shown["shots"]}
    assert any("shots.a-start: written by an older kling-pipe" in n for n in shown["notes"])
    assert "of unknown origin" in kp("status", chain, *real).stdout
    plan = kp("plan", chain, "--json", *real)
    assert json.loads(plan.stdout)["total_cost"] == "1.344"
    locked = kp("run", chain, "--locked", "--yes", *real)
    assert locked.returncode == 2, locked.stderr
    assert "--locked: would be rendered" in locked.stderr


def test_a_lock_entry_without_an_origin_is_the_mocks_when_the_mocks_state_knows_it(chain):
    rendered_then(chain, older_lock)
    state = state_dir_for(chain)
    assert (state / "mock" / "state.json").is_file()
    for database in state.glob("state.sqlite*"):  # the mock's saved state stays
        database.unlink()
    mock = json.loads(kp("status", chain, "--json").stdout)
    assert {s["status"] for s in mock["shots"]} == {"cached"}
    assert mock["notes"] == []
    real = json.loads(kp("status", chain, "--json", "--backend", "wavespeed").stdout)
    assert "cached" not in {s["status"] for s in real["shots"]}


def test_a_lock_file_path_outside_the_output_folder_is_never_a_render(chain):
    """`"file": "../notes.txt"` with that file's sha256 is refused, so gc never deletes it."""
    notes = chain.parent.parent / "notes.txt"
    notes.write_text("my own notes", encoding="utf-8")

    def point_outside(lock):
        lock["simulated"]["a-start"]["file"] = "../notes.txt"
        lock["simulated"]["a-start"]["sha256"] = _files.sha256_file(notes)

    rendered_then(chain, point_outside)
    shutil.rmtree(state_dir_for(chain))
    shown = json.loads(kp("status", chain, "--json").stdout)
    assert next(s for s in shown["shots"] if s["id"] == "a-start")["status"] != "cached"
    assert any(
        'simulated.a-start.file: "../notes.txt" leads outside the output folder' in n
        for n in shown["notes"]
    )
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    chain.write_text(chain.read_text().replace("sets off", "sets off slowly"), encoding="utf-8")
    assert kp("run", chain, "-q", "--mock-processing", "0.1").returncode == 0
    assert kp("gc", chain).returncode == 0
    assert notes.read_text(encoding="utf-8") == "my own notes"
