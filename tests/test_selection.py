"""`--only`: which takes a name selects (ids, takes, globs), and names that select nothing."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import structure
from kling_pipe._decisions.selection import SelectionError, select_units, units_of
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from tests.strategies import shot_list_documents


def board(*shots: Shot) -> ShotList:
    return ShotList(storyboard=Storyboard(name="b"), shots=shots)


def s(sid: str, takes: int = 1) -> Shot:
    return Shot(id=sid, prompt="p", image=UrlImage(url="https://x/y.png"), takes=takes)


HARBOUR = board(s("harbour-1"), s("harbour-2", takes=3), s("storm", takes=2), s("dusk"))


def test_a_shot_id_selects_every_take_of_the_shot():
    assert select_units(HARBOUR, ["storm"]) == {"storm", "storm#2"}


def test_an_id_and_take_selects_that_take_alone():
    assert select_units(HARBOUR, ["storm#2"]) == {"storm#2"}


def test_take_one_may_be_named_as_id_hash_one():
    assert select_units(HARBOUR, ["storm#1"]) == {"storm"}


def test_a_glob_selects_every_take_of_every_shot_it_matches():
    assert select_units(HARBOUR, ["harbour-*"]) == {
        "harbour-1",
        "harbour-2",
        "harbour-2#2",
        "harbour-2#3",
    }


def test_a_glob_with_a_take_selects_that_take_of_each_shot_that_has_it():
    assert select_units(HARBOUR, ["*#3"]) == {"harbour-2#3"}


def test_a_take_the_shot_does_not_have_selects_nothing_and_is_refused():
    with pytest.raises(SelectionError, match=r"'dusk#2' names no shot or take of shotlist.toml"):
        select_units(HARBOUR, ["dusk#2"])


def test_names_that_select_nothing_are_refused_in_one_line_naming_each():
    with pytest.raises(SelectionError) as refused:
        select_units(HARBOUR, ["storm", "harbor-*", "sotrm"])
    assert str(refused.value) == (
        "--only: 'harbor-*', 'sotrm' name no shot or take of shotlist.toml; its shots: "
        "harbour-1, harbour-2#1-3, storm#1-2, dusk (give ids, id#take or globs such as "
        "'harbour-*')"
    )


def test_a_long_shot_list_names_its_first_twenty_ids_and_how_many_more():
    many = board(*(s(f"s{n:02}") for n in range(25)))
    with pytest.raises(SelectionError) as refused:
        select_units(many, ["x"])
    assert "its shots: s00, s01, " in str(refused.value)
    assert "s19 and 5 more (give ids" in str(refused.value)


def test_an_empty_only_is_refused():
    with pytest.raises(SelectionError, match="--only: no shot named"):
        select_units(HARBOUR, [])


def test_a_pick_kept_past_lowered_takes_is_selectable():
    # takes = 1 and take 2 picked: the shot's one take is take 2 (`kept_keys`).
    assert select_units(board(s("river")), ["river"], {"river": 2}) == {"river#2"}
    assert select_units(board(s("river")), ["river#2"], {"river": 2}) == {"river#2"}


def test_units_of_ignores_names_that_select_nothing():
    assert units_of(HARBOUR, ["storm#2", "nothing"]) == {"storm#2"}


@given(doc=shot_list_documents(), data=st.data())
def test_a_selection_is_exactly_the_takes_of_the_shots_a_glob_matches(doc, data):
    shotlist = structure(doc, check_image=None)
    ids = [x.id for x in shotlist.shots]
    pattern = data.draw(st.sampled_from([*ids, "*", "s*", "[a-m]*", "?"]))
    matched = [x for x in shotlist.shots if fnmatch.fnmatchcase(x.id, pattern)]
    expected = {k for x in matched for k in x.unit_keys}
    if expected:
        assert select_units(shotlist, [pattern]) == expected
    else:
        with pytest.raises(SelectionError):
            select_units(shotlist, [pattern])
