"""`versions`, `restore`, `approve` and `unapprove`: a shot's history, and freezing it.

A film is approved shot by shot. Approving a shot freezes its current render: the approval
is recorded in the lock file (per section, like picks, so a teammate's checkout has it), and
from then on nothing of the shot is rendered, whatever changes in what it inherits
(``[defaults]``, ``prompt_prefix``) or in its own keys, until it is unapproved or named by
``run --rerender``. Shots chained from it keep following the approved render.

Going back is free: `restore` makes any version on disk the shot's video (``<id>.mp4``, and
the frame its chains start from) and holds it as approved, since the shot's inputs may have
changed since that version was made: the next run does not pay to replace it. It needs
nothing from WaveSpeed, which keeps outputs for 7 days only: the version is the file in
``versions/``.

Each command that writes does as `pick` does: it refuses first without writing anything (one
line, nothing changed), then takes the shot list's run lock, brings an older folder into
``versions/`` (`kling_pipe._outputs.migrate`), checks again and writes. None of them sends a
request or pays anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import attrs

from kling_pipe import _files
from kling_pipe._decisions.plan import Plan, plan
from kling_pipe._outputs.folders import place_picks, preflight
from kling_pipe._outputs.migrate import migrate_to_versions
from kling_pipe._records.assessment import (
    Assessment,
    adopt_lock,
    assess_shotlist,
    existing_store,
    is_simulated,
    read_lock_of,
    recorded_approvals,
    recorded_image_hashes,
    write_lock_for,
)
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import Hold, section_for
from kling_pipe._records.status import status_label
from kling_pipe._records.store import RunLock, Store, state_dir_for
from kling_pipe._records.versions import VersionView, recorded_versions, shot_versions
from kling_pipe._shotlist.chains import dependants_closure
from kling_pipe._shotlist.fingerprint import Approval
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, split_unit_key, unit_key
from kling_pipe.exceptions import KlingPipeError


class VersionError(KlingPipeError):
    """A version, restore or approval cannot be made: no such shot or version, no render."""


def check_shots(shotlist: ShotList, shot_ids: Iterable[str]) -> None:
    """Refuse a shot id the shot list does not have (one line, the closest id suggested)."""
    ids = [s.id for s in shotlist.shots]
    for shot_id in shot_ids:
        if shot_id not in ids:
            close = difflib.get_close_matches(shot_id, ids, n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            raise VersionError(f'{shotlist.source}: no shot "{shot_id}" in the shot list{hint}')


# What a command leaves to render: the shots chained from the shot, and their cost.


@attrs.frozen(kw_only=True)
class Followers:
    """The shots chained from some shot, after a change: what now renders, and what is ready."""

    #: (shot id, cost) of each chained shot the next run renders again.
    stale: tuple[tuple[str, Decimal], ...] = ()
    #: Chained shots that already have a render for the change (nothing to pay).
    ready: tuple[str, ...] = ()
    #: Chained shots that are approved themselves: kept as they are, whatever changed.
    held: tuple[str, ...] = ()
    #: What the next run costs in all.
    to_spend: Decimal = ZERO_USD

    @classmethod
    def of(cls, shotlist: ShotList, after: Assessment, shot_id: str) -> Followers:
        """Say what the shots chained from *shot_id* need, given the assessment *after*."""
        p = _plan_of(shotlist, after)
        chained = dependants_closure(shotlist, {shot_id}) - {shot_id}
        costs = {s.id: s.cost for s in p.shots}
        ordered = [s.id for s in p.shots if s.id in chained]
        return cls(
            stale=tuple((sid, costs[sid]) for sid in ordered if costs[sid] > 0),
            ready=tuple(sid for sid in ordered if costs[sid] == 0 and sid not in after.held),
            held=tuple(sid for sid in ordered if sid in after.held),
            to_spend=p.total_cost,
        )

    def lines(self, shot_id: str, command: str, *, simulated: bool) -> list[str]:
        """Say it for people, as `pick` does; *command* is the run that renders them."""
        lines = []
        if self.stale:
            listed = ", ".join(f"{sid} ({cost} USD)" for sid, cost in self.stale)
            total = sum((cost for _, cost in self.stale), ZERO_USD)
            money = " (simulated: the bundled mock)" if simulated else ""
            lines += [
                f"stale now, chained from {shot_id}: {listed}",
                f"`{command}` renders them again: {total} USD{money}",
            ]
        if self.ready:
            lines.append(
                f"chained from {shot_id}, already rendered from it: {', '.join(self.ready)}"
            )
        if self.held:
            lines.append(
                f"chained from {shot_id}, approved, kept as they are: {', '.join(self.held)}"
            )
        return lines


def _plan_of(shotlist: ShotList, assessment: Assessment) -> Plan:
    return plan(
        shotlist,
        statuses=assessment.statuses,
        picks=assessment.picks,
        notes=assessment.plan_notes(),
    )


# versions


@attrs.frozen(kw_only=True)
class VersionsList:
    """What `kling-pipe versions` shows: a shot's versions, and renders not moved in yet."""

    shot_id: str
    versions: tuple[VersionView, ...]
    #: Renders of an older layout the records know, not in ``versions/`` until a run or pick.
    unmoved: int
    simulated: bool

    def as_json(self) -> dict[str, object]:
        """Return the list as `versions --json` prints it."""
        return {
            "shot": self.shot_id,
            "versions": [v.as_json() for v in self.versions],
            "not_moved_yet": self.unmoved,
            "simulated": self.simulated,
        }


def list_versions(shotlist: ShotList, shot_id: str, *, origin: str) -> VersionsList:
    """Return *shot_id*'s versions by *origin*, marked (read-only: writes nothing)."""
    check_shots(shotlist, [shot_id])
    lock = read_lock_of(shotlist)
    hashes = recorded_image_hashes(shotlist)
    with existing_store(shotlist) as store:
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=hashes)
        views = shot_versions(shotlist, store, assessment)[shot_id]
        layout = OutputLayout.of(shotlist, origin)
        unmoved = (
            0
            if store is None
            else sum(
                1
                for a in store.attempts()
                if a.origin == origin
                and a.file is not None
                and split_unit_key(a.shot_id)[0] == shot_id
                and layout.version_of(a.file) is None
                and a.state == "downloaded"
            )
        )
    return VersionsList(
        shot_id=shot_id, versions=views, unmoved=unmoved, simulated=is_simulated(origin)
    )


def format_versions(listed: VersionsList, source: Path) -> str:
    """Render `kling-pipe versions` for people: one line per version, oldest first."""
    shot = listed.shot_id
    views = listed.versions
    money = " (simulated)" if listed.simulated else ""
    if not views:
        lines = [f"{shot}: no versions yet; `kling-pipe run {source}` renders it"]
    else:
        count = f"{len(views)} version{'s' * (len(views) != 1)}"
        lines = [f"{shot}: {count}"]
        width = len(str(views[-1].number)) + 1
        for v in views:
            task = v.task_id or "-"
            marks = f"  [{', '.join(v.marks)}]" if v.marks else ""
            missing = "" if v.present else "  (file missing)"
            lines.append(
                f"  v{v.number:<{width - 1}}  take {v.take}  "
                f"{v.made_at.strftime('%Y-%m-%d %H:%M')}  task {task}  "
                f"{v.cost} USD{money}  {v.change}{marks}{missing}"
            )
            if v.prompt is not None:
                lines.append(f"  {'':<{width}}  prompt: {_cut(v.prompt)}")
    if listed.unmoved:
        lines.append(
            f"{listed.unmoved} earlier render(s) of an older layout are moved into versions/ "
            f"by the next `kling-pipe run` or `pick` of {source}"
        )
    return "\n".join(lines)


def _cut(text: str, limit: int = 100) -> str:
    """Return *text* on one line, cut to *limit* characters (the rest is in `--json`)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# approve and unapprove


@attrs.frozen(kw_only=True)
class Approved:
    """What `approve` did for one shot."""

    shot_id: str
    version: int
    take: int
    #: It was approved already, on this version: nothing changed.
    already: bool
    #: ``<id>.mp4``: the approved version's copy.
    file: Path


def approve_shots(shotlist: ShotList, shot_ids: Sequence[str], *, origin: str) -> list[Approved]:
    """Approve each shot's current render for *origin* (blocking; see the module).

    Raises `VersionError` (nothing changed) for an unknown shot or a shot with no current
    render: every shot is checked before anything is written.
    """
    check_shots(shotlist, shot_ids)
    hashes = recorded_image_hashes(shotlist)
    with existing_store(shotlist) as store:
        _approvals_for(shotlist, store, shot_ids, origin=origin, hash_file=hashes)
    with _writing(shotlist, origin, hashes) as store:
        made = _approvals_for(shotlist, store, shot_ids, origin=origin, hash_file=hashes)
        section = section_for(origin)
        approvals = recorded_approvals(shotlist)
        holds: dict[str, Hold] = dict(approvals.get(section, {}))
        for a in made:
            if a.version < 1:  # moved into versions/ just now: cannot happen, never guessed
                raise VersionError(f'{shotlist.source}: "{a.shot_id}" has no version to approve')
            holds[a.shot_id] = Approval(
                version=a.version, take=a.take, fingerprint=a.fp, sha256=a.sha256
            )
        approvals[section] = holds
        write_lock_for(shotlist, store, approvals=approvals, hash_file=hashes)
    layout = OutputLayout.of(shotlist, origin)
    return [
        Approved(
            shot_id=a.shot_id,
            version=a.version,
            take=a.take,
            already=a.already,
            file=layout.picked(a.shot_id),
        )
        for a in made
    ]


@attrs.frozen(kw_only=True)
class _New:
    """An approval about to be recorded (the current render of a shot)."""

    shot_id: str
    version: int
    take: int
    fp: str
    sha256: str
    already: bool


def _approvals_for(
    shotlist: ShotList,
    store: Store | None,
    shot_ids: Sequence[str],
    *,
    origin: str,
    hash_file: Callable[[Path], str],
) -> list[_New]:
    """Return the approval each shot's current render makes, or refuse (VersionError)."""
    assessment = assess_shotlist(
        shotlist, store, origin=origin, lock=read_lock_of(shotlist), hash_file=hash_file
    )
    layout = OutputLayout.of(shotlist, origin)
    made: list[_New] = []
    refused: list[str] = []
    for shot_id in dict.fromkeys(shot_ids):
        take = assessment.pick(shot_id)
        resume = assessment.resume[unit_key(shot_id, take)]
        attempt = resume.attempt
        if resume.kind != "cached" or attempt is None or attempt.sha256 is None:
            refused.append(f'"{shot_id}" ({status_label(resume)})')
            continue
        named = None if attempt.file is None else layout.version_of(attempt.file)
        # A render of an older layout has no number until it is moved into versions/ (under
        # the run lock, just before this is asked again); 0 stands for it meanwhile.
        number = 0 if named is None else named[1]
        approval = assessment.approvals.get(shot_id)
        made.append(
            _New(
                shot_id=shot_id,
                version=number,
                take=take,
                fp=attempt.fingerprint,
                sha256=attempt.sha256,
                already=approval is not None and approval.sha256 == attempt.sha256,
            )
        )
    if refused:
        raise VersionError(
            f"{shotlist.source}: no current render to approve for shot {', '.join(refused)}; "
            f"render it first (`kling-pipe run {shotlist.source}`), or go back to one of its "
            "versions (`kling-pipe versions`, `kling-pipe restore`); nothing was changed"
        )
    return made


def format_approved(done: Sequence[Approved], source: Path) -> str:
    """Say what `approve` did, and what it means for the next runs."""
    lines = []
    for a in done:
        what = f"v{a.version}" + (f" (take {a.take})" if a.take != 1 else "")
        if a.already:
            lines.append(f"{a.shot_id}: {what} was already approved; nothing changed")
        else:
            lines.append(f"{a.shot_id}: {what} approved: {a.file} is held")
    fresh = [a.shot_id for a in done if not a.already]
    if fresh:
        named = " ".join(fresh)
        lines.append(
            "later changes to their inputs ([defaults], prompt_prefix, their own keys) render "
            f"nothing until `kling-pipe unapprove {source} {named}` or "
            f"`kling-pipe run {source} --rerender {named}`"
        )
    return "\n".join(lines)


@attrs.frozen(kw_only=True)
class Unapproved:
    """What `unapprove` did for one shot, and what the next run does about it."""

    shot_id: str
    #: The version it held, or None when the shot was not approved (nothing changed).
    version: int | None
    #: What the next run pays for the shot itself (0: its render as it is now is on disk).
    cost: Decimal
    #: What changed since the version it held ("prompt"), "" if nothing.
    changed: str
    followers: Followers


def unapprove_shots(
    shotlist: ShotList, shot_ids: Sequence[str], *, origin: str
) -> list[Unapproved]:
    """Lift the approvals of *shot_ids* for *origin* (blocking; see the module).

    ``<id>.mp4`` becomes the shot's render as it is now when there is one on disk (a file of
    the user's there is refused, nothing changed); else it stays until the next run renders
    the shot. Raises `VersionError` for an unknown shot.
    """
    check_shots(shotlist, shot_ids)
    hashes = recorded_image_hashes(shotlist)
    section = section_for(origin)
    with _writing(shotlist, origin, hashes) as store:
        lock = read_lock_of(shotlist)
        before = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=hashes)
        approvals = recorded_approvals(shotlist)
        holds: dict[str, Hold] = dict(approvals.get(section, {}))
        lifted = {shot_id: holds.pop(shot_id) for shot_id in shot_ids if shot_id in holds}
        approvals[section] = holds
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hashes, approvals=holds
        )
        if lifted:
            place_picks(store, shotlist, after, refuse=True)
            write_lock_for(shotlist, store, approvals=approvals, hash_file=hashes)
    p = _plan_of(shotlist, after)
    costs = {s.id: s.cost for s in p.shots}
    done = []
    for shot_id in dict.fromkeys(shot_ids):
        hold = lifted.get(shot_id)
        done.append(
            Unapproved(
                shot_id=shot_id,
                version=None
                if hold is None
                else (hold.version if isinstance(hold, Approval) else 0),
                cost=costs[shot_id],
                changed=before.changed.get(shot_id, ""),
                followers=Followers.of(shotlist, after, shot_id),
            )
        )
    return done


def format_unapproved(done: Sequence[Unapproved], command: str, *, simulated: bool) -> str:
    """Say what `unapprove` did and what the next run renders, and costs."""
    lines = []
    money = " (simulated: the bundled mock)" if simulated else ""
    for u in done:
        if u.version is None:
            lines.append(f"{u.shot_id}: was not approved; nothing changed")
            continue
        held = f"v{u.version}" if u.version else "an approval that could not be read"
        if u.cost:
            why = f" (inputs changed: {u.changed})" if u.changed else ""
            lines.append(
                f"{u.shot_id}: no longer approved (held {held}); `{command}` renders it as it "
                f"is now{why}: {u.cost} USD{money}"
            )
        else:
            lines.append(
                f"{u.shot_id}: no longer approved (held {held}); its render as it is now is on "
                "disk: nothing to render"
            )
        lines += u.followers.lines(u.shot_id, command, simulated=simulated)
    return "\n".join(lines)


# restore


@attrs.frozen(kw_only=True)
class Restored:
    """What `restore` did."""

    shot_id: str
    version: VersionView
    #: ``<id>.mp4``, now a copy of the version.
    file: Path
    #: What changed in the shot's inputs since the version was made ("" if nothing).
    changed: str
    followers: Followers
    simulated: bool


def restore_version(shotlist: ShotList, shot_id: str, number: int, *, origin: str) -> Restored:
    """Make version *number* of *shot_id* its video and hold it approved (blocking).

    Raises `VersionError` (nothing changed) for an unknown shot or version, or a version
    whose file is not on disk with its recorded bytes; `FolderError` when a file of the
    user's is at ``<id>.mp4``. Sends nothing, pays nothing.
    """
    check_shots(shotlist, [shot_id])
    hashes = recorded_image_hashes(shotlist)
    with existing_store(shotlist) as store:
        if store is None or not _has_unmoved(store, shotlist, origin):
            _find_version(shotlist, store, shot_id, number, origin)  # refuse before writing
    section = section_for(origin)
    with _writing(shotlist, origin, hashes) as store:
        version = _find_version(shotlist, store, shot_id, number, origin)
        attempt = version.attempt
        assert attempt.sha256 is not None  # a version has its bytes recorded
        approval = Approval(
            version=number,
            take=version.take,
            fingerprint=attempt.fingerprint,
            sha256=attempt.sha256,
        )
        lock = read_lock_of(shotlist)
        approvals = recorded_approvals(shotlist)
        holds: dict[str, Hold] = {**approvals.get(section, {}), shot_id: approval}
        approvals[section] = holds
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hashes, approvals=holds
        )
        place_picks(store, shotlist, after, refuse=True)
        write_lock_for(shotlist, store, approvals=approvals, hash_file=hashes)
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=read_lock_of(shotlist), hash_file=hashes
        )
    return Restored(
        shot_id=shot_id,
        version=version,
        file=OutputLayout.of(shotlist, origin).picked(shot_id),
        changed=after.changed.get(shot_id, ""),
        followers=Followers.of(shotlist, after, shot_id),
        simulated=is_simulated(origin),
    )


def _has_unmoved(store: Store, shotlist: ShotList, origin: str) -> bool:
    """Whether renders of an older layout wait to be numbered (a version may be among them)."""
    layout = OutputLayout.of(shotlist, origin)
    return any(
        a.file is not None and a.sha256 is not None and layout.version_of(a.file) is None
        for a in store.attempts()
        if a.origin == origin and a.state == "downloaded"
    )


def _find_version(
    shotlist: ShotList, store: Store | None, shot_id: str, number: int, origin: str
) -> VersionView:
    """Return version *number* of the shot, on disk with its bytes, or refuse (VersionError)."""
    layout = OutputLayout.of(shotlist, origin)
    numbered = recorded_versions([] if store is None else store.attempts(), layout, origin)
    found = dict(numbered.get(shot_id, []))
    attempt = found.get(number)
    if attempt is None:
        known = sorted(found)
        have = (
            f"its versions are {_ranges(known)}"
            if known
            else "it has no versions yet (by this backend)"
        )
        raise VersionError(
            f'{shotlist.source}: shot "{shot_id}" has no version {number}; {have} '
            f"(`kling-pipe versions {shotlist.source} {shot_id}`); nothing was changed"
        )
    file = shotlist.base_dir / str(attempt.file)
    try:
        intact = file.is_file() and _files.sha256_file(file) == attempt.sha256
    except OSError:
        intact = False
    if not intact:
        raise VersionError(
            f'{shotlist.source}: version {number} of shot "{shot_id}" is not on disk as it was '
            f"rendered ({file}: missing or changed; `gc --versions` removes versions); nothing "
            "was changed"
        )
    return VersionView(
        shot_id=shot_id,
        number=number,
        take=split_unit_key(attempt.shot_id)[1],
        key=attempt.shot_id,
        file=file,
        present=True,
        task_id=attempt.task_id,
        cost=attempt.cost if attempt.charged else ZERO_USD,
        made_at=attempt.completed_at or attempt.sent_at,
        fingerprint=attempt.fingerprint,
        inputs=attempt.inputs,
        current=True,
        picked=False,
        approved=True,
        change="",
        attempt=attempt,
    )


def _ranges(numbers: Sequence[int]) -> str:
    """Say "1 to 3" or "1, 3" for a list of version numbers."""
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"v{numbers[0]} to v{numbers[-1]}"
    return ", ".join(f"v{n}" for n in numbers)


def format_restored(result: Restored, source: Path, command: str) -> str:
    """Say what `restore` did: the version now in place, that it is held, and its chains."""
    v = result.version
    take = f"take {v.take}, " if v.take != 1 else ""
    task = f", task {v.task_id}" if v.task_id else ""
    made = v.made_at.strftime("%Y-%m-%d %H:%M")
    restored = f"{result.shot_id}: v{v.number} restored ({take}rendered {made}{task})"
    lines = [f"{restored}; {result.file} is now v{v.number}"]
    unapprove = f"`kling-pipe unapprove {source} {result.shot_id}`"
    if result.changed:
        lines.append(
            f"held as approved, since the shot's inputs changed since v{v.number} "
            f"({result.changed}): the next run does not pay to replace it; {unapprove} to "
            "render the shot as it is now"
        )
    else:
        lines.append(
            f"held as approved: the next run keeps it; {unapprove} lets runs replace it again"
        )
    lines += result.followers.lines(result.shot_id, command, simulated=result.simulated)
    return "\n".join(lines)


# Writing under the run lock.


class _Writing:
    """The run lock and the store, with an older folder brought into ``versions/`` first."""

    def __init__(self, shotlist: ShotList, origin: str, hashes: Callable[[Path], str]) -> None:
        self._shotlist = shotlist
        self._origin = origin
        self._hashes = hashes
        self._lock = RunLock(state_dir_for(shotlist.source))
        self._store: Store | None = None

    def __enter__(self) -> Store:
        preflight(self._shotlist, self._origin)
        self._lock.acquire()
        try:
            store = Store.open(state_dir_for(self._shotlist.source))
        except BaseException:
            self._lock.release()
            raise
        self._store = store
        lock = read_lock_of(self._shotlist)
        if lock is not None:
            adopt_lock(store, self._shotlist, lock, self._hashes)
        migrate_to_versions(store, self._shotlist)
        return store

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()
        self._lock.release()


def _writing(shotlist: ShotList, origin: str, hashes: Callable[[Path], str]) -> _Writing:
    return _Writing(shotlist, origin, hashes)
