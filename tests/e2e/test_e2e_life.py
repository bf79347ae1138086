"""A production's life, end to end: subsets, the film's budget, expiry, adopting a task.

The real client and scheduler against the mock over loopback sockets: the bundled mock
(`render`'s default, started in-process) or a `MockServer` the test drives.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import ShotListError
from mockserver import FixedTime, MockConfig
from tests.settling import FAST_SETTLE

FAST = RunOptions(settle=FAST_SETTLE, report=False)


# --only: test one shot before paying for thirty.


async def test_only_pays_for_the_named_shot_and_the_source_it_needs_and_nothing_else(
    specs, start_mock, client_for
):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.1)))
    result = await render(
        specs / "demo.toml", backend=client_for(mock), options=attrs.evolve(FAST, only=("gutter",))
    )
    assert result.exit_code == 0, result.as_json()
    states = {s.id: s.state for s in result.shots}
    assert states == {
        "puddle": "done",
        "gutter": "done",
        "street": "excluded",
        "river": "excluded",
        "open-sea": "excluded",
        "dusk": "excluded",
    }
    assert len(mock.tasks()) == 2  # two tasks made, two paid for
    assert Decimal(mock.ledger()["balance_usd"]) == Decimal(1000) - Decimal("0.840")
    assert result.spent == Decimal("0.840")
    assert {s.error for s in result.shots if s.state == "excluded"} == {"not in --only"}


async def test_the_full_run_after_a_subset_pays_only_for_the_rest(specs, start_mock, client_for):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.1)))
    backend = client_for(mock)
    await render(specs / "demo.toml", backend=backend, options=attrs.evolve(FAST, only=("dusk",)))
    result = await render(specs / "demo.toml", backend=backend, options=FAST)
    assert result.exit_code == 0
    assert [s.state for s in result.shots].count("cached") == 1
    assert len(mock.tasks()) == 6  # every shot once: dusk was not paid for twice


async def test_only_naming_nothing_is_refused_before_anything_is_sent(specs):
    with pytest.raises(Exception, match="--only: 'storrm' names no shot"):
        await render(specs / "demo.toml", options=attrs.evolve(FAST, only=("storrm",)))
    assert not state_dir_for(specs / "demo.toml").exists()


# The film's budget: what every run together may spend.


def ten_second_shots(folder: Path, prompt: str, **storyboard: Decimal) -> ShotList:
    """Five 10-second shots: 4.200 USD a run. An edited prompt makes every one new."""
    return ShotList(
        storyboard=Storyboard(name="film", **storyboard),
        shots=tuple(
            Shot(
                id=f"s{i}",
                prompt=f"{prompt} {i}",
                image=UrlImage(url=f"https://x.test/{i}.png"),
                duration=10,
            )
            for i in range(5)
        ),
        source=folder / "film.toml",
    )


async def three_edits(folder: Path, **storyboard: Decimal) -> list[object]:
    """Render the film three times, editing every prompt in between; return each outcome."""
    outcomes: list[object] = []
    for take in ("dawn", "noon", "dusk"):
        shotlist = ten_second_shots(folder, take, **storyboard)
        try:
            outcomes.append(
                await render(shotlist, options=attrs.evolve(FAST, mock_processing_s=0.05))
            )
        except ShotListError as refused:
            outcomes.append(refused)
    return outcomes


def spent(folder: Path) -> Decimal:
    with Store.open(state_dir_for(folder / "film.toml")) as store:
        return store.spent()


async def test_max_cost_stays_one_runs_cap_so_three_runs_under_it_spend_three_times_it(
    tmp_path,
):
    """What the budget is for: max_cost is one run's cap, so three runs spent three times."""
    outcomes = await three_edits(tmp_path, max_cost=Decimal(6))
    assert not any(isinstance(o, ShotListError) for o in outcomes)
    assert spent(tmp_path) == Decimal("12.600")


async def test_regression_a_film_budget_refuses_the_third_run_naming_spent_this_run_and_budget(
    tmp_path,
):
    outcomes = await three_edits(tmp_path, max_cost=Decimal(6), budget=Decimal(12))
    assert [type(o).__name__ for o in outcomes] == ["RunResult", "RunResult", "ShotListError"]
    refused = outcomes[2]
    assert isinstance(refused, ShotListError)
    assert [str(p) for p in refused.problems] == [
        "storyboard.budget: 8.400 USD spent on this storyboard so far and 4.200 USD for this "
        "run (5 shots) make 12.600, more than its budget 12; raise budget or render fewer "
        "shots; nothing was submitted"
    ]
    assert spent(tmp_path) == Decimal("8.400")  # the third run sent nothing


async def test_a_fresh_checkout_counts_what_its_lock_file_says_was_spent(tmp_path):
    shotlist = ten_second_shots(tmp_path, "dawn", budget=Decimal(5))
    await render(shotlist, options=attrs.evolve(FAST, mock_processing_s=0.05))
    for path in sorted(state_dir_for(shotlist.source).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    state_dir_for(shotlist.source).rmdir()  # a fresh checkout: the lock file, no state folder
    with pytest.raises(ShotListError, match=r"4\.200 USD spent on this storyboard so far"):
        await render(ten_second_shots(tmp_path, "noon", budget=Decimal(5)), options=FAST)


async def test_a_rerender_that_would_pass_the_budget_is_refused(specs):
    demo = specs / "demo.toml"
    demo.write_text(demo.read_text().replace("max_cost = 5.00", "max_cost = 5.00\nbudget = 3.50"))
    shotlist = load(demo)
    assert shotlist.storyboard.budget == Decimal("3.50")
    result = await render(shotlist, options=attrs.evolve(FAST, only=("dusk",)))
    assert result.spent == Decimal("0.420")
    over = r"0\.420 USD spent .* make 3\.528, more than its budget 3\.50"
    with pytest.raises(ShotListError, match=over):
        await render(load(demo), options=attrs.evolve(FAST, rerender=("dusk",)))
