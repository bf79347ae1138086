"""A model per shot: each shot's keys, frames and durations checked against its own model."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipe import loads
from kling_pipe.exceptions import ShotListError
from tests.strategies import catalogue_entries

HEAD = 'version = 1\n[storyboard]\nname = "t"\n'
V3_I2V = "kling-v3.0-std/image-to-video"
V3_T2V = "kling-v3.0-std/text-to-video"
TURBO = "kling-v2.5-turbo-std/image-to-video"


@pytest.fixture
def problems(tmp_path: Path, frames: Path) -> Callable[[str], list[str]]:
    def run(text: str) -> list[str]:
        try:
            loads(text, source=tmp_path / "t.toml")
        except ShotListError as error:
            return [str(p) for p in error.problems]
        return []

    return run


@pytest.fixture
def load(tmp_path: Path, frames: Path):
    return lambda text: loads(text, source=tmp_path / "t.toml")


def i2v(body: str, sid: str = "a") -> str:
    return f'[[shots]]\nid = "{sid}"\nprompt = "p"\nimage = "frames/puddle.png"\n{body}\n'


def t2v(body: str, sid: str = "a") -> str:
    return f'[[shots]]\nid = "{sid}"\nprompt = "a lighthouse at dusk"\n{body}\n'


def test_a_shot_names_its_model_by_path_or_full_id_and_is_kept_as_the_full_id(load):
    board = load(
        HEAD
        + i2v(f'model = "{TURBO}"', "a")
        + i2v('model = "kwaivgi/kling-v2.5-turbo-std/image-to-video"', "b")
        + i2v("", "c")
    )
    a, b, c = board.shots
    assert a.model == b.model == "kwaivgi/" + TURBO
    assert c.model == "kwaivgi/kling-video-o1-std/image-to-video"


def test_the_model_comes_from_the_shot_then_defaults_then_the_storyboard(load):
    text = (
        HEAD
        + f'model = "{V3_I2V}"\n[defaults]\nmodel = "{TURBO}"\n'
        + i2v("", "a")
        + i2v('model = "kling-video-o1-std/image-to-video"', "b")
    )
    a, b = load(text).shots
    assert a.model.endswith(TURBO)
    assert b.model.endswith("kling-video-o1-std/image-to-video")


def test_a_v3_shot_takes_12_seconds_sound_and_cfg_scale(load):
    text = HEAD + i2v(f'model = "{V3_I2V}"\nduration = 12\nsound = true\ncfg_scale = 0.7')
    (s,) = load(text).shots
    assert (s.duration, s.sound, s.cfg_scale) == (12, True, Decimal("0.7"))
    assert s.request_fields == {"sound": True, "cfg_scale": 0.7}


def test_a_key_the_model_does_not_take_is_named_with_the_keys_it_takes(problems):
    found = problems(HEAD + i2v(f'model = "{TURBO}"\nsound = true'))
    assert found == [
        'shots[0] (id "a").sound: kling-v2.5-turbo-std/image-to-video: it does not take this '
        "key; it takes id, prompt, duration, prompt_prefix, prompt_suffix, takes, image, model"
    ]


def test_every_problem_of_every_shot_at_once(problems):
    found = problems(
        HEAD
        + i2v(f'model = "{TURBO}"\nduration = 12\nnegative_prompt = "x"', "a")
        + t2v(f'model = "{V3_T2V}"\naspect_ratio = "4:3"\ncfg_scale = 3', "b")
    )
    assert len(found) == 4
    assert any("shots[0]" in f and ".duration: 12 is not allowed" in f for f in found)
    assert any("shots[0]" in f and ".negative_prompt:" in f for f in found)
    assert any(
        "shots[1]" in f and '.aspect_ratio: a string ("4:3") is not allowed' in f for f in found
    )
    assert any("shots[1]" in f and ".cfg_scale: 3 is outside 0 to 1" in f for f in found)


def test_a_text_to_video_shot_has_no_image(load):
    (s,) = load(HEAD + t2v(f'model = "{V3_T2V}"\naspect_ratio = "9:16"')).shots
    assert s.image is None
    assert s.images == ()
    assert s.aspect_ratio == "9:16"


def test_a_text_to_video_model_refuses_a_frame_and_a_chain(problems):
    found = problems(
        HEAD
        + i2v("", "src")
        + i2v(f'model = "{V3_T2V}"', "a")
        + t2v(f'model = "{V3_T2V}"\nimage = {{ shot = "src", frame = "last" }}', "b")
    )
    assert len(found) == 2
    assert "text-to-video model" in found[0]
    assert "a chain gives a first frame, which only an image-to-video model takes" in found[1]


def test_a_default_image_is_left_to_the_image_to_video_shots(load):
    text = HEAD + '[defaults]\nimage = "frames/puddle.png"\n' + t2v(f'model = "{V3_T2V}"', "a")
    text += '[[shots]]\nid = "b"\nprompt = "p"\n'
    a, b = load(text).shots
    assert a.image is None
    assert b.image is not None


def test_an_image_to_video_shot_still_needs_its_first_frame(problems):
    text = HEAD + f'[[shots]]\nid = "a"\nprompt = "p"\nmodel = "{TURBO}"\n'
    assert problems(text) == [
        'shots[0] (id "a").image: required (the first frame): a file path, an http(s) URL, '
        'or { shot = "id", frame = "last" }'
    ]


def test_the_v3_end_frame_is_sent_as_end_image(load):
    text = HEAD + i2v(f'model = "{V3_I2V}"\nlast_image = "frames/sea.jpg"\nduration = 15')
    (s,) = load(text).shots
    assert s.last_image is not None
    assert s.duration == 15


def test_a_model_without_an_end_frame_refuses_last_image(problems):
    found = problems(HEAD + i2v(f'model = "{TURBO}"\nlast_image = "frames/sea.jpg"'))
    assert len(found) == 1
    assert ".last_image: kling-v2.5-turbo-std/image-to-video: it does not take this key" in found[0]


def test_a_multi_shot_prompt_sets_the_duration_and_replaces_the_prompt(load):
    text = (
        HEAD
        + '[[shots]]\nid = "a"\nimage = "frames/puddle.png"\n'
        + f'model = "{V3_I2V}"\nprompt_prefix = "Paper boat. "\n'
        + 'multi_prompt = [{ prompt = "it sails", duration = 4 }, '
        + '{ prompt = "it sinks", duration = 5 }]\n'
    )
    (s,) = load(text).shots
    assert s.duration == 9
    assert s.prompt == ""
    assert s.request_fields == {
        "multi_prompt": [
            {"prompt": "Paper boat. it sails", "duration": 4},
            {"prompt": "Paper boat. it sinks", "duration": 5},
        ]
    }


def test_a_multi_shot_prompt_with_a_prompt_or_on_a_model_without_it_is_refused(problems):
    parts = 'multi_prompt = [{ prompt = "x", duration = 5 }]'
    found = problems(HEAD + i2v(f'model = "{V3_I2V}"\n{parts}', "a") + i2v(parts, "b"))
    assert len(found) == 2
    assert (
        "given with multi_prompt; kling-v3.0-std/image-to-video takes one or the other" in found[0]
    )
    assert ".multi_prompt: kling-video-o1-std/image-to-video: it does not take this key" in found[1]


def test_an_unknown_model_on_a_shot_lists_the_known_ones(problems):
    (found,) = problems(HEAD + i2v('model = "kling-v9"'))
    assert found.startswith('shots[0] (id "a").model: unknown model "kling-v9"; known models')
    assert TURBO in found


VALUES = {
    "negative_prompt": '"blur"',
    "cfg_scale": "0.5",
    "guidance_scale": "0.5",
    "sound": "true",
    "aspect_ratio": '"1:1"',
    "multi_prompt": '[{ prompt = "x", duration = 5 }]',
}


@given(entry=catalogue_entries(), key=st.sampled_from(sorted(VALUES)))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_model_key_is_accepted_iff_the_shots_model_takes_it(problems, entry, key):
    frame = 'image = "frames/puddle.png"\n' if entry.takes_image else ""
    prompt = "" if key == "multi_prompt" else 'prompt = "p"\n'
    text = (
        f'{HEAD}[[shots]]\nid = "a"\n{prompt}{frame}model = "{entry.path}"\n{key} = {VALUES[key]}\n'
    )
    found = problems(text)
    if entry.field(key) is not None:
        assert found == []
    else:
        assert len(found) >= 1
        assert found[0].startswith(f'shots[0] (id "a").{key}: {entry.path}')
        assert "it takes id, prompt, duration" in found[0]
