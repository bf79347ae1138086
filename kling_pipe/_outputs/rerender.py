"""`kling-pipe mark` and `unmark`: ask the next run to render a shot again.

A reviewer who rejects what a shot shows marks it (`kling_pipe._records.marks`): the next
full `run` renders the shot again, every take, as ``--rerender ID`` would (an approved shot
too: the mark is the reviewer's word), and the shots chained from it follow. Marking pays
nothing and sends nothing; it says what the next run will cost. Like `pick`, it holds the
shot list's run lock while it writes, so it never races a run (and is refused during one).
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

import attrs

from kling_pipe._decisions.plan import plan
from kling_pipe._outputs.versions import check_shots
from kling_pipe._records.assessment import (
    assess_shotlist,
    existing_store,
    is_simulated,
    read_lock_of,
    recorded_image_hashes,
)
from kling_pipe._records.identity import records_home
from kling_pipe._records.lockfile import section_for
from kling_pipe._records.marks import read_marks, write_marks
from kling_pipe._records.store import RunLock
from kling_pipe._shotlist.chains import dependants_closure
from kling_pipe._shotlist.fingerprint import kept_keys
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, split_unit_key


@attrs.frozen(kw_only=True)
class Marked:
    """What `mark_for_rerender` or `unmark` did, and what the next run costs."""

    shot_id: str
    #: How many takes the next run renders of it.
    takes: int
    #: Whether it was marked before this call.
    was: bool
    #: Whether it is marked now.
    marked: bool
    #: What the next run pays for the shot and the shots chained from it.
    cost: Decimal
    #: The shots chained from it that the next run renders again.
    followers: tuple[str, ...]
    #: What the next run costs in all.
    to_spend: Decimal
    simulated: bool


def marked_shots(shotlist: ShotList, origin: str) -> frozenset[str]:
    """Return the shots of *origin*'s renders marked for re-render."""
    names = read_marks(records_home(shotlist).state_dir, section_for(origin))
    return frozenset(split_unit_key(n)[0] for n in names)


def marks_in_force(shotlist: ShotList, origin: str) -> tuple[str, ...]:
    """Return the shots marked for re-render that the shot list still has."""
    names = read_marks(records_home(shotlist).state_dir, section_for(origin))
    known = {s.id for s in shotlist.shots} | {k for s in shotlist.shots for k in s.unit_keys}
    return tuple(n for n in names if n in known)


def clear_marks(shotlist: ShotList, origin: str, rendered: Collection[str]) -> None:
    """Drop the marks of the shots a run rendered again (the caller holds the run lock).

    *rendered* are the unit keys the run rendered: a shot is rendered again once any of its
    takes is (a take that failed is rendered by the next run anyway, as failed).
    """
    shots = {split_unit_key(key)[0] for key in rendered}
    if not shots:
        return
    state_dir = records_home(shotlist).state_dir
    section = section_for(origin)
    names = read_marks(state_dir, section)
    write_marks(state_dir, section, [n for n in names if split_unit_key(n)[0] not in shots])


def mark_for_rerender(shotlist: ShotList, shot_id: str, *, origin: str) -> Marked:
    """Mark *shot_id*'s current take for the next run to render again (blocking)."""
    return _change(shotlist, shot_id, origin=origin, mark=True)


def unmark(shotlist: ShotList, shot_id: str, *, origin: str) -> Marked:
    """Take *shot_id*'s mark back: the next run leaves it as it is (blocking)."""
    return _change(shotlist, shot_id, origin=origin, mark=False)


def _change(shotlist: ShotList, shot_id: str, *, origin: str, mark: bool) -> Marked:
    check_shots(shotlist, [shot_id])
    hashes = recorded_image_hashes(shotlist)
    state_dir = records_home(shotlist).state_dir
    section = section_for(origin)
    lock = read_lock_of(shotlist)
    with RunLock(state_dir):
        names = list(read_marks(state_dir, section))
        was = any(split_unit_key(n)[0] == shot_id for n in names)
        names = [n for n in names if split_unit_key(n)[0] != shot_id]
        if mark:
            names.append(shot_id)
        write_marks(state_dir, section, names)
    with existing_store(shotlist) as store:
        after = assess_shotlist(
            shotlist, store, origin=origin, lock=lock, hash_file=hashes, rerender=names
        )
    p = plan(
        shotlist,
        statuses=after.statuses,
        picks=after.picks,
        notes=after.plan_notes(),
        fingerprints=after.fingerprints,
    )
    costs = {s.id: s.cost for s in p.shots}
    chained = dependants_closure(shotlist, {shot_id}) - {shot_id}
    followers = tuple(s.id for s in p.shots if s.id in chained and costs[s.id] > 0)
    return Marked(
        shot_id=shot_id,
        takes=len(kept_keys(shotlist.shot(shot_id), after.pick(shot_id))),
        was=was,
        marked=mark,
        cost=sum((costs[s] for s in (shot_id, *followers)), ZERO_USD),
        followers=followers,
        to_spend=p.total_cost,
        simulated=is_simulated(origin),
    )


def format_marked(done: Marked, command: str) -> str:
    """Say what `mark` or `unmark` did and what the next run renders, for people."""
    shot = done.shot_id
    what = f"{done.takes} takes" if done.takes > 1 else "it"
    money = " (simulated: the bundled mock)" if done.simulated else ""
    if not done.marked:
        if not done.was:
            return f"{shot}: was not marked for re-render; nothing changed"
        return (
            f"{shot}: no longer marked for re-render; `{command}` costs {done.to_spend} USD{money}"
        )
    chained = f" and {', '.join(done.followers)}, chained from it," if done.followers else ""
    already = " (it was marked already)" if done.was else ""
    return (
        f"{shot}: marked for re-render{already}; `{command}` renders {what}{chained} again: "
        f"{done.cost} USD{money}"
    )
