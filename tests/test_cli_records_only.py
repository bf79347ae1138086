"""Commands that need only the records work without the keyframes; `validate` and `run` need them.

A teammate has the renders and the records but not the PSD exports, or the keyframes live on
a network drive that is not mounted: `status`, `report`, `cut`, `export --allow-gaps`, `gc`
and `pick` still answer, fingerprinting a shot whose image is missing from what the records
say its image was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kling_pipe._records.store import state_dir_for
from tests.cli_support import kp

RENDER = ("-q", "--mock-processing", "0.1")
MISSING = "image missing: frames/puddle.png; fingerprint from the records"


@pytest.fixture
def demo(specs: Path) -> Path:
    """The demo, rendered on the bundled mock, then its keyframe of "puddle" gone."""
    path = specs / "demo.toml"
    done = kp("run", path, *RENDER)
    assert done.returncode == 0, done.stderr
    (specs / "frames" / "puddle.png").unlink()
    return path


def by_id(path: Path) -> dict[str, tuple[str, str]]:
    done = kp("status", path, "--json")
    assert done.returncode == 0, done.stderr
    return {s["id"]: (s["status"], s["detail"]) for s in json.loads(done.stdout)["shots"]}


def test_status_answers_from_the_records_when_a_keyframe_is_missing(demo):
    shots = by_id(demo)
    assert {status for status, _ in shots.values()} == {"cached"}
    assert shots["puddle"][1] == f"renders/paper-boat/mock/versions/puddle.v1.mp4 ({MISSING})"
    assert (
        shots["gutter"][1] == "renders/paper-boat/mock/versions/gutter.v1.mp4"
    )  # chained: unaffected
    assert MISSING in kp("status", demo).stdout


def test_a_fresh_checkout_takes_the_missing_keyframes_sha256_from_the_lock_file(demo):
    shutil.rmtree(state_dir_for(demo))
    assert {status for status, _ in by_id(demo).values()} == {"cached"}


def test_a_missing_keyframe_of_a_shot_never_rendered_is_pending_image_missing(demo):
    text = demo.read_text(encoding="utf-8")
    demo.write_text(
        text + '\n[[shots]]\nid = "harbour"\nprompt = "The harbour"\nimage = "frames/gone.png"\n',
        encoding="utf-8",
    )
    assert by_id(demo)["harbour"] == ("pending", "image missing: frames/gone.png")


def test_report_cut_export_and_gc_need_only_the_records(demo, tmp_path):
    for command in (
        ("report", demo),
        ("cut", demo, "-o", tmp_path / "film.mp4"),
        ("export", demo, "-o", tmp_path / "film.otio", "--allow-gaps"),
        ("gc", demo, "--dry-run"),
        ("gc", demo),
    ):
        done = kp(*command)
        assert done.returncode == 0, (command, done.stderr)
    assert "6 shots" in kp("cut", demo, "-o", tmp_path / "film.mp4").stdout
    assert "6 clips" in kp("export", demo, "-o", tmp_path / "film.otio").stdout


def test_validate_plan_and_run_still_need_every_keyframe(demo):
    for command in ("validate", "plan", "run"):
        done = kp(command, demo)
        assert done.returncode == 2, (command, done.stdout)
        assert "puddle.png" in done.stderr
        assert "Traceback" not in done.stderr


def test_pick_needs_only_the_records(specs):
    takes = specs / "takes.toml"
    assert kp("run", takes, *RENDER).returncode == 0
    (specs / "frames" / "river.png").unlink()
    picked = kp("pick", takes, "river", "2")
    assert picked.returncode == 0, picked.stderr
    assert "river: take 2 picked (was take 1)" in picked.stdout
