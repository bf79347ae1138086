"""`status`: what the records say about each shot, for people (`gc` is in `folders`)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import attrs

from kling_pipe._decisions.plan import Plan
from kling_pipe._decisions.resume import Resume
from kling_pipe._records.assessment import Assessment
from kling_pipe._shotlist.specs import ShotList


@attrs.frozen(kw_only=True)
class ShotStatusLine:
    """One shot as `kling-pipe status` reports it."""

    id: str
    #: cached, stale, pending, in flight, refetch, failed or uncertain.
    label: str
    detail: str
    task_id: str | None


def status_label(resume: Resume) -> str:
    """Name a shot's situation the way a user thinks of it."""
    match resume.kind:
        case "cached" | "uncertain":
            return resume.kind
        case "adopt":
            return "renamed"
        case "poll" | "reconcile":
            return "in flight"
        case "refetch":
            return "refetch"
    if resume.reason.startswith("stale"):
        return "stale"
    if resume.reason.startswith("last attempt failed"):
        return "failed"
    return "pending"


def status_lines(shotlist: ShotList, assessment: Assessment) -> list[ShotStatusLine]:
    """Return every shot's status line, in file order."""
    lines = []
    for shot in shotlist.shots:
        resume = assessment.resume[shot.id]
        attempt = resume.attempt
        detail = resume.reason
        if resume.kind == "cached" and attempt is not None and attempt.file is not None:
            detail = attempt.file
        label = status_label(resume)
        if label == "stale":
            detail = detail.removeprefix("stale: ")
        lines.append(
            ShotStatusLine(
                id=shot.id,
                label=label,
                detail=detail,
                task_id=None if attempt is None else attempt.task_id,
            )
        )
    return lines


def format_status(
    shotlist: ShotList,
    lines: Iterable[ShotStatusLine],
    *,
    spent: Decimal,
    plan: Plan,
    simulated: bool = False,
) -> str:
    """Render `kling-pipe status` for people; the mock's money is labelled simulated."""
    rows = list(lines)
    width = max((len(r.id) for r in rows), default=0)
    out = [f"{shotlist.storyboard.name}  ({len(rows)} shots)"]
    out.extend(f"  {r.id:<{width}}  {r.label:<9}  {r.detail}".rstrip() for r in rows)
    if simulated:
        out.append(
            f"the bundled mock (simulated money, nothing charged): {spent} USD so far; "
            f"{plan.total_cost} USD to go. Real renders: status --backend wavespeed"
        )
    else:
        out.append(f"spent so far: {spent} USD; still to spend: {plan.total_cost} USD")
    return "\n".join(out)
