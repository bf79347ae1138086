"""The output folder's layout: every name spelled once, and nothing from outside leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN
from kling_pipe._records.layout import (
    OutputLayout,
    OutsideOutputError,
    parse_version_name,
    task_id_part,
)
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import KlingPipeError


def board(folder: Path) -> ShotList:
    shot = Shot(id="river", prompt="p", image=UrlImage(url="https://x.test/r.png"))
    return ShotList(storyboard=Storyboard(name="film"), shots=(shot,), source=folder / "f.toml")


def test_the_mocks_renders_have_a_folder_of_their_own(tmp_path):
    real = OutputLayout.of(board(tmp_path), DEFAULT_BASE_URL)
    mock = OutputLayout.of(board(tmp_path), MOCK_ORIGIN)
    assert real.picked("river") == tmp_path / "renders" / "film" / "river.mp4"
    assert mock.picked("river") == tmp_path / "renders" / "film" / "mock" / "river.mp4"
    assert mock.owner_marker == real.owner_marker == real.root / ".kling-pipe-owner.json"


def test_every_name_under_the_folder_is_the_layouts():
    layout = OutputLayout.at(Path("/out"))
    assert layout.picked("river") == Path("/out/river.mp4")
    assert layout.version("river", 1) == Path("/out/versions/river.v1.mp4")
    assert layout.version("river", 12) == Path("/out/versions/river.v12.mp4")
    assert layout.rejected("river#2", "abc123") == Path("/out/rejected/river.take2.abc123.mp4")
    assert layout.rejected("river", "abc123") == Path("/out/rejected/river.abc123.mp4")
    assert layout.incoming("river", "abc") == Path("/out/versions/.river.abc.incoming.mp4")
    assert layout.incoming("river#2", "abc") == Path("/out/versions/.river.take2.abc.incoming.mp4")
    assert layout.chain_frame("river", "last") == Path("/out/frames/river.last.png")
    assert layout.thumbs_of("takes.river.take2") == (
        Path("/out/thumbs/takes.river.take2.first.jpg"),
        Path("/out/thumbs/takes.river.take2.last.jpg"),
    )
    assert layout.sheet == Path("/out/index.html")


@pytest.mark.parametrize(
    "hostile",
    ["x/../../../../home/Videos/wedding", "../x", "a.b", "-rf", "", "x" * 129, "é", "a%2f"],
)
def test_a_task_id_not_of_the_apis_form_names_no_file(hostile):
    with pytest.raises(OutsideOutputError) as caught:
        OutputLayout.at(Path("/out")).rejected("river", hostile)
    assert hostile not in str(caught.value) or not hostile
    assert issubclass(OutsideOutputError, KlingPipeError)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", fullmatch=True))
def test_every_task_id_of_the_apis_form_is_its_own_file_name(task_id):
    assert task_id_part(task_id) == task_id
    assert OutputLayout.at(Path("/out")).rejected("r", task_id).parent == Path("/out/rejected")


def test_a_path_from_the_records_is_used_only_inside_the_output_folder(tmp_path):
    layout = OutputLayout.of(board(tmp_path), DEFAULT_BASE_URL)
    layout.root.mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    (layout.root / "out").symlink_to(tmp_path)
    assert layout.inside("renders/film/river.mp4") == tmp_path / "renders/film/river.mp4"
    assert layout.inside(layout.root / "mock" / "a.mp4") == layout.root / "mock" / "a.mp4"
    for outside in (
        "../notes.txt",
        "notes.txt",
        "renders/film/../../notes.txt",
        str(tmp_path / "notes.txt"),
        "/etc/passwd",
        "renders/film/out/notes.txt",  # a symbolic link pointing out
    ):
        with pytest.raises(OutsideOutputError, match="outside the output folder"):
            layout.inside(outside)


def test_a_version_is_known_by_its_name_in_its_own_folder_only(tmp_path):
    layout = OutputLayout.of(board(tmp_path), DEFAULT_BASE_URL)
    assert layout.version_of("renders/film/versions/river.v3.mp4") == ("river", 3)
    assert layout.version_of(layout.version("river", 3)) == ("river", 3)
    assert layout.version_of("renders/film/river.mp4") is None  # the current copy
    assert layout.version_of("renders/film/mock/versions/river.v3.mp4") is None  # the mock's
    assert layout.version_of("renders/film/versions/river.v03.mp4") is None
    assert layout.version_of("renders/film/versions/.river.abc.incoming.mp4") is None
    with pytest.raises(ValueError, match="start at 1"):
        layout.version("river", 0)


@given(
    st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True),
    st.integers(min_value=1, max_value=10**6),
)
def test_every_version_name_reads_back_as_its_shot_and_number(shot_id, number):
    layout = OutputLayout.at(Path("/out"))
    assert parse_version_name(layout.version(shot_id, number).name) == (shot_id, number)
