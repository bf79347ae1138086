"""The model catalogue: durations and prices, exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._shotlist import rules


@given(value=st.integers(min_value=-50, max_value=50), has_last=st.booleans())
def test_an_int_duration_is_accepted_iff_the_contract_allows_it(value, has_last):
    """With last_image: 3..10; without: 5 or 10. Nothing else."""
    allowed = 3 <= value <= 10 if has_last else value in (5, 10)
    assert (rules.duration_error(value, has_last_image=has_last) is None) is allowed


@given(
    value=st.floats(allow_nan=True) | st.decimals() | st.booleans() | st.text() | st.none(),
    has_last=st.booleans(),
)
def test_non_integer_durations_are_always_refused(value, has_last):
    """Floats (even 5.0), decimals, bools, strings: never a duration."""
    assert rules.duration_error(value, has_last_image=has_last) is not None


@given(duration=st.integers(min_value=3, max_value=10))
def test_a_shot_costs_exactly_0_084_per_second(duration):
    cost = rules.shot_cost(rules.IMAGE_TO_VIDEO, duration)
    assert cost == Decimal("0.084") * duration
    assert isinstance(cost, Decimal)


@pytest.mark.parametrize(("duration", "cost"), [(5, "0.420"), (7, "0.588"), (10, "0.840")])
def test_documented_prices(duration, cost):
    assert str(rules.shot_cost(rules.IMAGE_TO_VIDEO, duration)) == cost


def test_an_unknown_model_has_no_price():
    with pytest.raises(KeyError):
        rules.price_per_second("nope")


def test_shot_lists_may_name_every_model_of_the_catalogue():
    assert rules.SHOT_LIST_MODELS[0] == rules.IMAGE_TO_VIDEO == rules.DEFAULT_MODEL
    assert rules.TEXT_TO_VIDEO in rules.SHOT_LIST_MODELS
