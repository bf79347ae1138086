"""The README's walkthrough, as a new user types it: init, edit prompts, run, cut, report.

Offline against the bundled mock, through the installed `kling-pipe` command in
subprocesses, from a folder of keyframes to a joined film and a contact sheet.
"""

from __future__ import annotations

import re

from kling_pipe._outputs import media
from tests.cli_support import copy_frames, kp

PROMPTS = iter(
    [
        "Dusk light fades as the paper boat drifts into the frame",
        "Rain starts; the boat rocks on a widening puddle",
        "The puddle spills into a river and the boat rides the current",
        "The river meets the sea; the boat crests the first swell",
        "The boat races down a wet cobbled street between lit windows",
    ]
)


def test_keyframes_to_a_film_and_a_contact_sheet_in_four_commands(tmp_path):
    copy_frames(tmp_path / "keyframes")

    init = kp("init", "keyframes", "--name", "paper-boat", "--bridge", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    board = tmp_path / "paper-boat.toml"
    assert init.stdout.startswith("paper-boat.toml: 5 shots from keyframes; ")

    text = board.read_text(encoding="utf-8")
    edited = re.sub(
        r'^prompt = "FILL IN:.*"$',
        lambda _: f'prompt = "{next(PROMPTS)}"',
        text,
        flags=re.MULTILINE,
    )
    assert "FILL IN" not in edited.replace('"FILL IN:"', "")
    board.write_text(edited, encoding="utf-8")

    run = kp("run", "paper-boat.toml", "--mock-processing", "0.2", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    renders = tmp_path / "renders" / "paper-boat" / "mock"  # the bundled mock's renders
    assert sorted(p.name for p in renders.glob("*.mp4")) == [
        "dusk.mp4",
        "puddle.mp4",
        "river.mp4",
        "sea.mp4",
        "street.mp4",
    ]

    cut = kp("cut", "paper-boat.toml", "-o", "film.mp4", cwd=tmp_path)
    assert cut.returncode == 0, cut.stderr
    assert cut.stdout.startswith("film.mp4: 5 shots, 25.0 s (")
    assert abs(media.probe_duration_s(tmp_path / "film.mp4") - 25) <= 5 * 0.1

    report = kp("report", "paper-boat.toml", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = tmp_path / report.stdout.strip()
    assert page == renders / "index.html"
    html = page.read_text(encoding="utf-8")
    assert html.count('<video controls preload="metadata"') == 5
    assert "The river meets the sea; the boat crests the first swell" in html
