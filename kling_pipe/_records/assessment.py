"""The glue between a shot list and its records: assess what to do, adopt a lock, write it.

`run`, `plan` and `status` all start from `assess_shotlist`, so they agree on which shots
are cached, stale, in flight or uncertain, for the backend asked: every record says which
*origin* made it (``mock`` for the bundled mock, else the API's base URL) and a render from
one origin never satisfies a run against another. The bundled mock's renders live in
``<output_dir>/mock/``, so they never overwrite or shadow a paid render in ``<output_dir>/``.

Takes: everything here is per *render unit* (one take of a shot, named by its unit key: the
shot's id for take 1, ``id#k`` for take k), each with its own fingerprint, records and lock
entry. Which take is a shot's (its *pick*) is read from the lock file, per section (the mock's
picks are its own), and honoured while it still names the video it was made on. `takes_of`
is the one place that says, per shot, which takes exist, where their files are and which is
picked: the contact sheet, `status` and exports read it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe import _files
from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN
from kling_pipe._decisions.attempts import Attempt, AttemptState
from kling_pipe._decisions.plan import ShotStatus
from kling_pipe._decisions.resume import Resume, ResumeKind, assess
from kling_pipe._records.identity import records_home
from kling_pipe._records.layout import OutputLayout, parse_version_name
from kling_pipe._records.lockfile import (
    SECTIONS,
    UNKNOWN_ORIGIN,
    Hold,
    Lock,
    LockTake,
    Section,
    lock_document,
    parse_lock,
    pins,
    read_approvals,
    read_lock,
    read_picks,
    section_for,
    write_lock,
)
from kling_pipe._records.store import Store, mock_task_ids
from kling_pipe._shotlist.fingerprint import (
    Approval,
    Fingerprinted,
    RecordedPick,
    changed_inputs,
    fingerprint_units,
    kept_keys,
)
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import LocalImage, ShotList, split_unit_key, unit_key
from kling_pipe._version import __version__
from kling_pipe.exceptions import KlingPipeError

_PLAN_STATUS: dict[ResumeKind, ShotStatus] = {
    "render": "render",
    "cached": "cached",
    "refetch": "resume",
    "poll": "resume",
    "reconcile": "reconcile",
    "uncertain": "uncertain",
    "adopt": "cached",
    "expired": "expired",
    "approved": "approved",
}
#: What a take of an approved shot is planned as, by what it needs (the rest as usual).
_HELD_STATUS: dict[ResumeKind, ShotStatus] = {"cached": "approved", "approved": "approved"}

#: A taken-over attempt is planned as its own state would be: a renamed shot's lost answer
#: is settled (and may be paid for) as `reconcile`, a task in flight is polled.
_ADOPTED_STATUS: dict[str, ShotStatus] = {
    "intent": "reconcile",
    "submitted": "resume",
    "completed": "resume",
}


def plan_status(resume: Resume) -> ShotStatus:
    """Say how `plan` counts *resume*: an adopted attempt as its own state would be.

    So `plan` and `run` agree about money: a renamed shot's unsettled intent is settled, and
    may be paid for, as a reconcile is; a run refuses its budget, and so does the plan.
    """
    if resume.kind == "adopt" and resume.attempt is not None:
        return _ADOPTED_STATUS.get(resume.attempt.state, "cached")
    return _PLAN_STATUS[resume.kind]


def is_simulated(origin: str) -> bool:
    """Whether money recorded for *origin* is simulated (the bundled mock charges nothing)."""
    return origin == MOCK_ORIGIN


@attrs.frozen(kw_only=True)
class Assessment:
    """Every take's fingerprint and what this run must do about it, and the picks in force."""

    #: By unit key (a shot's id names its take 1, so a shot's own fingerprint is here too).
    fingerprints: dict[str, str]
    #: By unit key.
    inputs: dict[str, dict[str, Any]]
    #: By unit key.
    resume: dict[str, Resume]
    #: The origin the assessment is for.
    origin: str = DEFAULT_BASE_URL
    #: By shot id: the picked take (1 unless a pick is recorded and still holds).
    picks: dict[str, int] = attrs.Factory(dict)
    #: Shots held by an approval in force (read or not): nothing of them is rendered.
    held: frozenset[str] = frozenset()
    #: By shot id: the approvals in force that can be read (they pin the approved take).
    approvals: dict[str, Approval] = attrs.Factory(dict)
    #: By shot id, for each approved shot: its approved take's fingerprint from its inputs now.
    unpinned: dict[str, str] = attrs.Factory(dict)
    #: By shot id, for each approved shot whose inputs changed since its approved version:
    #: what changed ("prompt", "prompt, image"; "inputs" when the records do not say).
    changed: dict[str, str] = attrs.Factory(dict)

    @property
    def statuses(self) -> dict[str, ShotStatus]:
        """The plan status each take gets, by unit key (``approved`` for a held shot's).

        A taken-over attempt is planned as its own state would be (`plan_status`).
        """
        statuses = {}
        for key, r in self.resume.items():
            held = split_unit_key(key)[0] in self.held
            statuses[key] = (_HELD_STATUS.get(r.kind) if held else None) or plan_status(r)
        return statuses

    def approval_note(self, shot_id: str) -> str:
        """Say why a held shot is planned as it is: "" or "inputs changed: prompt"."""
        if shot_id not in self.held:
            return ""
        changed = self.changed.get(shot_id)
        return "" if not changed else f"inputs changed: {changed}"

    def plan_notes(self) -> dict[str, str]:
        """By shot id, each held shot's `approval_note` (what `plan` shows beside it)."""
        return {shot_id: self.approval_note(shot_id) for shot_id in sorted(self.held)}

    def pick(self, shot_id: str) -> int:
        """Return the shot's picked take."""
        return self.picks.get(shot_id, 1)


@attrs.frozen(kw_only=True)
class TakeView:
    """One take of one shot as the records show it (see `takes_of`)."""

    shot_id: str
    #: 1-based.
    take: int
    #: The unit key records and the scheduler use: the shot's id for take 1, else ``id#k``.
    key: str
    #: Whether this take is the shot's: ``<output_dir>/<id>.mp4`` is its video, chains use it.
    picked: bool
    fingerprint: str
    #: What a run would do about it (`Resume.kind`); ``cached`` means its file is on disk.
    kind: ResumeKind
    #: The take's own video (the shot list's folder joined with the recorded path), when it
    #: is on disk as recorded.
    file: Path | None
    sha256: str | None
    task_id: str | None
    #: What the take's task cost (0 until it is rendered).
    cost: Decimal
    #: Why it needs work, or what went wrong ("" when cached).
    reason: str
    #: N of its video ``versions/<id>.v<N>.mp4``, when it is cached there.
    version: int | None = None


def takes_of(shotlist: ShotList, assessment: Assessment) -> dict[str, tuple[TakeView, ...]]:
    """Return, per shot id in file order, its takes (take 1 first) and which one is picked.

    Pure: read from an assessment (`assess_shotlist`). A take's ``file`` is set only when it
    is ``cached`` (on disk with its recorded sha256); the picked take's video is also at
    `OutputLayout.picked`.
    """
    views: dict[str, tuple[TakeView, ...]] = {}
    layout = OutputLayout.of(shotlist, assessment.origin)
    for shot in shotlist.shots:
        pick = assessment.pick(shot.id)
        takes = []
        for key in kept_keys(shot, pick):
            take = split_unit_key(key)[1]
            resume = assessment.resume[key]
            attempt = resume.attempt if resume.kind != "adopt" else None
            cached = resume.kind == "cached" and attempt is not None and attempt.file is not None
            named = layout.version_of(attempt.file) if cached and attempt and attempt.file else None
            takes.append(
                TakeView(
                    shot_id=shot.id,
                    take=take,
                    key=key,
                    picked=take == pick,
                    fingerprint=resume.fingerprint,
                    kind=resume.kind,
                    file=shotlist.base_dir / attempt.file
                    if cached and attempt is not None and attempt.file is not None
                    else None,
                    sha256=attempt.sha256 if attempt is not None else None,
                    task_id=attempt.task_id if attempt is not None else None,
                    cost=attempt.cost if attempt is not None and attempt.charged else ZERO_USD,
                    reason=resume.reason,
                    version=None if named is None else named[1],
                )
            )
        views[shot.id] = tuple(takes)
    return views


def picked_renders(shotlist: ShotList, assessment: Assessment) -> dict[str, Path | None]:
    """Return, per shot id in file order, its picked take's video by the assessed origin.

    None for a shot whose picked take that origin has not rendered (for its current inputs,
    on disk with its recorded sha256), and for one whose ``<id>.mp4`` is not that take: so a
    command that uses renders (`cut`) uses the very ones `status` calls cached, and never
    another backend's file that happens to sit at the same name. Blocking (it may hash).
    """
    found: dict[str, Path | None] = {}
    for shot_id, views in takes_of(shotlist, assessment).items():
        view = next(v for v in views if v.picked)
        path = OutputLayout.of(shotlist, assessment.origin).picked(shot_id)
        found[shot_id] = (
            path
            if view.file is not None
            and view.sha256 is not None
            and (view.file.resolve() == path.resolve() or _has_sha256(path, view.sha256))
            else None
        )
    return found


def _has_sha256(path: Path, sha256: str) -> bool:
    try:
        return path.is_file() and _files.sha256_file(path) == sha256
    except OSError:
        return False


def output_ok(shotlist: ShotList, attempt: Attempt) -> bool:
    """Whether the attempt's output is on disk with the sha256 recorded (blocking)."""
    if attempt.file is None or attempt.sha256 is None:
        return False
    path = shotlist.base_dir / attempt.file
    try:
        return path.is_file() and _files.sha256_file(path) == attempt.sha256
    except OSError:
        return False


def assess_shotlist(  # noqa: PLR0913, C901 - keyword-only: each is its own source of truth
    shotlist: ShotList,
    store: Store | None,
    *,
    origin: str,
    rerender: Collection[str] = (),
    resubmit_uncertain: bool = False,
    lock: Lock | None = None,
    hash_file: Callable[[Path], str] = _files.sha256_file,
    picks: Mapping[str, RecordedPick] | None = None,
    approvals: Mapping[str, Hold] | None = None,
) -> Assessment:
    """Fingerprint every take and decide what it needs for *origin*, from *store*.

    *store* None means nothing is recorded yet. Entries of *lock* (the committed lock file)
    count as recorded for takes the store knows nothing of, exactly as `adopt_lock` would
    record them: so `plan` and `status`, which write nothing, agree with `run`, which adopts.
    A take whose fingerprint was rendered under another id (renamed, or duplicated) is
    adopted from it rather than paid for again. *hash_file* lets a caller that assesses more
    than once read each image once. The picks are *lock*'s for *origin*'s section, unless
    *picks* gives others (`kling-pipe pick`, deciding what a new pick makes stale); so are
    the approvals, unless *approvals* gives others (`approve`, `restore`). A shot named by
    *rerender* (or its approved take, ``id#k``) is not held: it renders as it is now.
    """
    section = section_for(origin)
    recorded = read_picks(lock, section) if picks is None else picks
    holds = read_approvals(lock, section) if approvals is None else dict(approvals)
    for shot_id in lifted_by(holds, rerender):
        del holds[shot_id]
    ids = {shot.id for shot in shotlist.shots}
    holds = {shot_id: hold for shot_id, hold in holds.items() if shot_id in ids}
    units = fingerprint_units(shotlist, hash_file, recorded, pins(holds))
    fps, inputs = units.fingerprints, units.inputs
    approved_keys = {unit_key(shot_id, a.take): a for shot_id, a in units.approvals.items()}
    from_lock = (
        lock_attempts(shotlist, lock, fps, origin, units.approvals) if lock is not None else {}
    )

    def latest(shot_id: str, fingerprint: str | None) -> Attempt | None:
        approval = approved_keys.get(shot_id)
        if approval is not None and fingerprint == approval.fingerprint:
            return _approved_attempt(store, shot_id, approval, origin) or from_lock.get(shot_id)
        found = None if store is None else store.latest(shot_id, fingerprint, origin)
        if found is None and fingerprint is not None:
            found = from_lock.get(shot_id)
        return found

    current = {key for shot in shotlist.shots for key in shot.unit_keys}

    def elsewhere(shot_id: str, fingerprint: str) -> Attempt | None:
        """Return the attempt at this fingerprint that *shot_id* takes over, if any.

        A renamed shot (the other id is gone) takes over whatever its old id left: a video, a
        task, or an intent whose answer was lost (settled as its own, never paid again). A
        duplicate of a shot still in the list takes over only a video on disk (a copy); a
        duplicate of a shot whose task is in flight is planned as a copy of that shot's video,
        made once it is delivered (`plan`'s ``copy``), never "cached" without a video.
        """
        if store is None:
            return None
        for attempt in store.with_fingerprint(fingerprint, origin):
            if attempt.shot_id == shot_id:
                continue
            if attempt.shot_id not in current and attempt.state in _ADOPTABLE_RENAMED:
                return attempt
            if attempt.state == "downloaded":
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
        picks=units.picks,
        frozen=frozenset(holds),
    )
    changed = {}
    for shot_id, approval in units.approvals.items():
        if units.inputs_changed(shot_id):
            key = unit_key(shot_id, approval.take)
            attempt = resume[key].attempt
            told = "" if attempt is None else _told_change(attempt.inputs, inputs[key])
            changed[shot_id] = told or "inputs"
    return Assessment(
        fingerprints=fps,
        inputs=inputs,
        resume=resume,
        origin=origin,
        picks=units.picks,
        held=frozenset(holds),
        approvals=dict(units.approvals),
        unpinned=dict(units.unpinned),
        changed=changed,
    )


def lifted_by(holds: Mapping[str, Hold], rerender: Collection[str]) -> set[str]:
    """Return the held shots *rerender* names: a shot's id, or its approved take's key."""
    named = set(rerender)
    lifted = set()
    for shot_id, hold in holds.items():
        take = hold.take if isinstance(hold, Approval) else 1
        if shot_id in named or unit_key(shot_id, take) in named:
            lifted.add(shot_id)
    return lifted


def _approved_attempt(
    store: Store | None, key: str, approval: Approval, origin: str
) -> Attempt | None:
    """Return the approved version's attempt: its take's render at its fingerprint, by bytes.

    Two renders of the same inputs may have the same bytes (the bundled mock's do): the one
    whose file is the approved version's number wins.
    """
    if store is None:
        return None
    return _the_approved(store.with_fingerprint(approval.fingerprint, origin), key, approval)


def _the_approved(attempts: Iterable[Attempt], key: str, approval: Approval) -> Attempt | None:
    """Return the approved version among *attempts* (newest first), by bytes then number."""
    found = [a for a in attempts if a.shot_id == key and a.sha256 == approval.sha256]
    wanted = (split_unit_key(key)[0], approval.version)
    numbered = [
        a for a in found if a.file is not None and parse_version_name(Path(a.file).name) == wanted
    ]
    return next(iter(numbered or found), None)


def _told_change(recorded: str, now: Mapping[str, Any]) -> str:
    """Name what differs between recorded inputs and the inputs now ("" if not recorded)."""
    try:
        before = json.loads(recorded)
    except ValueError:
        return ""
    if not isinstance(before, dict) or "recipe" not in before:
        return ""
    return ", ".join(changed_inputs(before, now))


@attrs.define
class ImageHashes:
    """Each local image's sha256: read from its file, or for a missing file, from the records.

    A `hash_file` for fingerprinting (`kling_pipe._shotlist.fingerprint`) in the commands that
    need only the records: a keyframe that is not on this machine is taken to be the image
    its shot's latest record was rendered from (the store's recorded inputs, else the lock
    file's ``image_sha256``). One the records say nothing of gets a stand-in no record
    matches, so its shot is pending. Build it with `image_hashes`.
    """

    #: Missing files whose content the records name: path -> sha256.
    recorded: dict[Path, str]
    #: Missing files the records say nothing of.
    unknown: set[Path]
    _read: Callable[[Path], str] = _files.sha256_file
    _cache: dict[Path, str] = attrs.Factory(dict)

    def __call__(self, path: Path) -> str:
        """Return *path*'s sha256, from the file, or the records when it is missing."""
        if path in self.recorded:
            return self.recorded[path]
        if path in self.unknown:
            return f"missing image {path}"  # a stand-in: the fingerprint matches nothing
        if path not in self._cache:
            self._cache[path] = self._read(path)
        return self._cache[path]

    def missing(self, shotlist: ShotList, shot_id: str) -> tuple[list[str], list[str]]:
        """Return *shot_id*'s missing local images, as written: from the records, unknown."""
        recorded: list[str] = []
        unknown: list[str] = []
        for image in shotlist.shot(shot_id).images:
            if isinstance(image, LocalImage):
                path = shotlist.resolve(image)
                if path in self.recorded:
                    recorded.append(image.path)
                elif path in self.unknown:
                    unknown.append(image.path)
        return recorded, unknown


def image_hashes(
    shotlist: ShotList,
    store: Store | None,
    lock: Lock | None,
    read: Callable[[Path], str] = _files.sha256_file,
) -> ImageHashes:
    """Return each local image's sha256 for fingerprinting, missing ones from the records.

    For a missing image of a shot: the sha256 its latest attempt recorded for that frame in
    the store, else the one a lock entry of the shot records (`ImageHashes`). Blocking.
    """
    frames = [
        (shot.id, field, shotlist.resolve(image))
        for shot in shotlist.shots
        for field, image in (("image", shot.image), ("last_image", shot.last_image))
        if isinstance(image, LocalImage)
    ]
    missing = {path for _, _, path in frames if not path.is_file()}
    attempts = [] if store is None or not missing else store.attempts()
    recorded: dict[Path, str] = {}
    for shot_id, field, path in frames:
        if path in missing and path not in recorded:
            digest = _image_in_store(attempts, shot_id, field) or _image_in_lock(
                lock, shot_id, field
            )
            if digest is not None:
                recorded[path] = digest
    return ImageHashes(recorded=recorded, unknown=missing - set(recorded), read=read)


def _image_in_store(attempts: list[Attempt], shot_id: str, field: str) -> str | None:
    """Return the sha256 the shot's latest attempt recorded for its local image at *field*."""
    for attempt in sorted(attempts, key=lambda a: a.id, reverse=True):
        if split_unit_key(attempt.shot_id)[0] == shot_id:
            digest = _recorded_image(attempt.inputs, field)
            if digest is not None:
                return digest
    return None


def _image_in_lock(lock: Lock | None, shot_id: str, field: str) -> str | None:
    """Return the sha256 a lock entry of the shot records for its local image at *field*."""
    if lock is None:
        return None
    for section in SECTIONS:
        entry = lock.entries(section).get(shot_id)
        for take in () if entry is None else entry.takes:
            if field in take.image_sha256:
                return take.image_sha256[field]
    return None


def recorded_image_hashes(shotlist: ShotList) -> ImageHashes:
    """`image_hashes` from the shot list's own records, read where they are (blocking)."""
    lock = read_lock_of(shotlist)
    with existing_store(shotlist) as store:
        return image_hashes(shotlist, store, lock)


def _recorded_image(inputs: str, field: str) -> str | None:
    """Return the sha256 recorded inputs name for a local image at *field*, if they do."""
    try:
        recorded = json.loads(inputs)
    except ValueError:
        return None
    frame = recorded.get(field) if isinstance(recorded, dict) else None
    digest = frame.get("sha256") if isinstance(frame, dict) else None
    return digest if isinstance(digest, str) else None


#: Attempts a renamed shot takes over from its old id: paid, or an intent that may be.
_ADOPTABLE_RENAMED: frozenset[str] = frozenset({"downloaded", "completed", "submitted", "intent"})


def open_store(shotlist: ShotList, *, create: bool, durable: bool = True) -> Store | None:
    """Open the shot list's store where it is (`records_home`).

    With *create* False it is only read: None when there is none, else opened read-only
    (`Store.open_read_only`), so a command that reads writes nothing, on a read-only mount
    too. With *create* True it is opened to be written, made if need be.
    """
    folder = records_home(shotlist).state_dir
    if not create:
        if not (folder / "state.sqlite").is_file():
            return None
        return Store.open_read_only(folder)
    return Store.open(folder, durable=durable)


@contextlib.contextmanager
def existing_store(shotlist: ShotList, *, writable: bool = False) -> Iterator[Store | None]:
    """Yield the shot list's store if it has one, closed after; a reader creates none.

    Read-only unless *writable* (a command that records what it wrote: `cut`, `export`,
    `report`, `gc` without ``--dry-run``) and the state folder can be written: on a read-only
    mount the records are read, and what the command writes elsewhere is not recorded.
    """
    folder = records_home(shotlist).state_dir
    can_write = writable and os.access(folder, os.W_OK)
    if can_write and (folder / "state.sqlite").is_file():
        store: Store | None = Store.open(folder)
    else:
        store = open_store(shotlist, create=False)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def lock_attempts(
    shotlist: ShotList,
    lock: Lock,
    fingerprints: Mapping[str, str],
    origin: str,
    approvals: Mapping[str, Approval] | None = None,
) -> dict[str, Attempt]:
    """Read the lock's takes from *origin* that still match their take, as attempts by unit key.

    Every take with a task id counts, whatever its state: a task in flight when the lock was
    written is polled, not paid again. Takes whose inputs changed do not count, nor takes
    the shot no longer has, nor damaged entries, nor takes of unknown origin (`Lock`).
    *fingerprints* are by unit key, computed with the picks of *origin*'s section, whose
    entries win over a take of *origin* recorded in another section. An approved take (by
    shot id in *approvals*) counts only as its approved version, by its bytes.
    """
    found: dict[str, Attempt] = {}
    approved = approvals or {}
    own = section_for(origin)
    for section in sorted(SECTIONS, key=lambda name: name == own):
        entries = lock.entries(section)
        for shot in shotlist.shots:
            entry = entries.get(shot.id)
            if entry is None:
                continue
            for take in entry.takes:
                key = unit_key(shot.id, take.take)
                if take.origin != origin or fingerprints.get(key) != take.fingerprint:
                    continue
                approval = approved.get(shot.id)
                if _other_render(approval, take):
                    continue
                attempt = _lock_attempt(shotlist, key, take)
                if attempt is not None:
                    found[key] = attempt
    return found


def _other_render(approval: Approval | None, take: LockTake) -> bool:
    """Whether *take* is the approved take but another render of it than the approved one."""
    return approval is not None and approval.take == take.take and take.sha256 != approval.sha256


def _lock_attempt(shotlist: ShotList, key: str, take: LockTake) -> Attempt | None:
    """Return a lock take as the attempt it records; None when it records no task."""
    if take.task_id is None or take.submitted_at is None or take.origin == UNKNOWN_ORIGIN:
        return None
    state = _LOCK_STATES.get(take.status or "", "submitted")
    downloaded = state == "downloaded"
    return Attempt(
        id=-1,
        shot_id=key,
        fingerprint=take.fingerprint,
        inputs="{}",
        model=take.model or shotlist.storyboard.model,
        duration=take.duration or 0,
        cost=take.cost,
        state=state,
        task_id=take.task_id,
        sent_at=take.submitted_at,
        completed_at=None,
        error=take.error,
        code=None,
        file=str(take.file) if downloaded and take.file is not None else None,
        sha256=take.sha256 if downloaded else None,
        bytes=take.size if downloaded else None,
        polls=0,
        origin=take.origin,
    )


#: How a lock entry's status is taken over: a task that may still matter is polled.
_LOCK_STATES: dict[str, AttemptState] = {
    "downloaded": "downloaded",
    "completed": "completed",
    "submitted": "submitted",
    "failed": "failed",
    "expired": "expired",
}


def adopt_lock(
    store: Store,
    shotlist: ShotList,
    lock: Lock,
    hash_file: Callable[[Path], str] = _files.sha256_file,
) -> int:
    """Record the lock's entries the store lacks (see `lock_attempts`); return how many.

    A fresh checkout has the committed lock file but no store: this lets it find each output
    on disk or fetch it from its task, and poll tasks that were in flight, instead of paying
    for them again. Each origin's takes are read with its section's picks (chains follow
    them).
    """
    origins = {
        take.origin
        for section in SECTIONS
        for entry in lock.entries(section).values()
        for take in entry.takes
        if take.origin != UNKNOWN_ORIGIN and take.task_id is not None
    }
    adopted = 0
    for origin in sorted(origins):
        section = section_for(origin)
        units = fingerprint_units(
            shotlist,
            hash_file,
            read_picks(lock, section),
            pins(read_approvals(lock, section)),
        )
        found = lock_attempts(shotlist, lock, units.fingerprints, origin, units.approvals)
        for key, attempt in found.items():
            shot_id, take = split_unit_key(key)
            approval = units.approvals.get(shot_id)
            pinned = approval is not None and approval.take == take
            if approval is not None and pinned:
                if _approved_attempt(store, key, approval, origin) is not None:
                    continue
            elif store.latest(key, attempt.fingerprint, origin) is not None:
                continue
            # An approved version made from other inputs than the shot's now: which, the lock
            # file does not say; the store records them as unknown rather than wrong.
            changed = pinned and units.inputs_changed(shot_id)
            store.adopt(
                shot_id=key,
                fingerprint=attempt.fingerprint,
                inputs={} if changed else units.inputs[key],
                model=attempt.model,
                duration=shotlist.shot(split_unit_key(key)[0]).duration,
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


def read_lock_of(shotlist: ShotList) -> Lock | None:
    """Read and check the shot list's lock file, if it has one (`kling_pipe._records.lockfile`).

    Raises `KlingPipeError` only when the file is no lock file at all; a wrong entry is
    one of the lock's `Lock.damaged`, ignored as a record. Read where it is (`records_home`).
    """
    home = records_home(shotlist)
    document = read_lock(home.lock_path)
    if document is None:
        return None
    return parse_lock(
        document,
        path=home.lock_path,
        base_dir=shotlist.base_dir,
        output_dir=shotlist.output_path,
        mock_tasks=mock_task_ids(home.state_dir),
    )


def records_notes(shotlist: ShotList, lock: Lock | None) -> list[str]:
    """Lines about the records themselves, for people: plan, status and run print them.

    Records found under the storyboard's old name (`RecordsHome.notice`), and lock entries
    that are no records (`Lock.notes`).
    """
    notice = records_home(shotlist).notice
    return ([] if notice is None else [notice]) + ([] if lock is None else lock.notes())


def recorded_picks(shotlist: ShotList) -> dict[str, dict[str, RecordedPick]]:
    """Return the picks the shot list's lock file records, by section; none if it is damaged.

    Used when the lock is rewritten: a damaged lock is replaced (as it always was), so its
    picks cannot be carried on.
    """
    try:
        lock = read_lock_of(shotlist)
    except KlingPipeError:
        lock = None
    return {section: dict(read_picks(lock, section)) for section in SECTIONS}


def recorded_approvals(shotlist: ShotList) -> dict[str, dict[str, Hold]]:
    """Return the approvals the shot list's lock file records, by section (see `recorded_picks`)."""
    try:
        lock = read_lock_of(shotlist)
    except KlingPipeError:
        lock = None
    return {section: read_approvals(lock, section) for section in SECTIONS}


def recorded_units(
    shotlist: ShotList, lock: Lock | None, section: str, hash_file: Callable[[Path], str]
) -> Fingerprinted:
    """Fingerprint every take with the picks and approvals *lock*'s *section* records."""
    return fingerprint_units(
        shotlist, hash_file, read_picks(lock, section), pins(read_approvals(lock, section))
    )


def approvals_after_run(
    shotlist: ShotList,
    store: Store,
    *,
    origin: str,
    rerender: Collection[str],
    hash_file: Callable[[Path], str] = _files.sha256_file,
) -> dict[str, dict[str, Hold]]:
    """Return the approvals to record after a run: the lock's, less those it rendered anew.

    A held shot named by ``--rerender`` is rendered as it is now; once its approved take's
    new render is delivered (a newer attempt than the approved version's), its approval has
    done its work and is dropped. Until then (the render failed, the run was stopped) it
    stays.
    """
    held = recorded_approvals(shotlist)
    section = section_for(origin)
    holds = dict(held.get(section, {}))
    lifted = lifted_by(holds, rerender)
    if not lifted:
        return held
    recorded = recorded_picks(shotlist).get(section, {})
    kept = {shot_id: h for shot_id, h in holds.items() if shot_id not in lifted}
    units = fingerprint_units(shotlist, hash_file, recorded, pins(kept))
    for shot_id in lifted:
        hold = holds[shot_id]
        take = hold.take if isinstance(hold, Approval) else units.picks.get(shot_id, 1)
        key = unit_key(shot_id, take)
        fingerprint = units.fingerprints.get(key)
        latest = None if fingerprint is None else store.latest(key, fingerprint, origin)
        approved = (
            _approved_attempt(store, key, hold, origin) if isinstance(hold, Approval) else None
        )
        if (
            latest is not None
            and latest.state == "downloaded"
            and (approved is None or latest.id > approved.id)
        ):
            del holds[shot_id]
    return {**held, section: holds}


def lock_entries(
    shotlist: ShotList,
    origin: str,
    hash_file: Callable[[Path], str] | None = None,
) -> tuple[dict[str, Mapping[str, Any]], dict[str, str]]:
    """Return *origin*'s lock entries as written, and every shot's current fingerprint.

    For readers of entries as documents (`export`): only entries of *origin*'s section whose
    picked take *origin* made, every field checked (damaged entries and entries of unknown
    origin are left out); the fingerprints (by shot id, its picked take's: take 1 may be gone
    once ``takes`` is lowered below a kept pick) follow the section's picks; a missing local
    image is taken from the records (`recorded_image_hashes`) unless *hash_file* says
    otherwise.
    """
    lock = read_lock_of(shotlist)
    hash_file = hash_file or recorded_image_hashes(shotlist)
    section = section_for(origin)
    entries: dict[str, Mapping[str, Any]] = {}
    if lock is not None:
        entries = {
            shot_id: entry.document
            for shot_id, entry in lock.entries(section).items()
            if entry.picked.origin == origin
        }
    units = recorded_units(shotlist, lock, section, hash_file)
    return entries, {
        shot.id: units.fingerprints[units.picked_key(shot.id)] for shot in shotlist.shots
    }


def write_lock_for(
    shotlist: ShotList,
    store: Store,
    *,
    picks: Mapping[str, Mapping[str, RecordedPick]] | None = None,
    hash_file: Callable[[Path], str] = _files.sha256_file,
    approvals: Mapping[str, Mapping[str, Hold]] | None = None,
) -> Path:
    """Rewrite the shot list's lock file from the store (blocking, atomic).

    ``shots`` holds each take's latest render by WaveSpeed (the origin named in the entry),
    ``local`` a local server's and ``simulated`` the bundled mock's, kept apart so neither
    ever passes for WaveSpeed's.
    *picks* (by section, then shot id) are the picks to record; by default those the lock
    file records now, so a run carries every pick on (a pick that no longer holds, its shot
    edited or its take gone, is dropped). *approvals* likewise (by section, then shot id),
    by default the lock file's: an approved take's entry describes its approved version.
    """
    chosen = recorded_picks(shotlist) if picks is None else picks
    held = recorded_approvals(shotlist) if approvals is None else approvals
    ids = {shot.id for shot in shotlist.shots}
    sections: dict[str, Section] = {}
    for section in SECTIONS:
        holds = {k: v for k, v in held.get(section, {}).items() if k in ids}
        units = fingerprint_units(shotlist, hash_file, chosen.get(section, {}), pins(holds))
        approved = {unit_key(s, a.take): a for s, a in units.approvals.items()}
        attempts: dict[str, Attempt | None] = {}
        for key, fp in units.fingerprints.items():
            ours = [
                a
                for a in store.with_fingerprint(fp, origin=None)
                if a.shot_id == key and section_for(a.origin) == section
            ]
            approval = approved.get(key)
            attempts[key] = (
                next(iter(ours), None) if approval is None else _the_approved(ours, key, approval)
            )
        sections[section] = Section(
            attempts=attempts, fingerprints=units.fingerprints, picks=units.picks, approvals=holds
        )
    document = lock_document(shotlist, sections, version=__version__)
    return write_lock(records_home(shotlist).lock_path, document)
