"""The glue between a shot list and its records: assess what to do, adopt a lock, write it.

`run`, `plan` and `status` all start from `assess_shotlist`, so they agree on which shots
are cached, stale, in flight or uncertain.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe import media
from kling_pipe._version import __version__
from kling_pipe.fingerprint import digest as fingerprint_digest
from kling_pipe.fingerprint import fingerprint_inputs
from kling_pipe.lockfile import lock_document, lock_path_for, write_lock
from kling_pipe.plan import ShotStatus
from kling_pipe.resume import Resume, ResumeKind, assess
from kling_pipe.specs import ShotList
from kling_pipe.store import Attempt, Store, state_dir_for

_PLAN_STATUS: dict[ResumeKind, ShotStatus] = {
    "render": "render",
    "cached": "cached",
    "refetch": "resume",
    "poll": "resume",
    "reconcile": "reconcile",
    "uncertain": "uncertain",
}


@attrs.frozen(kw_only=True)
class Assessment:
    """Every shot's fingerprint and what this run must do about it."""

    fingerprints: dict[str, str]
    inputs: dict[str, dict[str, Any]]
    resume: dict[str, Resume]

    @property
    def statuses(self) -> dict[str, ShotStatus]:
        """The plan status each shot gets."""
        return {sid: _PLAN_STATUS[r.kind] for sid, r in self.resume.items()}


def output_ok(shotlist: ShotList, attempt: Attempt) -> bool:
    """Whether the attempt's output is on disk with the sha256 recorded (blocking)."""
    if attempt.file is None or attempt.sha256 is None:
        return False
    path = shotlist.base_dir / attempt.file
    try:
        return path.is_file() and media.sha256_file(path) == attempt.sha256
    except OSError:
        return False


def assess_shotlist(
    shotlist: ShotList,
    store: Store | None,
    *,
    rerender: Collection[str] = (),
    resubmit_uncertain: bool = False,
) -> Assessment:
    """Fingerprint every shot and decide what it needs, from *store* (None: nothing known)."""
    inputs = fingerprint_inputs(shotlist, media.sha256_file)
    fps = {sid: fingerprint_digest(i) for sid, i in inputs.items()}

    def latest(shot_id: str, fingerprint: str | None) -> Attempt | None:
        return None if store is None else store.latest(shot_id, fingerprint)

    resume = assess(
        shotlist,
        fingerprints=fps,
        inputs=inputs,
        latest=latest,
        output_ok=lambda attempt: output_ok(shotlist, attempt),
        rerender=rerender,
        resubmit_uncertain=resubmit_uncertain,
    )
    return Assessment(fingerprints=fps, inputs=inputs, resume=resume)


def open_store(shotlist: ShotList, *, create: bool, durable: bool = True) -> Store | None:
    """Open the shot list's store; None when there is none and *create* is False."""
    folder = state_dir_for(shotlist.source)
    if not create and not (folder / "state.sqlite").exists():
        return None
    return Store.open(folder, durable=durable)


def adopt_lock(store: Store, shotlist: ShotList, lock: Mapping[str, Any]) -> int:
    """Copy rendered shots the lock lists (and the store lacks) into the store.

    A fresh checkout has the committed lock file but no store: this lets it fetch each listed
    output from its task, or find it on disk, instead of rendering it again. Returns how many
    entries were adopted.
    """
    adopted = 0
    inputs = fingerprint_inputs(shotlist, media.sha256_file)
    for shot in shotlist.shots:
        entry = lock["shots"].get(shot.id)
        if not isinstance(entry, dict) or entry.get("status") != "downloaded":
            continue
        fingerprint = fingerprint_digest(inputs[shot.id])
        if entry.get("fingerprint") != fingerprint or not entry.get("task_id"):
            continue
        if store.latest(shot.id, fingerprint) is not None:
            continue
        store.adopt(
            shot_id=shot.id,
            fingerprint=fingerprint,
            inputs=inputs[shot.id],
            model=str(entry.get("model", shotlist.storyboard.model)),
            duration=shot.duration,
            cost=Decimal(str(entry.get("cost", "0"))),
            task_id=str(entry["task_id"]),
            sent_at=datetime.fromisoformat(str(entry["submitted_at"])),
            file=str(entry.get("file")),
            sha256=str(entry.get("sha256")),
            size=int(entry.get("bytes") or 0),
        )
        adopted += 1
    return adopted


def write_lock_for(shotlist: ShotList, store: Store, fingerprints: Mapping[str, str]) -> Path:
    """Rewrite the shot list's lock file from the store (blocking, atomic)."""
    latest = {sid: store.latest(sid, fp) for sid, fp in fingerprints.items()}
    document = lock_document(shotlist, latest, fingerprints=fingerprints, version=__version__)
    return write_lock(lock_path_for(shotlist.source), document)
