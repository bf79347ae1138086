"""How shots chain: the order they can start in, and which shots follow from which.

Pure functions of the specs, shared by fingerprinting (a chain's fingerprint covers its
source's, so sources come first), planning and resuming (`--rerender` of a source takes the
shots chained from it along).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

from kling_pipe._shotlist.specs import Shot, ShotList


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
