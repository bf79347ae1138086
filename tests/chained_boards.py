"""Generated chained storyboards and a simulation of the pure engine rendering them.

Shared by the engine's property tests and the chained-boards benchmark: a board of 12 to 40
shots where about half chain from the shot before, each task 60 to 180 s (a 5 s video 60 to
120 s, a 10 s one 120 to 180 s), rendered on a number of slots with instant notice. The
ratio of its makespan to the lower bound ``max(longest chain, total work / slots)`` says how
good the engine's order is.
"""

from __future__ import annotations

import heapq
import random

import attrs

from kling_pipe._decisions.engine import (
    Admission,
    RunStarted,
    ShotEnded,
    StartShot,
    TaskFinal,
    TaskTimed,
    decide,
)
from kling_pipe._decisions.plan import plan
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage


@attrs.frozen
class Board:
    """A generated board: its shots, each task's time, and the lower bound on slots."""

    shots: tuple[Shot, ...]
    seconds: dict[str, float]

    def lower_bound(self, slots: int) -> float:
        """``max(longest chain, total work / slots)``: no order can beat it."""
        chain: dict[str, float] = {}
        for s in self.shots:
            before = chain[s.image.shot] if isinstance(s.image, ChainImage) else 0.0
            chain[s.id] = before + self.seconds[s.id]
        return max(*chain.values(), sum(self.seconds.values()) / slots)


def generate(rng: random.Random, *, low: int = 12, high: int = 40, chain_p: float = 0.5) -> Board:
    """Draw one board: about *chain_p* of the shots chain from the shot before."""
    shots: list[Shot] = []
    seconds: dict[str, float] = {}
    for n in range(rng.randint(low, high)):
        sid = f"s{n:02d}"
        duration = rng.choice((5, 10))
        chained = n > 0 and rng.random() < chain_p
        image = (
            ChainImage(shot=shots[-1].id, frame="last")
            if chained
            else UrlImage(url=f"https://example.com/{sid}.png")
        )
        shots.append(Shot(id=sid, prompt=f"shot {sid}", image=image, duration=duration))
        base = 60.0 if duration == 5 else 120.0
        seconds[sid] = base + 60.0 * rng.random()
    return Board(shots=tuple(shots), seconds=seconds)


def simulate(board: Board, slots: int, *, learn: bool = True) -> tuple[float, list[str]]:
    """Render *board* through the pure engine on *slots*; return its makespan and start order.

    Every task takes its drawn time and is noticed at once; with *learn* each finished
    task's time is told to the engine as the run would (`TaskTimed`).
    """
    shotlist = ShotList(storyboard=Storyboard(name="generated"), shots=board.shots)
    state = Admission(plan=plan(shotlist), concurrency=slots)
    durations = {s.id: s.duration for s in board.shots}
    now = 0.0
    ends: list[tuple[float, int, str]] = []
    order: list[str] = []
    actions = decide(state, RunStarted(), now=now)
    while True:
        for action in actions:
            if isinstance(action, StartShot):
                order.append(action.shot_id)
                heapq.heappush(
                    ends, (now + board.seconds[action.shot_id], len(order), action.shot_id)
                )
        if not ends:
            return now, order
        now, _, sid = heapq.heappop(ends)
        actions = []
        if learn:
            timed = TaskTimed(video_s=durations[sid], seconds=board.seconds[sid])
            actions += decide(state, timed, now=now)
        actions += decide(state, TaskFinal(sid), now=now)
        actions += decide(state, ShotEnded(shot_id=sid, outcome="done", charged=True), now=now)


def file_order_makespan(board: Board, slots: int) -> float:
    """The makespan of starting ready shots in file order (the engine's order before ranks)."""
    done_at: dict[str, float] = {}
    free = [0.0] * slots
    pending = list(board.shots)
    now = 0.0
    while pending:
        heapq.heapify(free)
        now = max(now, heapq.heappop(free))
        ready = [
            s
            for s in pending
            if not isinstance(s.image, ChainImage) or done_at.get(s.image.shot, 1e18) <= now
        ]
        if not ready:  # wait for the next source to end
            heapq.heappush(free, min(t for t in done_at.values() if t > now))
            continue
        first = ready[0]
        pending.remove(first)
        done_at[first.id] = now + board.seconds[first.id]
        heapq.heappush(free, done_at[first.id])
    return max(done_at.values())
