"""The mock keeps its own table of WaveSpeed's rules; it must agree with the client's."""

from __future__ import annotations

import subprocess
import sys

from kling_pipe._shotlist import rules
from mockserver import catalogue


def test_the_mock_serves_exactly_the_models_the_client_knows():
    assert set(catalogue.MODELS) == set(rules.CATALOGUE)
    for model, info in rules.CATALOGUE.items():
        assert catalogue.MODELS[model].takes_image == info.takes_image


def test_every_model_costs_the_same_per_second_on_both_sides():
    for model in rules.CATALOGUE:
        assert catalogue.MODELS[model].usd_per_second == rules.price_per_second(model)
        for seconds in range(1, 11):
            assert catalogue.cost(model, seconds) == rules.shot_cost(model, seconds)


def test_both_sides_accept_the_same_durations_with_and_without_a_last_image():
    for model, info in rules.CATALOGUE.items():
        for has_last in (True, False):
            client = rules.allowed_durations(has_last_image=info.takes_image and has_last)
            assert catalogue.durations(model, has_last_image=has_last) == client
            for seconds in range(12):
                accepted = catalogue.duration_problem(model, seconds, has_last_image=has_last)
                assert (accepted is None) == (seconds in client), (model, has_last, seconds)


def test_both_sides_share_the_defaults_and_limits():
    assert catalogue.DEFAULT_DURATION == rules.DEFAULT_DURATION
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
