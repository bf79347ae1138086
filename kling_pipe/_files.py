"""Files kling-pipe writes and reads by content: one durable write, copy, hash and MP4 sniff.

Durable writes: a file appears whole under its name or not at all, and survives a crash.

Every file kling-pipe writes goes through `TempFile`: a temp file in the target's folder,
filled, flushed and fsynced, given the mode a plainly created file would have, renamed over
the target, then the folder fsynced so the rename survives a power cut too. On any error
or cancellation the temp file is removed and the target is left as it was; a killed
process leaves at most a hidden ``.<name>.*.part`` file.

Everything here blocks: async code calls `TempFile.commit` in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, Self


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mkstemp makes files only their owner can read; a finished file gets the usual mode.
_FILE_MODE = 0o666 & ~_current_umask()


class TempFile:
    """A temp file beside *dest*, open for writing as `handle`, until committed or discarded."""

    def __init__(self, dest: Path, handle: BinaryIO, path: Path) -> None:
        self.dest = dest
        self.handle = handle
        self.path = path

    @classmethod
    def beside(cls, dest: Path) -> Self:
        """Create the temp file in *dest*'s folder (which must exist).

        If that fails (a read-only folder), the error names *dest*, the file the caller
        asked for, not the temp file.
        """
        try:
            fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as exc:
            exc.filename = str(dest)
            raise
        return cls(dest, os.fdopen(fd, "wb"), Path(name))

    def commit(self, *, replace: bool = True) -> Path:
        """Make the written bytes durable and put them at `dest`; return `dest`.

        With *replace* false the target must not exist (FileExistsError otherwise): the
        temp file is hard-linked to it, which, unlike a rename, never clobbers a file that
        appeared meanwhile. On any failure the temp file is removed.
        """
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            os.fchmod(self.handle.fileno(), _FILE_MODE)
            self.handle.close()
            if replace:
                self.path.replace(self.dest)
            else:
                os.link(self.path, self.dest)
                self.path.unlink()
        except BaseException:
            self.discard()
            raise
        fsync_folder(self.dest.parent)
        return self.dest

    def discard(self) -> None:
        """Close and delete the temp file, leaving `dest` as it was; never raises."""
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def fsync_folder(folder: Path) -> None:
    """Make a rename in *folder* durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def writing(dest: Path, *, replace: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary handle to fill; on leaving the block, commit it to *dest*.

    An exception (or cancellation) inside the block discards what was written.
    """
    temp = TempFile.beside(dest)
    try:
        yield temp.handle
    except BaseException:
        temp.discard()
        raise
    temp.commit(replace=replace)


@contextlib.contextmanager
def filling(dest: Path) -> Iterator[Path]:
    """Yield the path of an empty temp file beside *dest*, for a writer that wants a name.

    On leaving the block the file at that path is committed to *dest*; an exception
    inside the block discards it.
    """
    temp = TempFile.beside(dest)
    temp.handle.close()
    try:
        yield temp.path
        temp.handle = temp.path.open("rb+")
    except BaseException:
        temp.discard()
        raise
    temp.commit()


def write_bytes(dest: Path, data: bytes, *, replace: bool = True) -> Path:
    """Write *data* to *dest* durably (see the module's docstring); return *dest*."""
    with writing(dest, replace=replace) as handle:
        handle.write(data)
    return dest


def place(source: Path, dest: Path, *, replace: bool = True) -> Path:
    """Make *dest* hold a copy of *source*'s content, atomically and durably; return *dest*.

    With *replace* false *dest* must not exist (FileExistsError otherwise, nothing written):
    a version is never written over.

    A clone where the file system has them (Btrfs, XFS, bcachefs: `clone_into`, no second
    copy of the bytes on disk until one of them changes), else a plain copy: written to a
    temporary file beside *dest* and renamed over it, so a reader sees the old *dest* or the
    new one. Never a hard link, nor a symbolic link: two names sharing bytes would let a
    user's ``cp graded.mp4 river.mp4`` rewrite the paid take through the other name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = TempFile.beside(dest)
    temp.handle.close()
    try:
        if not clone_into(source, temp.path):
            shutil.copyfile(source, temp.path)
        temp.handle = temp.path.open("rb+")
    except BaseException:
        temp.discard()
        raise
    return temp.commit(replace=replace)


def rename_new(path: Path, dest: Path) -> Path:
    """Move *path* to *dest*, which must not exist (FileExistsError: nothing moved); durable.

    A hard link then an unlink, so a file that appeared at *dest* meanwhile is never
    clobbered; on a file system without links, a rename after checking *dest* is free.
    """
    try:
        os.link(path, dest)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if dest.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(dest)) from None
        path.rename(dest)
    else:
        try:
            path.unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
    fsync_folder(dest.parent)
    if path.parent != dest.parent:
        fsync_folder(path.parent)
    return dest


#: Linux's ioctl that makes one file share another's extents, copy-on-write (linux/fs.h).
_FICLONE: Final = 0x40049409


def clone_into(source: Path, dest: Path) -> bool:
    """Make the existing file *dest* a copy-on-write clone of *source*; False if it cannot.

    A clone shares the bytes on disk until either file is written, when the written one gets
    its own: unlike a hard link, nothing written to one name ever shows through the other.
    Only Linux file systems that support ``FICLONE`` clone; elsewhere this returns False and
    the caller copies.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        with source.open("rb") as src, dest.open("r+b") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except OSError:
        return False
    return True


#: The ISO BMFF box type that opens every MP4: bytes 4..8 of the file.
_FTYP: Final = b"ftyp"


def looks_like_mp4(head: bytes) -> bool:
    """Whether *head* (the first 8 bytes or more of a file) starts an ISO BMFF ``ftyp`` box."""
    return len(head) >= 8 and head[4:8] == _FTYP


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at *path*, read in chunks (blocking)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
