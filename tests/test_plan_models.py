"""Planning a storyboard of several models: each shot at its own model's price."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import loads
from kling_pipe._backends.prices import mock_price, price_for, stand_in_priced
from kling_pipe._decisions.plan import catalogue_price, format_plan, plan, unpriced_problem
from kling_pipe._shotlist import catalogue
from kling_pipe._shotlist.specs import Shot
from tests.strategies import catalogue_entries, model_field_values

BOARD = """version = 1
[storyboard]
name = "mixed"
[[shots]]
id = "o1"
prompt = "p"
image = "frames/puddle.png"
[[shots]]
id = "turbo"
prompt = "p"
image = "frames/puddle.png"
model = "kling-v2.5-turbo-std/image-to-video"
takes = 2
[[shots]]
id = "v3"
prompt = "p"
image = "frames/river.png"
model = "kling-v3.0-std/image-to-video"
duration = 12
sound = true
[[shots]]
id = "t2v"
prompt = "a lighthouse"
model = "kling-v3.0-std/text-to-video"
"""


def _board(tmp_path: Path):
    return loads(BOARD, source=tmp_path / "mixed.toml")


def test_against_wavespeed_an_unconfirmed_price_is_shown_and_refuses_the_run(tmp_path, frames):
    p = plan(_board(tmp_path), price=price_for("https://api.wavespeed.ai"))
    # 0.420 (O1 5 s) + 2 x 0.35 (turbo, 5 s, minimum charge) + 0.42 (v3 t2v, default run)
    assert p.total_cost == Decimal("1.540")
    assert [u.id for u in p.unpriced] == ["v3"]
    table = format_plan(p)
    assert "price unconfirmed" in table
    assert "1 at a price nobody confirmed, not counted" in table
    problem = unpriced_problem(p, real_money=True)
    assert problem is not None
    assert "v3 (kwaivgi/kling-v3.0-std/image-to-video)" in problem.message
    assert unpriced_problem(p, real_money=False) is None


def test_against_the_mock_every_shot_has_a_price_and_the_stand_ins_are_named(tmp_path, frames):
    board = _board(tmp_path)
    p = plan(board, price=price_for("mock"))
    assert p.unpriced == ()
    assert p.total_cost == Decimal("1.540") + Decimal("0.084") * 12
    assert stand_in_priced(board.shots, "mock") == ["v3"]
    assert stand_in_priced(board.shots, "https://api.wavespeed.ai") == []


def test_a_confirmed_price_is_the_same_on_every_backend(tmp_path, frames):
    for shot in _board(tmp_path).shots:
        if catalogue_price(shot) is not None:
            assert mock_price(shot) == catalogue_price(shot)


def test_the_plan_table_names_each_shots_model_when_they_differ(tmp_path, frames):
    table = format_plan(plan(_board(tmp_path)))
    assert "kling-v2.5-turbo-std/image-to-video" in table
    assert "(text only)" in table


def test_plan_json_names_a_shots_own_model_and_an_unconfirmed_price(tmp_path, frames):
    from kling_pipe._decisions.plan import plan_as_json  # noqa: PLC0415

    document = plan_as_json(plan(_board(tmp_path)))
    shots = {s["id"]: s for s in document["shots"]}
    assert "model" not in shots["o1"]
    assert shots["turbo"]["model"] == "kwaivgi/kling-v2.5-turbo-std/image-to-video"
    assert shots["v3"]["price_unconfirmed"] is True
    assert shots["v3"]["cost"] == "0.000"
    assert "price_unconfirmed" not in shots["t2v"]


@given(entry=catalogue_entries(), data=st.data())
def test_a_shot_is_priced_by_its_models_rule_with_every_field_it_sets(entry, data):
    """A model priced by the second is priced without its fields: they never change it."""
    fields = data.draw(model_field_values(entry))
    duration = data.draw(st.sampled_from(entry.durations.allowed))
    shot = Shot(id="s", model=entry.model_id, duration=duration, **fields)
    assert catalogue_price(shot) == catalogue.price_of(entry, duration, shot.model_fields)
