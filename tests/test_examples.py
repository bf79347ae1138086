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


def test_the_demo_tells_its_story_with_every_image_form(specs):
    shots = load(specs / "demo.toml").shots
    assert len(shots) == 6
    assert any(x.chained_from for x in shots)
    assert any(x.last_image is not None and x.duration not in (5, 10) for x in shots)
    kinds = {type(i).__name__ for x in shots for i in x.images}
    assert kinds == {"LocalImage", "UrlImage", "ChainImage"}
