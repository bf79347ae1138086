"""Bringing an output folder written before versions into ``versions/``, losing nothing.

Before versions, a shot's picked take 1 was delivered to ``<id>.mp4`` itself and its other
takes to ``takes/<id>.take<k>.mp4``; an edited shot's new render replaced ``<id>.mp4``. Now
every render is a version of its own (`kling_pipe._records.layout`). The first command that
writes under the run lock (`run`, `pick`, `approve`, `restore`) calls `migrate_to_versions`
first, so everything else only ever sees the new layout:

* every recorded render whose file still holds its recorded bytes becomes a version, in the
  order its attempts were recorded: a file under ``takes/`` is moved, and ``<id>.mp4`` is
  copied (it stays where it is, as the copy of the current version it already is); the
  attempt's record follows it, and the files table names the version;
* a render whose file is gone, or holds other bytes now (an older layout wrote an edited
  shot's new render over it), was lost before this ran: its record is left as it is (a
  run fetches it again from its task if it is still needed);
* a lock entry of an older layout (a teammate's checkout) is adopted into the store first and
  then migrated the same way.

Crash-safe: the version's name is recorded as kling-pipe's before the file is put there, so
a migration killed half-way finds the version it made (a recorded version no attempt names,
with the attempt's bytes) and takes it, rather than losing the moved file or making another.
Idempotent: once nothing of an older layout is left, it only reads the records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import attrs

from kling_pipe import _files
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.layout import OutputLayout, OutsideOutputError
from kling_pipe._records.ownership import Ownership
from kling_pipe._records.store import Store
from kling_pipe._records.versions import VersionSlots
from kling_pipe._shotlist.specs import ShotList, split_unit_key


@attrs.frozen
class Moved:
    """One render brought into ``versions/``: from where, to where, and for which unit."""

    source: Path
    version: Path
    unit: str
    #: False when the file stayed where it was too (``<id>.mp4``, the current copy).
    moved: bool


def migrate_to_versions(store: Store, shotlist: ShotList) -> list[Moved]:
    """Make every recorded render of an older layout a version (see the module; blocking).

    Call it under the shot list's run lock, before assessing. Returns what it brought in.
    """
    attempts = store.attempts()
    ownership = Ownership.of(store, shotlist.base_dir)
    slots: dict[Path, VersionSlots] = {}
    hashes: dict[Path, str | None] = {}
    legacy = [(a, layout) for a in attempts if (layout := _legacy_layout(shotlist, a))]
    if not legacy:
        return []
    named_later: dict[Path, int] = {}
    for attempt, layout in legacy:
        with contextlib.suppress(OutsideOutputError):
            path = layout.inside(str(attempt.file))
            named_later[path] = named_later.get(path, 0) + 1
    unattached = _unattached(store, shotlist, attempts)
    done: list[Moved] = []
    for attempt, layout in legacy:
        try:
            path = layout.inside(str(attempt.file))
        except OutsideOutputError:
            continue
        named_later[path] -= 1
        if not _holds(path, attempt, hashes):
            leftover = unattached.pop((split_unit_key(attempt.shot_id)[0], attempt.sha256), None)
            if leftover is not None:  # a migration killed after the move: the version is here
                store.move_output(attempt.id, layout.relative(leftover))
            continue
        shot_id = split_unit_key(attempt.shot_id)[0]
        folder_slots = slots.get(layout.folder) or VersionSlots.of(store, layout)
        slots[layout.folder] = folder_slots
        # A file beside the videos is a name people use (``<id>.mp4``): it stays, copied.
        # One under ``takes/`` is moved, unless a later record still names it.
        copy = path.parent.resolve() == layout.folder.resolve() or named_later[path] > 0
        version = folder_slots.land(
            path, shot_id, copy=copy, claimed=_recorder(store, ownership, attempt)
        )
        store.move_output(attempt.id, layout.relative(version))
        if not copy:
            hashes.pop(path, None)
            if ownership.knows(path):
                store.forget_file(ownership.relative(path))
                ownership.forget(path)
        done.append(Moved(source=path, version=version, unit=attempt.shot_id, moved=not copy))
    for layout in {layout.folder: layout for _, layout in legacy}.values():
        with contextlib.suppress(OSError):
            (layout.folder / "takes").rmdir()  # only when empty: nothing else is touched
    return done


def _legacy_layout(shotlist: ShotList, attempt: Attempt) -> OutputLayout | None:
    """Return the layout of an attempt whose render is not a version yet, else None."""
    if attempt.file is None or attempt.sha256 is None:
        return None
    layout = OutputLayout.of(shotlist, attempt.origin)
    named = layout.version_of(attempt.file)
    if named is not None and named[0] == split_unit_key(attempt.shot_id)[0]:
        return None
    return layout


def _holds(path: Path, attempt: Attempt, hashes: dict[Path, str | None]) -> bool:
    """Whether *path* holds *attempt*'s recorded bytes (each file hashed once)."""
    try:
        if not path.is_file() or (
            attempt.bytes is not None and path.stat().st_size != attempt.bytes
        ):
            return False
        if path not in hashes:
            hashes[path] = _files.sha256_file(path)
    except OSError:
        return False
    return hashes[path] == attempt.sha256


def _unattached(
    store: Store, shotlist: ShotList, attempts: list[Attempt]
) -> dict[tuple[str, str | None], Path]:
    """Return recorded versions no attempt names, by (shot id, sha256), holding those bytes."""
    named = {a.file for a in attempts if a.file is not None}
    found: dict[tuple[str, str | None], Path] = {}
    for written in store.files():
        if written.kind != "output" or written.path in named:
            continue
        for layout in OutputLayout.every(shotlist):
            version = layout.version_of(written.path)
            path = shotlist.base_dir / written.path
            with contextlib.suppress(OSError):
                if version is not None and _files.sha256_file(path) == written.sha256:
                    found[(version[0], written.sha256)] = path
    return found


def _recorder(store: Store, ownership: Ownership, attempt: Attempt) -> Callable[[Path], None]:
    """Record a version's name as kling-pipe's before the file is put there."""

    def claimed(version: Path) -> None:
        assert attempt.sha256 is not None
        ownership.record(
            store,
            version,
            kind="output",
            origin=attempt.origin,
            sha256=attempt.sha256,
            shot_id=attempt.shot_id,
        )

    return claimed
