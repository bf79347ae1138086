"""Plans: chain order, exact money, the budget."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import load, plan, structure
from kling_pipe._decisions.plan import format_plan, plan_as_json
from kling_pipe._decisions.selection import select_units
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


# --only: a subset, and the chain sources it needs.


def test_only_renders_the_named_shot_and_names_and_prices_the_source_it_needs(specs):
    """Testing one shot first: gutter alone needs puddle, which is not rendered: +0.420."""
    p = plan(load(specs / "demo.toml"), only=["gutter"])
    assert {u.id: (u.status, str(u.cost)) for u in p.units} == {
        "puddle": ("render", "0.420"),
        "gutter": ("render", "0.420"),
        "street": ("excluded", "0.000"),
        "river": ("excluded", "0.000"),
        "open-sea": ("excluded", "0.000"),
        "dusk": ("excluded", "0.000"),
    }
    assert p.total_cost == Decimal("0.840")
    assert [n.describe() for n in p.needs] == ["gutter needs puddle (no current video): +0.420"]
    text = format_plan(p)
    assert "gutter needs puddle (no current video): +0.420" in text
    assert "street    5 s" in text
    assert text.count("not in --only") == 5  # 4 rows, and the line saying so
    assert "--only gutter: 4 other shots not in --only, left as they are" in text


def test_a_source_already_rendered_is_not_needed():
    p = plan(board(s("a"), s("b", "a"), s("c")), cached={"a"}, only=["b"])
    assert [(u.id, u.status) for u in p.units] == [
        ("a", "cached"),
        ("b", "render"),
        ("c", "excluded"),
    ]
    assert p.needs == ()
    assert p.total_cost == Decimal("0.420")


def test_a_subset_needs_its_sources_transitively_each_named_by_what_waits_for_it():
    p = plan(board(s("a"), s("b", "a"), s("c", "b"), s("d")), only=["c"])
    assert [n.describe() for n in p.needs] == [
        "b needs a (no current video): +0.420",
        "c needs b (no current video): +0.420",
    ]
    assert p.what_to_render() == "3 shots"


def test_a_source_named_in_only_is_not_listed_as_needed():
    p = plan(board(s("a"), s("b", "a")), only=["a", "b"])
    assert p.needs == ()
    assert p.total_cost == Decimal("0.840")


def test_a_source_in_flight_is_needed_at_no_cost():
    p = plan(board(s("a"), s("b", "a")), statuses={"a": "resume"}, only=["b"])
    assert [n.describe() for n in p.needs] == ["b needs a (in flight, already paid): +0.000"]


def test_shots_left_out_are_not_failures_and_cost_nothing_whatever_their_state():
    p = plan(
        board(s("a"), s("b"), s("c")),
        statuses={"b": "uncertain", "c": "reconcile"},
        only=["a"],
    )
    assert [(u.id, u.status, u.cost) for u in p.units] == [
        ("a", "render", Decimal("0.420")),
        ("b", "excluded", Decimal("0.000")),
        ("c", "excluded", Decimal("0.000")),
    ]


def test_a_duplicate_in_only_renders_itself_when_its_twin_is_left_out():
    p = plan(board(s("a"), s("twin")), fingerprints={"a": "f", "twin": "f"}, only=["twin"])
    assert [(u.id, u.status, u.copy_of) for u in p.units] == [
        ("a", "excluded", None),
        ("twin", "render", None),
    ]


def test_the_plan_json_of_a_subset_lists_only_and_needs(specs):
    as_json = plan_as_json(plan(load(specs / "demo.toml"), only=["gutter"]))
    assert as_json["only"] == ["gutter"]
    assert as_json["needs"] == [
        {"id": "puddle", "needed_by": ["gutter"], "status": "render", "cost": "0.420"}
    ]
    assert [x["status"] for x in as_json["shots"]][:3] == ["render", "render", "excluded"]  # type: ignore[index]


@given(doc=shot_list_documents(), data=st.data())
def test_a_subset_renders_only_what_it_names_and_what_that_needs(doc, data):
    """Whatever the chains and what is cached: nothing outside the subset and its needs is
    paid for, and every unit the run starts has its sources cached or in the run."""
    shotlist = structure(doc, check_image=None)
    keys = [key for x in shotlist.shots for key in x.unit_keys]
    cached = data.draw(st.sets(st.sampled_from(keys)))
    named = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4))
    selected = select_units(shotlist, named)
    p = plan(shotlist, cached, only=named)
    needed = {n.unit for n in p.needs}
    for u in p.units:
        if u.status == "excluded":
            assert u.cost == 0
            assert u.id not in selected
            assert u.id not in needed
        elif u.id not in cached:
            assert u.id in selected or u.id in needed
            for src in u.sources:
                source = next(x for x in p.units if x.id == src)
                assert source.status != "excluded"
    assert p.total_cost == sum((u.cost for u in p.units), Decimal(0))


# The film's budget: every run together, from the records.


def test_a_plan_that_passes_the_film_budget_names_spent_this_run_and_budget():
    shotlist = ShotList(
        storyboard=Storyboard(name="b", budget=Decimal("1.00")), shots=(s("a"), s("b"))
    )
    p = plan(shotlist, spent=Decimal("0.42"))
    assert p.over_film_budget
    problem = p.film_budget_problem()
    assert problem is not None
    assert str(problem) == (
        "storyboard.budget: 0.42 USD spent on this storyboard so far and 0.840 USD for 2 shots "
        "in this run make 1.260, more than its budget 1.00; raise budget or render fewer shots"
    )
    assert format_plan(p).splitlines()[-1] == (
        "budget 1.00 USD: 0.42 spent so far, 0.840 this run: 0.260 over the budget"
    )


def test_a_plan_within_the_film_budget_says_what_is_left():
    shotlist = ShotList(storyboard=Storyboard(name="b", budget=Decimal(12)), shots=(s("a"),))
    p = plan(shotlist, spent=Decimal("8.40"))
    assert p.film_budget_problem() is None
    assert p.budget_left == Decimal("3.60")
    assert format_plan(p).splitlines()[-1] == (
        "budget 12 USD: 8.40 spent so far, 0.420 this run, 3.180 left"
    )
    assert plan_as_json(p)["budget"] == {
        "budget": "12",
        "spent": "8.40",
        "this_run": "0.420",
        "left": "3.180",
    }


def test_a_plan_without_a_budget_keeps_its_documented_json_shape():
    assert "budget" not in plan_as_json(plan(board(s("a")), spent=Decimal(5)))
