"""Takes, the pure rules: the key, its checks, the price, fingerprints, the plan and the engine.

A shot may be rendered several times (``takes = N``); each take is a render unit of its own
(key ``id`` for take 1, ``id#k`` for take k), and a chain uses the picked take of its source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import ShotListError, loads
from kling_pipe._decisions.engine import Admission, RunStarted, ShotEnded, StartShot, decide
from kling_pipe._decisions.plan import format_plan, plan, plan_as_json
from kling_pipe._decisions.resume import assess, forced_units
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.fingerprint import (
    explain_change,
    fingerprint_units,
    fingerprints,
    kept_takes,
    take_fingerprint,
)
from kling_pipe._shotlist.specs import (
    ChainImage,
    LocalImage,
    Shot,
    ShotList,
    Storyboard,
    UrlImage,
    split_unit_key,
    unit_key,
)
from tests.strategies import shot_ids

HEAD = 'version = 1\n[storyboard]\nname = "t"\n'
MODEL = rules.DEFAULT_MODEL


def fake_hash(path: Path) -> str:
    """Content hash stand-in: the file's name stands for its bytes."""
    return hashlib.sha256(path.name.encode()).hexdigest()


def board(*shots: Shot, max_cost: str | None = None) -> ShotList:
    cap = None if max_cost is None else Decimal(max_cost)
    return ShotList(storyboard=Storyboard(name="b", max_cost=cap), shots=shots)


STORM = Shot(id="storm", prompt="p", image=LocalImage(path="frames/storm.png"), takes=2)
AFTER = Shot(id="after", prompt="q", image=ChainImage(shot="storm", frame="last"))


@pytest.fixture
def problems(tmp_path: Path, frames: Path) -> Callable[[str], list[str]]:
    """Load shot-list text beside the example frames and return its problem lines."""

    def run(text: str) -> list[str]:
        try:
            loads(text, source=tmp_path / "t.toml")
        except ShotListError as error:
            return [str(p) for p in error.problems]
        return []

    return run


def shot(body: str, sid: str = "a") -> str:
    return f'[[shots]]\nid = "{sid}"\nprompt = "p"\nimage = "frames/puddle.png"\n{body}\n'


# The unit key.


@given(sid=shot_ids, take=st.integers(min_value=1, max_value=rules.MAX_TAKES))
def test_a_unit_key_names_its_shot_and_take_and_take_1_is_the_shot_id(sid, take):
    key = unit_key(sid, take)
    assert split_unit_key(key) == (sid, take)
    assert (key == sid) == (take == 1)


@pytest.mark.parametrize("bad", ["a#1", "a#0", "a#02", "a#x", "a#"])
def test_a_malformed_unit_key_is_refused(bad):
    """Take 1 is only ever the plain id, so "a#1" names nothing."""
    with pytest.raises(ValueError, match=r"unit key|invalid literal"):
        split_unit_key(bad)


def test_a_shot_lists_one_unit_key_per_take():
    assert STORM.unit_keys == ("storm", "storm#2")
    assert AFTER.unit_keys == ("after",)


# The checks.


@pytest.mark.parametrize("takes", range(1, 9))
def test_1_to_8_takes_are_allowed(problems, takes):
    assert problems(HEAD + shot(f"takes = {takes}")) == []


@pytest.mark.parametrize("takes", [0, 9, -1, 100])
def test_takes_outside_1_to_8_are_refused_naming_the_range(problems, takes):
    assert problems(HEAD + shot(f"takes = {takes}")) == [
        f'shots[0] (id "a").takes: {takes} is not allowed; a shot has 1 to 8 takes '
        "(each take is a paid render)"
    ]


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("2.0", "not a float (2.0)"),
        ('"2"', 'not a string ("2")'),
        ("[2]", "not a list"),
    ],
)
def test_takes_must_be_an_integer(problems, written, shown):
    assert problems(HEAD + shot(f"takes = {written}")) == [
        f'shots[0] (id "a").takes: must be a whole number of takes (an integer such as 2), {shown}'
    ]


def test_a_boolean_is_not_a_number_of_takes(problems):
    assert problems(HEAD + shot("takes = true")) == [
        'shots[0] (id "a").takes: must be a whole number of takes, not a boolean (true)'
    ]


def test_takes_may_come_from_defaults_and_a_shot_may_override_them(tmp_path, frames):
    text = HEAD + "[defaults]\ntakes = 3\n" + shot("", "a") + shot("takes = 1", "b")
    shotlist = loads(text, source=tmp_path / "t.toml")
    assert [s.takes for s in shotlist.shots] == [3, 1]


def test_a_bad_default_takes_is_reported_once_under_defaults(problems):
    text = HEAD + "[defaults]\ntakes = 0\n" + shot("", "a") + shot("", "b")
    assert problems(text) == [
        "defaults.takes: 0 is not allowed; a shot has 1 to 8 takes (each take is a paid render)"
    ]


def test_a_misspelt_takes_key_suggests_takes(problems):
    assert problems(HEAD + shot("takse = 2")) == [
        'shots[0] (id "a").takse: unknown key; did you mean "takes"?'
    ]


def test_the_default_is_one_take(tmp_path, frames):
    assert loads(HEAD + shot(""), source=tmp_path / "t.toml").shots[0].takes == 1


@given(value=st.integers())
def test_the_takes_rule_accepts_exactly_1_to_8(value):
    assert (rules.takes_error(value) is None) == (1 <= value <= 8)


@given(value=st.floats(allow_nan=True) | st.booleans() | st.text() | st.decimals())
def test_the_takes_rule_refuses_every_non_integer(value):
    assert rules.takes_error(value) is not None


# The price.


@given(
    duration=st.sampled_from(rules.DURATIONS_WITH_LAST_IMAGE),
    takes=st.integers(min_value=1, max_value=8),
)
def test_a_shot_costs_takes_times_the_price_of_a_second_times_its_duration(duration, takes):
    assert rules.takes_cost(MODEL, duration, takes) == Decimal("0.084") * takes * duration


@given(
    takes=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6),
    durations=st.lists(st.sampled_from([5, 10]), min_size=6, max_size=6),
)
def test_a_plan_costs_the_exact_sum_of_every_take(takes, durations):
    shots = tuple(
        Shot(id=f"s{i}", prompt="p", image=UrlImage(url="https://x/y.png"), duration=d, takes=n)
        for i, (n, d) in enumerate(zip(takes, durations, strict=False))
    )
    p = plan(board(*shots))
    expected = sum((Decimal("0.084") * s.takes * s.duration for s in shots), Decimal(0))
    assert p.total_cost == expected
    assert [s.cost for s in p.shots] == [Decimal("0.084") * s.takes * s.duration for s in shots]
    assert len(p.units) == sum(takes)


# Fingerprints.


def test_take_1_keeps_the_shots_fingerprint_and_others_add_their_number():
    units = fingerprint_units(board(STORM), fake_hash)
    plain = fingerprints(board(Shot(id="storm", prompt="p", image=STORM.image)), fake_hash)
    assert units.fingerprints["storm"] == plain["storm"]
    assert units.fingerprints["storm#2"] == take_fingerprint(plain["storm"], 2)
    assert units.fingerprints["storm#2"] != plain["storm"]
    assert units.inputs["storm#2"] == {**units.inputs["storm"], "take": 2}


@given(takes=st.integers(min_value=1, max_value=8))
def test_the_number_of_takes_changes_no_takes_fingerprint(takes):
    """Raising or lowering takes re-renders nothing already rendered."""
    one = fingerprint_units(board(STORM), fake_hash).fingerprints
    other = Shot(id="storm", prompt="p", image=STORM.image, takes=takes)
    many = fingerprint_units(board(other), fake_hash).fingerprints
    assert {k: v for k, v in many.items() if k in one} == {k: one[k] for k in many if k in one}


def test_a_chain_uses_the_picked_take_and_picking_take_1_again_restores_it():
    before = fingerprint_units(board(STORM, AFTER), fake_hash)
    picked = fingerprint_units(board(STORM, AFTER), fake_hash, {"storm": (2, None)})
    back = fingerprint_units(board(STORM, AFTER), fake_hash, {"storm": (1, None)})
    assert picked.picks == {"storm": 2, "after": 1}
    assert picked.fingerprints["storm#2"] == before.fingerprints["storm#2"]
    assert picked.fingerprints["after"] != before.fingerprints["after"]
    assert picked.inputs["after"]["image"] == {
        "shot": before.fingerprints["storm#2"],
        "frame": "last",
        "take": 2,
    }
    assert back.fingerprints == before.fingerprints


def test_a_pick_holds_only_while_it_names_the_video_it_was_made_on():
    made_on = fingerprint_units(board(STORM, AFTER), fake_hash).fingerprints["storm#2"]
    holds = fingerprint_units(board(STORM, AFTER), fake_hash, {"storm": (2, made_on)})
    assert holds.picks["storm"] == 2
    edited = Shot(id="storm", prompt="edited", image=STORM.image, takes=2)
    lapsed = fingerprint_units(board(edited, AFTER), fake_hash, {"storm": (2, made_on)})
    assert lapsed.picks["storm"] == 1
    fewer = Shot(id="storm", prompt="p", image=STORM.image, takes=1)
    kept = fingerprint_units(board(fewer, AFTER), fake_hash, {"storm": (2, made_on)})
    assert kept.picks["storm"] == 2  # lowering `takes` is no edit: the pick survives
    edited_fewer = attrs.evolve(fewer, prompt="edited")
    lapsed = fingerprint_units(board(edited_fewer, AFTER), fake_hash, {"storm": (2, made_on)})
    assert lapsed.picks["storm"] == 1


def test_a_pick_survives_lowering_takes_with_its_fingerprint_and_its_chains():
    """Explore 3 takes, pick take 2, set takes = 1: the shot's one take is take 2."""
    three = Shot(id="storm", prompt="p", image=STORM.image, takes=3)
    explored = fingerprint_units(board(three, AFTER), fake_hash, {"storm": (2, None)})
    made_on = explored.fingerprints["storm#2"]
    one = attrs.evolve(three, takes=1)
    lowered = fingerprint_units(board(one, AFTER), fake_hash, {"storm": (2, made_on)})
    assert lowered.picks == {"storm": 2, "after": 1}
    assert lowered.keys_of(one) == ("storm#2",)
    assert set(lowered.fingerprints) == {"storm#2", "after"}  # take 1 is no longer kept
    assert lowered.fingerprints["storm#2"] == made_on
    assert lowered.fingerprints["after"] == explored.fingerprints["after"]  # chain unchanged
    assert lowered.shots["storm"] == explored.shots["storm"]
    two = attrs.evolve(three, takes=2)
    third = {"storm": (3, take_fingerprint(lowered.shots["storm"], 3))}
    assert fingerprint_units(board(two), fake_hash, third).keys_of(two) == ("storm", "storm#3")


def test_a_pick_past_takes_is_kept_only_as_recorded_with_its_fingerprint():
    one = Shot(id="storm", prompt="p", image=STORM.image, takes=1)
    assert fingerprint_units(board(one), fake_hash, {"storm": (2, None)}).picks["storm"] == 1
    assert fingerprint_units(board(one), fake_hash, {"storm": (9, None)}).picks["storm"] == 1


@given(takes=st.integers(min_value=1, max_value=8), pick=st.integers(min_value=1, max_value=8))
def test_a_shot_keeps_as_many_takes_as_asked_the_picked_one_among_them(takes, pick):
    kept = kept_takes(takes, pick)
    assert len(kept) == takes
    assert pick in kept
    assert list(kept) == sorted(set(kept))
    assert kept[: takes - 1] == tuple(range(1, takes))  # the first ones, as asked


def test_a_stale_chain_says_which_take_of_its_source_was_picked():
    before = fingerprint_units(board(STORM, AFTER), fake_hash).inputs["after"]
    after = fingerprint_units(board(STORM, AFTER), fake_hash, {"storm": (2, None)})
    assert explain_change(before, after.inputs["after"]) == "image: take 2 of its source was picked"


# The plan.


def test_a_plan_keeps_one_entry_per_shot_with_its_takes_and_their_total():
    p = plan(board(STORM, AFTER))
    as_json = plan_as_json(p)
    assert as_json["shots"] == [
        {
            "id": "storm",
            "duration": 5,
            "takes": 2,
            "cost": "0.840",
            "status": "render",
            "pick": 1,
            "take_status": ["render", "render"],
        },
        {
            "id": "after",
            "duration": 5,
            "takes": 1,
            "cost": "0.420",
            "status": "render",
            "pick": 1,
            "take_status": ["render"],
        },
    ]
    assert as_json["total_cost"] == "1.260"
    assert [u.id for u in p.units] == ["storm", "storm#2", "after"]


def test_cached_takes_cost_nothing_and_only_the_new_take_is_paid_for():
    p = plan(board(STORM, AFTER), statuses={"storm": "cached", "after": "cached"})
    assert [(u.id, u.cost) for u in p.units] == [
        ("storm", Decimal("0.000")),
        ("storm#2", Decimal("0.420")),
        ("after", Decimal("0.000")),
    ]
    assert p.total_cost == Decimal("0.420")
    assert "render 1, cached 1" in format_plan(p)
    assert "for 1 shot to render (5 s)" in format_plan(p)


def test_the_plan_table_shows_takes_and_the_picked_take_a_chain_uses():
    text = format_plan(plan(board(STORM, AFTER), picks={"storm": 2}))
    assert "takes" in text.splitlines()[1]
    assert "last frame of storm (take 2)" in text
    assert "total: 1.260 USD for 2 shots (3 takes) to render (15 s)" in text


def test_a_plan_without_takes_prints_as_it_always_did():
    text = format_plan(plan(board(Shot(id="a", prompt="p", image=STORM.image))))
    assert text.splitlines()[1].split() == ["#", "id", "duration", "frames", "cost", "status"]


def test_the_budget_counts_every_take():
    p = plan(board(STORM, max_cost="0.84"))
    assert p.budget_problem() is None
    over = plan(board(STORM, AFTER, max_cost="0.84"))
    problem = over.budget_problem()
    assert problem is not None
    assert "1.260 USD for 2 shots (3 takes) to render" in problem.message


def test_chained_takes_wait_for_the_picked_take_of_their_source():
    chained = Shot(id="after", prompt="q", image=AFTER.image, takes=2)
    p = plan(board(STORM, chained), picks={"storm": 2})
    assert {u.id: u.sources for u in p.units} == {
        "storm": (),
        "storm#2": (),
        "after": ("storm#2",),
        "after#2": ("storm#2",),
    }


def test_a_pick_beyond_the_shots_takes_is_kept_as_one_of_its_takes():
    """The picks a plan gets are in force (`fingerprint_units` said so): one past takes too."""
    p = plan(board(STORM, AFTER), picks={"storm": 5})
    assert p.shots[0].pick == 5
    assert [u.id for u in p.shots[0].takes] == ["storm", "storm#5"]
    assert p.units[-1].sources == ("storm#5",)
    assert "2 (take 5 picked)" in format_plan(p)


# The engine admits takes like shots.


def test_each_take_is_started_and_reserved_on_its_own_and_a_chain_waits_for_the_pick():
    state = Admission(plan=plan(board(STORM, AFTER), picks={"storm": 2}), concurrency=4)
    # The picked take has a chain waiting on it: it starts first.
    assert decide(state, RunStarted()) == [StartShot("storm#2", 1), StartShot("storm", 1)]
    assert state.committed == Decimal("0.840")
    assert decide(state, ShotEnded(shot_id="storm", outcome="done", charged=True)) == []
    assert decide(state, ShotEnded(shot_id="storm#2", outcome="done", charged=True)) == [
        StartShot("after", 1)
    ]


def test_a_budget_that_fits_one_take_starts_one_take():
    state = Admission(plan=plan(board(STORM)), concurrency=4, max_cost=Decimal("0.42"))
    assert decide(state, RunStarted()) == [StartShot("storm", 1)]


# Resuming: raising and lowering takes.


def resume_kinds(shotlist: ShotList, rendered: set[str], **kwargs: object) -> dict[str, str]:
    units = fingerprint_units(shotlist, fake_hash)
    recorded = {
        key: take_fingerprint(units.fingerprints[split_unit_key(key)[0]], split_unit_key(key)[1])
        for key in rendered
    }

    def latest(key: str, fingerprint: str | None) -> object:
        if key in recorded and fingerprint in (None, recorded[key]):
            return _Downloaded(key, recorded[key])
        return None

    decided = assess(
        shotlist,
        fingerprints=units.fingerprints,
        inputs=units.inputs,
        latest=latest,  # type: ignore[arg-type]
        output_ok=lambda _: True,
        **kwargs,  # type: ignore[arg-type]
    )
    return {key: r.kind for key, r in decided.items()}


class _Downloaded:
    """The little of an attempt `assess` reads for a rendered take."""

    state = "downloaded"
    error = ""
    task_id = "t"

    def __init__(self, key: str, fingerprint: str) -> None:
        self.shot_id, self.fingerprint = key, fingerprint


def test_raising_takes_renders_only_the_new_ones():
    one = Shot(id="storm", prompt="p", image=STORM.image, takes=1)
    three = Shot(id="storm", prompt="p", image=STORM.image, takes=3)
    assert resume_kinds(board(one), set()) == {"storm": "render"}
    assert resume_kinds(board(three), {"storm"}) == {
        "storm": "cached",
        "storm#2": "render",
        "storm#3": "render",
    }


def test_lowering_takes_renders_nothing_and_forgets_no_take():
    """The takes beyond the new count are simply no longer asked for; gc removes them."""
    one = Shot(id="storm", prompt="p", image=STORM.image, takes=1)
    assert resume_kinds(board(one), {"storm", "storm#2"}) == {"storm": "cached"}


def test_rerender_of_a_shot_renders_every_take_and_of_one_take_that_take_alone():
    shotlist = board(STORM, AFTER)
    assert forced_units(shotlist, ["storm"]) == {"storm", "storm#2", "after"}
    assert forced_units(shotlist, ["storm#2"]) == {"storm#2"}
    assert forced_units(shotlist, ["storm#2"], {"storm": 2}) == {"storm#2", "after"}
    kinds = resume_kinds(shotlist, {"storm", "storm#2", "after"}, rerender=["storm#2"])
    assert kinds == {"storm": "cached", "storm#2": "render", "after": "cached"}


def test_a_failed_take_that_is_not_picked_leaves_the_chained_shot_to_start():
    state = Admission(plan=plan(board(STORM, AFTER)), concurrency=4)
    decide(state, RunStarted())
    assert decide(state, ShotEnded(shot_id="storm#2", outcome="failed", charged=False)) == []
    assert decide(state, ShotEnded(shot_id="storm", outcome="done", charged=True)) == [
        StartShot("after", 1)
    ]


def test_a_failed_picked_take_skips_the_shots_chained_from_it():
    state = Admission(plan=plan(board(STORM, AFTER), picks={"storm": 2}), concurrency=4)
    decide(state, RunStarted())
    actions = decide(state, ShotEnded(shot_id="storm#2", outcome="failed", charged=False))
    assert [type(a).__name__ for a in actions] == ["SkipShot"]
    assert state.phase["after"] == "skipped"
