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
| failed or refused | | `render` again |
| nothing for this id; a paid attempt at it under another id | | `adopt`: no new submit |

`--rerender ID` forces `render` for the shot and the shots chained from it (their first or
last frame comes from its new video).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import attrs

from kling_pipe._records.store import Attempt
from kling_pipe._shotlist.fingerprint import explain_change
from kling_pipe._shotlist.specs import ShotList

ResumeKind = Literal["render", "cached", "refetch", "poll", "reconcile", "uncertain", "adopt"]


@attrs.frozen(kw_only=True)
class Resume:
    """What one shot needs in this run, and why."""

    shot_id: str
    kind: ResumeKind
    fingerprint: str
    #: The attempt this run continues (poll, refetch, reconcile), found (cached), or takes
    #: over from another shot id (adopt).
    attempt: Attempt | None = None
    #: Why: "new", "stale: prompt changed", "last attempt failed: ...", "--rerender".
    reason: str = ""


def dependants_closure(shotlist: ShotList, roots: Collection[str]) -> set[str]:
    """Return *roots* and every shot chained from them, directly or not."""
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for shot in shotlist.shots:
            if shot.id not in found and any(src in found for src in shot.chained_from):
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
) -> dict[str, Resume]:
    """Decide, for every shot, what this run must do (see the module's table).

    *latest(shot_id, fingerprint)* returns the latest recorded attempt (any fingerprint when
    None is given); *output_ok(attempt)* says whether its file is on disk with its sha256;
    *elsewhere(shot_id, fingerprint)* a paid attempt at the same fingerprint recorded under
    another shot id (a renamed or duplicated shot), if there is one.
    """
    forced = dependants_closure(shotlist, rerender)
    decided: dict[str, Resume] = {}
    for shot in shotlist.shots:
        fp = fingerprints[shot.id]
        attempt = latest(shot.id, fp)
        if shot.id in forced:
            kind: ResumeKind = "render"
            reason = "--rerender" if shot.id in rerender else "chained from a shot re-rendered"
            attempt = None
        elif attempt is None:
            kind, reason = "render", _why_new(shot.id, latest, inputs)
            other = elsewhere(shot.id, fp)
            if other is not None:
                attempt, kind = other, "adopt"
                reason = f'same inputs as shot "{other.shot_id}": taken over, nothing to pay'
        else:
            kind, reason = _from_attempt(attempt, output_ok, resubmit_uncertain=resubmit_uncertain)
        decided[shot.id] = Resume(
            shot_id=shot.id, kind=kind, fingerprint=fp, attempt=attempt, reason=reason
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
        case "uncertain":
            return "render", "--resubmit-uncertain"
    return "render", f"last attempt {attempt.state}: {attempt.error}".rstrip(": ")


def _why_new(
    shot_id: str,
    latest: Callable[[str, str | None], Attempt | None],
    inputs: Mapping[str, Mapping[str, Any]],
) -> str:
    previous = latest(shot_id, None)
    if previous is None:
        return "new"
    return "stale: " + explain_change(json.loads(previous.inputs), inputs[shot_id])
