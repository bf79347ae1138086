"""The glue between a shot list and its records: assess what to do, adopt a lock, write it.

`run`, `plan` and `status` all start from `assess_shotlist`, so they agree on which shots
are cached, stale, in flight or uncertain, for the backend asked: every record says which
*origin* made it (``mock`` for the bundled mock, else the API's base URL) and a render from
one origin never satisfies a run against another. The bundled mock's renders live in
``<output_dir>/mock/``, so they never overwrite or shadow a paid render in ``<output_dir>/``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN
from kling_pipe._decisions.plan import ShotStatus
from kling_pipe._decisions.resume import Resume, ResumeKind, assess
from kling_pipe._outputs import media
from kling_pipe._records.lockfile import lock_document, lock_path_for, read_lock, write_lock
from kling_pipe._records.store import Attempt, AttemptState, Store, state_dir_for
from kling_pipe._shotlist.fingerprint import digest as fingerprint_digest
from kling_pipe._shotlist.fingerprint import fingerprint_inputs
from kling_pipe._shotlist.specs import ShotList
from kling_pipe._version import __version__

_PLAN_STATUS: dict[ResumeKind, ShotStatus] = {
    "render": "render",
    "cached": "cached",
    "refetch": "resume",
    "poll": "resume",
    "reconcile": "reconcile",
    "uncertain": "uncertain",
    "adopt": "cached",
}


def output_folder(shotlist: ShotList, origin: str) -> Path:
    """Where renders from *origin* go: the mock's in a folder of their own."""
    base = shotlist.output_path
    return base / "mock" if origin == MOCK_ORIGIN else base


def is_simulated(origin: str) -> bool:
    """Whether money recorded for *origin* is simulated (the bundled mock charges nothing)."""
    return origin == MOCK_ORIGIN


@attrs.frozen(kw_only=True)
class Assessment:
    """Every shot's fingerprint and what this run must do about it."""

    fingerprints: dict[str, str]
    inputs: dict[str, dict[str, Any]]
    resume: dict[str, Resume]
    #: The origin the assessment is for.
    origin: str = DEFAULT_BASE_URL

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


def assess_shotlist(  # noqa: PLR0913 - keyword-only: each is its own source of truth
    shotlist: ShotList,
    store: Store | None,
    *,
    origin: str,
    rerender: Collection[str] = (),
    resubmit_uncertain: bool = False,
    lock: Mapping[str, Any] | None = None,
    hash_file: Callable[[Path], str] = media.sha256_file,
) -> Assessment:
    """Fingerprint every shot and decide what it needs for *origin*, from *store*.

    *store* None means nothing is recorded yet. Entries of *lock* (the committed lock file)
    count as recorded for shots the store knows nothing of, exactly as `adopt_lock` would
    record them: so `plan` and `status`, which write nothing, agree with `run`, which adopts.
    A shot whose fingerprint was rendered under another id (renamed, or duplicated) is
    adopted from it rather than paid for again. *hash_file* lets a caller that assesses more
    than once read each image once.
    """
    inputs = fingerprint_inputs(shotlist, hash_file)
    fps = {sid: fingerprint_digest(i) for sid, i in inputs.items()}
    from_lock = lock_attempts(shotlist, lock, fps) if lock is not None else {}

    def latest(shot_id: str, fingerprint: str | None) -> Attempt | None:
        found = None if store is None else store.latest(shot_id, fingerprint, origin)
        if found is None and fingerprint is not None:
            found = from_lock.get((shot_id, origin))
        return found

    def elsewhere(shot_id: str, fingerprint: str) -> Attempt | None:
        """Return the best attempt at this fingerprint under another shot id, if any."""
        if store is None:
            return None
        for attempt in store.with_fingerprint(fingerprint, origin):
            if attempt.shot_id != shot_id and attempt.state in _ADOPTABLE:
                return attempt
        return None

    resume = assess(
        shotlist,
        fingerprints=fps,
        inputs=inputs,
        latest=latest,
        output_ok=lambda attempt: output_ok(shotlist, attempt),
        rerender=rerender,
        resubmit_uncertain=resubmit_uncertain,
        elsewhere=elsewhere,
    )
    return Assessment(fingerprints=fps, inputs=inputs, resume=resume, origin=origin)


#: Attempts another shot with the same fingerprint may take over: paid, with a task.
_ADOPTABLE: frozenset[str] = frozenset({"downloaded", "completed", "submitted"})


def open_store(shotlist: ShotList, *, create: bool, durable: bool = True) -> Store | None:
    """Open the shot list's store; None when there is none and *create* is False."""
    folder = state_dir_for(shotlist.source)
    if not create and not (folder / "state.sqlite").exists():
        return None
    return Store.open(folder, durable=durable)


def lock_attempts(
    shotlist: ShotList, lock: Mapping[str, Any], fingerprints: Mapping[str, str]
) -> dict[tuple[str, str], Attempt]:
    """Read the lock's entries that still match their shot as attempts, by (shot id, origin).

    Every entry with a task id counts, whatever its state: a task in flight when the lock was
    written is polled, not paid again. Entries of shots whose inputs changed do not count.
    """
    found: dict[tuple[str, str], Attempt] = {}
    sections = (("shots", None), ("simulated", MOCK_ORIGIN))
    for section, fixed_origin in sections:
        entries = lock.get(section)
        if not isinstance(entries, Mapping):
            continue
        for shot in shotlist.shots:
            entry = entries.get(shot.id)
            if not isinstance(entry, Mapping) or not entry.get("task_id"):
                continue
            if entry.get("fingerprint") != fingerprints[shot.id]:
                continue
            origin = fixed_origin or str(entry.get("origin") or DEFAULT_BASE_URL)
            attempt = _entry_attempt(shotlist, shot.id, entry, origin)
            if attempt is not None:
                found[(shot.id, origin)] = attempt
    return found


def _entry_attempt(
    shotlist: ShotList, shot_id: str, entry: Mapping[str, Any], origin: str
) -> Attempt | None:
    state = _LOCK_STATES.get(str(entry.get("status")), "submitted")
    try:
        sent_at = datetime.fromisoformat(str(entry.get("submitted_at")))
        cost = Decimal(str(entry.get("cost", "0")))
    except (ValueError, ArithmeticError):
        return None
    file = entry.get("file") if state == "downloaded" else None
    return Attempt(
        id=-1,
        shot_id=shot_id,
        fingerprint=str(entry["fingerprint"]),
        inputs="{}",
        model=str(entry.get("model", shotlist.storyboard.model)),
        duration=int(entry.get("duration") or 0),
        cost=cost,
        state=state,
        task_id=str(entry["task_id"]),
        sent_at=sent_at,
        completed_at=None,
        error=str(entry.get("error") or ""),
        code=None,
        file=str(file) if file else None,
        sha256=str(entry.get("sha256")) if state == "downloaded" else None,
        bytes=int(entry.get("bytes") or 0) if state == "downloaded" else None,
        polls=0,
        origin=origin,
    )


#: How a lock entry's status is taken over: a task that may still matter is polled.
_LOCK_STATES: dict[str, AttemptState] = {
    "downloaded": "downloaded",
    "completed": "completed",
    "submitted": "submitted",
    "failed": "failed",
}


def adopt_lock(
    store: Store,
    shotlist: ShotList,
    lock: Mapping[str, Any],
    hash_file: Callable[[Path], str] = media.sha256_file,
) -> int:
    """Record the lock's entries the store lacks (see `lock_attempts`); return how many.

    A fresh checkout has the committed lock file but no store: this lets it find each output
    on disk or fetch it from its task, and poll tasks that were in flight, instead of paying
    for them again.
    """
    inputs = fingerprint_inputs(shotlist, hash_file)
    fps = {sid: fingerprint_digest(i) for sid, i in inputs.items()}
    adopted = 0
    for (shot_id, origin), attempt in lock_attempts(shotlist, lock, fps).items():
        if store.latest(shot_id, attempt.fingerprint, origin) is not None:
            continue
        store.adopt(
            shot_id=shot_id,
            fingerprint=attempt.fingerprint,
            inputs=inputs[shot_id],
            model=attempt.model,
            duration=shotlist.shot(shot_id).duration,
            cost=attempt.cost,
            task_id=str(attempt.task_id),
            sent_at=attempt.sent_at,
            origin=origin,
            state=attempt.state,
            file=attempt.file,
            sha256=attempt.sha256,
            size=attempt.bytes,
        )
        adopted += 1
    return adopted


def read_lock_of(shotlist: ShotList) -> dict[str, Any] | None:
    """Read the shot list's lock file, if it has one."""
    return read_lock(lock_path_for(shotlist.source))


def write_lock_for(shotlist: ShotList, store: Store, fingerprints: Mapping[str, str]) -> Path:
    """Rewrite the shot list's lock file from the store (blocking, atomic).

    ``shots`` holds each shot's latest real render (any origin but the mock, the origin
    named in the entry); ``simulated`` the mock's, kept apart so it never passes for real.
    """
    real: dict[str, Attempt | None] = {}
    mock: dict[str, Attempt | None] = {}
    for sid, fp in fingerprints.items():
        mock[sid] = store.latest(sid, fp, MOCK_ORIGIN)
        real[sid] = next(
            (
                a
                for a in store.with_fingerprint(fp, origin=None)
                if a.shot_id == sid and a.origin != MOCK_ORIGIN
            ),
            None,
        )
    document = lock_document(
        shotlist, real, simulated=mock, fingerprints=fingerprints, version=__version__
    )
    return write_lock(lock_path_for(shotlist.source), document)
