"""The folders a run writes to: checked before any money is spent, and owned by one shot list.

A run that finds out after paying that it cannot write its videos has lost the user's money;
two shot lists writing one output folder overwrite each other's videos silently. Both are
found here, before the first request. Also here: taking over a render recorded under another
shot id (a renamed or duplicated shot), which moves or copies files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Final

from kling_pipe._outputs import media
from kling_pipe._records import durable
from kling_pipe._records.assessment import Assessment, output_folder
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.store import Attempt, Store, state_dir_for
from kling_pipe._shotlist.fingerprint import fingerprints as fingerprints_of_files
from kling_pipe._shotlist.specs import LocalImage, ShotList
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
    current = {s.id for s in shotlist.shots}
    out = output_folder(shotlist, assessment.origin)
    taken: list[str] = []
    for shot_id, resume in assessment.resume.items():
        source = resume.attempt
        if resume.kind != "adopt" or source is None:
            continue
        dest = out / f"{shot_id}.mp4"
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
    old.replace(dest)
    store.move_output(attempt, _relative(dest, shotlist))


def _copy_output(
    store: Store, shotlist: ShotList, shot_id: str, source: Attempt, dest: Path
) -> None:
    assert source.file is not None
    origin_file = shotlist.base_dir / source.file
    if not origin_file.is_file() or media.sha256_file(origin_file) != source.sha256:
        return
    if not dest.exists():
        with durable.filling(dest) as tmp:
            shutil.copyfile(origin_file, tmp)
    store.adopt(
        shot_id=shot_id,
        fingerprint=source.fingerprint,
        inputs=json.loads(source.inputs),
        model=source.model,
        duration=source.duration,
        cost=Decimal("0.000"),
        task_id=str(source.task_id),
        sent_at=source.sent_at,
        origin=source.origin,
        file=_relative(dest, shotlist),
        sha256=source.sha256,
        size=source.bytes,
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
        or media.sha256_file(target) != recorded.sha256
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
        sha256=media.sha256_file(path),
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
    candidates = {**_superseded_outputs(shotlist, store), **_orphan_files(shotlist, store)}
    found: list[Path] = []
    for relative, sha256 in candidates.items():
        path = shotlist.base_dir / relative
        try:
            if path.is_file() and media.sha256_file(path) == sha256:
                found.append(path)
        except OSError:
            continue
    return sorted(found)


def _superseded_outputs(shotlist: ShotList, store: Store) -> dict[str, str]:
    """Find outputs of attempts that are no current shot's latest, per origin.

    A current shot's own file name is always kept: until its new version is rendered, the
    old one is the only video of it there is.
    """
    fingerprints = fingerprints_of_files(shotlist, media.sha256_file)
    keep = {
        _relative(folder / f"{shot_id}.mp4", shotlist)
        for shot_id in fingerprints
        for folder in (shotlist.output_path, shotlist.output_path / "mock")
    }
    for shot_id, fingerprint in fingerprints.items():
        for origin in {a.origin for a in store.with_fingerprint(fingerprint, None)}:
            latest = store.latest(shot_id, fingerprint, origin)
            if latest is not None and latest.file is not None:
                keep.add(latest.file)
    return {
        a.file: a.sha256
        for a in store.attempts()
        if a.file is not None and a.sha256 is not None and a.file not in keep
    }


def _orphan_files(shotlist: ShotList, store: Store) -> dict[str, str]:
    """Find recorded frames and thumbnails of shots no longer in the list."""
    ids = {s.id for s in shotlist.shots}
    return {
        f.path: f.sha256
        for f in store.files()
        if f.kind in {"frame", "thumb"} and f.shot_id not in ids
    }


def collect_garbage(shotlist: ShotList, store: Store | None, *, dry_run: bool) -> list[Path]:
    """Delete (or with *dry_run* only list) what `garbage` finds; return the paths."""
    paths = garbage(shotlist, store)
    if not dry_run and store is not None:
        for path in paths:
            path.unlink(missing_ok=True)
            store.forget_file(_relative(path.resolve(), shotlist))
    return paths
