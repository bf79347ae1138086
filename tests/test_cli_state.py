"""`kling-pipe status` and `kling-pipe gc`, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
