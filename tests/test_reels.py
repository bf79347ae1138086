"""Reel names for edit lists: distinct, at most eight letters and digits, the id where it fits."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._outputs.reels import reel_names
from tests.strategies import shot_ids


def test_an_id_whose_first_eight_letters_are_its_own_is_its_reel():
    assert reel_names(["dawn", "open-sea", "harbour-wide", "gulls"]) == {
        "dawn": "dawn",
        "open-sea": "opensea",
        "harbour-wide": "harbourw",
        "gulls": "gulls",
    }


def test_ids_that_cut_to_one_name_keep_their_first_letters_and_a_hash_each():
    reels = reel_names(["harbour-wide", "harbour-wide-b", "gulls"])
    assert reels["gulls"] == "gulls"
    assert reels["harbour-wide"] != reels["harbour-wide-b"]
    assert all(
        re.fullmatch(r"harbo[a-z0-9]{3}", reels[s]) for s in ("harbour-wide", "harbour-wide-b")
    )


def test_a_shared_id_keeps_its_reel_whoever_shares_it():
    """The hashed name is the id's own: adding a third look-alike leaves the first two be."""
    two = reel_names(["harbour-wide", "harbour-wide-b"])
    three = reel_names(["harbour-wide", "harbour-wide-b", "harbour-wide-c"])
    assert three["harbour-wide"] == two["harbour-wide"]
    assert three["harbour-wide-b"] == two["harbour-wide-b"]


def test_black_bars_and_auxiliary_reel_names_are_never_a_shots():
    reels = reel_names(["bl", "black", "bars", "ax"])
    assert not {"bl", "black", "bars", "ax"} & set(reels.values())


def test_a_hashed_name_that_equals_another_shots_reel_takes_the_next_hash():
    """A shot may be called what another's hashed reel would be: it keeps its own name."""
    first = reel_names(["abcdefghij", "abcdefghik"])
    clash = first["abcdefghij"]
    reels = reel_names(["abcdefghij", "abcdefghik", clash])
    assert reels[clash] == clash
    assert len(set(reels.values())) == 3


@given(st.lists(shot_ids, min_size=1, max_size=40, unique=True), st.randoms())
def test_reels_are_distinct_short_and_independent_of_order(ids, random):
    reels = reel_names(ids)
    assert list(reels) == ids
    assert len(set(reels.values())) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]{1,8}", r) for r in reels.values())
    shuffled = list(ids)
    random.shuffle(shuffled)
    assert reel_names(shuffled) == reels
