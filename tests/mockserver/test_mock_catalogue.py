"""The mock keeps its own table of WaveSpeed's rules; it must agree with the client's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kling_pipe._shotlist import catalogue as client
from kling_pipe._shotlist import rules
from mockserver import catalogue

ENTRIES = list(client.CATALOGUE.values())


def test_the_mock_serves_exactly_the_models_the_client_knows():
    assert set(catalogue.MODELS) == set(client.CATALOGUE)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.path)
def test_both_sides_agree_on_what_a_model_takes(entry):
    served = catalogue.MODELS[entry.model_id]
    assert served.takes_image == entry.takes_image
    assert served.end_frame == entry.end_frame_field
    assert set(served.fields) == set(entry.field_names)
    for field in entry.fields:
        rule = served.fields[field.name]
        assert rule.kind == field.kind
        assert rule.choices == field.choices
        if field.kind == "number":
            assert (rule.low, rule.high) == (float(field.minimum), float(field.maximum))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.path)
def test_both_sides_accept_the_same_durations_with_and_without_an_end_frame(entry):
    for has_end in (False, True):
        wanted = entry.durations.durations(has_end_frame=has_end)
        assert catalogue.durations(entry.model_id, has_last_image=has_end) == wanted
        for seconds in range(20):
            accepted = catalogue.duration_problem(entry.model_id, seconds, has_last_image=has_end)
            assert (accepted is None) == (seconds in wanted), (entry.path, has_end, seconds)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.path)
def test_every_confirmed_price_is_what_the_mock_bills(entry):
    """Per second (and the minimum charge) where it is confirmed; a default run's price."""
    served = catalogue.MODELS[entry.model_id]
    assert served.stand_in_price is not entry.price.confirmed
    assert served.min_billed_seconds == entry.price.min_billed_seconds
    for seconds in entry.durations.durations(has_end_frame=True):
        price = client.price_of(entry, seconds)
        if price is not None:
            assert catalogue.cost(entry.model_id, seconds) == price, (entry.path, seconds)
    if entry.price.usd_per_default_run is not None:
        assert served.default_run_usd == entry.price.usd_per_default_run
        default = entry.durations.default
        assert catalogue.cost(entry.model_id, default) == entry.price.usd_per_default_run


def test_both_sides_share_the_defaults_and_limits():
    assert catalogue.DEFAULT_DURATION == rules.DEFAULT_DURATION
    assert all(e.durations.default == catalogue.DEFAULT_DURATION for e in ENTRIES)
    assert catalogue.MAX_PROMPT_CHARS == rules.MAX_PROMPT_CHARS
    assert catalogue.MAX_IMAGE_BYTES == rules.MAX_IMAGE_BYTES
    assert catalogue.ASPECT_RATIOS == rules.ASPECT_RATIOS
    assert (catalogue.IMAGE_TO_VIDEO, catalogue.TEXT_TO_VIDEO) == (
        rules.IMAGE_TO_VIDEO,
        rules.TEXT_TO_VIDEO,
    )


def test_the_mock_imports_nothing_from_kling_pipe():
    """The mock stands in for WaveSpeed: a separate program, sharing no code with the client."""
    code = (
        "import importlib, pkgutil, sys, mockserver\n"
        "for m in pkgutil.iter_modules(mockserver.__path__):\n"
        "    if m.name != '__main__': importlib.import_module(f'mockserver.{m.name}')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kling_pipe'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
