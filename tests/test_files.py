"""The one durable-write procedure: whole file or none, usual mode, no temp file left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kling_pipe import _files as durable


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    assert durable.write_bytes(dest, b"new") == dest
    assert dest.read_bytes() == b"new"
    assert names(tmp_path) == ["out.bin"]


def test_a_written_file_has_the_mode_a_plainly_created_one_would(tmp_path):
    """mkstemp's files are 0600; a finished file follows the umask like open() would."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    durable.write_bytes(tmp_path / "durable", b"x")
    mode = stat.S_IMODE((tmp_path / "durable").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_rename_removes_the_temp_file(tmp_path):
    """Renaming onto a folder fails: the error surfaces and the temp file is gone."""
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError, match="directory"):
        durable.write_bytes(tmp_path / "taken", b"data")
    assert names(tmp_path) == ["taken"]


def test_an_error_inside_writing_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")

    def write_half() -> None:
        with durable.writing(dest) as handle:
            handle.write(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_half()
    assert dest.read_bytes() == b"old"
    assert names(tmp_path) == ["out.bin"]


def test_without_replace_an_existing_file_is_never_overwritten(tmp_path):
    dest = tmp_path / "shots.toml"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        durable.write_bytes(dest, b"theirs", replace=False)
    assert dest.read_bytes() == b"mine"
    assert names(tmp_path) == ["shots.toml"]


def test_filling_commits_what_a_writer_put_at_the_temp_path(tmp_path):
    dest = tmp_path / "film.mp4"
    with durable.filling(dest) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".film.mp4.")
        tmp.write_bytes(b"frames")
    assert dest.read_bytes() == b"frames"
    assert names(tmp_path) == ["film.mp4"]


def test_an_error_while_filling_leaves_no_file(tmp_path):
    def fill_half() -> None:
        with durable.filling(tmp_path / "film.mp4") as tmp:
            tmp.write_bytes(b"half")
            raise ValueError

    with pytest.raises(ValueError):
        fill_half()
    assert names(tmp_path) == []


def test_a_folder_that_cannot_hold_the_file_is_reported_with_the_target_name(tmp_path):
    # A file where the folder should be: no temp file can be made there, even as root.
    folder = tmp_path / "not-a-folder"
    folder.write_bytes(b"")
    with pytest.raises(OSError) as caught:
        durable.write_bytes(folder / "shots.toml", b"x")
    assert caught.value.filename == str(folder / "shots.toml")


# Placing a video under a second name: a clone or a copy, never a link.


def test_a_placed_file_never_shares_its_bytes_with_the_source(tmp_path):
    """`cp graded.mp4 river.mp4` over the placed name leaves the paid take as it was."""
    take = tmp_path / "takes" / "river.take2.mp4"
    take.parent.mkdir()
    take.write_bytes(b"the paid take")
    placed = durable.place(take, tmp_path / "river.mp4")
    assert placed.read_bytes() == b"the paid take"
    assert not placed.samefile(take)
    assert not placed.is_symlink()
    with placed.open("r+b") as fh:  # what cp does: the same inode, rewritten
        fh.write(b"THE GRADED CUT")
    assert take.read_bytes() == b"the paid take"
    assert names(tmp_path) == ["river.mp4", "takes"]


def test_placing_falls_back_to_a_copy_where_the_file_system_cannot_clone(tmp_path, monkeypatch):
    asked: list[int] = []

    def cannot_clone(fd: int, request: int, *args: object) -> None:
        asked.append(request)
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(durable.fcntl, "ioctl", cannot_clone)
    source = tmp_path / "a.mp4"
    source.write_bytes(b"video" * 1000)
    durable.place(source, tmp_path / "b.mp4")
    assert (tmp_path / "b.mp4").read_bytes() == b"video" * 1000
    assert asked == ([durable._FICLONE] if durable.sys.platform.startswith("linux") else [])
    assert names(tmp_path) == ["a.mp4", "b.mp4"]


def test_a_clone_is_tried_first_and_then_nothing_is_copied(tmp_path, monkeypatch):
    def clone(source: Path, dest: Path) -> bool:
        dest.write_bytes(source.read_bytes())  # what FICLONE leaves: the same bytes
        return True

    def no_copy(*_args: object) -> None:
        raise AssertionError("copied although the clone succeeded")

    monkeypatch.setattr(durable, "clone_into", clone)
    monkeypatch.setattr(durable.shutil, "copyfile", no_copy)
    source = tmp_path / "a.mp4"
    source.write_bytes(b"take")
    durable.place(source, tmp_path / "b.mp4")
    assert (tmp_path / "b.mp4").read_bytes() == b"take"


def test_a_failed_placement_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    def full_disk(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "clone_into", lambda _s, _d: False)
    monkeypatch.setattr(durable.shutil, "copyfile", full_disk)
    (tmp_path / "a.mp4").write_bytes(b"new")
    (tmp_path / "b.mp4").write_bytes(b"old")
    with pytest.raises(OSError, match="No space left"):
        durable.place(tmp_path / "a.mp4", tmp_path / "b.mp4")
    assert (tmp_path / "b.mp4").read_bytes() == b"old"
    assert names(tmp_path) == ["a.mp4", "b.mp4"]
