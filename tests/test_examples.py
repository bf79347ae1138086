"""Every example shot list in specs/ loads and fits its own budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_pipe import load, plan

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.toml"))
DEMO = SPECS[0].parent / "demo.toml"


def test_there_are_examples():
    assert len(SPECS) >= 3


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_is_valid_and_within_budget(path):
    shotlist = load(path)
    assert shotlist.shots
    assert plan(shotlist).budget_problem() is None


def test_the_demo_tells_its_story_with_every_image_form():
    shots = load(DEMO).shots
    assert len(shots) == 6
    assert any(x.chained_from for x in shots)
    assert any(x.last_image is not None and x.duration not in (5, 10) for x in shots)
    kinds = {type(i).__name__ for x in shots for i in x.images}
    assert kinds == {"LocalImage", "UrlImage", "ChainImage"}
