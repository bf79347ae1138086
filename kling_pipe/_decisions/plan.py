"""What a run would do and what it would cost, decided before anything is sent.

Pure: a shot list and the set of shots already rendered go in, a `Plan` comes out. `plan`
prints it, `run` refuses it when it breaks the budget, and the scheduler follows its order.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe._shotlist import rules
from kling_pipe._shotlist.specs import ChainImage, ImageRef, LocalImage, Shot, ShotList, UrlImage
from kling_pipe.exceptions import Problem

#: render: a new task is paid for; cached: the video is on disk; resume: a task from an
#: earlier run is polled or its output fetched again (already paid); reconcile: a lost submit
#: is looked up in the history, and sent again only if it is not there (may be paid);
#: uncertain: a task that may exist and could not be found, left alone.
ShotStatus = Literal["render", "cached", "resume", "reconcile", "uncertain"]
_FREE: frozenset[str] = frozenset({"cached", "resume", "uncertain"})
ZERO_USD = Decimal("0.000")


@attrs.frozen(kw_only=True)
class PlannedShot:
    """One shot's place in the plan."""

    shot: Shot
    status: ShotStatus
    #: What one render costs, whether or not this plan renders it.
    unit_cost: Decimal
    #: What this plan spends on the shot: 0 when it is cached.
    cost: Decimal

    @property
    def id(self) -> str:
        """The shot's id."""
        return self.shot.id


@attrs.frozen(kw_only=True)
class Plan:
    """The shots in the order they may start (chains after their sources), with the money."""

    storyboard: str
    model: str
    shots: tuple[PlannedShot, ...]
    total_cost: Decimal
    max_cost: Decimal | None
    #: Cost if every rendered shot failed and was retried `retry_failed` times.
    worst_case_cost: Decimal
    retry_failed: int = 0

    @property
    def over_budget(self) -> bool:
        """True when the shots to render cost more than `max_cost` allows."""
        return self.max_cost is not None and self.total_cost > self.max_cost

    @property
    def to_render(self) -> tuple[PlannedShot, ...]:
        """The shots this plan may pay for."""
        return tuple(s for s in self.shots if s.cost > 0)

    def budget_problem(self) -> Problem | None:
        """Explain how the plan breaks `max_cost`, or return None when it does not."""
        if not self.over_budget:
            return None
        n = len(self.to_render)
        return Problem(
            "storyboard.max_cost",
            f"the plan costs {self.total_cost} USD for {n} shot{'s' * (n != 1)} to render, "
            f"more than max_cost {self.max_cost}; raise max_cost or render fewer shots",
        )


def chain_order(shots: tuple[Shot, ...]) -> tuple[Shot, ...]:
    """Order shots so each comes after the shots it chains from, otherwise in file order.

    Kahn's algorithm with the file position as tie-break: of all shots whose sources are
    placed, the earliest in the file goes next. Chains must already be valid (no cycles, no
    unknown shots); the loader guarantees that.
    """
    position = {s.id: i for i, s in enumerate(shots)}
    waiting = {s.id: {src for src in s.chained_from if src in position} for s in shots}
    dependants: dict[str, list[str]] = {s.id: [] for s in shots}
    for shot_id, sources in waiting.items():
        for src in sources:
            dependants[src].append(shot_id)
    ready = [position[i] for i, sources in waiting.items() if not sources]
    heapq.heapify(ready)
    ordered: list[Shot] = []
    while ready:
        shot = shots[heapq.heappop(ready)]
        ordered.append(shot)
        for dep in dependants[shot.id]:
            waiting[dep].discard(shot.id)
            if not waiting[dep]:
                heapq.heappush(ready, position[dep])
    if len(ordered) != len(shots):
        raise ValueError("shot chains form a cycle")
    return tuple(ordered)


def plan(
    shotlist: ShotList,
    cached: Collection[str] = (),
    *,
    statuses: Mapping[str, ShotStatus] | None = None,
    retry_failed: int = 0,
) -> Plan:
    """Plan a run of *shotlist*: shots in *cached* cost nothing, others as *statuses* say.

    A shot in neither is rendered. *retry_failed* is how many times a failed shot may be
    resubmitted; it does not change the expected total (WaveSpeed refunds failed tasks) but
    sets the worst case shown.
    """
    given = dict(statuses or {})
    given.update(dict.fromkeys(cached, "cached"))
    model = shotlist.storyboard.model
    planned: list[PlannedShot] = []
    for shot in chain_order(shotlist.shots):
        unit = rules.shot_cost(model, shot.duration)
        status = given.get(shot.id, "render")
        cost = ZERO_USD if status in _FREE else unit
        planned.append(PlannedShot(shot=shot, status=status, unit_cost=unit, cost=cost))
    total = sum((p.cost for p in planned), ZERO_USD)
    # A resumed task that fails may be resubmitted too: the worst case counts it.
    retryable = sum(
        (p.unit_cost for p in planned if p.status in ("render", "resume", "reconcile")), ZERO_USD
    )
    return Plan(
        storyboard=shotlist.storyboard.name,
        model=model,
        shots=tuple(planned),
        total_cost=total,
        max_cost=shotlist.storyboard.max_cost,
        worst_case_cost=total + retryable * retry_failed,
        retry_failed=retry_failed,
    )


def describe_image(image: ImageRef) -> str:
    """Say where a frame comes from, in a few words for the plan table."""
    match image:
        case LocalImage(path=path):
            return path
        case UrlImage(url=url):
            return url
        case ChainImage(shot=shot, frame=frame):
            return f"{frame} frame of {shot}"


def plan_as_json(p: Plan) -> dict[str, object]:
    """Return the plan in the documented `plan --json` shape, money as decimal strings."""
    return {
        "storyboard": p.storyboard,
        "model": p.model,
        "shots": [
            {"id": s.id, "duration": s.shot.duration, "cost": str(s.cost), "status": s.status}
            for s in p.shots
        ],
        "total_cost": str(p.total_cost),
        "max_cost": None if p.max_cost is None else str(p.max_cost),
    }


def format_plan(p: Plan) -> str:
    """Render the plan as the table `kling-pipe plan` prints for people."""
    rows = [("#", "id", "duration", "frames", "cost", "status")]
    for n, s in enumerate(p.shots, 1):
        frames = " -> ".join(describe_image(i) for i in s.shot.images)
        rows.append((str(n), s.id, f"{s.shot.duration} s", frames, str(s.cost), s.status))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = [f"{p.storyboard}  ({p.model})"]
    for row in rows:
        cells = [
            cell.rjust(w) if c in (0, 4) else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    seconds = sum(s.shot.duration for s in p.to_render)
    n = len(p.to_render)
    total = f"total: {p.total_cost} USD for {n} shot{'s' * (n != 1)} to render ({seconds} s)"
    free = len(p.shots) - n
    if free:
        total += f"; {free} already rendered or paid for"
    if p.max_cost is not None:
        total += f", max_cost {p.max_cost}"
    lines.append(total)
    if p.retry_failed:
        lines.append(
            f"worst case with --retry-failed {p.retry_failed}: {p.worst_case_cost} USD "
            "(failed tasks are refunded by WaveSpeed; retries are paid again)"
        )
    return "\n".join(lines)
