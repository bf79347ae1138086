"""Every rule of the shot-list contract, each with the exact message a user sees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from kling_pipe import ShotListError, load, loads
from kling_pipe._shotlist import rules
from tests.imagefiles import over_10_mb, write_image

HEAD = 'version = 1\n[storyboard]\nname = "t"\n'


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


def test_a_valid_minimal_shot_list_has_no_problems(problems):
    """One shot with a prompt, an image and the default duration is valid."""
    assert problems(HEAD + shot("")) == []


@pytest.mark.parametrize("duration", [5, 10])
def test_5_and_10_seconds_are_allowed_without_last_image(problems, duration):
    assert problems(HEAD + shot(f"duration = {duration}")) == []


@pytest.mark.parametrize("duration", [3, 4, 6, 7, 8, 9])
def test_other_durations_need_last_image(problems, duration):
    assert problems(HEAD + shot(f"duration = {duration}")) == [
        f'shots[0] (id "a").duration: {duration} needs last_image; '
        "without it only 5 or 10 are allowed"
    ]


@pytest.mark.parametrize("duration", range(3, 11))
def test_3_to_10_seconds_are_allowed_with_last_image(problems, duration):
    body = f'last_image = "frames/river.png"\nduration = {duration}'
    assert problems(HEAD + shot(body)) == []


@pytest.mark.parametrize("duration", [0, 2, 11, -5])
def test_durations_outside_3_to_10_are_refused_with_last_image(problems, duration):
    body = f'last_image = "frames/river.png"\nduration = {duration}'
    assert problems(HEAD + shot(body)) == [
        f'shots[0] (id "a").duration: {duration} is not allowed; '
        "with last_image the duration is 3 to 10 seconds"
    ]


def test_a_float_duration_is_refused_even_when_whole(problems):
    assert problems(HEAD + shot("duration = 5.0")) == [
        'shots[0] (id "a").duration: must be a whole number of seconds '
        "(an integer such as 5), not a float (5.0)"
    ]


def test_a_boolean_duration_is_refused(problems):
    assert problems(HEAD + shot("duration = true")) == [
        'shots[0] (id "a").duration: must be a whole number of seconds, not a boolean (true)'
    ]


def test_a_string_duration_is_refused(problems):
    assert problems(HEAD + shot('duration = "5"')) == [
        'shots[0] (id "a").duration: must be a whole number of seconds '
        '(an integer such as 5), not a string ("5")'
    ]


def test_a_default_duration_that_needs_last_image_is_reported_per_shot(problems):
    text = HEAD + "[defaults]\nduration = 7\n" + shot("")
    assert problems(text) == [
        'shots[0] (id "a").duration: 7 needs last_image; without it only 5 or 10 are '
        "allowed (from [defaults])"
    ]


def test_the_default_duration_is_5_seconds(tmp_path, frames):
    shotlist = loads(HEAD + shot(""), source=tmp_path / "t.toml")
    assert shotlist.shots[0].duration == 5


def test_a_missing_prompt_is_an_error(problems):
    text = HEAD + '[[shots]]\nid = "a"\nimage = "frames/puddle.png"\n'
    assert problems(text) == [
        'shots[0] (id "a").prompt: required; describe what happens in the shot'
    ]


def test_a_blank_prompt_is_an_error(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = " \\t\\n"\nimage = "frames/puddle.png"\n'
    assert problems(text) == ['shots[0] (id "a").prompt: empty; describe what happens in the shot']


def test_prefix_and_suffix_from_defaults_are_joined_on(tmp_path, frames):
    text = HEAD + '[defaults]\nprompt_prefix = "A. "\nprompt_suffix = " Z."\n' + shot("")
    shotlist = loads(text, source=tmp_path / "t.toml")
    assert shotlist.shots[0].final_prompt == "A. p Z."


def test_a_shot_may_override_the_default_prefix(tmp_path, frames):
    text = HEAD + '[defaults]\nprompt_prefix = "A. "\n' + shot('prompt_prefix = "B. "')
    assert loads(text, source=tmp_path / "t.toml").shots[0].final_prompt == "B. p"


def test_a_prompt_over_2500_characters_with_prefix_is_an_error(problems):
    text = HEAD + f'[defaults]\nprompt_prefix = "{"x" * 2500}"\n' + shot("")
    assert problems(text) == [
        'shots[0] (id "a").prompt: 2501 characters with prompt_prefix and prompt_suffix; '
        "the model takes at most 2500"
    ]


def test_a_prompt_of_exactly_2500_characters_is_allowed(problems):
    text = HEAD + f'[[shots]]\nid = "a"\nprompt = "{"x" * 2500}"\nimage = "frames/puddle.png"\n'
    assert problems(text) == []


def test_a_missing_image_is_an_error(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\n'
    assert problems(text) == [
        'shots[0] (id "a").image: required (the first frame): a file path, an http(s) URL, '
        'or { shot = "id", frame = "last" }'
    ]


def test_a_missing_image_file_is_an_error_naming_where_it_looked(problems, tmp_path):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "frames/nope.png"\n'
    assert problems(text) == [
        f'shots[0] (id "a").image: file not found: "{tmp_path / "frames/nope.png"}"'
    ]


def test_a_file_that_is_not_an_image_is_refused_whatever_its_name(problems, frames):
    (frames / "fake.png").write_text("hello")
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "frames/fake.png"\n'
    assert problems(text) == [
        f'shots[0] (id "a").image: "{frames / "fake.png"}" is not a PNG, JPEG or WebP image '
        "(checked by content, not by name)"
    ]


def test_a_folder_given_as_an_image_is_refused(problems, frames):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "frames"\n'
    assert problems(text) == [f'shots[0] (id "a").image: "{frames}" is a folder, not an image file']


def test_a_device_given_as_an_image_is_refused(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "/dev/null"\n'
    assert problems(text) == [
        'shots[0] (id "a").image: "/dev/null" is not a regular file '
        "(a device, pipe or socket cannot be an image)"
    ]


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "http://example.com/a.png"])
def test_http_and_https_urls_are_passed_through(tmp_path, frames, url):
    text = HEAD + f'[[shots]]\nid = "a"\nprompt = "p"\nimage = "{url}"\n'
    assert loads(text, source=tmp_path / "t.toml").shots[0].image.url == url  # type: ignore[union-attr]


def test_other_url_schemes_are_refused(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "ftp://example.com/a.png"\n'
    assert problems(text) == [
        'shots[0] (id "a").image: "ftp://example.com/a.png": only http:// and https:// URLs '
        "can be fetched"
    ]


def test_a_url_without_a_host_is_refused(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = "https:///a.png"\n'
    assert problems(text) == [
        'shots[0] (id "a").image: "https:///a.png" is not a valid URL: it names no host'
    ]


def test_an_image_of_the_wrong_type_is_refused(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = 3\n'
    assert problems(text) == [
        'shots[0] (id "a").image: must be a file path, an http(s) URL or a chain table, '
        "not an integer (3)"
    ]


def test_last_image_takes_the_same_forms_as_image(problems):
    assert problems(HEAD + shot('last_image = "frames/missing.png"\nduration = 5')) != []
    assert problems(HEAD + shot('last_image = "https://example.com/x.png"\nduration = 4')) == []


def test_a_missing_id_is_an_error(problems):
    text = HEAD + '[[shots]]\nprompt = "p"\nimage = "frames/puddle.png"\n'
    assert problems(text) == ["shots[0].id: required; 1-64 characters of a-z, 0-9, _ and -"]


@pytest.mark.parametrize("bad", ["Storm", "a b", "é", "", "x" * 65, "a.b"])
def test_ids_outside_the_allowed_characters_are_refused(problems, bad):
    assert problems(HEAD + shot("", sid=bad)) == [
        f'shots[0] (id "{bad}").id: "{bad}" is not a valid id; '
        "use 1-64 characters of a-z, 0-9, _ and -"
    ]


@pytest.mark.parametrize("good", ["a", "storm_2", "x-y", "0", "z" * 64])
def test_ids_of_allowed_characters_are_accepted(problems, good):
    assert problems(HEAD + shot("", sid=good)) == []


def test_duplicate_ids_name_the_first_use(problems):
    assert problems(HEAD + shot("", "a") + shot("", "b") + shot("", "a")) == [
        'shots[2] (id "a").id: duplicate id "a"; shots[0] already uses it'
    ]


def test_a_chain_to_an_unknown_shot_suggests_the_closest_id(problems):
    text = (
        HEAD
        + shot("", "storm")
        + ('[[shots]]\nid = "after"\nprompt = "p"\nimage = { shot = "strom", frame = "last" }\n')
    )
    assert problems(text) == [
        'shots[1] (id "after").image: chain refers to unknown shot "strom"; did you mean "storm"?'
    ]


def test_a_chain_frame_must_be_first_or_last(problems):
    text = (
        HEAD
        + shot("", "a")
        + ('[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a", frame = "middle" }\n')
    )
    assert problems(text) == [
        'shots[1] (id "b").image.frame: a string ("middle") is not allowed; use "first" or "last"'
    ]


def test_a_chain_needs_both_keys_and_no_others(problems):
    text = (
        HEAD
        + shot("", "a")
        + ('[[shots]]\nid = "b"\nprompt = "p"\nimage = { shot = "a", fram = "last" }\n')
    )
    assert problems(text) == [
        'shots[1] (id "b").image.fram: unknown key; did you mean "frame"?',
        'shots[1] (id "b").image.frame: missing; use "first" or "last"',
    ]


def test_a_shot_cannot_chain_from_itself(problems):
    text = HEAD + '[[shots]]\nid = "a"\nprompt = "p"\nimage = { shot = "a", frame = "last" }\n'
    assert problems(text) == ['shots[0] (id "a").image: a shot cannot chain from its own video']


def test_chain_cycles_are_reported_once_on_the_first_shot(problems):
    text = HEAD + "".join(
        f'[[shots]]\nid = "{a}"\nprompt = "p"\nimage = {{ shot = "{b}", frame = "last" }}\n'
        for a, b in [("x", "z"), ("y", "x"), ("z", "y")]
    )
    assert problems(text) == [
        'shots[0] (id "x").image: chains form a cycle: "x" chains from "z" chains from "y" '
        'chains from "x"'
    ]


def test_a_chain_through_last_image_counts_towards_cycles(problems):
    text = HEAD + (
        '[[shots]]\nid = "x"\nprompt = "p"\nimage = "frames/puddle.png"\n'
        'last_image = { shot = "y", frame = "first" }\nduration = 4\n'
        '[[shots]]\nid = "y"\nprompt = "p"\nimage = { shot = "x", frame = "last" }\n'
    )
    assert problems(text) == [
        'shots[0] (id "x").last_image: chains form a cycle: "x" chains from "y" chains from "x"'
    ]


def test_unknown_keys_suggest_the_closest_known_key(problems):
    assert problems(HEAD + shot("durration = 5")) == [
        'shots[0] (id "a").durration: unknown key; did you mean "duration"?'
    ]


def test_unknown_keys_without_a_close_match_list_the_known_ones(problems):
    assert problems('version = 1\nzzz = 1\n[storyboard]\nname = "t"\n' + shot("")) == [
        "zzz: unknown key; allowed keys are version, storyboard, defaults, shots"
    ]


def test_unknown_storyboard_and_defaults_keys_are_errors(problems):
    text = 'version = 1\n[storyboard]\nname = "t"\nmax_cots = 1\n[defaults]\nduraton = 5\n'
    assert problems(text + shot("")) == [
        'storyboard.max_cots: unknown key; did you mean "max_cost"?',
        'defaults.duraton: unknown key; did you mean "duration"?',
    ]


def test_defaults_cannot_set_an_id(problems):
    assert problems(HEAD + '[defaults]\nid = "x"\n' + shot("")) == [
        "defaults.id: cannot have a default; every shot needs its own unique id"
    ]


def test_a_bad_default_is_reported_once_not_per_shot(problems):
    text = HEAD + "[defaults]\nprompt_prefix = 3\n" + shot("", "a") + shot("", "b")
    assert problems(text) == ["defaults.prompt_prefix: must be a string, not an integer (3)"]


def test_the_storyboard_name_is_required(problems):
    assert problems("version = 1\n[storyboard]\n" + shot("")) == [
        "storyboard.name: required; it names the output folder"
    ]


def test_a_missing_storyboard_table_is_an_error(problems):
    assert problems("version = 1\n" + shot("")) == [
        "storyboard: missing; a shot list needs [storyboard] with at least a name"
    ]


@pytest.mark.parametrize("name", ["a/b", "..", " "])
def test_a_storyboard_name_must_be_usable_as_a_folder(problems, name):
    text = f'version = 1\n[storyboard]\nname = "{name}"\n' + shot("")
    assert problems(text) == [
        f'storyboard.name: "{name}" cannot name a folder; use letters, digits, spaces, - or _'
    ]


def test_concurrency_must_be_a_positive_integer(problems):
    text = 'version = 1\n[storyboard]\nname = "t"\nconcurrency = 0\n' + shot("")
    assert problems(text) == ["storyboard.concurrency: must be at least 1, not 0"]


def test_max_cost_must_not_be_negative(problems):
    text = 'version = 1\n[storyboard]\nname = "t"\nmax_cost = -1.5\n' + shot("")
    assert problems(text) == ["storyboard.max_cost: must be zero or a positive amount, not -1.5"]


def test_max_cost_keeps_its_exact_decimal_value(tmp_path, frames):
    text = 'version = 1\n[storyboard]\nname = "t"\nmax_cost = 5.00\n' + shot("")
    assert str(loads(text, source=tmp_path / "t.toml").storyboard.max_cost) == "5.00"


def test_budget_must_be_an_amount_not_negative(problems):
    text = 'version = 1\n[storyboard]\nname = "t"\nbudget = -2\n' + shot("")
    assert problems(text) == ["storyboard.budget: must be zero or a positive amount, not -2"]
    text = 'version = 1\n[storyboard]\nname = "t"\nbudget = "12"\n' + shot("")
    assert problems(text) == ['storyboard.budget: must be an amount in USD, not a string ("12")']


def test_budget_keeps_its_exact_decimal_value_and_defaults_to_none(tmp_path, frames):
    text = 'version = 1\n[storyboard]\nname = "t"\nbudget = 12.00\n' + shot("")
    assert str(loads(text, source=tmp_path / "t.toml").storyboard.budget) == "12.00"
    plain = 'version = 1\n[storyboard]\nname = "t"\n' + shot("")
    assert loads(plain, source=tmp_path / "t.toml").storyboard.budget is None


def test_an_unknown_model_lists_the_known_ones(problems):
    text = 'version = 1\n[storyboard]\nname = "t"\nmodel = "kling/v9"\n' + shot("")
    [found] = problems(text)
    assert found.startswith(
        'storyboard.model: unknown model "kling/v9"; known models (with or without '
        '"kwaivgi/"): "kling-video-o1-std/image-to-video", '
    )
    assert '"kling-v3.0-std/text-to-video"' in found


def test_only_version_1_exists(problems):
    assert problems(HEAD.replace("version = 1", "version = 2") + shot("")) == [
        "version: must be 1 (the only shot-list version there is), not 2"
    ]


def test_shots_must_not_be_missing(problems):
    assert problems(HEAD) == ["shots: missing; add at least one [[shots]] table"]


def test_every_problem_in_the_file_is_reported_at_once_in_file_order(problems):
    text = HEAD + shot("duration = 7", "a") + shot("durration = 5", "B") + shot("", "a")
    assert problems(text) == [
        'shots[0] (id "a").duration: 7 needs last_image; without it only 5 or 10 are allowed',
        'shots[1] (id "B").durration: unknown key; did you mean "duration"?',
        'shots[1] (id "B").id: "B" is not a valid id; use 1-64 characters of a-z, 0-9, _ and -',
        'shots[2] (id "a").id: duplicate id "a"; shots[0] already uses it',
    ]


def test_errors_are_available_as_path_message_pairs(tmp_path, frames):
    with pytest.raises(ShotListError) as info:
        loads(HEAD + shot("duration = 7"), source=tmp_path / "t.toml")
    assert info.value.as_pairs() == [
        ('shots[0] (id "a").duration', "7 needs last_image; without it only 5 or 10 are allowed")
    ]
    assert info.value.lines()[0].startswith(f"{tmp_path / 't.toml'}: shots[0]")


# ------------------------------------------------------------------ placeholders of `init`


def test_a_placeholder_prompt_is_an_error_naming_the_shot(problems):
    """The prompt `init` writes is valid text, but rendering it would pay for nothing useful."""
    body = 'prompt = "FILL IN: what happens in this shot, from frames/puddle.png"'
    text = HEAD + shot("") + shot("").replace('id = "a"', 'id = "b"').replace('prompt = "p"', body)
    assert problems(text) == [
        'shots[1] (id "b").prompt: still the placeholder written by kling-pipe init; '
        "describe what happens in the shot"
    ]


def test_a_placeholder_prompt_in_defaults_is_reported_once_under_defaults(problems):
    text = (
        HEAD + '[defaults]\nprompt = "  FILL IN: later"\n' + shot("").replace('prompt = "p"\n', "")
    )
    assert problems(text) == [
        "defaults.prompt: still the placeholder written by kling-pipe init; "
        "describe what happens in the shot"
    ]


def test_a_prompt_that_mentions_fill_in_later_on_is_a_real_prompt(problems):
    text = HEAD + shot("").replace('prompt = "p"', 'prompt = "A sign reads FILL IN: name"')
    assert problems(text) == []


# ------------------------------------------------------------------ output_dir


def storyboard_with(output_dir: str) -> str:
    return HEAD + f"output_dir = {output_dir}\n" + shot("")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('"."', '"." is the shot list\'s own folder'),
        ('"renders/.."', '"renders/.." is the shot list\'s own folder'),
        ('"./"', '"./" is the shot list\'s own folder'),
        ('""', "empty"),
        ('"   "', "empty"),
        ('"../../outside"', '"../../outside" leads outside the shot list\'s folder'),
        ('"renders/../../x"', '"renders/../../x" leads outside the shot list\'s folder'),
        ('".."', '".." leads outside the shot list\'s folder'),
        ('"..\\\\x"', '"..\\\\x" leads outside the shot list\'s folder'),
        ('"/tmp/renders"', '"/tmp/renders" is an absolute path'),
        ('"C:/renders"', '"C:/renders" is an absolute path'),
    ],
)
def test_an_output_dir_outside_the_shot_lists_folder_is_an_error(problems, value, why):
    """Outputs are written and removed there: it must be a sub-folder, never . or outside."""
    assert problems(storyboard_with(value)) == [
        f"storyboard.output_dir: {why}; give a sub-folder of the shot list's folder, "
        'such as "renders/NAME"'
    ]


@pytest.mark.parametrize("value", ['"renders/x"', '"out"', '"./renders/x/"', '"a/../b"'])
def test_an_output_dir_below_the_shot_lists_folder_is_fine(problems, value):
    assert problems(storyboard_with(value)) == []


def test_an_output_dir_that_is_not_a_string_is_an_error(problems):
    assert problems(storyboard_with("3")) == [
        "storyboard.output_dir: must be a folder path, not an integer (3)"
    ]


# ------------------------------------------------------------------ images, decoded once


def test_an_image_used_by_many_shots_is_checked_once_per_validation(tmp_path):
    """A keyframe bridged into two shots (and used as last_image) is decoded only once."""
    seen: list[Path] = []

    def check(path: Path) -> str | None:
        seen.append(path)
        return None

    text = (
        HEAD
        + shot('last_image = "frames/river.png"')
        + shot("").replace('id = "a"', 'id = "b"').replace("puddle", "river")
        + shot("").replace('id = "a"', 'id = "c"')
    )
    loads(text, source=tmp_path / "t.toml", check_image=check)
    assert sorted(p.name for p in seen) == ["puddle.png", "river.png"]


def test_a_truncated_image_is_an_error_naming_the_file_and_the_shot(problems, frames):
    data = (frames / "river.png").read_bytes()
    (frames / "cut.png").write_bytes(data[: len(data) // 2])
    found = problems(HEAD + shot("").replace("puddle", "cut"))
    assert len(found) == 1
    assert found[0].startswith(f'shots[0] (id "a").image: "{frames / "cut.png"}" is a damaged')


# Kling's aspect ratios (1:2.5 to 2.5:1): a warning where the model's page does not state them.


def aspect_board(tmp_path: Path, width: int, height: int, key: str = "image") -> Path:
    """A shot list of one shot whose *key* frame is a *width* x *height* PNG."""
    write_image(tmp_path / "frames" / "wide.png", "png", width, height)
    frame = f'{key} = "frames/wide.png"'
    first = "" if key == "image" else 'image = "frames/puddle.png"\n'
    text = HEAD + f'[[shots]]\nid = "pano"\nprompt = "p"\n{first}{frame}\n'
    if key == "last_image":
        text += "duration = 7\n"
    board = tmp_path / "t.toml"
    board.write_text(text)
    return board


@pytest.mark.parametrize(("width", "height"), [(750, 300), (300, 750), (480, 320), (300, 300)])
def test_frames_within_klings_aspect_ratios_load_without_a_warning(tmp_path, frames, width, height):
    assert load(aspect_board(tmp_path, width, height)).warnings == ()


@pytest.mark.parametrize(
    ("width", "height", "shape"), [(800, 300, "2.67:1"), (300, 751, "1:2.503"), (1200, 300, "4:1")]
)
def test_a_frame_outside_klings_aspect_ratios_is_a_warning_for_o1_standard(
    tmp_path, frames, width, height, shape
):
    """WaveSpeed's O1 Standard page states no image limit: warned of, never refused."""
    shotlist = load(aspect_board(tmp_path, width, height))
    path = tmp_path / "frames" / "wide.png"
    assert [str(w) for w in shotlist.warnings] == [
        f'shots[0] (id "pano").image: "{path}" is {width}x{height} px, an aspect ratio of '
        f"{shape}; Kling takes frames from 1:2.5 (tall) to 2.5:1 (wide); WaveSpeed's page "
        "for kwaivgi/kling-video-o1-std/image-to-video states no limit, so the frame may be "
        "refused only once it is sent"
    ]


def test_a_last_frame_outside_the_aspect_ratios_is_warned_of_under_its_own_key(tmp_path, frames):
    shotlist = load(aspect_board(tmp_path, 1000, 300, key="last_image"))
    assert [w.path for w in shotlist.warnings] == ['shots[0] (id "pano").last_image']


@pytest.fixture
def limits_stated(monkeypatch: pytest.MonkeyPatch) -> None:
    """O1 Standard as a model whose own page states the image limits (as v2.6 Pro's does)."""
    model = rules.IMAGE_TO_VIDEO
    stated = attrs.evolve(rules.CATALOGUE[model], states_image_limits=True)
    monkeypatch.setitem(rules.CATALOGUE, model, stated)


def test_a_frame_outside_the_aspect_ratios_is_an_error_where_the_models_page_states_it(
    tmp_path, frames, limits_stated
):
    with pytest.raises(ShotListError) as info:
        load(aspect_board(tmp_path, 1000, 300))
    path = tmp_path / "frames" / "wide.png"
    assert [str(p) for p in info.value.problems] == [
        f'shots[0] (id "pano").image: "{path}" is 1000x300 px, an aspect ratio of 3.33:1; '
        "Kling takes frames from 1:2.5 (tall) to 2.5:1 (wide)"
    ]


def limits_board(tmp_path: Path, frames: Path) -> Path:
    """Three shots: a frame 200 px tall, a frame of over 10 MB, and one both thin and wide."""
    write_image(frames / "short.png", "png", 480, 200)
    over_10_mb(write_image(frames / "big.png", "png", 480, 320))
    write_image(frames / "strip.png", "png", 900, 200)
    board = tmp_path / "t.toml"
    board.write_text(
        HEAD
        + "".join(
            shot("", sid).replace("puddle.png", f"{sid}.png") for sid in ("short", "big", "strip")
        )
    )
    return board


def test_the_size_and_short_side_limits_are_warnings_for_o1_standard(tmp_path, frames):
    """WaveSpeed's O1 Standard page states none of Kling's image limits: each is warned of."""
    shotlist = load(limits_board(tmp_path, frames))
    said = "; WaveSpeed's page for kwaivgi/kling-video-o1-std/image-to-video states no limit"
    assert [str(w).split(said)[0] for w in shotlist.warnings] == [
        f'shots[0] (id "short").image: "{frames / "short.png"}" is 480x200 px; WaveSpeed needs '
        "at least 300 px on the short side",
        f'shots[1] (id "big").image: "{frames / "big.png"}" is 10.0 MB; WaveSpeed takes images '
        "of at most 10 MB",
        f'shots[2] (id "strip").image: "{frames / "strip.png"}" is 900x200 px; WaveSpeed needs '
        "at least 300 px on the short side",
        f'shots[2] (id "strip").image: "{frames / "strip.png"}" is 900x200 px, an aspect ratio '
        "of 4.5:1; Kling takes frames from 1:2.5 (tall) to 2.5:1 (wide)",
    ]
    assert all(said in str(w) for w in shotlist.warnings)


def test_the_size_and_short_side_limits_are_errors_where_the_models_page_states_them(
    tmp_path, frames, limits_stated
):
    with pytest.raises(ShotListError) as info:
        load(limits_board(tmp_path, frames))
    assert [str(p) for p in info.value.problems] == [
        f'shots[0] (id "short").image: "{frames / "short.png"}" is 480x200 px; WaveSpeed needs '
        "at least 300 px on the short side",
        f'shots[1] (id "big").image: "{frames / "big.png"}" is 10.0 MB; WaveSpeed takes images '
        "of at most 10 MB",
        f'shots[2] (id "strip").image: "{frames / "strip.png"}" is 900x200 px; WaveSpeed needs '
        "at least 300 px on the short side",
        f'shots[2] (id "strip").image: "{frames / "strip.png"}" is 900x200 px, an aspect ratio '
        "of 4.5:1; Kling takes frames from 1:2.5 (tall) to 2.5:1 (wide)",
    ]
