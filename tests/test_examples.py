"""Every example shot list in specs/ loads and fits its own budget."""

from __future__ import annotations

import pytest

from kling_pipe import load, plan
from tests.cli_support import SPECS

#: The examples' names; each test reads its own copy (the `specs` fixture).
EXAMPLES = sorted(p.name for p in SPECS.glob("*.toml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_is_valid_and_within_budget(specs, name):
    shotlist = load(specs / name)
    assert shotlist.shots
    assert plan(shotlist).budget_problem() is None


def test_the_demo_tells_its_story_with_local_and_chained_frames(specs):
    shots = load(specs / "demo.toml").shots
    assert len(shots) == 6
    assert any(x.chained_from for x in shots)
    assert any(x.last_image is not None and x.duration not in (5, 10) for x in shots)
    kinds = {type(i).__name__ for x in shots for i in x.images}
    assert kinds == {"LocalImage", "ChainImage"}


def test_no_example_sends_a_url_frame_a_real_run_would_pay_for_and_fail(specs):
    """`run --backend wavespeed` on an example must not send a placeholder URL to WaveSpeed.

    URL frames are tested end to end against the mock in tests/e2e/test_e2e_url_frames.py.
    """
    for board in sorted(specs.glob("*.toml")):
        urls = [i for x in load(board).shots for i in x.images if type(i).__name__ == "UrlImage"]
        assert urls == [], board.name
