"""`kling-pipe pick`: make one take of a shot the shot's video, and say what that makes stale.

Picking is a decision about money already spent, so it pays nothing and needs no network: it
checks that the take exists and is rendered (on disk, unchanged), places a copy of its
version at ``<output_dir>/<id>.mp4`` (`kling_pipe._outputs.folders.place_picks`; every take
stays in ``versions/``, so no take is ever lost), and records the pick in the lock file, the
one place picks are kept, so it is committed and reviewed with the storyboard. It holds the
shot list's run lock meanwhile, so it never races a run. An approved shot's take is frozen:
`pick` refuses it until the shot is unapproved.

A chain uses its source's picked take, so the shots chained from the picked shot (directly
or not) now have other inputs: `pick` names those that must render again and what that
costs; the next `run` renders them, and only them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import attrs

from kling_pipe._decisions.plan import plan
from kling_pipe._outputs.folders import place_picks, preflight
from kling_pipe._outputs.migrate import migrate_to_versions
from kling_pipe._records.assessment import (
    Assessment,
    adopt_lock,
    assess_shotlist,
    is_simulated,
    open_store,
    read_lock_of,
    recorded_image_hashes,
    recorded_picks,
    write_lock_for,
)
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import read_picks, section_for
from kling_pipe._records.status import status_label
from kling_pipe._records.store import RunLock, Store, state_dir_for
from kling_pipe._shotlist.chains import dependants_closure
from kling_pipe._shotlist.fingerprint import RecordedPick
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, unit_key
from kling_pipe.exceptions import KlingPipeError


class PickError(KlingPipeError):
    """The pick cannot be made: no such shot or take, or the take is not rendered."""


@attrs.frozen(kw_only=True)
class StaleShot:
    """A shot chained from the picked one that must render again, and what that costs."""

    id: str
    cost: Decimal


@attrs.frozen(kw_only=True)
class PickResult:
    """What `pick_take` did."""

    shot_id: str
    take: int
    #: The take picked before (1 when none was).
    previous: int
    #: ``<output_dir>/<id>.mp4``, now the picked take's video.
    file: Path
    #: Shots chained (directly or not) from the picked shot that must render again.
    stale: tuple[StaleShot, ...]
    #: Shots chained from it that already have a video for the new pick (nothing to pay).
    ready: tuple[str, ...]
    #: What the next `run` costs in all (the stale shots, and anything else still to do).
    to_spend: Decimal
    simulated: bool

    @property
    def changed(self) -> bool:
        """Whether the pick changed anything (picking the picked take again does not)."""
        return self.take != self.previous

    @property
    def stale_cost(self) -> Decimal:
        """What rendering the stale shots again costs."""
        return sum((s.cost for s in self.stale), ZERO_USD)

    def as_json(self) -> dict[str, object]:
        """Return the result as `pick --json` prints it (money as decimal strings)."""
        return {
            "shot": self.shot_id,
            "pick": self.take,
            "previous": self.previous,
            "changed": self.changed,
            "file": str(self.file),
            "stale": [{"id": s.id, "cost": str(s.cost)} for s in self.stale],
            "stale_cost": str(self.stale_cost),
            "to_spend": str(self.to_spend),
            "simulated": self.simulated,
        }


def check_pick(shotlist: ShotList, shot_id: str, take: int) -> None:
    """Refuse a shot that does not exist or a take it does not have (one clear line)."""
    source = shotlist.source
    ids = [s.id for s in shotlist.shots]
    if shot_id not in ids:
        close = difflib.get_close_matches(shot_id, ids, n=1, cutoff=0.6)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise PickError(f'{source}: no shot "{shot_id}" in the shot list{hint}')
    takes = shotlist.shot(shot_id).takes
    if not 1 <= take <= takes:
        if takes == 1:
            raise PickError(
                f'{source}: shot "{shot_id}" has 1 take, so there is nothing to pick; '
                "give it takes = 2 (or more) to render others"
            )
        raise PickError(
            f'{source}: shot "{shot_id}" has {takes} takes; take {take} does not exist '
            f"(pick 1 to {takes})"
        )


def pick_take(shotlist: ShotList, shot_id: str, take: int, *, origin: str) -> PickResult:
    """Make take *take* of *shot_id* the picked one for *origin*'s renders (blocking).

    Raises `PickError` (nothing changed) for an unknown shot or take, or a take that is not
    rendered for *origin*; `StoreBusyError` while a run of the shot list is going on. Sends
    no request and pays nothing.
    """
    check_pick(shotlist, shot_id, take)
    hash_file = recorded_image_hashes(shotlist)  # a missing keyframe from the records
    # First without writing anything: a refused pick leaves no trace.
    store = open_store(shotlist, create=False)
    try:
        _check_rendered(
            shotlist, store, shot_id=shot_id, take=take, origin=origin, hash_file=hash_file
        )
    finally:
        if store is not None:
            store.close()
    preflight(shotlist, origin)
    with (
        RunLock(state_dir_for(shotlist.source)),
        Store.open(state_dir_for(shotlist.source)) as store,
    ):
        lock = read_lock_of(shotlist)
        if lock is not None:
            adopt_lock(store, shotlist, lock, hash_file)
        migrate_to_versions(store, shotlist)
        before = _check_rendered(
            shotlist, store, shot_id=shot_id, take=take, origin=origin, hash_file=hash_file
        )
        section = section_for(origin)
        # The other picks as recorded: checked again, since this pick may change the
        # fingerprints of shots chained from this one (and so end their own picks).
        chosen: dict[str, RecordedPick] = dict(read_picks(lock, section))
        chosen[shot_id] = (take, None)
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hash_file, picks=chosen
        )
        place_picks(store, shotlist, after, refuse=True)
        picks = recorded_picks(shotlist)
        # Each with the fingerprint it is made on: a pick kept past a lowered `takes` holds
        # only as recorded (`kling_pipe._shotlist.fingerprint`).
        picks[section] = {
            sid: (k, after.fingerprints[unit_key(sid, k)])
            for sid, k in after.picks.items()
            if k != 1
        }
        write_lock_for(shotlist, store, picks=picks, hash_file=hash_file)
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=read_lock_of(shotlist), hash_file=hash_file
        )
    return _result(shotlist, before, after, shot_id=shot_id, take=take, origin=origin)


def preview_pick(shotlist: ShotList, shot_id: str, take: int, *, origin: str) -> PickResult:
    """Say what `pick_take` would do, changing nothing: what becomes stale, and its cost.

    The same refusals as `pick_take` (`PickError`), from the same checks; reads the records
    only (blocking). The review page shows it before the user confirms a pick.
    """
    check_pick(shotlist, shot_id, take)
    hash_file = recorded_image_hashes(shotlist)
    store = open_store(shotlist, create=False)
    try:
        before = _check_rendered(
            shotlist, store, shot_id=shot_id, take=take, origin=origin, hash_file=hash_file
        )
        lock = read_lock_of(shotlist)
        chosen: dict[str, RecordedPick] = dict(read_picks(lock, section_for(origin)))
        chosen[shot_id] = (take, None)
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hash_file, picks=chosen
        )
    finally:
        if store is not None:
            store.close()
    return _result(shotlist, before, after, shot_id=shot_id, take=take, origin=origin)


def _result(  # noqa: PLR0913 - keyword-only: the pick and the records before and after
    shotlist: ShotList,
    before: Assessment,
    after: Assessment,
    *,
    shot_id: str,
    take: int,
    origin: str,
) -> PickResult:
    """Say what picking *take* of *shot_id* does, from the assessments before and after it."""
    p = plan(shotlist, statuses=after.statuses, picks=after.picks, fingerprints=after.fingerprints)
    chained = dependants_closure(shotlist, {shot_id}) - {shot_id}
    costs = {s.id: s.cost for s in p.shots}
    ordered = [s.id for s in p.shots if s.id in chained]
    return PickResult(
        shot_id=shot_id,
        take=take,
        previous=before.pick(shot_id),
        file=OutputLayout.of(shotlist, origin).picked(shot_id),
        stale=tuple(StaleShot(id=sid, cost=costs[sid]) for sid in ordered if costs[sid] > 0),
        ready=tuple(sid for sid in ordered if costs[sid] == 0),
        to_spend=p.total_cost,
        simulated=is_simulated(origin),
    )


def _check_rendered(  # noqa: PLR0913 - keyword-only: the pick and where to look
    shotlist: ShotList,
    store: Store | None,
    *,
    shot_id: str,
    take: int,
    origin: str,
    hash_file: Callable[[Path], str],
) -> Assessment:
    """Assess the shot list; refuse a take not on disk as rendered, or of an approved shot.

    The take asked for is assessed even when the shot does not have it now: ``takes`` lowered
    below a pick kept past it leaves the shot with that pick alone, and picking take 1 back
    is assessed as the pick would make it (`kept_takes` of the new pick).
    """
    lock = read_lock_of(shotlist)
    assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=hash_file)
    if shot_id in assessment.held:
        # An approved shot is frozen on one render: picking another is unapproving it first.
        raise PickError(
            f'{shotlist.source}: shot "{shot_id}" is approved, so its take is frozen; '
            f"`kling-pipe unapprove {shotlist.source} {shot_id}` first; nothing was changed"
        )
    key = unit_key(shot_id, take)
    resume = assessment.resume.get(key)
    if resume is None:
        chosen: dict[str, RecordedPick] = dict(read_picks(lock, section_for(origin)))
        chosen[shot_id] = (take, None)
        resume = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hash_file, picks=chosen
        ).resume[key]
    if resume.kind != "cached":
        raise PickError(
            f'{shotlist.source}: take {take} of shot "{shot_id}" is not rendered '
            f"({status_label(resume)}); run `kling-pipe run {shotlist.source}` first"
        )
    return assessment


def format_pick(result: PickResult, command: str) -> str:
    """Say what the pick did and what it made stale, for people; *command* renders them."""
    shot, take = result.shot_id, result.take
    if not result.changed:
        lines = [f"{shot}: take {take} was already the picked take; {result.file} is that take"]
    else:
        lines = [
            (
                f"{shot}: take {take} picked (was take {result.previous}); "
                f"{result.file} is now take {take}"
            )
        ]
    money = " (simulated: the bundled mock)" if result.simulated else ""
    if result.stale:
        listed = ", ".join(f"{s.id} ({s.cost} USD)" for s in result.stale)
        lines.append(f"stale now, chained from {shot}: {listed}")
        lines.append(
            f"`{command}` renders them again: {result.stale_cost} USD{money}"
            + (f"; {result.to_spend} USD in all" if result.to_spend != result.stale_cost else "")
        )
    elif result.ready:
        listed = ", ".join(result.ready)
        lines.append(f"chained from {shot}, already rendered from take {take}: {listed}")
    elif result.changed:
        lines.append(f"nothing is chained from {shot}: nothing to render again")
    return "\n".join(lines)
