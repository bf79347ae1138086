"""`--only`: which render units a subset names, and which other units it needs.

Testing one shot before paying for thirty is the first thing a user does, so `plan` and `run`
take ``--only ID...``. A name is a shot id (every take of the shot), a unit key (``storm#2``:
that take alone; ``storm#1`` is take 1), or a glob on shot ids (``harbour-*``, matched with
`fnmatch.fnmatchcase`; ``harbour-*#2`` is take 2 of each). A name that matches nothing is a
mistake to point out, not a subset of nothing: `select_units` refuses it, naming it.

Pure: the shot list and the picks go in, unit keys come out. What a subset *needs* (the chain
sources it cannot start without) depends on what is rendered, so `plan` works it out
(`kling_pipe._decisions.plan.plan`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping

from kling_pipe._shotlist.fingerprint import kept_keys
from kling_pipe._shotlist.specs import TAKE_SEPARATOR, ShotList, unit_key
from kling_pipe.exceptions import KlingPipeError


class SelectionError(KlingPipeError):
    """A name given to ``--only`` (or ``--rerender`` with it) selects nothing it may."""


def select_units(
    shotlist: ShotList, names: Collection[str], picks: Mapping[str, int] | None = None
) -> frozenset[str]:
    """Return the unit keys *names* select; raise `SelectionError` if one selects nothing.

    *picks* (by shot id) say which takes each shot keeps (`kept_keys`: a pick kept past a
    lowered ``takes`` is among them). An empty *names* selects nothing and is refused too.
    """
    picked = picks or {}
    kept = {shot.id: kept_keys(shot, picked.get(shot.id, 1)) for shot in shotlist.shots}
    chosen: set[str] = set()
    unmatched: list[str] = []
    for name in dict.fromkeys(names):
        found = _matches(name, kept)
        if not found:
            unmatched.append(name)
        chosen.update(found)
    if not names:
        raise SelectionError("--only: no shot named; give shot ids, id#take or globs")
    if unmatched:
        verb = "names" if len(unmatched) == 1 else "name"
        raise SelectionError(
            f"--only: {', '.join(map(repr, unmatched))} {verb} no shot or take of "
            f"{shotlist.source.name}; its shots: {known_ids(shotlist)} (give ids, id#take or "
            "globs such as 'harbour-*')"
        )
    return frozenset(chosen)


def known_ids(shotlist: ShotList, limit: int = 20) -> str:
    """Say the shot list's ids (a shot of several takes as ``storm#1-3``), the first *limit*.

    A name that selects nothing is most often a typo: the ids it could have been are the help.
    """
    shown = [
        shot.id if shot.takes == 1 else f"{shot.id}#1-{shot.takes}"
        for shot in shotlist.shots[:limit]
    ]
    more = len(shotlist.shots) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _matches(name: str, kept: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Return the unit keys one name selects among each shot's *kept* unit keys."""
    pattern, sep, take_text = name.partition(TAKE_SEPARATOR)
    shots = [shot_id for shot_id in kept if fnmatch.fnmatchcase(shot_id, pattern)]
    if not sep:
        return {key for shot_id in shots for key in kept[shot_id]}
    if not take_text.isdigit() or take_text != str(int(take_text)):
        return set()
    take = int(take_text)
    return {key for shot_id in shots if (key := unit_key(shot_id, take)) in kept[shot_id]}


def units_of(
    shotlist: ShotList, names: Collection[str], picks: Mapping[str, int] | None = None
) -> frozenset[str]:
    """Return the unit keys *names* select, ignoring names that select nothing."""
    picked = picks or {}
    kept = {shot.id: kept_keys(shot, picked.get(shot.id, 1)) for shot in shotlist.shots}
    return frozenset(key for name in names for key in _matches(name, kept))
