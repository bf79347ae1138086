"""What each shot needs now, given what earlier runs recorded: the pure heart of resuming.

For every shot, the latest attempt recorded for its *current* fingerprint decides:

| recorded | the file | now |
| --- | --- | --- |
| nothing (or only attempts for an old fingerprint) | | `render` (stale: why) |
| downloaded | present with its sha256 | `cached`: costs nothing |
| downloaded or completed | missing or changed | `refetch` from the task: no new submit |
| submitted (a task id) | | `poll` the task: no new submit |
| intent without a task id | | `reconcile` through the prediction history |
| uncertain | | `uncertain`: left alone unless resubmitting is asked for |
| rejected (its video failed the checks) | | left alone (as `uncertain`) unless `--rerender` |
| expired (never downloaded, gone from WaveSpeed) | | `expired`: left alone unless `--rerender` |
| failed or refused | | `render` again |
| nothing for this id; a paid attempt at it under another id | | `adopt`: no new submit |

`--rerender ID` forces `render` for the shot and the shots chained from it (their first or
last frame comes from its new video).

An approved shot is *frozen*: nothing of it is paid for. Each of its takes is decided as
above but for what would pay: where that is `render` (nothing recorded, stale, failed) or
`reconcile` (a lost submit, which may be sent again), it is `approved` instead: nothing to
do, nothing to pay. What is already paid for still comes home (`refetch`, `poll`). A frozen
shot is rendered again only when `--rerender` names it (or one of its takes), and the shots
chained from a shot rendered again do not pull a frozen one along.

Each take of a shot is decided on its own, by its unit key (the shot's id for take 1, ``id#k``
for take k) and its own fingerprint: raising `takes` finds the takes already rendered cached
and renders only the new ones. ``--rerender storm`` renders every take of storm again,
``--rerender storm#2`` only take 2; the shots chained from storm follow when the take they
use (the picked one) is among those rendered again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import attrs

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._shotlist.chains import dependants_closure
from kling_pipe._shotlist.fingerprint import explain_change, kept_keys
from kling_pipe._shotlist.specs import ShotList, split_unit_key

ResumeKind = Literal[
    "render", "cached", "refetch", "poll", "reconcile", "uncertain", "adopt", "expired", "approved"
]
#: What a frozen (approved) take may still do: nothing of it pays.
_FROZEN_PAYS: frozenset[ResumeKind] = frozenset({"render", "reconcile"})


@attrs.frozen(kw_only=True)
class Resume:
    """What one render unit (one take of a shot) needs in this run, and why."""

    shot_id: str
    kind: ResumeKind
    fingerprint: str
    #: The attempt this run continues (poll, refetch, reconcile), found (cached), or takes
    #: over from another shot id (adopt).
    attempt: Attempt | None = None
    #: Why: "new", "stale: prompt changed", "last attempt failed: ...", "--rerender".
    reason: str = ""


def forced_units(
    shotlist: ShotList,
    rerender: Collection[str],
    picks: Mapping[str, int] | None = None,
    frozen: Collection[str] = (),
) -> set[str]:
    """Return the unit keys `--rerender` forces: *rerender* names shots or single takes.

    A shot id forces all of its takes; a unit key (``storm#2``) that take alone. The shots
    chained from a shot whose picked take is forced follow, every take of them, transitively,
    but for *frozen* shots (approved), which only a name of their own forces.
    """
    picked = picks or {}
    forced: set[str] = set()
    roots: set[str] = set()
    for name in rerender:
        shot_id, take = split_unit_key(name)
        if name == shot_id:
            forced.update(kept_keys(shotlist.shot(shot_id), picked.get(shot_id, 1)))
            roots.add(shot_id)
        else:
            forced.add(name)
            if picked.get(shot_id, 1) == take:
                roots.add(shot_id)
    for shot_id in _followers(shotlist, roots, frozen) - roots:
        forced.update(kept_keys(shotlist.shot(shot_id), picked.get(shot_id, 1)))
    return forced


def _followers(shotlist: ShotList, roots: set[str], frozen: Collection[str]) -> set[str]:
    """Return *roots* and the shots chained from them, transitively, never through *frozen*."""
    if not frozen:
        return dependants_closure(shotlist, roots)
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for shot in shotlist.shots:
            if shot.id in found or shot.id in frozen:
                continue
            if any(src in found for src in shot.chained_from):
                found.add(shot.id)
                changed = True
    return found


def assess(  # noqa: PLR0913 - keyword-only: each input is a separate source of truth
    shotlist: ShotList,
    *,
    fingerprints: Mapping[str, str],
    inputs: Mapping[str, Mapping[str, Any]],
    latest: Callable[[str, str | None], Attempt | None],
    output_ok: Callable[[Attempt], bool],
    rerender: Collection[str] = (),
    resubmit_uncertain: bool = False,
    elsewhere: Callable[[str, str], Attempt | None] = lambda _shot, _fp: None,
    picks: Mapping[str, int] | None = None,
    frozen: Collection[str] = (),
) -> dict[str, Resume]:
    """Decide, for every take of every shot, what this run must do (see the module's table).

    Everything is keyed by unit key: *fingerprints* and *inputs* hold every take's.
    *latest(key, fingerprint)* returns the latest recorded attempt (any fingerprint when
    None is given); *output_ok(attempt)* says whether its file is on disk with its sha256;
    *elsewhere(key, fingerprint)* a paid attempt at the same fingerprint recorded under
    another key (a renamed or duplicated shot), if there is one. *picks* (by shot id) say
    which take each chain uses, for `--rerender` of a single take. *frozen* names approved
    shots: nothing of them pays (see the module).
    """
    forced = forced_units(shotlist, rerender, picks, frozen)
    decided: dict[str, Resume] = {}
    for shot in shotlist.shots:
        for key in kept_keys(shot, (picks or {}).get(shot.id, 1)):
            fp = fingerprints[key]
            attempt = latest(key, fp)
            if key in forced:
                kind: ResumeKind = "render"
                named = key in rerender or shot.id in rerender
                reason = "--rerender" if named else "chained from a shot re-rendered"
                attempt = None
            elif attempt is None:
                kind, reason = "render", _why_new(key, latest, inputs)
                other = elsewhere(key, fp)
                if other is not None:
                    attempt, kind = other, "adopt"
                    shown = split_unit_key(other.shot_id)[0]
                    reason = f'same inputs as shot "{shown}": taken over, nothing to pay'
            else:
                kind, reason = _from_attempt(
                    attempt, output_ok, resubmit_uncertain=resubmit_uncertain
                )
            if shot.id in frozen and key not in forced and kind in _FROZEN_PAYS:
                kind, reason = "approved", "the shot is approved: not rendered"
            decided[key] = Resume(
                shot_id=key, kind=kind, fingerprint=fp, attempt=attempt, reason=reason
            )
    return decided


def _from_attempt(
    attempt: Attempt, output_ok: Callable[[Attempt], bool], *, resubmit_uncertain: bool
) -> tuple[ResumeKind, str]:
    match attempt.state:
        case "downloaded" if output_ok(attempt):
            return "cached", ""
        case "downloaded" | "completed":
            return "refetch", "the output file is missing or changed; fetching it from its task"
        case "submitted":
            return "poll", f"task {attempt.task_id} in flight"
        case "intent":
            return "reconcile", "a submit's answer was lost; searching the history first"
        case "uncertain" if not resubmit_uncertain:
            return "uncertain", attempt.error
        case "rejected":
            # Paid for and unusable: paying again is the user's call (--rerender).
            return "uncertain", attempt.error
        case "expired":
            # Paid for, and its output is gone: paying again is the user's call (--rerender).
            return "expired", attempt.error
        case "uncertain":
            return "render", "--resubmit-uncertain"
    return "render", f"last attempt {attempt.state}: {attempt.error}".rstrip(": ")


def _why_new(
    key: str,
    latest: Callable[[str, str | None], Attempt | None],
    inputs: Mapping[str, Mapping[str, Any]],
) -> str:
    previous = latest(key, None)
    if previous is None:
        return "new"
    return "stale: " + explain_change(json.loads(previous.inputs), inputs[key])


def shot_of(resume: Resume) -> str:
    """Return the id of the shot whose take *resume* is about."""
    return split_unit_key(resume.shot_id)[0]
