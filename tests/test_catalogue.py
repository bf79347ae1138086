"""The Kling catalogue: every entry's duration and price rules, over every entry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._shotlist import catalogue, rules
from kling_pipe._shotlist.catalogue import CATALOGUE, find_model, price_of
from tests.strategies import catalogue_entries, model_field_values

ENTRIES = list(CATALOGUE.values())


@given(entry=catalogue_entries(), value=st.integers(-5, 40), has_end=st.booleans())
def test_a_duration_is_accepted_iff_the_entry_lists_it(entry, value, has_end):
    allowed = entry.durations.durations(has_end_frame=has_end)
    error = rules.duration_error(value, has_last_image=has_end, model=entry.model_id)
    assert (error is None) is (value in allowed)
    if error is not None:
        assert str(value) in error


@given(entry=catalogue_entries(), value=st.floats() | st.booleans() | st.text() | st.none())
def test_a_duration_that_is_no_whole_number_is_refused_by_every_model(entry, value):
    assert rules.duration_error(value, has_last_image=False, model=entry.model_id) is not None


@given(entry=catalogue_entries())
def test_every_entry_has_a_default_duration_it_takes_and_says_where_it_came_from(entry):
    assert entry.durations.default in entry.durations.allowed
    assert entry.source.startswith("https://")
    assert entry.durations.source
    assert entry.price.source
    assert all(f.source for f in entry.fields)
    for field in entry.fields:
        if field.kind == "choice":
            assert field.default == field.choices[0]


@given(entry=catalogue_entries(), data=st.data())
def test_a_price_is_exact_never_below_the_minimum_charge_and_grows_with_duration(entry, data):
    seconds = data.draw(st.sampled_from(entry.durations.durations(has_end_frame=True)))
    price = price_of(entry, seconds)
    if entry.price.usd_per_second is None:
        return
    assert isinstance(price, Decimal)
    billed = max(seconds, entry.price.min_billed_seconds)
    assert price == entry.price.usd_per_second * billed
    assert price >= entry.price.usd_per_second * entry.price.min_billed_seconds
    longer = [d for d in entry.durations.durations(has_end_frame=True) if d > seconds]
    for other in longer:
        assert price_of(entry, other) >= price


@given(entry=catalogue_entries(), data=st.data())
def test_a_default_run_price_prices_the_default_request_only(entry, data):
    fields = data.draw(model_field_values(entry))
    seconds = data.draw(st.sampled_from(entry.durations.allowed))
    price = price_of(entry, seconds, fields)
    rule = entry.price
    if rule.usd_per_second is not None:
        assert price is not None
    elif rule.usd_per_default_run is None:
        assert price is None  # unconfirmed: never invented
    else:
        at_default = seconds == entry.durations.default and all(
            entry.field(name).default == value for name, value in fields.items()
        )
        assert price == (rule.usd_per_default_run if at_default else None)


@pytest.mark.parametrize(
    ("path", "seconds", "usd"),
    [
        ("kling-video-o1-std/image-to-video", 5, "0.420"),
        ("kling-video-o1-std/image-to-video", 7, "0.588"),
        ("kling-v2.5-turbo-std/image-to-video", 5, "0.35"),
        ("kling-v2.5-turbo-std/image-to-video", 10, "0.70"),
        ("kling-v2.6-std/text-to-video", 5, "0.21"),
        ("kling-v3.0-std/text-to-video", 5, "0.42"),
    ],
)
def test_the_prices_wavespeed_states(path, seconds, usd):
    assert str(price_of(find_model(path), seconds)) == usd


def test_the_minimum_charge_bills_a_short_render_as_five_seconds():
    turbo = find_model("kling-v2.5-turbo-std/image-to-video")
    assert catalogue.billed_seconds(turbo, 3) == 5
    assert catalogue.billed_seconds(turbo, Decimal("5.2")) == 6
    assert price_of(turbo, 3) == Decimal("0.35")


def test_unconfirmed_prices_stay_unconfirmed():
    for path in (
        "kling-video-o1-std/text-to-video",
        "kling-v2.1-i2v-standard",
        "kling-v2.6-std/image-to-video",
        "kling-v2.6-pro/image-to-video",
        "kling-v3.0-std/image-to-video",
    ):
        entry = find_model(path)
        assert not entry.price.confirmed
        assert price_of(entry, entry.durations.default) is None
        assert "unconfirmed" in entry.price.source


def test_a_model_is_named_by_its_full_id_or_its_path_alone():
    short = find_model("kling-v3.0-std/text-to-video")
    assert short is find_model("kwaivgi/kling-v3.0-std/text-to-video")
    assert short.model_id == "kwaivgi/kling-v3.0-std/text-to-video"
    assert find_model("kling-v9/text-to-video") is None
    assert catalogue.DEFAULT_MODEL == ENTRIES[0].model_id == rules.IMAGE_TO_VIDEO


def test_each_model_names_its_end_frame_as_its_page_does():
    assert find_model("kling-video-o1-std/image-to-video").end_frame_field == "last_image"
    assert find_model("kling-v3.0-std/image-to-video").end_frame_field == "end_image"
    assert all(e.end_frame_field is None for e in ENTRIES if not e.takes_image)
