"""The folders a run writes to: checked before any money is spent, and owned by one shot list.

A run that finds out after paying that it cannot write its videos has lost the user's money;
two shot lists writing one output folder overwrite each other's videos silently. Both are
found here, before the first request. Also here: taking over a render recorded under another
shot id (a renamed or duplicated shot), which moves or copies files, and placing each shot's
picked take at ``<id>.mp4``.

Takes: take k of a shot is its own video, ``takes/<id>.take<k>.mp4`` beside the renders, but
for the picked take 1, which is ``<id>.mp4`` itself (so a shot of one take is where it always
was). ``<id>.mp4`` is always the picked take: `place_picks` hard-links the picked take there
(a durable copy where links are refused), after moving take 1 aside to ``takes/`` when it
lived at ``<id>.mp4`` and another take is picked, so no paid take is ever overwritten. Every
file placed is recorded as kling-pipe's; `gc` keeps every current take's file (takes beyond a
lowered ``takes`` are its to remove).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from kling_pipe import _files
from kling_pipe import _files as durable
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.assessment import (
    Assessment,
    image_hashes,
    output_folder,
    picked_file,
    read_lock_of,
    take_file,
)
from kling_pipe._records.identity import adopt_renamed_records
from kling_pipe._records.lockfile import lock_path_for, read_picks, section_for
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._shotlist.fingerprint import fingerprint_units
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import (
    LocalImage,
    ShotList,
    split_unit_key,
    unit_key,
)
from kling_pipe.exceptions import KlingPipeError

#: Marks an output folder as written by one shot list (its absolute path inside).
OWNER_FILE: Final = ".kling-pipe-owner.json"


class FolderError(KlingPipeError):
    """A folder the run needs cannot be used; the message names it and says why."""


def preflight(shotlist: ShotList, origin: str) -> None:
    """Check, creating them if need be, that the output and state folders can be written.

    Raises FolderError naming the folder; also when the output folder belongs to another
    shot list. Run it before the first request.
    """
    adopt_renamed_records(shotlist)  # moved to the new name before the marker is rewritten
    out = output_folder(shotlist, origin)
    for folder in (out, state_dir_for(shotlist.source)):
        _check_writable(folder)
    check_owner(shotlist)
    _write_owner(shotlist)


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


def owner_of(folder: Path) -> Path | None:
    """Return the shot list an output folder belongs to, if it is marked."""
    try:
        data = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    owner = data.get("shot_list") if isinstance(data, dict) else None
    return Path(owner) if isinstance(owner, str) else None


def check_owner(shotlist: ShotList) -> None:
    """Refuse an output folder that another existing shot list already renders into."""
    folder = shotlist.output_path
    owner = owner_of(folder)
    me = shotlist.source.resolve()
    if owner is None or owner == me or not owner.exists():
        return
    raise FolderError(
        f"{folder}: this output folder belongs to {owner}, and {me} would write into it too; "
        "give one of them its own storyboard.output_dir"
    )


def _write_owner(shotlist: ShotList) -> None:
    folder = shotlist.output_path
    if owner_of(folder) == shotlist.source.resolve():
        return
    document = {"shot_list": str(shotlist.source.resolve())}
    durable.write_bytes(folder / OWNER_FILE, (json.dumps(document) + "\n").encode())


def take_over(store: Store, shotlist: ShotList, assessment: Assessment) -> list[str]:
    """Give each shot marked `adopt` the render recorded under another id; return their ids.

    A renamed shot (its old id is gone) takes the old id's records and its video is renamed;
    a duplicate (the other shot still exists) gets a copy of the video and a record that
    cost nothing. Blocking.
    """
    current = {key for s in shotlist.shots for key in s.unit_keys}
    taken: list[str] = []
    for shot_id, resume in assessment.resume.items():
        source = resume.attempt
        if resume.kind != "adopt" or source is None:
            continue
        own, take = split_unit_key(shot_id)
        dest = take_file(shotlist, assessment.origin, own, take, assessment.pick(own))
        if source.shot_id not in current:
            store.rename_shot(
                source.shot_id, shot_id, fingerprint=source.fingerprint, origin=source.origin
            )
            if source.file is not None:
                _move_output(store, shotlist, source.file, dest, source.id)
            taken.append(shot_id)
        elif source.state == "downloaded" and source.file is not None:
            _copy_output(store, shotlist, shot_id, source, dest)
            taken.append(shot_id)
    return taken


def _relative(path: Path, shotlist: ShotList) -> str:
    """As the store keeps paths: relative to the shot list's folder, both resolved."""
    return os.path.relpath(path.resolve(), shotlist.base_dir.resolve())


def _move_output(store: Store, shotlist: ShotList, file: str, dest: Path, attempt: int) -> None:
    old = shotlist.base_dir / file
    if not old.is_file() or dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    old.replace(dest)
    store.move_output(attempt, _relative(dest, shotlist))


def _copy_output(
    store: Store, shotlist: ShotList, shot_id: str, source: Attempt, dest: Path
) -> None:
    assert source.file is not None
    origin_file = shotlist.base_dir / source.file
    if not origin_file.is_file() or _files.sha256_file(origin_file) != source.sha256:
        return
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with durable.filling(dest) as tmp:
            shutil.copyfile(origin_file, tmp)
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
        file=_relative(dest, shotlist),
        sha256=source.sha256,
        size=source.bytes,
    )


# The picked take at <id>.mp4.


def place_picks(store: Store, shotlist: ShotList, assessment: Assessment) -> list[str]:
    """Make every shot's ``<id>.mp4`` its picked take; return the ids of the shots changed.

    Take 1 living at ``<id>.mp4`` while another take is picked is first moved to
    ``takes/<id>.take1.mp4`` (its record follows), so placing the pick never overwrites a
    paid take. A picked take not on disk yet is placed when it is delivered (`place_pick`);
    until then ``<id>.mp4`` is absent rather than another take. Blocking; records changed
    here make *assessment* stale, so assess again when anything is returned.
    """
    changed: list[str] = []
    for shot in shotlist.shots:
        # Usually take 1 is picked and was delivered to <id>.mp4 itself: nothing to do. Not
        # always for a shot of one take: its pick of a take since dropped has lapsed.
        pick = assessment.pick(shot.id)
        dest = picked_file(shotlist, assessment.origin, shot.id)
        first = assessment.resume[shot.id]
        moved = False
        if (
            pick != 1
            and first.kind == "cached"
            and first.attempt is not None
            and first.attempt.id >= 0
            and first.attempt.file == _relative(dest, shotlist)
        ):
            aside = take_file(shotlist, assessment.origin, shot.id, 1, pick)
            check_ours_to_replace(store, shotlist, aside)
            aside.parent.mkdir(parents=True, exist_ok=True)
            dest.replace(aside)
            durable.fsync_folder(aside.parent)
            durable.fsync_folder(dest.parent)
            store.move_output(first.attempt.id, _relative(aside, shotlist))
            _record_output(store, shotlist, aside, first.attempt, unit_key(shot.id, 1))
            moved = True
        chosen = assessment.resume[unit_key(shot.id, pick)]
        attempt = chosen.attempt
        if chosen.kind == "cached" and attempt is not None and attempt.file is not None:
            source = shotlist.base_dir / attempt.file
            if place_pick(
                store,
                shotlist,
                origin=assessment.origin,
                shot_id=shot.id,
                source=source,
                attempt=attempt,
            ):
                moved = True
        if moved:
            changed.append(shot.id)
    return changed


def check_ours_to_replace(store: Store, shotlist: ShotList, path: Path) -> None:
    """Refuse to replace *path* unless it is absent or a video kling-pipe put there, unchanged.

    A take is placed over ``<id>.mp4`` (or take 1 moved over ``takes/<id>.take1.mp4``): a
    file there that the records do not know by its content (the user's own cut, a graded
    copy) is the user's, and is never overwritten.
    """
    if not path.exists():
        return
    sha256 = _files.sha256_file(path) if path.is_file() else None
    recorded = store.written(_relative(path, shotlist))
    if sha256 is not None and (
        (recorded is not None and recorded.sha256 == sha256)
        or any(a.sha256 == sha256 for a in store.attempts())
    ):
        return
    raise FolderError(
        f"{path}: exists and is not a video kling-pipe placed there (or was changed since); "
        "move it away, nothing was changed"
    )


def place_pick(  # noqa: PLR0913 - keyword-only: which video goes where, for whom
    store: Store,
    shotlist: ShotList,
    *,
    origin: str,
    shot_id: str,
    source: Path,
    attempt: Attempt,
) -> bool:
    """Put the picked take's video *source* at ``<id>.mp4``; False if it is there already.

    Blocking (it links or copies a file), and it writes to *store*: call it from the thread
    that owns the store, or record with `record_placed` after linking elsewhere.
    """
    dest = picked_file(shotlist, origin, shot_id)
    if source.resolve() == dest.resolve():
        return False
    if dest.exists() and dest.samefile(source):
        return False
    check_ours_to_replace(store, shotlist, dest)
    durable.place(source, dest)
    _record_output(store, shotlist, dest, attempt, shot_id)
    return True


def record_placed(
    store: Store, shotlist: ShotList, origin: str, shot_id: str, attempt_sha256: str
) -> None:
    """Record ``<id>.mp4``, just placed from the picked take, as kling-pipe's."""
    store.record_file(
        _relative(picked_file(shotlist, origin, shot_id), shotlist),
        kind="output",
        origin=origin,
        sha256=attempt_sha256,
        shot_id=shot_id,
    )


def _record_output(
    store: Store, shotlist: ShotList, path: Path, attempt: Attempt, key: str
) -> None:
    if attempt.sha256 is not None:
        store.record_file(
            _relative(path, shotlist),
            kind="output",
            origin=attempt.origin,
            sha256=attempt.sha256,
            shot_id=key,
        )


# What kling-pipe may overwrite or delete: only what its records say it wrote.


def protected_paths(shotlist: ShotList, store: Store | None) -> set[Path]:
    """Return files no command may write over: inputs, the shot list, its records, renders."""
    paths = {shotlist.source.resolve(), lock_path_for(shotlist.source).resolve()}
    for shot in shotlist.shots:
        for image in shot.images:
            if isinstance(image, LocalImage):
                paths.add(shotlist.resolve(image).resolve())
        for folder in (shotlist.output_path, shotlist.output_path / "mock"):
            paths.add((folder / f"{shot.id}.mp4").resolve())
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
    recorded = None if store is None else store.written(_relative(resolved, shotlist))
    if (
        recorded is None
        or recorded.kind != kind
        or not target.is_file()
        or _files.sha256_file(target) != recorded.sha256
    ):
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


def garbage(shotlist: ShotList, store: Store | None) -> list[Path]:
    """Return the files kling-pipe wrote for this shot list that no current shot needs.

    Worked out from the records, never from a listing of the folder: outputs of attempts
    that are no shot's latest for its current inputs (per origin), and recorded frames and
    thumbnails of shots no longer in the list. A file is listed only if it is still exactly
    what kling-pipe wrote (its sha256 matches), so a user's file that took its place, or a
    film made by `cut`, is never touched.
    """
    if store is None:
        return []
    superseded, keep = _superseded_outputs(shotlist, store)
    candidates = {**superseded, **_orphan_files(shotlist, store)}
    found: list[Path] = []
    for relative, sha256 in candidates.items():
        if relative in keep:
            continue
        path = shotlist.base_dir / relative
        try:
            if path.is_file() and _files.sha256_file(path) == sha256:
                found.append(path)
        except OSError:
            continue
    return sorted(found)


def _superseded_outputs(shotlist: ShotList, store: Store) -> tuple[dict[str, str], set[str]]:
    """Find outputs of attempts that are no current take's latest, per origin.

    Return them, and the files kept. A current shot's own file name (``<id>.mp4``, and
    ``takes/<id>.take<k>.mp4`` for each of its takes) is always kept: until its new version
    is rendered, the old one is the only video of it there is. Takes beyond the shot's
    ``takes`` are no longer current: lowering ``takes`` leaves them for `gc`. Chains follow
    each origin's picks (the lock file's), as the runs that made them did.
    """
    folders = (shotlist.output_path, shotlist.output_path / "mock")
    keep = {
        _relative(folder / f"{shot.id}.mp4", shotlist)
        for shot in shotlist.shots
        for folder in folders
    }
    keep |= {
        _relative(folder / "takes" / f"{shot.id}.take{take}.mp4", shotlist)
        for shot in shotlist.shots
        for take in range(1, shot.takes + 1)
        for folder in folders
    }
    attempts = store.attempts()
    try:
        lock = read_lock_of(shotlist)
    except KlingPipeError:
        lock = None
    for origin in sorted({a.origin for a in attempts}):
        picks = read_picks(lock, section_for(origin))
        units = fingerprint_units(shotlist, image_hashes(shotlist, store, lock), picks)
        for key, fingerprint in units.fingerprints.items():
            latest = store.latest(key, fingerprint, origin)
            if latest is not None and latest.file is not None:
                keep.add(latest.file)
    superseded = {
        a.file: a.sha256
        for a in attempts
        if a.file is not None and a.sha256 is not None and a.file not in keep
    }
    return superseded, keep


def _orphan_files(shotlist: ShotList, store: Store) -> dict[str, str]:
    """Find recorded frames, thumbnails and videos of shots (or takes) no longer in the list.

    A file recorded for a take (its unit key, ``id#k``) is an orphan once the shot has fewer
    than k takes.
    """
    current = {key for s in shotlist.shots for key in s.unit_keys}  # take 1's key is the id
    return {
        f.path: f.sha256
        for f in store.files()
        if f.kind in {"frame", "thumb", "output"}
        and f.shot_id is not None
        and f.shot_id not in current
    }


def collect_garbage(shotlist: ShotList, store: Store | None, *, dry_run: bool) -> list[Path]:
    """Delete (or with *dry_run* only list) what `garbage` finds; return the paths."""
    paths = garbage(shotlist, store)
    if not dry_run and store is not None:
        for path in paths:
            path.unlink(missing_ok=True)
            store.forget_file(_relative(path.resolve(), shotlist))
    return paths
