"""Plans: chain order, exact money, the budget."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import load, plan, structure
from kling_pipe._decisions.plan import format_plan, plan_as_json
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage
from tests.strategies import shot_list_documents


def board(*shots: Shot, max_cost: str | None = None) -> ShotList:
    cap = None if max_cost is None else Decimal(max_cost)
    return ShotList(storyboard=Storyboard(name="b", max_cost=cap), shots=shots)


def s(sid: str, *chains: str, duration: int = 5) -> Shot:
    image = ChainImage(shot=chains[0], frame="last") if chains else UrlImage(url="https://x/y.png")
    last = ChainImage(shot=chains[1], frame="first") if len(chains) > 1 else None
    return Shot(id=sid, prompt="p", image=image, last_image=last, duration=duration)


def test_independent_shots_keep_file_order():
    assert [p.id for p in plan(board(s("c"), s("a"), s("b"))).shots] == ["c", "a", "b"]


def test_a_chained_shot_comes_after_its_source_even_if_written_first():
    p = plan(board(s("late", "src"), s("x"), s("src")))
    assert [x.id for x in p.shots] == ["x", "src", "late"]


def test_a_shot_chained_to_two_sources_comes_after_both():
    p = plan(board(s("z", "a", "b"), s("a"), s("b")))
    assert [x.id for x in p.shots] == ["a", "b", "z"]


def test_cached_shots_cost_nothing_and_say_so():
    p = plan(board(s("a"), s("b", duration=10)), cached={"a"})
    assert [(x.id, x.status, str(x.cost)) for x in p.shots] == [
        ("a", "cached", "0.000"),
        ("b", "render", "0.840"),
    ]
    assert p.total_cost == Decimal("0.840")


def test_a_plan_over_max_cost_names_the_overrun():
    p = plan(board(s("a"), s("b"), max_cost="0.50"))
    assert p.over_budget
    problem = p.budget_problem()
    assert problem is not None
    assert str(problem) == (
        "storyboard.max_cost: the plan costs 0.840 USD for 2 shots to render, more than "
        "max_cost 0.50; raise max_cost or render fewer shots"
    )


def test_a_plan_exactly_at_max_cost_is_accepted():
    assert plan(board(s("a"), max_cost="0.42")).budget_problem() is None


def test_the_worst_case_counts_retries_of_failed_shots():
    assert plan(board(s("a")), retry_failed=2).worst_case_cost == Decimal("1.260")


@given(doc=shot_list_documents(), data=st.data())
def test_the_total_is_the_exact_sum_and_never_above_an_accepted_budget(doc, data):
    shotlist = structure(doc, check_image=None)
    keys = [key for x in shotlist.shots for key in x.unit_keys]
    cached = data.draw(st.sets(st.sampled_from(keys)))
    p = plan(shotlist, cached)
    expected = sum(
        (
            Decimal("0.084") * x.duration
            for x in shotlist.shots
            for key in x.unit_keys
            if key not in cached
        ),
        Decimal(0),
    )
    assert p.total_cost == expected
    if p.budget_problem() is None and p.max_cost is not None:
        assert p.total_cost <= p.max_cost


@given(doc=shot_list_documents())
def test_every_shot_is_planned_once_after_all_its_sources(doc):
    shotlist = structure(doc, check_image=None)
    order = [x.id for x in plan(shotlist).shots]
    assert sorted(order) == sorted(x.id for x in shotlist.shots)
    for x in shotlist.shots:
        for src in x.chained_from:
            assert order.index(src) < order.index(x.id)


def test_the_demo_plan_matches_the_documented_json_shape(specs):
    p = plan(load(specs / "demo.toml"))
    as_json = plan_as_json(p)
    assert list(as_json) == ["storyboard", "model", "shots", "total_cost", "max_cost"]
    assert as_json["total_cost"] == "3.108"
    assert as_json["max_cost"] == "5.00"
    assert as_json["shots"][0] == {  # type: ignore[index]
        "id": "puddle",
        "duration": 5,
        "takes": 1,
        "cost": "0.420",
        "status": "render",
        "pick": 1,
        "take_status": ["render"],
    }


def test_the_plan_table_shows_frames_cost_and_total(specs):
    text = format_plan(plan(load(specs / "demo.toml")))
    assert "last frame of puddle" in text
    assert "frames/river.png -> frames/sea.jpg" in text
    assert text.splitlines()[-1] == ("total: 3.108 USD for 6 shots to render (37 s), max_cost 5.00")
