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
    if len(position) != len(shots):
        raise ValueError("shot chains form a cycle")  # two shots of one id: neither can go
    # By file position: only the shots that chain wait, and only they are looked at again.
    waiting: dict[int, set[int]] = {}
    dependants: dict[int, list[int]] = {}
    for index, shot in enumerate(shots):
        sources = {position[src] for src in shot.chained_from if src in position}
        if sources:
            waiting[index] = sources
            for src in sources:
                dependants.setdefault(src, []).append(index)
    if not waiting:
        return shots
    ready = [index for index in range(len(shots)) if index not in waiting]
    heapq.heapify(ready)
    ordered: list[Shot] = []
    while ready:
        index = heapq.heappop(ready)
        ordered.append(shots[index])
        for dep in dependants.get(index, ()):
            waiting[dep].discard(index)
            if not waiting[dep]:
                heapq.heappush(ready, dep)
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
