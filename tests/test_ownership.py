"""May kling-pipe replace this file? Only what its records say it wrote there, unchanged."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from kling_pipe._records.ownership import Ownership, set_aside_name
from kling_pipe._records.store import WrittenFile


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def written(path: str, data: bytes, kind: str = "output") -> WrittenFile:
    return WrittenFile(path=path, kind=kind, shot_id="river", origin="mock", sha256=sha(data))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


def test_a_file_kling_pipe_wrote_there_unchanged_may_be_replaced(folder):
    (folder / "out" / "river.mp4").write_bytes(b"render")
    ownership = Ownership([written("out/river.mp4", b"render")], folder)
    assert ownership.ours(folder / "out" / "river.mp4")
    assert ownership.may_replace(folder / "out" / "river.mp4")
    assert ownership.may_replace(folder / "out" / "absent.mp4")


def test_a_file_changed_since_kling_pipe_wrote_it_is_the_users(folder):
    (folder / "out" / "river.mp4").write_bytes(b"graded by hand")
    ownership = Ownership([written("out/river.mp4", b"render")], folder)
    assert not ownership.ours(folder / "out" / "river.mp4")
    assert not ownership.may_replace(folder / "out" / "river.mp4")


def test_the_same_bytes_recorded_under_another_name_do_not_make_a_file_ours(folder):
    """A take moved by hand over <id>.mp4 is the only copy left: it is never replaced."""
    (folder / "out" / "river.mp4").write_bytes(b"take 3")
    ownership = Ownership([written("out/takes/river.take3.mp4", b"take 3")], folder, [])
    assert not ownership.may_replace(folder / "out" / "river.mp4")


def test_a_duplicate_of_bytes_kept_at_a_recorded_path_may_be_replaced(folder):
    """Replacing it loses nothing: the bytes are still where the records say they are."""
    (folder / "out" / "takes").mkdir()
    (folder / "out" / "takes" / "river.take3.mp4").write_bytes(b"take 3")
    (folder / "out" / "river.mp4").write_bytes(b"take 3")
    ownership = Ownership([], folder, [("out/takes/river.take3.mp4", sha(b"take 3"))])
    assert ownership.may_replace(folder / "out" / "river.mp4")
    (folder / "out" / "takes" / "river.take3.mp4").unlink()
    assert not ownership.may_replace(folder / "out" / "river.mp4")


def test_an_empty_file_may_be_replaced_a_link_or_a_folder_never(folder):
    (folder / "out" / "empty.mp4").write_bytes(b"")
    (folder / "mine.mp4").write_bytes(b"mine")
    (folder / "out" / "link.mp4").symlink_to(folder / "mine.mp4")
    (folder / "out" / "dir.mp4").mkdir()
    ownership = Ownership([written("out/link.mp4", b"mine")], folder)
    assert ownership.may_replace(folder / "out" / "empty.mp4")
    assert not ownership.may_replace(folder / "out" / "link.mp4")
    assert not ownership.may_replace(folder / "out" / "dir.mp4")


def test_a_file_of_the_users_is_set_aside_under_a_name_that_says_so_and_named(folder, caplog):
    river = folder / "out" / "river.mp4"
    river.write_bytes(b"mine")
    (folder / "out" / "river.yours-1.mp4").write_bytes(b"set aside before")
    ownership = Ownership([], folder)
    with caplog.at_level(logging.WARNING, logger="kling_pipe"):
        aside = ownership.make_way(river)
    assert aside == folder / "out" / "river.yours-2.mp4"
    assert aside.read_bytes() == b"mine"
    assert (folder / "out" / "river.yours-1.mp4").read_bytes() == b"set aside before"
    assert not river.exists()
    assert ownership.set_aside == [(river, aside)]
    assert f"{river}: not written by kling-pipe" in caplog.text
    assert "kept as river.yours-2.mp4" in caplog.text


def test_the_way_to_kling_pipes_own_file_is_clear_and_nothing_moves(folder):
    river = folder / "out" / "river.mp4"
    river.write_bytes(b"render")
    ownership = Ownership([written("out/river.mp4", b"render")], folder)
    assert ownership.make_way(river) is None
    assert river.read_bytes() == b"render"


def test_a_symbolic_link_is_set_aside_itself_never_followed(folder):
    (folder / "mine.mp4").write_bytes(b"mine")
    link = folder / "out" / "river.mp4"
    link.symlink_to(folder / "mine.mp4")
    aside = Ownership([], folder).make_way(link)
    assert aside is not None
    assert aside.is_symlink()
    assert (folder / "mine.mp4").read_bytes() == b"mine"


def test_set_aside_names_keep_the_extension():
    assert set_aside_name(Path("edit/index.html"), 3) == Path("edit/index.yours-3.html")
    assert set_aside_name(Path("thumbs/a.first.jpg"), 1) == Path("thumbs/a.first.yours-1.jpg")


def test_recording_a_write_keeps_the_snapshot_current(folder):
    river = folder / "out" / "river.mp4"
    river.write_bytes(b"new render")
    ownership = Ownership([written("out/river.mp4", b"old render")], folder)
    assert not ownership.ours(river)
    ownership.note(
        "out/river.mp4", kind="output", origin="mock", sha256=sha(b"new render"), shot_id="r"
    )
    assert ownership.ours(river)
    assert ownership.ours(river, "output")
    assert not ownership.ours(river, "cut")
