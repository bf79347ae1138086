"""`init` writes a starter shot list, valid but for its placeholder prompts, never over one."""

from __future__ import annotations

from pathlib import Path

import pytest

import kling_pipe
from kling_pipe._shotlist.scaffold import (
    PLACEHOLDER,
    SCHEMA_FILE_NAME,
    ShotListExistsError,
    init_shot_list,
    natural_key,
    placeholders_left,
    shot_id_from,
    unique_ids,
)
from kling_pipe._shotlist.schema import schema_json
from kling_pipe._shotlist.specs import LocalImage, ShotList
from kling_pipe.exceptions import KlingPipeError, ShotListError
from tests.imagefiles import write_image


def load_filled(path: Path) -> ShotList:
    """Load a shot list written by init once its placeholder prompts are replaced."""
    text = path.read_text(encoding="utf-8")
    filled = "\n".join(
        f'prompt = "Scene {n}: the beam sweeps the fog"' if line.startswith("prompt = ") else line
        for n, line in enumerate(text.splitlines())
    )
    path.write_text(filled + "\n", encoding="utf-8")
    return kling_pipe.load(path)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A folder of keyframes named out of natural order, with a note that is not an image."""
    folder = tmp_path / "keys"
    folder.mkdir()
    write_image(folder / "shot 10.png")
    write_image(folder / "Shot 2.jpg", "jpeg")
    write_image(folder / "Shot 01 Ünder.webp", "webp")
    (folder / "notes.txt").write_text("lens: 35mm\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return folder


def test_one_shot_per_image_in_natural_order_that_loads_once_the_prompts_are_written(keys):
    path = init_shot_list(keys, name="lighthouse")
    assert path == keys.parent / "lighthouse.toml"
    prompts = [line for line in path.read_text().splitlines() if line.startswith("prompt = ")]
    assert len(prompts) == 3
    assert all(line.startswith(f'prompt = "{PLACEHOLDER}') for line in prompts)
    shotlist = load_filled(path)
    assert shotlist.storyboard.name == "lighthouse"
    assert [s.id for s in shotlist.shots] == ["shot-01-under", "shot-2", "shot-10"]
    assert [s.image for s in shotlist.shots] == [
        LocalImage(path="keys/Shot 01 Ünder.webp"),
        LocalImage(path="keys/Shot 2.jpg"),
        LocalImage(path="keys/shot 10.png"),
    ]
    assert all(s.last_image is None and s.duration == 5 for s in shotlist.shots)


def test_a_fresh_shot_list_does_not_load_until_its_placeholders_are_replaced(keys):
    """Loading it names every placeholder prompt, by key path and shot id, and nothing else."""
    path = init_shot_list(keys, name="lighthouse")
    with pytest.raises(ShotListError) as caught:
        kling_pipe.load(path)
    message = "still the placeholder written by kling-pipe init; describe what happens in the shot"
    assert caught.value.lines() == [
        f'{path}: shots[0] (id "shot-01-under").prompt: {message}',
        f'{path}: shots[1] (id "shot-2").prompt: {message}',
        f'{path}: shots[2] (id "shot-10").prompt: {message}',
    ]
    assert placeholders_left(path) == 3


def test_placeholders_left_counts_what_is_still_to_write_and_reports_anything_else(keys):
    path = init_shot_list(keys, name="lighthouse")
    text = path.read_text(encoding="utf-8")
    first = text.index(f'prompt = "{PLACEHOLDER}')
    end = text.index("\n", first)
    path.write_text(text[:first] + 'prompt = "Dawn over the harbour"' + text[end:])
    assert placeholders_left(path) == 2
    path.write_text(path.read_text().replace("duration = 5", "duration = 6"))
    with pytest.raises(ShotListError) as caught:
        placeholders_left(path)
    assert len(caught.value.problems) == 3
    assert all("6 needs last_image" in p.message for p in caught.value.problems)


def test_bridge_makes_each_image_the_previous_shots_last_frame(keys):
    shotlist = load_filled(init_shot_list(keys, name="lighthouse", bridge=True))
    assert [(s.image, s.last_image, s.duration) for s in shotlist.shots] == [
        (LocalImage(path="keys/Shot 01 Ünder.webp"), LocalImage(path="keys/Shot 2.jpg"), 5),
        (LocalImage(path="keys/Shot 2.jpg"), LocalImage(path="keys/shot 10.png"), 5),
        (LocalImage(path="keys/shot 10.png"), None, 5),
    ]


def test_paths_are_relative_to_the_folder_of_the_shot_list(keys, tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    path = init_shot_list(keys, name="lighthouse", out=boards / "board.toml")
    shotlist = load_filled(path)
    assert shotlist.shots[0].image == LocalImage(path="../keys/Shot 01 Ünder.webp")


def test_the_first_line_names_the_schema_written_beside_it(keys):
    path = init_shot_list(keys, name="lighthouse")
    assert path.read_text(encoding="utf-8").splitlines()[0] == f"#:schema ./{SCHEMA_FILE_NAME}"
    assert (path.parent / SCHEMA_FILE_NAME).read_text(encoding="utf-8") == schema_json()


def test_a_schema_file_already_there_is_left_alone(keys):
    (keys.parent / SCHEMA_FILE_NAME).write_text("{}\n")
    init_shot_list(keys, name="lighthouse")
    assert (keys.parent / SCHEMA_FILE_NAME).read_text() == "{}\n"


def test_an_existing_shot_list_is_never_overwritten(keys):
    existing = keys.parent / "lighthouse.toml"
    existing.write_text("# mine\n")
    with pytest.raises(ShotListExistsError, match=r"lighthouse\.toml: already exists"):
        init_shot_list(keys, name="lighthouse")
    assert existing.read_text() == "# mine\n"


def test_a_folder_without_images_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    with pytest.raises(ShotListError) as caught:
        init_shot_list(folder, name="x")
    assert caught.value.lines() == [
        f"{folder}: no PNG, JPEG or WebP images here (checked by content)"
    ]
    assert list(tmp_path.glob("*.toml")) == []


def test_a_shot_list_in_a_folder_that_does_not_exist_is_refused(keys, tmp_path):
    with pytest.raises(KlingPipeError, match="does not exist"):
        init_shot_list(keys, name="x", out=tmp_path / "nowhere" / "x.toml")
    assert not (tmp_path / "nowhere").exists()


def test_a_path_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(ShotListError, match="not a folder of images"):
        init_shot_list(tmp_path / "nope", name="x")


def test_every_image_that_fails_the_checks_is_reported_and_nothing_is_written(keys):
    (keys / "fake.png").write_text("not really a png")
    (keys / "cut.png").write_bytes(write_image(keys.parent / "whole.png").read_bytes()[:60])
    with pytest.raises(ShotListError) as caught:
        init_shot_list(keys, name="lighthouse")
    lines = caught.value.lines()
    assert len(lines) == 2
    assert "cut.png" in lines[0]
    assert "does not decode" in lines[0]
    assert "fake.png" in lines[1]
    assert "is not a PNG, JPEG or WebP image" in lines[1]
    assert not (keys.parent / "lighthouse.toml").exists()


def test_a_frame_under_300_px_is_kept_as_a_shot(keys):
    """O1 Standard's page states no image limit: init keeps the frame (validate warns)."""
    write_image(keys / "tiny.png", width=200, height=100)
    path = init_shot_list(keys, name="lighthouse")
    assert 'image = "keys/tiny.png"' in path.read_text()


def test_a_name_that_cannot_name_a_storyboard_is_refused_before_writing(keys):
    with pytest.raises(ShotListError, match=r"storyboard\.name"):
        init_shot_list(keys, name="a/b", out=keys.parent / "ab.toml")
    assert not (keys.parent / "ab.toml").exists()


def test_the_file_name_is_derived_from_the_storyboard_name(keys):
    path = init_shot_list(keys, name="Paper Boat!")
    assert path.name == "paper-boat.toml"
    assert load_filled(path).storyboard.name == "Paper Boat!"


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Shot 01", "shot-01"),
        ("Ünder Wasser!", "under-wasser"),
        ("已经", "shot"),
        ("--x--", "x"),
        ("a" * 70, "a" * 64),
        ("keep_under-score", "keep_under-score"),
    ],
)
def test_a_file_name_becomes_a_valid_id(stem, expected):
    assert shot_id_from(stem) == expected


def test_ids_that_would_repeat_are_numbered_and_stay_within_64_characters():
    ids = unique_ids(["Shot 1", "shot-1", "shot_1", "a" * 70, "a" * 64])
    assert ids == ["shot-1", "shot-1-2", "shot_1", "a" * 64, "a" * 62 + "-2"]
    assert all(len(i) <= 64 for i in ids)


def test_natural_order_puts_2_before_10_and_ignores_case():
    names = ["b10.png", "B2.png", "a.png", "b1.png"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == [
        "a.png",
        "b1.png",
        "B2.png",
        "b10.png",
    ]


def test_edited_prompts_keep_the_file_valid(keys):
    path = init_shot_list(keys, name="lighthouse", bridge=True)
    text = path.read_text(encoding="utf-8")
    edited = "\n".join(
        'prompt = "The lighthouse beam sweeps the fog"' if line.startswith("prompt = ") else line
        for line in text.splitlines()
    )
    path.write_text(edited, encoding="utf-8")
    shotlist = kling_pipe.load(path)
    assert {s.prompt for s in shotlist.shots} == {"The lighthouse beam sweeps the fog"}


def test_init_names_every_file_it_leaves_out_and_why(keys):
    """TIFF, BMP and GIF keyframes are not skipped silently: each is named, with why."""
    write_image(keys / "shot 3.tif", "tiff")
    write_image(keys / "shot 4.bmp", "bmp")
    write_image(keys / "shot 5.gif", "gif")
    (keys / "old takes").mkdir()
    skipped: list[tuple[Path, str]] = []
    path = init_shot_list(keys, name="lighthouse", on_skip=lambda p, why: skipped.append((p, why)))
    assert placeholders_left(path) == 3  # the PNG, JPEG and WebP
    convert = "; WaveSpeed takes PNG, JPEG or WebP (convert it to use it)"
    assert skipped == [
        (keys / "notes.txt", "not a PNG, JPEG or WebP image (checked by content)"),
        (keys / "old takes", f"a folder; init takes only the images directly in {keys}"),
        (keys / "shot 3.tif", "a TIFF image" + convert),
        (keys / "shot 4.bmp", "a BMP image" + convert),
        (keys / "shot 5.gif", "a GIF image" + convert),
    ]
