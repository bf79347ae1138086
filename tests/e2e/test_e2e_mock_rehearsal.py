"""Rehearsing with the bundled mock, as a user runs it: takes to pick from, edits that show.

`kling-pipe run` on a copy of specs/takes.toml: the takes of one shot send one request (the
API has no seed), yet the mock renders each its own video; editing a prompt changes the
video; ``--fps`` and ``--caption`` reach the mock the run starts.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import numpy as np

from tests.cli_support import copy_specs, kp

#: Mean absolute difference (0..255) above which two frames plainly differ.
VISIBLY: Final = 10.0


def frames(path: Path) -> tuple[Fraction, list[np.ndarray]]:
    """The video's frame rate and every frame as an RGB array."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate is not None
        return stream.average_rate, [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


def most_apart(one: list[np.ndarray], other: list[np.ndarray]) -> float:
    """The largest mean absolute difference between frames at the same place."""
    return max(
        float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
        for a, b in zip(one, other, strict=True)
    )


def run(board: Path, *extra: str) -> None:
    done = kp("run", board, "-q", "--no-report", "--mock-processing", "0.1", *extra)
    assert done.returncode == 0, done.stderr


def test_takes_differ_and_fps_and_caption_reach_the_mock(tmp_path: Path) -> None:
    board = copy_specs(tmp_path) / "takes.toml"
    run(board, "--fps", "30", "--caption")
    folder = board.parent / "renders" / "takes" / "mock"
    # Every take is a version of the shot (river.v1 .. v3, numbered in arrival order).
    takes = [folder / "versions" / f"river.v{n}.mp4" for n in (1, 2, 3)]
    seen = [frames(path) for path in takes]
    assert {rate for rate, _ in seen} == {30}
    assert [len(shown) for _, shown in seen] == [5 * 30] * 3
    for k, (_, shown) in enumerate(seen):
        for _, other in seen[k + 1 :]:
            assert most_apart(shown, other) > VISIBLY
    # Every take starts on the shot's picture: the caption leaves the first frame alone.
    firsts = [shown[0] for _, shown in seen]
    assert most_apart(firsts[:1] * 2, firsts[1:]) < VISIBLY / 2
    _, sea = frames(folder / "sea.mp4")
    middle = sea[len(sea) // 2]
    assert middle[-8:].mean() < sea[0][-8:].mean()  # the caption's dark band


def test_an_edited_prompt_shows_in_the_new_render_at_24_fps(tmp_path: Path) -> None:
    specs = copy_specs(tmp_path)
    board = specs / "one.toml"
    board.write_text(
        'version = 1\n[storyboard]\nname = "one"\n[[shots]]\nid = "dusk"\n'
        'prompt = "The sun sets behind the boat"\nimage = "frames/dusk.png"\n',
        encoding="utf-8",
    )
    run(board)
    video = board.parent / "renders" / "one" / "mock" / "dusk.mp4"
    rate, before = frames(video)
    assert (rate, len(before)) == (24, 5 * 24)
    board.write_text(
        board.read_text(encoding="utf-8").replace("behind the boat", "in front of the boat"),
        encoding="utf-8",
    )
    run(board)
    rate, after = frames(video)
    assert (rate, len(after)) == (24, 5 * 24)
    assert most_apart(before, after) > VISIBLY


def test_fps_and_caption_are_refused_with_the_real_backend(tmp_path: Path) -> None:
    board = copy_specs(tmp_path) / "demo.toml"
    done = kp("run", board, "--backend", "wavespeed", "--yes", "--fps", "30")
    assert done.returncode == 2
    assert done.stderr == (
        f"{board}: --fps shapes the bundled mock's renders only; WaveSpeed's are Kling's own "
        "(leave it out, or drop --backend wavespeed)\n"
    )
    done = kp("run", board, "--fps", "0")
    assert done.returncode == 2
    assert "--fps: 0: frames per second are 1 to 60" in done.stderr
