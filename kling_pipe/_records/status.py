"""`status`: what the records say about each shot, for people (`gc` is in `folders`).

A shot of several takes gets one line for the shot (its takes summed up: the first that
needs something, else cached, and which take is picked) and one line per take below it. A
shot made stale by a pick (its chain now starts from another take's frame) says so, and what
rendering it again costs. An approved shot says ``approved``, and ``approved (inputs
changed: prompt)`` once its inputs changed since its approved version; a shot with more than
one version lists them, the current one and the approved one marked.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal

import attrs

from kling_pipe._backends.base import DEFAULT_BASE_URL
from kling_pipe._backends.origins import describe_origin, origin_kind
from kling_pipe._decisions.plan import Plan
from kling_pipe._decisions.resume import Resume
from kling_pipe._records.assessment import Assessment, ImageHashes, takes_of
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.versions import VersionView
from kling_pipe._shotlist.specs import ShotList, split_unit_key

#: Which label names a shot whose takes differ: the first of these any take has.
_LABEL_ORDER = (
    "approved",
    "uncertain",
    "expired",
    "in flight",
    "refetch",
    "failed",
    "stale",
    "pending",
    "renamed",
    "copied",
    "held",
    "cached",
)


@attrs.frozen(kw_only=True)
class TakeStatusLine:
    """One take of a shot of several takes, as `status` reports it."""

    take: int
    label: str
    detail: str
    task_id: str | None
    picked: bool
    #: The take's own video (relative to the shot list's folder), when it is on disk.
    file: str | None = None


@attrs.frozen(kw_only=True)
class ShotStatusLine:
    """One shot as `kling-pipe status` reports it."""

    id: str
    #: cached, stale, pending, in flight, refetch, failed, uncertain, expired, renamed or
    #: copied.
    label: str
    detail: str
    task_id: str | None
    #: How many takes the shot has, and which one is picked.
    takes: int = 1
    pick: int = 1
    #: Each take's line (one for a shot of one take, describing the shot itself).
    take_lines: tuple[TakeStatusLine, ...] = ()
    #: Its local images that are missing, as written (fingerprinted from the records, or not).
    images_missing: tuple[str, ...] = ()
    #: For an approved shot: "" or what changed since its approved version
    #: ("inputs changed: prompt"); None when the shot is not approved.
    approved: str | None = None
    #: Every version of the shot, oldest first (`kling_pipe._records.versions`).
    versions: tuple[VersionView, ...] = ()

    @property
    def shown_label(self) -> str:
        """The label as people read it: ``approved (inputs changed: prompt)`` for a held shot."""
        return f"{self.label} ({self.approved})" if self.approved else self.label


def status_label(resume: Resume, current: Collection[str] = ()) -> str:
    """Name a shot's situation the way a user thinks of it.

    A take that takes over a render recorded under another unit key is ``renamed`` when that
    key is gone, ``copied`` when it is among *current* (the unit keys the shot list has now):
    the other shot keeps its render and this one gets a copy.
    """
    match resume.kind:
        case "cached" | "uncertain" | "expired":
            return resume.kind
        case "approved":
            return "held"
        case "adopt":
            source = resume.attempt
            return "copied" if source is not None and source.shot_id in current else "renamed"
        case "poll" | "reconcile":
            return "in flight"
        case "refetch":
            return "refetch"
    if resume.reason.startswith("stale"):
        return "stale"
    if resume.reason.startswith("last attempt failed"):
        return "failed"
    return "pending"


def _take_line(  # noqa: PLR0913 - keyword-only: what the line is about
    resume: Resume,
    take: int,
    *,
    picked: bool,
    plan: Plan | None,
    current: Collection[str],
    missing: tuple[list[str], list[str]] = ([], []),
) -> TakeStatusLine:
    attempt = resume.attempt
    detail = resume.reason
    file = None
    if resume.kind == "cached" and attempt is not None and attempt.file is not None:
        detail = file = attempt.file
    label = status_label(resume, current)
    if label == "copied" and attempt is not None:
        # The reason `assess` gives fits a rename; a copy leaves the other shot its render.
        shown = split_unit_key(attempt.shot_id)[0]
        detail = f'same inputs as shot "{shown}": copied, nothing to pay'
    if label == "stale":
        detail = detail.removeprefix("stale: ")
        if "was picked" in detail and plan is not None:
            cost = next((u.cost for u in plan.units if u.id == resume.shot_id), None)
            if cost:
                detail += f"; renders again for {cost} USD"
    recorded, unknown = missing
    if unknown:
        # Nothing says what the image was: the shot cannot be matched to any record.
        label, detail = "pending", f"image missing: {', '.join(unknown)}"
    elif recorded:
        note = f"image missing: {', '.join(recorded)}; fingerprint from the records"
        detail = f"{detail} ({note})" if detail else note
    return TakeStatusLine(
        take=take,
        label=label,
        detail=detail,
        task_id=None if attempt is None else attempt.task_id,
        picked=picked,
        file=file,
    )


def status_lines(  # noqa: PLR0913 - the shot list, what is known of it, and how to show it
    shotlist: ShotList,
    assessment: Assessment,
    plan: Plan | None = None,
    images: ImageHashes | None = None,
    *,
    versions: Mapping[str, Sequence[VersionView]] | None = None,
    not_current: Mapping[str, str] | None = None,
) -> list[ShotStatusLine]:
    """Return every shot's status line, in file order (with *plan*, stale lines say costs).

    With *images* (the `ImageHashes` the assessment was made with), a shot whose local image
    is missing says so, and that its fingerprint comes from the records (or, with no record
    of the image, that it is pending). With *versions* (`shot_versions`), each shot lists
    its versions.
    *not_current* (shot id -> why) names the shots whose
    ``<id>.mp4`` is not their picked take as the lock file records it (the rule `cut` and
    `export` follow, `kling_pipe._outputs.current`): such a shot is never called cached, even
    when every take's own file is intact.
    """
    lines = []
    current = {key for shot in shotlist.shots for key in shot.unit_keys}
    for shot_id, views in takes_of(shotlist, assessment).items():
        missing = ([], []) if images is None else images.missing(shotlist, shot_id)
        takes = tuple(
            _take_line(
                assessment.resume[v.key],
                v.take,
                picked=v.picked,
                plan=plan,
                current=current,
                missing=missing,
            )
            for v in views
        )
        pick = assessment.pick(shot_id)
        held = shot_id in assessment.held
        if held:
            takes = tuple(
                attrs.evolve(t, label="approved") if t.take == pick and t.file else t for t in takes
            )
        picked = next(t for t in takes if t.take == pick)
        listed = tuple((versions or {}).get(shot_id, ()))
        if held:
            label, detail = _held_line(
                shotlist, assessment, shot_id, takes=takes, picked=picked, versions=listed
            )
        elif len(takes) == 1 and pick == 1:
            label, detail = picked.label, picked.detail
        else:
            label = next(name for name in _LABEL_ORDER if any(t.label == name for t in takes))
            where = OutputLayout.of(shotlist, assessment.origin).picked(shot_id)
            shown = where.relative_to(shotlist.base_dir) if picked.file else None
            asked = shotlist.shot(shot_id).takes
            detail = (
                f"take {pick} of {len(takes)} picked"
                if pick <= asked  # else a pick kept past a lowered `takes`
                else f"take {pick} picked, kept since takes went down to {asked}"
            ) + (f": {shown}" if shown else "")
            counts = [
                (name, n)
                for name in _LABEL_ORDER
                if name != "cached" and (n := sum(t.label == name for t in takes))
            ]
            if counts:
                detail += "; " + ", ".join(f"{n} {name}" for name, n in counts)
        why = (not_current or {}).get(shot_id)
        if label == "cached" and why is not None:
            where = OutputLayout.of(shotlist, assessment.origin).picked(shot_id)
            label = "stale"
            detail = (
                f"{where.relative_to(shotlist.base_dir)}: {why}; `run` places take {pick} "
                "there again at no cost (a file of yours there is set aside)"
            )
        lines.append(
            ShotStatusLine(
                id=shot_id,
                label=label,
                detail=detail,
                task_id=picked.task_id,
                takes=len(takes),
                pick=pick,
                take_lines=takes,
                images_missing=(*missing[0], *missing[1]),
                approved=assessment.approval_note(shot_id) if held else None,
                versions=listed,
            )
        )
    return lines


def _held_line(  # noqa: PLR0913 - keyword-only: what the line is about
    shotlist: ShotList,
    assessment: Assessment,
    shot_id: str,
    *,
    takes: Sequence[TakeStatusLine],
    picked: TakeStatusLine,
    versions: Sequence[VersionView],
) -> tuple[str, str]:
    """Return an approved shot's label and detail: its approved version, and where it is."""
    approval = assessment.approvals.get(shot_id)
    if approval is None:
        return "approved", (
            "its approval in the lock file cannot be read (see below): held, nothing renders it"
        )
    if not picked.file:
        return "approved", f"v{approval.version}: {picked.label}: {picked.detail}"
    where = OutputLayout.of(shotlist, assessment.origin).picked(shot_id)
    shown = (
        where.relative_to(shotlist.base_dir) if where.is_relative_to(shotlist.base_dir) else where
    )
    number = next((v.number for v in versions if v.approved), approval.version)
    if len(takes) > 1 or picked.take != 1:
        return "approved", f"take {picked.take} approved (v{number}): {shown}"
    return "approved", f"v{number} approved: {shown}"


def status_as_json(line: ShotStatusLine) -> dict[str, object]:
    """Return one shot's status in the `status --json` shape: the shot, then each take."""
    return {
        "id": line.id,
        "status": line.label,
        "detail": line.detail,
        "task_id": line.task_id,
        "takes": line.takes,
        "pick": line.pick,
        "images_missing": list(line.images_missing),
        "approved": None if line.approved is None else {"note": line.approved},
        "versions": [
            {
                "version": v.number,
                "take": v.take,
                "file": str(v.file),
                "current": v.current,
                "picked": v.picked,
                "approved": v.approved,
            }
            for v in line.versions
        ],
        "take_status": [
            {
                "take": t.take,
                "status": t.label,
                "detail": t.detail,
                "task_id": t.task_id,
                "file": t.file,
                "picked": t.picked,
            }
            for t in line.take_lines
        ],
    }


def _version_label(version: VersionView) -> str:
    """Name a version in `status`: ``v3``, marked current and approved where it is."""
    marks = [m for m in version.marks if m != "picked" or not version.current]
    return f"v{version.number}" + (f" ({', '.join(marks)})" if marks else "")


def format_status(  # noqa: PLR0913 - keyword-only: what the page shows
    shotlist: ShotList,
    lines: Iterable[ShotStatusLine],
    *,
    spent: Decimal,
    plan: Plan,
    origin: str = DEFAULT_BASE_URL,
    notes: Sequence[str] = (),
) -> str:
    """Render `kling-pipe status` for people, the money labelled as *origin*'s.

    The bundled mock's money is simulated, a local server's is its own (never WaveSpeed's).
    *notes* are lines about the records themselves (lock entries that are not records),
    printed after the shots.
    """
    rows = list(lines)
    width = max((len(r.id) for r in rows), default=0)
    out = [f"{shotlist.storyboard.name}  ({len(rows)} shots)"]
    for r in rows:
        out.append(f"  {r.id:<{width}}  {r.shown_label:<9}  {r.detail}".rstrip())
        if r.takes != 1 or r.pick != 1:
            for t in r.take_lines:
                mark = "  (picked)" if t.picked else ""
                name = f"take {t.take}"
                pad = max(width - 2, len(name))
                out.append(f"    {name:<{pad}}  {t.label:<9}  {t.detail}{mark}".rstrip())
        if len(r.versions) > 1 or any(v.approved for v in r.versions):
            name = "versions"
            pad = max(width - 2, len(name))
            out.append(f"    {name:<{pad}}  {', '.join(map(_version_label, r.versions))}")
    out.extend(notes)
    match origin_kind(origin):
        case "mock":
            out.append(
                f"the bundled mock (simulated money, nothing charged): {spent} USD so far; "
                f"{plan.total_cost} USD to go. Real renders: status --backend wavespeed"
            )
        case "local":
            out.append(
                f"{describe_origin(origin)}, not WaveSpeed (its renders and money are its "
                f"own): {spent} USD so far; {plan.total_cost} USD to go"
            )
        case _:
            out.append(f"spent so far: {spent} USD; still to spend: {plan.total_cost} USD")
    return "\n".join(out)
