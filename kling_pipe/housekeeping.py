"""`status` and `gc`: what the records say about each shot, and which files nothing needs.

Read-only apart from `collect_garbage`'s deletions, which stay inside the output folder and
touch only files kling-pipe writes there.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import attrs

from kling_pipe.plan import Plan
from kling_pipe.records import Assessment
from kling_pipe.resume import Resume
from kling_pipe.specs import ChainImage, ShotList


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
    shotlist: ShotList, lines: Iterable[ShotStatusLine], *, spent: Decimal, plan: Plan
) -> str:
    """Render `kling-pipe status` for people."""
    rows = list(lines)
    width = max((len(r.id) for r in rows), default=0)
    out = [f"{shotlist.storyboard.name}  ({len(rows)} shots)"]
    out.extend(f"  {r.id:<{width}}  {r.label:<9}  {r.detail}".rstrip() for r in rows)
    out.append(f"spent so far: {spent} USD; still to spend: {plan.total_cost} USD")
    return "\n".join(out)


def garbage(shotlist: ShotList) -> list[Path]:
    """Return the files in the output folder that no shot of the current list needs.

    Outputs and thumbnails of shots no longer in the list, frames of chains no longer used,
    and temporary files left by an interrupted write. Nothing outside the output folder,
    and nothing kling-pipe does not write, is ever listed.
    """
    out = shotlist.output_path
    if not out.is_dir():
        return []
    ids = {s.id for s in shotlist.shots}
    frames = {
        f"{image.shot}.{image.frame}.png"
        for s in shotlist.shots
        for image in s.images
        if isinstance(image, ChainImage)
    }
    found: list[Path] = [p for p in out.glob("*.mp4") if p.stem not in ids]
    if (out / "frames").is_dir():
        found.extend(p for p in (out / "frames").glob("*.png") if p.name not in frames)
    if (out / "thumbs").is_dir():
        found.extend(
            p for p in (out / "thumbs").iterdir() if p.is_file() and p.name.split(".")[0] not in ids
        )
    found.extend(p for p in out.rglob(".*.part") if p.is_file())
    return sorted(set(found))


def collect_garbage(shotlist: ShotList, *, dry_run: bool) -> list[Path]:
    """Delete (or, with *dry_run*, only list) what `garbage` finds; return the paths."""
    paths = garbage(shotlist)
    if not dry_run:
        for path in paths:
            path.unlink(missing_ok=True)
    return paths
