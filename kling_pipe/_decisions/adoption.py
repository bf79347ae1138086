"""`kling-pipe adopt`: whether a task the user names may become a take's, and why (pure).

A shot left `uncertain` names the candidates the history showed; the user looks at them and
names the one that is the shot's. Adopting it pays nothing, but it decides which video is the
shot's and which task the records own, so it rests on the same proof as settling a lost
answer (`kling_pipe._decisions.proof`, carried out by the submit protocol's `Prover`):

| what the task is | adopted |
| --- | --- |
| a task of another model | never |
| failed, cancelled, timed out or deleted (no video) | never |
| completed, its video shows the take's frames (``match``) | yes |
| completed, its video shows other frames (``mismatch``) | never, not even with ``--force`` |
| completed, the proof cannot tell (``undecided``), or still rendering | only with ``--force`` |

Which takes may adopt at all: one that has no task for its current inputs (pending, stale,
failed, uncertain, a lost answer being settled, expired). A take that is cached or whose
task is in flight already has its task: adopting another would be paying twice in effect.
"""

from __future__ import annotations

from typing import Final

import attrs

from kling_pipe._decisions.proof import Verdict
from kling_pipe._decisions.resume import ResumeKind

#: What a take may be (`Resume.kind`) for a task to be adopted as its own.
ADOPTABLE: Final[frozenset[ResumeKind]] = frozenset({"render", "uncertain", "reconcile", "expired"})
#: Statuses of a task that has no video and never will (the SDK's final statuses but one).
_NO_VIDEO: Final = frozenset({"failed", "cancelled", "timeout", "deleted"})


@attrs.frozen(kw_only=True)
class Judgement:
    """What the proof says of a task for a take, why, and whether it is adopted."""

    verdict: Verdict
    why: str
    adopt: bool
    #: Why it is not adopted ("" when it is).
    refusal: str = ""


def judge(  # noqa: PLR0913 - keyword-only: each a fact about the task or the take
    *,
    status: str,
    model: str,
    wanted_model: str,
    proved: Verdict | None,
    provable: bool,
    frames: str,
    force: bool,
) -> Judgement:
    """Decide whether a task is adopted, from its status, model and proof verdict.

    *proved* is the proof's verdict on the task's video (None when it was not run: the task
    has no video yet); *provable* whether the take's frames could be had to compare at all;
    *frames* says what the take's video must show ("frames/puddle.png, ending on ...").
    """
    if model != wanted_model:
        return _never(f"it is a task of {model}; the shot renders {wanted_model}")
    if status in _NO_VIDEO:
        return Judgement(
            verdict="undecided",
            why=f"it is {status}: it has no video (WaveSpeed refunds such tasks)",
            adopt=False,
            refusal="a task with no video is never adopted, not even with --force",
        )
    verdict: Verdict
    match proved:
        case "match":
            return Judgement(verdict="match", why=f"its video shows {frames}", adopt=True)
        case "mismatch":
            return _never(f"its video does not show {frames}")
        case None if status != "completed":
            verdict, why = "undecided", f"it is {status}: its video, the proof, is not there yet"
        case _ if not provable:
            verdict, why = "undecided", f"the shot's own frames ({frames}) cannot be had to compare"
        case _:
            verdict = "undecided"
            why = f"its video could not be fetched, or is too unlike {frames} to call either way"
    if force:
        return Judgement(verdict=verdict, why=why, adopt=True)
    return Judgement(
        verdict=verdict,
        why=why,
        adopt=False,
        refusal="the proof cannot decide; look at the task yourself, then adopt it with --force",
    )


def _never(why: str) -> Judgement:
    """Refuse a task that is not the take's, whatever the user says."""
    return Judgement(
        verdict="mismatch",
        why=why,
        adopt=False,
        refusal="a task that is not the shot's is never adopted, not even with --force",
    )
