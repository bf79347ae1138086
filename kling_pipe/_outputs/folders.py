"""The folders a run writes to: checked before any money is spent, and owned by one shot list.

A run that finds out after paying that it cannot write its videos has lost the user's money;
two shot lists writing one output folder overwrite each other's videos silently; a folder of
the user's own (an ``edit/`` holding their cut) named as ``output_dir`` would have its files
written over. All three are found here, before the first request: a folder becomes a shot
list's (`.kling-pipe-owner.json`) only when it is new, empty, or holds nothing but files the
records say kling-pipe wrote. Also here: taking over a render recorded under another shot id
(a renamed or duplicated shot), which moves or copies files, and placing each shot's picked
take at ``<id>.mp4``.

Every write here asks `kling_pipe._records.ownership.Ownership` first: a file kling-pipe did
not write (or that changed since) is set aside as ``<name>.yours-<n><ext>`` by a run, and
refused in one line by `pick` (a deliberate, free command the user can simply repeat).

Versions: every render is a version of its shot, ``versions/<id>.v<N>.mp4``, whatever take
it rendered (`kling_pipe._records.layout`), and ``<id>.mp4`` is a copy of the current one
(the approved version, else the picked take's): `place_picks` copies it there (a
copy-on-write clone where the file system has them, never a link: `kling_pipe._files.place`),
so no paid render is ever overwritten. A renamed shot's versions become the new id's, a
duplicate gets a copy as a version of its own. Every file placed is recorded as
kling-pipe's. `gc` keeps every version unless told (``--versions``, ``--keep-last N``), and
even then the current, approved and picked ones; takes beyond a lowered ``takes`` that are
not picked are no longer current.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Final

from kling_pipe import _files
from kling_pipe import _files as durable
from kling_pipe._backends.base import DEFAULT_BASE_URL
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.assessment import (
    Assessment,
    image_hashes,
    open_store,
    read_lock_of,
    recorded_units,
)
from kling_pipe._records.identity import adopt_renamed_records, claimed_by, marked_owner
from kling_pipe._records.layout import OutputLayout, OutsideOutputError
from kling_pipe._records.lockfile import lock_path_for, section_for
from kling_pipe._records.ownership import Ownership
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._records.versions import VersionSlots
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import (
    LocalImage,
    ShotList,
    split_unit_key,
    unit_key,
)
from kling_pipe.exceptions import KlingPipeError

#: How many of the user's files a refusal to take a folder names.
_NAMED: Final = 3


class FolderError(KlingPipeError):
    """A folder the run needs cannot be used; the message names it and says why."""


def preflight(shotlist: ShotList, origin: str) -> None:
    """Check that the output and state folders can be written, and that the output is ours.

    Raises FolderError naming the folder: when it cannot be written, when it belongs to
    another shot list, or when it is not marked as any shot list's and holds files the
    records do not know (the user's own). Only then are the folders made and the owner
    marker written. Run it before the first request.
    """
    adopt_renamed_records(shotlist)  # moved to the new name before the marker is rewritten
    layout = OutputLayout.of(shotlist, origin)
    check_owner(shotlist)
    owner = owner_of(layout.root)
    if owner is None or (owner != shotlist.source.resolve() and owner.exists()):
        # Unmarked, or marked by a shot list whose folder this is not (a copied project's).
        _check_unmarked(shotlist, layout)
    for folder in (layout.folder, state_dir_for(shotlist.source)):
        _check_writable(folder)
    _write_owner(shotlist, layout)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".kling-pipe-write-test-")
        os.close(fd)
        Path(name).unlink()
    except OSError as exc:
        raise FolderError(
            f"{folder}: cannot write here ({exc.strerror or exc}); nothing was submitted"
        ) from None


def _check_unmarked(shotlist: ShotList, layout: OutputLayout) -> None:
    """Refuse a folder no shot list marked that holds files kling-pipe's records do not know.

    Such a folder is someone's: an ``edit/`` with their cut and their own ``index.html``.
    Taking it would put renders and a contact sheet among their files; it is refused with
    the first few named. A folder of kling-pipe's own files (an older version wrote no
    marker) is taken. Reads only: listing the folder, and the records.
    """
    if not layout.root.is_dir():
        return
    store = open_store(shotlist, create=False)
    try:
        ownership = Ownership.of(store, shotlist.base_dir)
    finally:
        if store is not None:
            store.close()
    theirs: list[Path] = []
    for folder, subfolders, names in os.walk(layout.root):
        subfolders.sort()
        theirs += [
            Path(folder) / n
            for n in sorted(names)
            if Path(folder) / n != layout.owner_marker and not ownership.knows(Path(folder) / n)
        ]
        if len(theirs) > _NAMED:
            break
    if not theirs:
        return
    named = ", ".join(str(p.relative_to(layout.root)) for p in theirs[:_NAMED])
    more = ", ..." if len(theirs) > _NAMED else ""
    raise FolderError(
        f"{layout.root}: holds files kling-pipe did not write ({named}{more}) and is no shot "
        "list's output folder; give storyboard.output_dir a folder of its own, or move them "
        "away; nothing was written"
    )


def owner_of(folder: Path) -> Path | None:
    """Return the shot list an output folder's marker names, if it is marked (`marked_owner`)."""
    return marked_owner(folder)


def check_owner(shotlist: ShotList, *, doing: str = "would write into it too") -> None:
    """Refuse an output folder that another existing shot list renders into (`claimed_by`).

    *doing* says what this shot list was about to do there, for the message.
    """
    owner = claimed_by(shotlist)
    if owner is None:
        return
    raise FolderError(
        f"{shotlist.output_path}: this output folder belongs to {owner}, and "
        f"{shotlist.source.resolve()} {doing}; give one of them its own storyboard.output_dir"
    )


def _write_owner(shotlist: ShotList, layout: OutputLayout) -> None:
    if owner_of(layout.root) == shotlist.source.resolve():
        return
    document = {"shot_list": str(shotlist.source.resolve())}
    durable.write_bytes(layout.owner_marker, (json.dumps(document) + "\n").encode())


def take_over(store: Store, shotlist: ShotList, assessment: Assessment) -> list[str]:
    """Give each shot marked `adopt` the render recorded under another id; return their ids.

    A renamed shot (its old id is gone) takes the old id's records, and their videos become
    the new id's versions (moved, never copied); a duplicate (the other shot still exists)
    gets a copy of the video as a version of its own and a record that cost nothing. A
    recorded path outside the output folder is never moved. Blocking.
    """
    current = set(assessment.resume)
    layout = OutputLayout.of(shotlist, assessment.origin)
    ownership = Ownership.of(store, shotlist.base_dir)
    slots = VersionSlots.of(store, layout)
    taken: list[str] = []
    for shot_id, resume in assessment.resume.items():
        source = resume.attempt
        if resume.kind != "adopt" or source is None:
            continue
        if source.shot_id not in current:
            renamed = [
                a
                for a in store.with_fingerprint(source.fingerprint, source.origin)
                if a.shot_id == source.shot_id
            ]
            store.rename_shot(
                source.shot_id, shot_id, fingerprint=source.fingerprint, origin=source.origin
            )
            for attempt in sorted(renamed, key=lambda a: a.id):
                _move_output(store, ownership, layout, slots, source=attempt, key=shot_id)
            _drop_old_copy(store, ownership, layout.picked(split_unit_key(source.shot_id)[0]))
            taken.append(shot_id)
        elif source.state == "downloaded" and source.file is not None:
            _copy_output(store, ownership, layout, slots, shot_id=shot_id, source=source)
            taken.append(shot_id)
    return taken


def _move_output(  # noqa: PLR0913 - one move, its records and where
    store: Store,
    ownership: Ownership,
    layout: OutputLayout,
    slots: VersionSlots,
    *,
    source: Attempt,
    key: str,
) -> None:
    """Make a renamed shot's recorded video a version of its new id (blocking)."""
    if source.file is None or source.sha256 is None:
        return
    try:
        old = layout.inside(source.file)
    except OutsideOutputError:
        return
    if not old.is_file() or _files.sha256_file(old) != source.sha256:
        return
    dest = slots.land(old, split_unit_key(key)[0])
    store.move_output(source.id, layout.relative(dest))
    if ownership.knows(old):
        store.forget_file(ownership.relative(old))
        ownership.forget(old)
    _record_output(store, ownership, dest, source, key)


def _drop_old_copy(store: Store, ownership: Ownership, copy: Path) -> None:
    """Remove a renamed shot's ``<old id>.mp4``: a copy of a version that now is the new id's.

    Only a file kling-pipe wrote there and nobody changed since (`Ownership.ours`); the bytes
    stay in ``versions/``, and the new id's ``<id>.mp4`` is placed from them. Blocking.
    """
    if not ownership.ours(copy):
        return
    copy.unlink(missing_ok=True)
    durable.fsync_folder(copy.parent)
    store.forget_file(ownership.relative(copy))
    ownership.forget(copy)


def _copy_output(  # noqa: PLR0913 - one copy, its records and where
    store: Store,
    ownership: Ownership,
    layout: OutputLayout,
    slots: VersionSlots,
    *,
    shot_id: str,
    source: Attempt,
) -> None:
    """Give a duplicate shot a copy of another's video, as a version of its own (blocking)."""
    assert source.file is not None
    try:
        origin_file = layout.inside(source.file)
    except OutsideOutputError:
        return
    if not origin_file.is_file() or _files.sha256_file(origin_file) != source.sha256:
        return
    dest = slots.land(origin_file, split_unit_key(shot_id)[0], copy=True)
    store.adopt(
        shot_id=shot_id,
        fingerprint=source.fingerprint,
        inputs=json.loads(source.inputs),
        model=source.model,
        duration=source.duration,
        cost=ZERO_USD,
        task_id=str(source.task_id),
        sent_at=source.sent_at,
        origin=source.origin,
        file=layout.relative(dest),
        sha256=source.sha256,
        size=source.bytes,
    )
    _record_output(store, ownership, dest, source, shot_id)


def _relative(path: Path, shotlist: ShotList) -> str:
    """As the store keeps paths: relative to the shot list's folder, both resolved."""
    return os.path.relpath(path.resolve(), shotlist.base_dir.resolve())


# The current version at <id>.mp4.


def place_picks(
    store: Store, shotlist: ShotList, assessment: Assessment, *, refuse: bool = False
) -> list[str]:
    """Make every shot's ``<id>.mp4`` a copy of its current version; return the shots changed.

    The current version is the picked (or approved) take's, when it is on disk; a picked take
    not on disk yet is placed when it is delivered
    (`kling_pipe._running.delivery.Delivery.place_pick`). Versions themselves are never
    written here. A file of the user's in the way is set aside, or with *refuse* (`pick`,
    `restore`) refused with `FolderError`. Blocking; it records what it places, so assess
    again when anything is returned.
    """
    changed: list[str] = []
    layout = OutputLayout.of(shotlist, assessment.origin)
    ownership = Ownership.of(store, shotlist.base_dir)
    for shot in shotlist.shots:
        chosen = assessment.resume.get(unit_key(shot.id, assessment.pick(shot.id)))
        attempt = None if chosen is None else chosen.attempt
        if (
            chosen is not None
            and chosen.kind == "cached"
            and attempt is not None
            and place_pick(
                store, ownership, layout, shot_id=shot.id, attempt=attempt, refuse=refuse
            )
        ):
            changed.append(shot.id)
    return changed


def _clear_way(ownership: Ownership, path: Path, *, refuse: bool) -> None:
    """Make way for a write at *path*: set a file of the user's aside, or refuse (blocking)."""
    if not refuse:
        ownership.make_way(path)
    elif not ownership.may_replace(path):
        raise FolderError(
            f"{path}: exists and is not a video kling-pipe placed there (or was changed "
            "since); move it away, nothing was changed"
        )


def place_pick(  # noqa: PLR0913 - keyword-only: which video goes where, for whom
    store: Store,
    ownership: Ownership,
    layout: OutputLayout,
    *,
    shot_id: str,
    attempt: Attempt,
    refuse: bool = False,
) -> bool:
    """Put a copy of the current version (*attempt*'s) at ``<id>.mp4``; False if it is there.

    Blocking (it clones or copies a file), and it writes to *store*: call it from the thread
    that owns the store. A recorded file outside the output folder is never read.
    """
    if attempt.file is None or attempt.sha256 is None:
        return False
    try:
        source = layout.inside(attempt.file)
    except OutsideOutputError:
        return False
    dest = layout.picked(shot_id)
    if source.resolve() == dest.resolve():
        return False
    if dest.is_file() and (dest.samefile(source) or _files.sha256_file(dest) == attempt.sha256):
        if not ownership.ours(dest):  # the right bytes, placed by hand or a fresh checkout
            _record_output(store, ownership, dest, attempt, shot_id)
        return False
    _clear_way(ownership, dest, refuse=refuse)
    _files.place(source, dest)
    _record_output(store, ownership, dest, attempt, shot_id)
    return True


def _record_output(
    store: Store, ownership: Ownership, path: Path, attempt: Attempt, key: str
) -> None:
    if attempt.sha256 is not None:
        ownership.record(
            store, path, kind="output", origin=attempt.origin, sha256=attempt.sha256, shot_id=key
        )


# What kling-pipe may overwrite or delete: only what its records say it wrote.


def protected_paths(shotlist: ShotList, store: Store | None) -> set[Path]:
    """Return files no command may write over: inputs, the shot list, its records, renders."""
    paths = {shotlist.source.resolve(), lock_path_for(shotlist.source).resolve()}
    for shot in shotlist.shots:
        for image in shot.images:
            if isinstance(image, LocalImage):
                paths.add(shotlist.resolve(image).resolve())
        for layout in OutputLayout.every(shotlist):
            paths.add(layout.picked(shot.id).resolve())
    if store is not None:
        for written in store.files():
            if written.kind != "cut":
                paths.add((shotlist.base_dir / written.path).resolve())
        for attempt in store.attempts():
            if attempt.file is not None:
                paths.add((shotlist.base_dir / attempt.file).resolve())
    return paths


def check_writable_target(shotlist: ShotList, target: Path, store: Store | None, kind: str) -> None:
    """Refuse to write *target* unless it is new or this command's own earlier output.

    Never over an input image, the shot list, its lock file or state, or a render; an
    existing file is replaced only when the records say kling-pipe wrote it as *kind* and it
    is unchanged since.
    """
    resolved = target.resolve()
    state = state_dir_for(shotlist.source).resolve()
    if resolved in protected_paths(shotlist, store) or resolved.is_relative_to(state):
        raise FolderError(
            f"{target}: is one of the shot list's inputs, records or renders; "
            "choose another file name"
        )
    if not target.exists():
        return
    if not Ownership.of(store, shotlist.base_dir).ours(target, kind):
        raise FolderError(
            f"{target}: exists and was not written by kling-pipe {kind} (or was changed "
            "since); choose another file name, or remove it yourself"
        )


def record_written(  # noqa: PLR0913 - keyword-only description of one file
    store: Store, shotlist: ShotList, path: Path, *, kind: str, origin: str, shot_id: str | None
) -> None:
    """Remember that kling-pipe wrote *path*, with its content's sha256 (blocking)."""
    store.record_file(
        _relative(path.resolve(), shotlist),
        kind=kind,
        origin=origin,
        sha256=_files.sha256_file(path),
        shot_id=shot_id,
    )


def garbage(shotlist: ShotList, store: Store | None, *, keep_last: int | None = None) -> list[Path]:
    """Return the files kling-pipe wrote for this shot list that no current shot needs.

    Worked out from the records, never from a listing of the folder: outputs of attempts
    that are no shot's latest for its current inputs (per origin), and recorded frames and
    thumbnails of shots no longer in the list. Every path read from the records is proved
    inside the output folder first (`OutputLayout.inside`): a record (a lock file's entry,
    say) naming ``../notes.txt`` is never followed. A file is listed only if the files table
    records it there with the bytes it still has (`Ownership.ours`), so a user's file that
    took its place, or a film made by `cut`, is never touched. Reads only.

    Versions (``versions/<id>.v<N>.mp4``) are garbage only by the user's word: without
    *keep_last* none is listed. With it (``gc --versions`` is 0, ``gc --keep-last N`` is N),
    a version is listed unless it is current (``<id>.mp4`` is its copy), approved, a take's
    render for the shot as it is now, or among its shot's last *keep_last* versions; its
    thumbnails go with it.
    """
    if store is None:
        return []
    layout = OutputLayout.of(shotlist, DEFAULT_BASE_URL)  # its root holds every origin's
    ownership = Ownership.of(store, shotlist.base_dir)
    superseded, keep, current = _superseded_outputs(shotlist, store)
    candidates = superseded | _orphan_files(store, current)
    if keep_last is None:
        candidates = {c for c in candidates if not _is_version(shotlist, c)}
    else:
        candidates |= _unattached_versions(shotlist, store)
        candidates -= _recent_versions(shotlist, store, keep_last)
    found: list[Path] = []
    for relative in sorted(candidates):
        if relative in keep:
            continue
        try:
            path = layout.inside(relative)
        except OutsideOutputError:
            continue
        if ownership.ours(path):
            found.append(path)
    found += _thumbs_of(shotlist, store, ownership, [p for p in found if _is_version(shotlist, p)])
    return sorted(set(found))


def _is_version(shotlist: ShotList, path: str | Path) -> bool:
    """Whether *path* (as recorded, or absolute) is a version in either origin's folder."""
    return any(layout.version_of(path) is not None for layout in OutputLayout.every(shotlist))


def _unattached_versions(shotlist: ShotList, store: Store) -> set[str]:
    """Version files the files table records that no attempt names (a crash's leftovers)."""
    named = {a.file for a in store.attempts() if a.file is not None}
    return {
        f.path
        for f in store.files()
        if f.kind == "output" and f.path not in named and _is_version(shotlist, f.path)
    }


def _recent_versions(shotlist: ShotList, store: Store, keep_last: int) -> set[str]:
    """Return the recorded files of each shot's last *keep_last* versions, per folder."""
    if keep_last <= 0:
        return set()
    numbered: dict[tuple[Path, str], list[tuple[int, str]]] = {}
    for attempt in store.attempts():
        if attempt.file is None:
            continue
        for layout in OutputLayout.every(shotlist):
            named = layout.version_of(attempt.file)
            if named is not None:
                numbered.setdefault((layout.folder, named[0]), []).append((named[1], attempt.file))
    recent: set[str] = set()
    for versions in numbered.values():
        recent |= {file for _, file in sorted(versions)[-keep_last:]}
    return recent


def _thumbs_of(
    shotlist: ShotList, store: Store, ownership: Ownership, videos: list[Path]
) -> list[Path]:
    """Return the recorded thumbnails of *videos* (versions about to go), unchanged since."""
    recorded = {f.path for f in store.files() if f.kind == "thumb"}
    return [
        thumb
        for video in videos
        for layout in OutputLayout.every(shotlist)
        if layout.version_of(video) is not None
        for thumb in layout.thumbs_of(layout.thumb_stem(video))
        if ownership.relative(thumb) in recorded and ownership.ours(thumb)
    ]


def _superseded_outputs(shotlist: ShotList, store: Store) -> tuple[set[str], set[str], set[str]]:
    """Find outputs of attempts that are no current take's latest, per origin.

    Return them, the files kept, and the unit keys current in some origin. A current shot's
    ``<id>.mp4`` (in each origin's folder) is always kept: it is the copy of its current
    version until a new one replaces it. So is each current take's latest render for its
    inputs now, per origin, and an approved shot's approved version: the takes a shot has now
    include its picked take, even past a lowered ``takes``
    (`kling_pipe._shotlist.fingerprint.kept_takes`), so a picked take is never garbage; the
    other takes beyond ``takes`` are no longer current: lowering ``takes`` leaves them for
    `gc`. Chains follow each origin's picks and approvals (the lock file's), as the runs that
    made them did.
    """
    layouts = OutputLayout.every(shotlist)
    keep = {
        layout.relative(layout.picked(shot.id)) for shot in shotlist.shots for layout in layouts
    }
    attempts = store.attempts()
    # A lock file that cannot be read hides picks and approvals: what to keep is unknown, so
    # nothing is garbage (the error reaches the user, as `status` shows it).
    lock = read_lock_of(shotlist)
    current = {key for s in shotlist.shots for key in s.unit_keys}  # take 1's key is the id
    for origin in sorted({a.origin for a in attempts}):
        section = section_for(origin)
        hashes = image_hashes(shotlist, store, lock)
        units = recorded_units(shotlist, lock, section, hashes)
        current |= set(units.fingerprints)
        approved = {unit_key(s, a.take): a.sha256 for s, a in units.approvals.items()}
        for key, fingerprint in units.fingerprints.items():
            kept = [
                a
                for a in store.with_fingerprint(fingerprint, origin)
                if a.shot_id == key and approved.get(key, a.sha256) == a.sha256
            ]
            if kept and kept[0].file is not None:
                keep.add(kept[0].file)
        for shot_id, approval in units.approvals.items():
            # The render the shot has as it is now: what unapproving it brings back.
            key = unit_key(shot_id, approval.take)
            latest = store.latest(key, units.unpinned[shot_id], origin)
            if latest is not None and latest.file is not None:
                keep.add(latest.file)
    superseded = {a.file for a in attempts if a.file is not None and a.file not in keep}
    return superseded, keep, current


def _orphan_files(store: Store, current: set[str]) -> set[str]:
    """Find recorded frames, thumbnails and videos of shots (or takes) not *current*.

    A file recorded for a take (its unit key, ``id#k``) is an orphan once the shot no longer
    has take k (fewer takes, and not a pick kept past them).
    """
    return {
        f.path
        for f in store.files()
        if f.kind in {"frame", "thumb", "output"}
        and f.shot_id is not None
        and f.shot_id not in current
    }


def collect_garbage(
    shotlist: ShotList, store: Store | None, *, dry_run: bool, keep_last: int | None = None
) -> list[Path]:
    """Delete (or with *dry_run* only list, writing nothing) what `garbage` finds; return them.

    Raises `KlingPipeError` when the lock file is there but cannot be read: its picks and
    approvals say what must be kept.
    """
    paths = garbage(shotlist, store, keep_last=keep_last)
    if not dry_run and store is not None:
        for path in paths:
            path.unlink(missing_ok=True)
            store.forget_file(_relative(path, shotlist))
    return paths
