"""May kling-pipe replace the file at this path? The one answer every write asks for.

Users keep their own files beside the renders: a graded copy saved over ``river.mp4``, an
``index.html`` of their own in a folder they named ``output_dir``. kling-pipe replaces or
deletes a file only when it is *absent*, *empty* (nothing to lose), or exactly what the
records say kling-pipe wrote **there**: the store's files table names that path with the
sha256 the file still has. Anything else in the way of a write is *set aside*, never
overwritten: renamed beside itself to ``<name>.yours-<n><ext>`` (``river.yours-1.mp4``, the
first free n), with a warning naming both, and then the write goes ahead.

What `pick` once also accepted, a file whose bytes match *any* recorded render, no longer
counts on its own: equal bytes prove the file is a copy of a paid video, not that the video
survives anywhere else (a take moved by hand over ``<id>.mp4`` is the only copy left, and
replacing it would lose it). What counts instead is the reason that rule existed: a file is
replaceable when its bytes are **kept elsewhere**, at another path the records name (a take's
own file, say) that still holds exactly those bytes, checked now. Replacing such a duplicate
loses nothing, whoever made it; this is what lets a fresh checkout (renders on disk, an empty
files table) place a pick over the copy of another take. Attempts adopted from the lock file
can name such paths too: they can only point at bytes that are really there, never vouch for
a file by themselves.

Thumbnails are the one kind recognised by content too (`kling_pipe._outputs.frames`): their
records may wait (a power cut can lose one), and each carries kling-pipe's own signature in
its JPEG comment, so a thumbnail kling-pipe made is never taken for the user's.

`Ownership` holds the files table as it was read (one query), and is kept current by
`record`: the run's frame threads ask it while the event loop records, with no query each.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Self

import attrs

from kling_pipe import _files
from kling_pipe._records.store import Store, WrittenFile

log = logging.getLogger("kling_pipe")

#: What a set-aside file's name says: it is the user's, kept from a write of kling-pipe's.
SET_ASIDE_MARK: Final = "yours"


def _by_path(written: Iterable[WrittenFile]) -> dict[str, WrittenFile]:
    return {f.path: f for f in written}


def _pairs(outputs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(outputs)


@attrs.define(eq=False)
class Ownership:
    """The files kling-pipe wrote beside one shot list, by path: what it may replace."""

    #: What the files table says, by path relative to the shot list's folder.
    _written: dict[str, WrittenFile] = attrs.field(converter=_by_path)
    #: The shot list's folder: the records name files relative to it.
    _base_dir: Path
    #: (path, sha256) of every attempt's recorded output: where paid bytes may be kept.
    _outputs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    #: Every file set aside so far, (where it was, where it is now), for the caller to say.
    set_aside: list[tuple[Path, Path]] = attrs.Factory(list)

    @classmethod
    def of(cls, store: Store | None, base_dir: Path) -> Self:
        """Read what *store* says kling-pipe wrote (nothing, without a store)."""
        if store is None:
            return cls((), base_dir)
        outputs = [(a.file, a.sha256) for a in store.attempts() if a.file and a.sha256]
        return cls(store.files(), base_dir, outputs)

    def relative(self, path: Path) -> str:
        """Write *path* as the store keeps it: relative to the shot list's folder, resolved."""
        return os.path.relpath(path.resolve(), self._base_dir.resolve())

    def recorded(self, path: Path) -> WrittenFile | None:
        """Return what the records say kling-pipe wrote at *path*, if anything."""
        return self._written.get(self.relative(path))

    def knows(self, path: Path) -> bool:
        """Whether the records name *path* at all (whatever it holds now); never reads it."""
        return self.relative(path) in self._written

    def ours(self, path: Path, kind: str | None = None) -> bool:
        """Whether *path* holds exactly the bytes kling-pipe recorded writing there (blocking).

        With *kind*, only a file recorded as that kind counts (`cut` replaces only a film).
        """
        recorded = self.recorded(path)
        if recorded is None or (kind is not None and recorded.kind != kind):
            return False
        try:
            return path.is_file() and _files.sha256_file(path) == recorded.sha256
        except OSError:
            return False

    def may_replace(self, path: Path, *, also: Callable[[Path], bool] | None = None) -> bool:
        """Whether kling-pipe may write over *path* (blocking; see the module).

        Yes when it is absent, empty, recorded there with the bytes it has (`ours`), or a
        duplicate of bytes kept at another path the records name. *also* recognises more
        files as kling-pipe's by their content (thumbnails). Never a symbolic link or a folder.
        """
        try:
            st = path.lstat()
        except FileNotFoundError:
            return True
        if path.is_symlink() or not path.is_file():
            return False
        if st.st_size == 0 or (also is not None and also(path)):
            return True
        try:
            sha256 = _files.sha256_file(path)
        except OSError:
            return False
        recorded = self.recorded(path)
        if recorded is not None and recorded.sha256 == sha256:
            return True
        return self._kept_elsewhere(path, sha256)

    def _kept_elsewhere(self, path: Path, sha256: str) -> bool:
        """Whether another path the records name holds exactly these bytes now (blocking)."""
        here = self.relative(path)
        named = {p for p, f in self._written.items() if f.sha256 == sha256}
        named |= {p for p, digest in self._outputs if digest == sha256}
        for other in sorted(named - {here}):
            copy = self._base_dir / other
            with contextlib.suppress(OSError):
                if (
                    copy.is_file()
                    and not copy.samefile(path)
                    and (_files.sha256_file(copy) == sha256)
                ):
                    return True
        return False

    def make_way(self, path: Path, *, also: Callable[[Path], bool] | None = None) -> Path | None:
        """Before writing *path*: set a file kling-pipe may not replace aside; say where (blocking).

        Returns None when the way is clear (nothing there, or kling-pipe's own file), else the
        file's new name, ``<name>.yours-<n><ext>`` beside it; a warning names both. The file is
        renamed, never copied or truncated: its bytes, dates and links stay as they were.
        """
        if self.may_replace(path, also=also):
            return None
        aside = _set_aside(path)
        self.set_aside.append((path, aside))
        self._written.pop(self.relative(path), None)
        log.warning(
            "%s: not written by kling-pipe (or changed since), so it is yours: kept as %s",
            path,
            aside.name,
        )
        return aside

    def record(  # noqa: PLR0913 - keyword-only description of one file
        self,
        store: Store,
        path: Path,
        *,
        kind: str,
        origin: str,
        sha256: str,
        shot_id: str | None,
    ) -> None:
        """Remember in *store*, and here, that kling-pipe wrote *path* with these bytes.

        Call it from the thread that owns *store*.
        """
        relative = self.relative(path)
        store.record_file(relative, kind=kind, origin=origin, sha256=sha256, shot_id=shot_id)
        self.note(relative, kind=kind, origin=origin, sha256=sha256, shot_id=shot_id)

    def note(
        self, relative: str, *, kind: str, origin: str, sha256: str, shot_id: str | None
    ) -> None:
        """Keep this snapshot current after a file was recorded in the store elsewhere."""
        self._written[relative] = WrittenFile(
            path=relative, kind=kind, shot_id=shot_id, origin=origin, sha256=sha256
        )

    def forget(self, path: Path) -> None:
        """Forget *path* here (it was deleted, or moved away)."""
        self._written.pop(self.relative(path), None)


def set_aside_name(path: Path, n: int) -> Path:
    """Return the n-th name a file set aside from *path* may take: ``<stem>.yours-<n><ext>``."""
    return path.with_name(f"{path.stem}.{SET_ASIDE_MARK}-{n}{path.suffix}")


def _set_aside(path: Path) -> Path:
    """Rename *path* to the first free `set_aside_name`, never over an existing file."""
    n = 1
    while True:
        try:
            return _files.rename_new(path, set_aside_name(path, n))
        except FileExistsError:
            n += 1
