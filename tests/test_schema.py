"""The shot-list JSON Schema agrees with the validator: on the examples, on bad files, always."""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal

import jsonschema
import pytest
from hypothesis import given

import kling_pipe
from kling_pipe._shotlist import schema
from kling_pipe.exceptions import ShotListError
from tests.cli_support import REPO, SPECS
from tests.strategies import shot_list_documents, to_toml

COMMITTED = REPO / "docs" / "shotlist.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(schema.shot_list_schema())

HEAD = 'version = 1\n[storyboard]\nname = "b"\n'
SHOT = '[[shots]]\nid = "a"\nprompt = "p"\nimage = "frames/a.png"\n'


def parse(text: str) -> dict:
    """Parse TOML the way the loader does, floats as Decimal."""
    return tomllib.loads(text, parse_float=Decimal)


def schema_errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(parse(text))]


def validator_accepts(text: str) -> bool:
    try:
        kling_pipe.loads(text, check_image=None)
    except ShotListError:
        return False
    return True


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema.shot_list_schema())
    assert schema.shot_list_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.glob("*.toml")))
def test_every_example_shot_list_validates_against_the_schema(specs, name):
    assert schema_errors((specs / name).read_text(encoding="utf-8")) == []


def test_the_committed_schema_is_what_the_code_generates():
    assert COMMITTED.read_text(encoding="utf-8") == schema.schema_json(), (
        "docs/shotlist.schema.json is stale: run "
        "`kling-pipe schema > docs/shotlist.schema.json` and commit it"
    )


def test_the_schema_json_is_plain_json_that_round_trips():
    assert json.loads(schema.schema_json()) == schema.shot_list_schema()


def test_the_id_pattern_and_durations_come_from_the_rules():
    s = schema.shot_list_schema()
    shot = s["$defs"]["Shot"]["properties"]
    assert shot["id"]["pattern"] == "^[a-z0-9_-]{1,64}$"
    assert shot["duration"]["enum"] == list(range(3, 16))  # every model's, v3.0's 15 s too
    assert shot["duration"]["default"] == 5
    assert shot["prompt"]["maxLength"] == 2500
    assert s["$defs"]["ChainImage"]["properties"]["frame"]["enum"] == ["first", "last"]


def test_every_object_refuses_unknown_keys():
    s = schema.shot_list_schema()
    objects = [s, *(d for d in s["$defs"].values() if d.get("type") == "object")]
    assert len(objects) == 6  # with a multi-shot prompt's parts
    assert all(o["additionalProperties"] is False for o in objects)


def test_every_key_has_a_title_and_a_description_for_hover_text():
    s = schema.shot_list_schema()
    objects = [s, *(d for d in s["$defs"].values() if d.get("type") == "object")]
    for obj in objects:
        for key, prop in obj["properties"].items():
            assert prop["title"] == key
            assert len(prop["description"]) > 20


def test_a_spec_field_the_validator_does_not_know_fails_generation(monkeypatch):
    monkeypatch.setitem(schema._KEYS, kling_pipe.Shot, ("id", "prompt"))
    with pytest.raises(RuntimeError, match="differ from the keys the validator knows"):
        schema.shot_list_schema()


INVALID = {
    "bad id": SHOT.replace('"a"', '"Storm"'),
    "id too long": SHOT.replace('"a"', '"' + "a" * 65 + '"'),
    "duration 7 without last_image": SHOT + "duration = 7\n",
    "duration 11 with last_image": SHOT + 'last_image = "frames/b.png"\nduration = 11\n',
    "unknown shot key": SHOT + "durration = 5\n",
    "unknown top key": "colour = 1\n" + SHOT,
    "bad chain frame": SHOT
    + '[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a", frame = "middle" }\n',
    "chain without frame": SHOT + '[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a" }\n',
    "chain with an extra key": SHOT
    + '[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a", frame = "last", at = 1 }\n',
    "duration as a string": SHOT + 'duration = "5"\n',
    "duration as a float": SHOT + "duration = 5.0\n",
    "duration as a boolean": SHOT + "duration = true\n",
    "prompt as a number": SHOT.replace('prompt = "p"', "prompt = 5"),
    "blank prompt": SHOT.replace('prompt = "p"', 'prompt = "   "'),
    "prompt too long": SHOT.replace('prompt = "p"', f'prompt = "{"x" * 2501}"'),
    "image as a number": SHOT.replace('"frames/a.png"', "3"),
    "empty image": SHOT.replace('"frames/a.png"', '""'),
    "ftp image": SHOT.replace('"frames/a.png"', '"ftp://x.test/a.png"'),
    "missing prompt": '[[shots]]\nid = "a"\nimage = "frames/a.png"\n',
    "missing image": '[[shots]]\nid = "a"\nprompt = "p"\n',
    "missing id": '[[shots]]\nprompt = "p"\nimage = "frames/a.png"\n',
    "a default duration some shot cannot take": "[defaults]\nduration = 7\n" + SHOT,
    "id in defaults": '[defaults]\nid = "x"\n' + SHOT,
    "no shots": "shots = []\n",
}
STORYBOARD_INVALID = {
    "version 2": 'version = 2\n[storyboard]\nname = "b"\n',
    "no storyboard": "version = 1\n",
    "unknown storyboard key": '[storyboard]\nname = "b"\nmodle = 1\n',
    "no name": "[storyboard]\nconcurrency = 2\n",
    "name with a slash": '[storyboard]\nname = "a/b"\n',
    "name ..": '[storyboard]\nname = ".."\n',
    "blank name": '[storyboard]\nname = "  "\n',
    "concurrency 0": '[storyboard]\nname = "b"\nconcurrency = 0\n',
    "concurrency as a string": '[storyboard]\nname = "b"\nconcurrency = "4"\n',
    "negative max_cost": '[storyboard]\nname = "b"\nmax_cost = -1.0\n',
    "negative budget": '[storyboard]\nname = "b"\nbudget = -1.0\n',
    "budget as a string": '[storyboard]\nname = "b"\nbudget = "12"\n',
    "unknown model": '[storyboard]\nname = "b"\nmodel = "kwaivgi/kling-v9"\n',
    "blank output_dir": '[storyboard]\nname = "b"\noutput_dir = " "\n',
}
CASES = {k: HEAD + v for k, v in INVALID.items()} | {
    k: v + SHOT for k, v in STORYBOARD_INVALID.items()
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_an_invalid_shot_list_is_refused_by_both_the_schema_and_the_validator(text):
    assert schema_errors(text) != []
    assert not validator_accepts(text)


VALID = {
    "plain": HEAD + SHOT,
    "a default last_image allows 7 s everywhere": HEAD
    + '[defaults]\nlast_image = "frames/z.png"\nduration = 7\n'
    + SHOT,
    "a default prompt and image stand in for the shot's": HEAD
    + '[defaults]\nprompt = "p"\nimage = "https://x.test/a.png"\n[[shots]]\nid = "a"\n',
    "a default duration of 7 used only by shots with last_image": HEAD
    + "[defaults]\nduration = 7\n"
    + SHOT
    + 'last_image = "frames/b.png"\n[[shots]]\nid = "b"\nprompt = "p"\n'
    + 'image = "frames/b.png"\nduration = 10\n',
    "a URL with capitals": HEAD + SHOT.replace('"frames/a.png"', '"HTTPS://X.test/a.png"'),
    "a budget": HEAD.replace('"b"\n', '"b"\nbudget = 12\n') + SHOT,
    "a chain and max_cost": HEAD.replace('"b"\n', '"b"\nmax_cost = 2.50\n')
    + SHOT
    + '[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a", frame = "last" }\nduration = 10\n',
}


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_a_valid_shot_list_is_accepted_by_both_the_schema_and_the_validator(text):
    assert schema_errors(text) == []
    assert validator_accepts(text)


@given(shot_list_documents())
def test_every_valid_generated_document_validates_against_the_schema(doc):
    assert validator_accepts(to_toml(doc))
    assert list(VALIDATOR.iter_errors(doc)) == []
