"""Seeded schedules of faults, kills and other clients against the real mock, and the checks.

One integer seed draws a whole schedule (`draw_schedule`): one or two storyboards of local
images (chained shots, a `last_image` shot, sometimes two shots on one image, shots of several
takes: each take its own paid task, with the same frames as its shot's others), the mock's
faults on submits, polls, downloads and history reads, its history lag and clock offset,
and, per storyboard, the backend calls at which its run is killed. From a stream of its own
(so an old seed still draws its old schedule, plus these) it draws the adversaries that
break things *between runs*:

- a **busy account**: another client's burst of hundreds to thousands of tasks of the model,
  newer than a lost submit's task, so its window spans dozens of history pages (`burst`);
- **clock jumps**: the machine's clock slow or fast by minutes in one run and corrected in
  the next, or the reverse (`Schedule.clock_skews`, an era per kill), the mock on true time;
- **edits between a kill and the resume**: a shot's prompt, duration, first or last picture
  changed (`BoardPlan.edits`);
- **hostile answers**: task ids in hostile forms (`hostile_id`), a poll answered with another
  task (`wrong_task`), errors and failed tasks echoing the API key (`echo_key`);
- **a second shot list sharing a first frame** with the first (`Schedule.shared`);
- **a renamed or linked shot list**: after its first kill a storyboard's file is renamed in
  its folder (``git mv b0.toml b0-renamed.toml``: nothing else moves) or reached through a
  symlink beside it (``b0-current.toml -> b0.toml``), and every later run loads it by that
  name (`Schedule.relink`, drawn from a stream of its own too).

`run_schedule` renders it over real loopback sockets (the in-process `MockServer` and the
real `WaveSpeedClient`), killing and resuming with a new `render()` each time, then
`check_schedule` asserts the invariants of the submit protocol against what the mock knows
(`MockServer.tasks()`, who created which task from which inputs, its ledger, its uploads
and videos) and what kling-pipe recorded (store, lock file, files).

A helper module of its own: conftest is not for importing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiohttp
import attrs

from kling_pipe import _files
from kling_pipe._backends.base import Download, Prediction, SubmitRequest
from kling_pipe._backends.wavespeed.client import Timeouts, WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.results import RunResult
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._records.layout import LOCAL_ORIGIN, OutputLayout
from kling_pipe._records.lockfile import lock_path_for, read_lock, section_for
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import ShotList
from mockserver import FaultConfig, FaultRule, MockConfig, MockServer, RandomTime
from tests.killswitch import Killed, KillSwitch, kills_stop_writes, running_as

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"

#: The client's answer time-out: a `late_answer` longer than this loses the answer.
API_TOTAL_S = 0.5
#: A window of a second and a half: `late_create` delays stay inside it, `history_lag_s`
#: below the history lag. `answer_timeout` is the client's, so a killed run's intents are
#: settled in the right window.
SETTLE = SettleOptions(
    act_window=timedelta(seconds=1.5),
    answer_timeout=timedelta(seconds=API_TOTAL_S),
    history_lag=timedelta(seconds=0.6),
    poll_s=0.1,
    # Another run's submit on the wire (a shared first frame) is waited for this long, not
    # an hour: a run killed with one and resumed only later leaves the other uncertain.
    pending_limit=timedelta(seconds=20),
)
#: Retries as in production, minus most of the waiting.
RETRY = RetryPolicy(wait_initial_s=0.005, wait_max_s=0.02, timeout_s=10.0)
#: The mock's history lags (all below `SETTLE.history_lag`) and clock offsets drawn from.
HISTORY_LAGS = (0.0, 0.2, 0.45)
CLOCK_OFFSETS = (-150.0, 0.0, 150.0)
#: The pictures schedules draw from: the example frames and 15 synthetic ones (conftest).
SYNTHETIC = 15
POOL_NAMES = tuple(
    sorted(["dusk.png", "puddle.png", "river.png", "sea.jpg", "street.png"])
    + [f"syn{i:02d}.png" for i in range(SYNTHETIC)]
)
#: A schedule that takes longer than this has hung (a settle that never ends, say).
SCHEDULE_LIMIT_S = 180.0
#: The key the simulation's mock accepts: distinctive, so that an echo of it is found anywhere.
SIM_KEY = "wsk-sim-7c3e9a1f5b2d8046"
#: Other clients' bursts (hundreds to thousands of tasks) need a deep balance.
SIM_BALANCE_USD = Decimal(10_000_000)

Frame = Literal["first", "last"]
EditKind = Literal["prompt", "duration", "image", "last_image"]
#: How a storyboard's file is reached after its first kill: renamed in its folder, or
#: through a symlink beside it.
Relink = Literal["renamed", "symlink"]
When = Literal["before", "after"]
#: Where a run is killed: at its n-th backend call, before or after it acts; or (named
#: regressions) at its n-th call of one kind (``"submit"``, ``"download"``, ...).
Kill = tuple[int, When] | tuple[int, When, str]


# --------------------------------------------------------------------------- the schedule


@attrs.frozen(kw_only=True)
class ShotPlan:
    id: str
    #: A picture of the pool (a file name), or ("chain", shot id, frame).
    image: str | tuple[str, str, Frame]
    last_image: str | None = None
    duration: int = 5
    #: Renders of the shot (each a task of its own; the first is picked).
    takes: int = 1
    #: Added to the prompt: an edit of the prompt between runs.
    note: str = ""


@attrs.frozen(kw_only=True)
class Edit:
    """A change to one shot made between a killed run and its resume."""

    #: Applied after this run of the board (1 for the first), which was killed.
    after_run: int
    shot: str
    kind: EditKind
    #: The new prompt note, duration or picture.
    value: str | int
    #: For a new picture: the old one is deleted from the board's folder too (the user
    #: tidied up), so nothing on disk can prove the old picture's task any more.
    remove_old: bool = False


@attrs.frozen(kw_only=True)
class BoardPlan:
    name: str
    shots: tuple[ShotPlan, ...]
    concurrency: int
    #: None, or the budget: the plan's whole cost, or a little more.
    max_cost: Decimal | None
    retry_failed: int
    #: Each kills one run: (the backend call it trips on, before or after the call acts).
    kills: tuple[Kill, ...]
    #: Changes made between a killed run and the next (`Edit.after_run`).
    edits: tuple[Edit, ...] = ()

    @property
    def unit_total(self) -> Decimal:
        """What every take of every shot costs once."""
        return sum(
            (rules.takes_cost(MODEL, s.duration, s.takes) for s in self.shots), Decimal("0.000")
        )


@attrs.frozen(kw_only=True)
class Schedule:
    seed: int
    boards: tuple[BoardPlan, ...]
    #: Two storyboards rendered at once (asyncio.gather), else one after the other.
    together: bool
    fault_seed: int
    rules: tuple[FaultRule, ...]
    history_lag_s: float
    clock_offset_s: float
    processing_s: float
    #: The machine's clock minus true time, in seconds, per era: the first until the
    #: schedule's first kill, the next until its second, ... (empty: the true clock).
    clock_skews: tuple[float, ...] = ()
    #: Pictures the two storyboards share ("<picture>: b0s2 and b1s3"), for the description.
    shared: tuple[str, ...] = ()
    #: Steps of the machine's clock in the middle of a run: (board, its run, the backend
    #: call just answered, the new skew). Named regressions only (see `MachineClock`).
    clock_steps: tuple[tuple[str, int, int, float], ...] = ()
    #: The boards' runs one at a time in this order (a board name per run), before the rest
    #: (together or in turn). Named regressions only: a random schedule leaves it empty.
    interleave: tuple[str, ...] = ()
    #: How long a settle waits for a candidate still running or another run's like submit on
    #: the wire before leaving the shot uncertain (`SettleOptions.pending_limit`).
    pending_limit_s: float = SETTLE.pending_limit.total_seconds()
    #: How every storyboard killed at least once is reached from its first resume on:
    #: renamed in its folder, or through a symlink beside it (`relink_board`); None: by its
    #: own name throughout.
    relink: Relink | None = None

    def adversaries(self) -> list[str]:
        """Name the between-runs adversaries this schedule drew (for the tally)."""
        kinds = {str(r.kind) for r in self.rules}
        return [
            name
            for name, drawn in (
                ("busy history", "burst" in kinds),
                ("clock jump", len(set(self.clock_skews)) > 1),
                ("edit", any(b.edits for b in self.boards)),
                (
                    "hostile answers",
                    bool(kinds & {"hostile_id", "wrong_task", "echo_key"})
                    or any(r.echo_key for r in self.rules),
                ),
                ("shared frame", bool(self.shared)),
                ("renamed or linked shot list", self.relink is not None),
            )
            if drawn
        ]

    def describe(self) -> str:
        lines = [
            f"schedule seed={self.seed}: {len(self.boards)} storyboard(s), "
            f"{'together' if self.together else 'one after the other'}; "
            f"history_lag_s={self.history_lag_s} clock_offset_s={self.clock_offset_s} "
            f"processing_s={self.processing_s} fault_seed={self.fault_seed}",
        ]
        if self.pending_limit_s != SETTLE.pending_limit.total_seconds():
            lines.append(f"  pending_limit_s={self.pending_limit_s}")
        if self.clock_skews:
            lines.append(f"  machine clock skews by era (s): {list(self.clock_skews)}")
        lines.extend(
            f"  machine clock set to skew {skew} s after {board}'s run {run}, call {call}"
            for board, run, call, skew in self.clock_steps
        )
        if self.interleave:
            lines.append(f"  runs interleaved: {' '.join(self.interleave)}, then the rest")
        lines.extend(f"  shared picture {text}" for text in self.shared)
        if self.relink is not None:
            lines.append(f"  shot list {RELINKS[self.relink]} after each storyboard's first kill")
        for rule in self.rules:
            params = {
                "latency_s": rule.latency_s,
                "status": rule.status,
                "delay_s": rule.delay_s,
                "image": rule.image,
                "within_s": rule.within_s,
                "codes": rule.codes,
                "count": rule.count,
                "completed": rule.completed,
                "lost_only": rule.lost_only,
                "echo_key": rule.echo_key,
                "limit": rule.limit,
            }
            shown = {
                "gateway_error": ("status", "echo_key"),
                "server_error": ("status",),
                "late_create": ("delay_s",),
                "late_answer": ("delay_s",),
                "second_client": ("image", "within_s"),
                "task_failure": ("codes", "echo_key"),
                "burst": ("count", "within_s", "completed", "lost_only", "limit"),
                "echo_key": ("status",),
            }.get(str(rule.kind), ())
            extra = " ".join(f"{k}={params[k]}" for k in shown)
            routes = "+".join(sorted(rule.routes)) or "default"
            lines.append(f"  fault {rule.kind} rate={rule.rate} routes={routes} {extra}".rstrip())
        for b in self.boards:
            lines.append(
                f"  board {b.name}: concurrency={b.concurrency} max_cost={b.max_cost} "
                f"retry_failed={b.retry_failed} kills={list(b.kills)}"
            )
            for s in b.shots:
                last = f" last_image={s.last_image}" if s.last_image else ""
                takes = f" takes={s.takes}" if s.takes != 1 else ""
                lines.append(f"    {s.id}: image={s.image}{last} duration={s.duration}{takes}")
            lines.extend(
                f"    edit after run {e.after_run}: {e.shot} {e.kind} -> {e.value!r}"
                for e in b.edits
            )
        return "\n".join(lines)


def draw_schedule(seed: int, pool: list[str]) -> Schedule:
    """Draw every choice of a schedule from *seed* (and the pool's picture names)."""
    rng = random.Random(seed)
    n_boards = 2 if rng.random() < 0.7 else 1
    free = list(pool)
    rng.shuffle(free)
    boards = tuple(_draw_board(rng, f"b{i}", free) for i in range(n_boards))
    api = API_TOTAL_S
    act = SETTLE.act_window.total_seconds()
    rule_list: list[FaultRule] = []

    def maybe(kind: str, rates: tuple[float, ...], **params: Any) -> None:
        rate = rng.choice(rates)
        if rate:
            rule_list.append(FaultRule(kind=kind, rate=rate, **params))

    # Lost answers of every kind, on submits.
    maybe("drop_after", (0, 0.1, 0.2), routes=["submit"])
    maybe("gateway_error", (0, 0.1, 0.2), routes=["submit"], status=rng.choice((502, 503, 504)))
    maybe("late_create", (0, 0.1, 0.2), delay_s=round(rng.uniform(0.1, act - 0.2), 2))
    maybe(
        "late_answer",
        (0, 0.1, 0.2),
        routes=["submit"],
        delay_s=round(api + rng.uniform(0.2, 0.8), 2),
    )
    # Other clients on the account, with other pictures.
    maybe("second_client", (0, 0.3, 0.6), image="other", within_s=rng.choice((0.3, 1.0, 2.0)))
    # Submits that create nothing.
    maybe("drop_before", (0, 0, 0.1), routes=["submit"])
    maybe("server_error", (0, 0, 0.1), routes=["submit"])
    # Polls, downloads and history reads.
    maybe("server_error", (0, 0.05, 0.1), routes=["poll"], status=rng.choice((500, 503)))
    maybe("truncated_download", (0, 0.05, 0.1))
    maybe("server_error", (0, 0, 0.05), routes=["other"])
    # Tasks that fail on the server (refunded); some boards retry them.
    maybe("task_failure", (0, 0, 0.1), codes=(1403, 5000))
    schedule = Schedule(
        seed=seed,
        boards=tuple(_with_takes(board, random.Random(f"takes-{seed}")) for board in boards),
        together=n_boards == 2 and rng.random() < 0.6,
        fault_seed=rng.randrange(1 << 30),
        rules=tuple(rule_list),
        history_lag_s=rng.choice(HISTORY_LAGS),
        clock_offset_s=rng.choice(CLOCK_OFFSETS),
        processing_s=rng.choice((0.1, 0.3)),
    )
    # Everything above is drawn as it always was: an old seed draws its old schedule. The
    # adversaries between runs come from a stream of their own, and are added to it (their
    # fault rules after the old ones, whose random streams are seeded by position).
    schedule = _with_adversaries(schedule, random.Random(f"adversaries-{seed}"), pool)
    return attrs.evolve(schedule, relink=_draw_relink(schedule, random.Random(f"relink-{seed}")))


#: Clock jumps are drawn for schedules whose runs never overlap, so a jump falls between a
#: kill and its resume and in no other run: `SIM_CLOCK_MIDRUN=1` draws them for storyboards
#: rendered together too, where the other board's run sees the jump in its middle.
MIDRUN_CLOCKS = os.environ.get("SIM_CLOCK_MIDRUN") == "1"
#: How often a schedule draws each adversary between runs.
P_BUSY, P_CLOCK, P_EDIT, P_HOSTILE, P_SHARED, P_RELINK = 0.3, 0.4, 0.4, 0.35, 0.45, 0.35
#: The burst sizes drawn: with a window's other tasks, 3 to 25 pages of 100 and more.
BURST_COUNTS = (300, 900, 2100, 2500)
#: How far the machine's clock may be off, in seconds (up to ten minutes either way).
SKEWS = (-600.0, -420.0, -90.0, 75.0, 300.0, 600.0)
_LOST_KINDS = frozenset({"drop_after", "gateway_error", "late_create", "late_answer"})


def _with_adversaries(schedule: Schedule, adv: random.Random, pool: list[str]) -> Schedule:
    """Add the adversaries between runs, each drawn (or not) from *adv* in a fixed order."""
    rules = list(schedule.rules)
    kills = sum(len(b.kills) for b in schedule.boards)
    # 1. A busy account: another client's burst just after a lost submit's task, so the
    # window's history runs to dozens of pages and the lost task sits on the last of them.
    if adv.random() < P_BUSY:
        loses = any(str(r.kind) in _LOST_KINDS for r in rules)
        rules.append(
            FaultRule(
                kind="burst",
                rate=1.0 if loses else 0.5,
                lost_only=loses,
                limit=adv.choice((1, 2, 3)),
                count=adv.choice(BURST_COUNTS),
                within_s=adv.choice((0.01, 0.05, 0.2)),
                completed=adv.choice((0.0, 0.01, 0.02)),
            )
        )
    # 2. The machine's clock corrected between a kill and the resume, or put wrong.
    skews: tuple[float, ...] = ()
    if kills and adv.random() < P_CLOCK:
        pattern = adv.choice(("corrected", "wrong", "swing"))
        off = adv.choice(SKEWS)
        eras = kills + 1
        if pattern == "corrected":  # wrong in the killed run, right in the resume
            skews = (off,) + (0.0,) * (eras - 1)
        elif pattern == "wrong":  # right in the killed run, wrong from the resume on
            skews = (0.0,) + (off,) * (eras - 1)
        else:  # wrong one way, then the other, then right
            skews = ((off, -off) + (0.0,) * eras)[:eras]
        if schedule.together and not MIDRUN_CLOCKS:
            skews = ()
    # 3. Edits between a kill and the resume.
    used = {p for b in schedule.boards for s in b.shots for p in _pictures(s)}
    spare = [p for p in pool if p not in used]
    adv.shuffle(spare)
    boards = []
    for board in schedule.boards:
        if board.kills and adv.random() < P_EDIT:
            board = _with_edit(board, adv, spare)  # noqa: PLW2901 - the board, edited
        boards.append(board)
    # 4. Hostile answers.
    if adv.random() < P_HOSTILE:
        rules.extend(_hostile_rules(adv))
    # 5. A second shot list sharing a first frame (and sometimes the last) with the first.
    shared: tuple[str, ...] = ()
    if len(boards) == 2 and adv.random() < P_SHARED:
        boards[1], shared = _share_picture(boards[0], boards[1], adv)
    # 6. A renamed or linked shot list: `_draw_relink`, from a stream of its own (drawn
    # after these, so that every draw above stays as it was).
    return attrs.evolve(
        schedule,
        rules=tuple(rules),
        boards=tuple(boards),
        clock_skews=skews,
        shared=shared,
    )


def _draw_relink(schedule: Schedule, rng: random.Random) -> Relink | None:
    """Draw whether the storyboards are renamed or reached through a link after a kill.

    Only a schedule with a kill has a resume to reach them by another name.
    """
    if not any(b.kills for b in schedule.boards) or rng.random() >= P_RELINK:
        return None
    return rng.choice(("renamed", "symlink"))


def _pictures(shot: ShotPlan) -> Iterator[str]:
    if isinstance(shot.image, str):
        yield shot.image
    if shot.last_image is not None:
        yield shot.last_image


def _dependants(board: BoardPlan, shot_id: str) -> list[str]:
    """The shot and every shot chained from it, transitively."""
    found = [shot_id]
    for shot in board.shots:
        if isinstance(shot.image, tuple) and shot.image[1] in found and shot.id not in found:
            found.append(shot.id)
    return found


def _with_edit(board: BoardPlan, adv: random.Random, spare: list[str]) -> BoardPlan:
    """Draw one edit of one shot of *board*, made after one of its killed runs."""
    shot = adv.choice(board.shots)
    kinds: list[EditKind] = ["prompt", "duration"]
    if isinstance(shot.image, str) and spare:
        kinds.append("image")
    if shot.last_image is not None and spare:
        kinds.append("last_image")
    kind = adv.choice(kinds)
    value: str | int
    if kind == "prompt":
        value = ", now at dusk"
    elif kind == "duration":
        allowed = range(3, 11) if shot.last_image is not None else (5, 10)
        value = adv.choice([d for d in allowed if d != shot.duration])
    else:
        value = spare.pop()
    after = adv.randint(1, len(board.kills))
    return attrs.evolve(board, edits=(Edit(after_run=after, shot=shot.id, kind=kind, value=value),))


def apply_edit(board: BoardPlan, edit: Edit) -> BoardPlan:
    """Return *board* with *edit* made, its budget grown by what the edit may cost anew.

    The shots the edit touches (the shot and those chained from it) are rendered again: an
    exact budget grows by their new cost, so the resume's plan still fits.
    """
    shots = []
    for shot in board.shots:
        if shot.id == edit.shot:
            field = "note" if edit.kind == "prompt" else edit.kind
            shot = attrs.evolve(shot, **{field: edit.value})  # noqa: PLW2901 - the shot, edited
        shots.append(shot)
    edited = attrs.evolve(board, shots=tuple(shots))
    if board.max_cost is not None:
        anew = sum(
            (
                rules.takes_cost(MODEL, s.duration, s.takes)
                for s in edited.shots
                if s.id in _dependants(board, edit.shot)
            ),
            Decimal("0.000"),
        )
        edited = attrs.evolve(edited, max_cost=board.max_cost + anew)
    return edited


def _hostile_rules(adv: random.Random) -> list[FaultRule]:
    """One to three hostile kinds of answer, at low rates."""
    menu = [
        lambda: FaultRule(
            kind="hostile_id",
            rate=adv.choice((0.1, 0.2)),
            routes=adv.choice((["submit"], ["poll"], ["other"], [])),
        ),
        lambda: FaultRule(kind="wrong_task", rate=adv.choice((0.05, 0.15))),
        lambda: FaultRule(
            kind="echo_key",
            rate=0.1,
            routes=[adv.choice(("submit", "poll", "upload", "other"))],
            status=adv.choice((400, 500, 503)),
        ),
        lambda: FaultRule(kind="task_failure", rate=0.1, codes=(1403, 5000), echo_key=True),
        lambda: FaultRule(
            kind="gateway_error", rate=0.1, routes=["submit"], status=502, echo_key=True
        ),
    ]
    chosen = adv.sample(range(len(menu)), adv.randint(1, 3))
    return [menu[i]() for i in sorted(chosen)]


def _share_picture(
    first: BoardPlan, second: BoardPlan, adv: random.Random
) -> tuple[BoardPlan, tuple[str, ...]]:
    """Give a shot of *second* the first frame of a shot of *first* (sometimes its last too)."""
    givers = [s for s in first.shots if isinstance(s.image, str)]
    takers = [s for s in second.shots if isinstance(s.image, str)]
    if not givers or not takers:
        return second, ()
    giver, taker = adv.choice(givers), adv.choice(takers)
    assert isinstance(giver.image, str)
    changed = attrs.evolve(taker, image=giver.image)
    what = f"{giver.image}: first frame of {giver.id} and {taker.id}"
    if giver.last_image is not None and taker.last_image is not None and adv.random() < 0.5:
        changed = attrs.evolve(changed, last_image=giver.last_image)
        what += f", with its last frame {giver.last_image}"
    shots = tuple(changed if s.id == taker.id else s for s in second.shots)
    return attrs.evolve(second, shots=shots), (what,)


def _draw_board(rng: random.Random, name: str, free: list[str]) -> BoardPlan:
    count = rng.randint(2, 5)
    shots: list[ShotPlan] = []
    locals_: list[str] = []
    chain = count >= 3 and rng.random() < 0.8
    with_last = rng.random() < 0.7
    for i in range(count):
        sid = f"{name}s{i}"
        if i == 1 and chain:
            frame: Frame = "last"
            shots.append(ShotPlan(id=sid, image=("chain", shots[0].id, frame)))
            continue
        if i >= 2 and locals_ and rng.random() < 0.15:
            image = rng.choice(locals_)  # two shots on one picture: one proof key
        else:
            image = free.pop()
            locals_.append(image)
        if with_last and i == count - 1:
            shots.append(
                ShotPlan(id=sid, image=image, last_image=free.pop(), duration=rng.choice((3, 5)))
            )
        else:
            shots.append(ShotPlan(id=sid, image=image))
    # A run makes about 4 backend calls per shot (upload, submit, polls, download); a resumed
    # one fewer: most kill points fall early, some anywhere.
    kills = tuple(
        (
            rng.randint(1, 8) if rng.random() < 0.6 else rng.randint(1, 25),
            rng.choice(("before", "after")),
        )
        for _ in range(rng.choice((0, 1, 2, 2, 3, 4)))
    )
    board = BoardPlan(
        name=name,
        shots=tuple(shots),
        concurrency=rng.randint(1, 4),
        max_cost=None,
        retry_failed=rng.choice((0, 0, 1)),
        kills=kills,
    )
    cap = rng.choice((None, "exact", "loose"))
    if cap is not None:
        total = board.unit_total
        board = attrs.evolve(board, max_cost=total if cap == "exact" else total + Decimal("0.2"))
    return board


def _with_takes(board: BoardPlan, rng: random.Random) -> BoardPlan:
    """Give some shots 2 or 3 takes, drawn from an RNG of their own.

    Apart from the rest of the schedule, so the seeds draw the same faults, kills and
    pictures as before takes existed; a budget drawn for the board grows by what the takes
    add, so an "exact" budget stays exact.
    """
    shots = tuple(
        attrs.evolve(s, takes=rng.choice((2, 3))) if rng.random() < 0.35 else s for s in board.shots
    )
    before = board.unit_total
    evolved = attrs.evolve(board, shots=shots)
    if board.max_cost is not None:
        evolved = attrs.evolve(evolved, max_cost=board.max_cost + evolved.unit_total - before)
    return evolved


def write_board(board: BoardPlan, folder: Path, pool: Path, path: Path | None = None) -> Path:
    """Write the board's shot list and copy its pictures into *folder*; return its path.

    The shot list is written to *path* (its current name: renamed, or a link written
    through), by default ``<folder>/<board name>.toml``.
    """
    frames = folder / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    lines = ["version = 1", "", "[storyboard]", f'name = "{board.name}"']
    if board.max_cost is not None:
        lines.append(f"max_cost = {board.max_cost}")
    for shot in board.shots:
        lines += ["", "[[shots]]", f'id = "{shot.id}"']
        lines.append(
            f'prompt = "storyboard {board.name}, shot {shot.id}: the boat sails on{shot.note}"'
        )
        if isinstance(shot.image, tuple):
            _, source, frame = shot.image
            lines.append(f'image = {{ shot = "{source}", frame = "{frame}" }}')
        else:
            shutil.copyfile(pool / shot.image, frames / shot.image)
            lines.append(f'image = "frames/{shot.image}"')
        if shot.last_image is not None:
            shutil.copyfile(pool / shot.last_image, frames / shot.last_image)
            lines.append(f'last_image = "frames/{shot.last_image}"')
        lines.append(f"duration = {shot.duration}")
        if shot.takes != 1:
            lines.append(f"takes = {shot.takes}")
    path = path or folder / f"{board.name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mock_config(schedule: Schedule) -> MockConfig:
    """Tiny fast videos (2 fps, 192 px), the schedule's faults, lag and clock offset."""
    return MockConfig(
        api_key=SIM_KEY,
        balance_usd=SIM_BALANCE_USD,
        processing=RandomTime(
            mean_s=schedule.processing_s, jitter_s=schedule.processing_s / 2, seed=schedule.seed
        ),
        faults=FaultConfig(seed=schedule.fault_seed, rules=schedule.rules),
        fps=2,
        max_side_px=192,
        history_lag_s=schedule.history_lag_s,
        clock_offset_s=schedule.clock_offset_s,
    )


# --------------------------------------------------------------------------- kills


class KillableBackend:
    """The real client, where the k-th backend call kills the process (before or after it acts).

    Every call is an await point of the client. "before": the call never leaves. "after": it
    reaches the server and acts (a submit creates its task), and its answer dies with the
    process. Either way the kill also cancels every call of this process still on the wire,
    and every later call raises `Killed` without touching the network.
    """

    def __init__(
        self,
        inner: WaveSpeedClient,
        switch: KillSwitch,
        kill: Kill | None,
        on_answered: Callable[[int], None] = lambda _call: None,
    ) -> None:
        self._inner = inner
        self._switch = switch
        self._kill = kill
        #: Told the number of each call that answered, as its answer is handed over.
        self._on_answered = on_answered
        self.calls = 0
        self.by_name: Counter[str] = Counter()
        self.tripped = ""
        #: History reads made before this client knew the server's clock (nothing may be
        #: concluded from them: the simulation counts them to show the case is exercised).
        self.blind_reads = 0
        #: History pages asked for beyond the 20th (a busy window), and the deepest page.
        self.deep_reads = 0
        self.deepest = 0

    @property
    def base_url(self) -> str:
        return self._inner.base_url

    @property
    def origin(self) -> str:
        return self._inner.origin

    @property
    def clock_offset(self) -> timedelta | None:
        return self._inner.clock_offset

    def _trips(self, name: str) -> bool:
        """Whether this call (just counted) is the one the kill falls on."""
        if self._kill is None:
            return False
        at, *_, kind = self._kill
        if kind in ("before", "after"):  # (n, when): the n-th call of any kind
            return self.calls == at
        return name == kind and self.by_name[name] == at

    async def _call(self, name: str, coro: Any) -> Any:
        if self._switch.killed:
            coro.close()
            raise Killed
        self.calls += 1
        self.by_name[name] += 1
        number = self.calls
        trip = self._trips(name)
        if trip and self._kill is not None and self._kill[1] == "before":
            coro.close()
            self.tripped = f"killed before call {self.calls} ({name})"
            self._switch.kill()
            raise Killed
        task = asyncio.ensure_future(coro)
        self._switch.track(task)
        try:
            result = await task
        except asyncio.CancelledError:
            if self._switch.killed:
                raise Killed from None
            raise
        finally:
            self._switch.untrack(task)
        if self._switch.killed:
            raise Killed
        if trip:
            self.tripped = f"killed after call {self.calls} ({name})"
            self._switch.kill()
            raise Killed
        self._on_answered(number)
        return result

    async def upload_image(self, path: Path) -> str:
        return await self._call("upload_image", self._inner.upload_image(path))

    async def submit(self, request: SubmitRequest) -> Prediction:
        return await self._call("submit", self._inner.submit(request))

    async def get_prediction(self, task_id: str) -> Prediction:
        return await self._call("get_prediction", self._inner.get_prediction(task_id))

    async def list_predictions(self, **filters: Any) -> list[Prediction]:
        if self._inner.clock_offset is None:
            self.blind_reads += 1
        page = int(filters.get("page", 1))
        self.deepest = max(self.deepest, page)
        self.deep_reads += page == 21  # the first page a read that stopped at 20 misses
        return await self._call("list_predictions", self._inner.list_predictions(**filters))

    async def download(self, url: str, dest: Path) -> Download:
        return await self._call("download", self._inner.download(url, dest))


# --------------------------------------------------------------------------- running


@attrs.define
class MachineClock:
    """The machine's wall clock: true time plus the skew in force.

    The skew changes at each kill in the schedule (whichever board's), to the next era's
    (`Schedule.clock_skews`), as if the clock had been corrected (or put wrong) while the
    killed run was down; and at a given backend call of a given run (`Schedule.clock_steps`),
    a step in the middle of a run. Every run reads it live, as processes on one machine do.
    The mock keeps true time; monotonic clocks do not jump.
    """

    skews: tuple[float, ...] = ()
    steps: tuple[tuple[str, int, int, float], ...] = ()
    era: int = 0
    skew: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.skew = self.skews[0] if self.skews else 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skew)

    def jump(self) -> None:
        """A kill happened: the next era's skew is in force."""
        self.era += 1
        if self.skews:
            self.skew = self.skews[min(self.era, len(self.skews) - 1)]

    def after_call(self, board: str, run: int, call: int) -> None:
        """The board's run had its *call*-th backend call answered: step if one is due."""
        for at_board, at_run, at_call, skew in self.steps:
            if (at_board, at_run, at_call) == (board, run, call):
                self.skew = skew


@attrs.define
class BoardRun:
    plan: BoardPlan
    path: Path
    shotlist: ShotList
    result: RunResult | None = None
    runs: int = 0
    blind_reads: int = 0
    deep_reads: int = 0
    deepest: int = 0
    events: list[str] = attrs.Factory(list)
    #: Pictures an edit deleted from the board's folder, and their sha256 (for the checks).
    removed: dict[str, str] = attrs.Factory(dict)
    #: Every version of the shot list rendered (edits add one), oldest first, and its plan.
    versions: list[ShotList] = attrs.Factory(list)
    plans: list[BoardPlan] = attrs.Factory(list)
    #: What the shots an edit touched cost in their earlier versions (paid, maybe).
    edited_cost: Decimal = Decimal("0.000")
    #: The faults the mock injected in the whole schedule, by kind (set at its end).
    faults: dict[str, int] = attrs.Factory(dict)
    #: The records as they were when the shot list was renamed or linked (`relink_board`).
    relinked: Relinked | None = None

    def __attrs_post_init__(self) -> None:
        if not self.versions:
            self.versions.append(self.shotlist)
            self.plans.append(self.plan)


def make_edit(run: BoardRun, edit: Edit, pool: Path) -> None:
    """Edit the board's shot list between two runs (a user at work while it was down)."""
    before = run.plan
    touched = set(_dependants(before, edit.shot))
    run.edited_cost += sum(
        (rules.takes_cost(MODEL, s.duration, s.takes) for s in before.shots if s.id in touched),
        Decimal("0.000"),
    )
    run.plan = apply_edit(before, edit)
    write_board(run.plan, run.path.parent, pool, run.path)
    if edit.remove_old:
        (old,) = (getattr(x, edit.kind) for x in before.shots if x.id == edit.shot)
        if isinstance(old, str) and all(old not in _pictures(x) for x in run.plan.shots):
            gone = run.path.parent / "frames" / old
            run.removed[old] = _files.sha256_file(gone)
            gone.unlink()
    run.shotlist = load(run.path)
    run.versions.append(run.shotlist)
    run.plans.append(run.plan)
    run.events.append(f"edit: {edit.shot} {edit.kind} -> {edit.value!r}")


#: The name a storyboard's file is reached by after its first kill, and how it is described.
RELINKS: dict[Relink, str] = {
    "renamed": "renamed in its folder (<board>.toml -> <board>-renamed.toml, nothing else moved)",
    "symlink": "reached through a symlink beside it (<board>-current.toml -> <board>.toml)",
}


@attrs.frozen(kw_only=True)
class Relinked:
    """A storyboard's records as they were when its file was renamed or linked.

    The checks of its last run prove the records were found under the new name: every
    attempt recorded before is still there, with its task, and every take downloaded before
    (and not edited since) is cached, holding the same task.
    """

    how: Relink
    #: The file's name before, and the file the new name leads to.
    before: Path
    target: Path
    attempts: tuple[Attempt, ...]
    #: Unit key (``b0s0``, ``b0s0#2``) -> the task of its latest downloaded attempt.
    downloaded: dict[str, str]


def relink_board(run: BoardRun, how: Relink) -> None:
    """Rename the board's shot list, or make a symlink to it, and load it by that name.

    Renamed as ``git mv film.toml movie.toml`` does, and nothing else: the README's way, the
    next run finds its records by the output folder's owner marker and moves them. A link is
    relative (``ln -s b0.toml b0-current.toml``); the records stay the target's.
    """
    before = run.path
    state = state_dir_for(before)
    attempts: tuple[Attempt, ...] = ()
    if (state / "state.sqlite").is_file():
        with Store.open(state) as store:
            attempts = tuple(store.attempts())
    downloaded = {a.shot_id: a.task_id for a in attempts if a.state == "downloaded" and a.task_id}
    if how == "renamed":
        path = before.with_name(f"{before.stem}-renamed.toml")
        before.rename(path)
        target = path
    else:
        path = before.with_name(f"{before.stem}-current.toml")
        path.symlink_to(before.name)
        target = before
    run.relinked = Relinked(
        how=how, before=before, target=target, attempts=attempts, downloaded=downloaded
    )
    run.path = path
    run.shotlist = load(path)
    run.events.append(f"relink: {how}, now {path.name}")


@attrs.define
class BoardProcess:
    """The runs of one board, one after the other: each a process, killed or not."""

    run: BoardRun
    mock: MockServer
    clock: MachineClock
    pool: Path
    settle: SettleOptions = SETTLE
    #: How the shot list is reached from the first resume on (`Schedule.relink`).
    relink: Relink | None = None
    switch: KillSwitch = attrs.Factory(KillSwitch)
    pending: list[Kill] = attrs.Factory(list)
    finished: bool = False

    def __attrs_post_init__(self) -> None:
        self.pending = list(self.run.plan.kills)

    async def next_run(self) -> None:
        """Make the board's next run: killed at its kill point (then edits), or its last."""
        run = self.run
        kill = self.pending.pop(0) if self.pending else None
        self.switch.revive()
        run.runs += 1
        number = run.runs
        async with aiohttp.ClientSession() as session:
            client = WaveSpeedClient(
                session=session,
                base_url=self.mock.base_url,
                api_key=self.mock.api_key,
                retry=RETRY,
                timeouts=Timeouts(api_total_s=API_TOTAL_S),
                clock=self.clock.now,
            )
            backend = KillableBackend(
                client,
                self.switch,
                kill,
                on_answered=lambda call: self.clock.after_call(run.plan.name, number, call),
            )
            try:
                with running_as(self.switch):
                    result = await render(
                        run.path,
                        backend=backend,
                        options=attrs.evolve(
                            RunOptions(
                                concurrency=run.plan.concurrency,
                                settle=self.settle,
                                retry_failed=run.plan.retry_failed,
                            ),
                            report=False,
                        ),
                        timing=Timing(now=self.clock.now),
                    )
            except BaseException:
                if not self.switch.killed:
                    raise
                run.events.append(f"run {number}: {backend.tripped}")
                self.clock.jump()
                if self.relink is not None and run.relinked is None:
                    relink_board(run, self.relink)
                for edit in run.plan.edits:
                    if edit.after_run == number:
                        make_edit(run, edit, self.pool)
                return
            finally:
                run.blind_reads += backend.blind_reads
                run.deep_reads += backend.deep_reads
                run.deepest = max(run.deepest, backend.deepest)
        states = Counter(s.state for s in result.shots)
        run.events.append(
            f"run {number}: ended after {backend.calls} calls"
            + (f" (kill at {kill} not reached)" if kill else "")
            + f": {dict(states)}"
        )
        if kill is None:
            run.result = result
            self.finished = True

    async def to_the_end(self) -> None:
        """Make every run of the board."""
        while not self.finished:
            await self.next_run()


async def run_boards(schedule: Schedule, processes: list[BoardProcess]) -> None:
    """Make every board's runs: together, one board after the other, or interleaved."""
    if schedule.interleave:
        by_name = {p.run.plan.name: p for p in processes}
        for name in schedule.interleave:
            if not by_name[name].finished:
                await by_name[name].next_run()
    if schedule.together:
        await asyncio.gather(*(p.to_the_end() for p in processes))
    else:
        for process in processes:
            await process.to_the_end()


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


async def run_schedule(schedule: Schedule, folder: Path, pool: Path) -> list[BoardRun]:
    """Run every board of the schedule against one mock; check the invariants; return runs.

    A failing schedule raises AssertionError naming everything drawn.
    """
    runs = []
    for board in schedule.boards:
        path = write_board(board, folder / board.name, pool)
        runs.append(BoardRun(plan=board, path=path, shotlist=load(path)))
    clock = MachineClock(schedule.clock_skews, schedule.clock_steps)
    # The session's temporary folder (its parent is shared with other sessions).
    around = (folder.parent,)
    listed = [_listing(f) for f in around]
    async with MockServer(mock_config(schedule)) as mock:
        try:
            async with asyncio.timeout(SCHEDULE_LIMIT_S):
                with kills_stop_writes():
                    settle = attrs.evolve(
                        SETTLE, pending_limit=timedelta(seconds=schedule.pending_limit_s)
                    )
                    processes = [
                        BoardProcess(
                            run=r,
                            mock=mock,
                            clock=clock,
                            pool=pool,
                            settle=settle,
                            relink=schedule.relink,
                        )
                        for r in runs
                    ]
                    await run_boards(schedule, processes)
            facts = await gather_facts(mock, runs)
            check_schedule(runs, mock, schedule, facts)
            check_files(runs, folder, pool)
            for where, before in zip(around, listed, strict=True):
                assert _listing(where) == before, ("a run wrote beside its folder", where)
            tally(runs, mock, schedule)
            for run in runs:
                run.faults = dict(mock.stats()["faults"])
        except BaseException as exc:
            events = "\n".join(f"  {r.plan.name} {e}" for r in runs for e in r.events)
            summary = "\n".join(
                f"  {r.plan.name} {s.id}: {s.state} task={s.task_id} {s.error[:300]}"
                for r in runs
                if r.result is not None
                for s in r.result.shots
            )
            tasks = "\n".join(
                f"  {t['id']} {t['created_by']} {t['status']} answer={t['answer']} "
                f"prompt={t['input'].get('prompt', '')[:60]!r} "
                f"duration={t['input'].get('duration')}"
                for t in mock.tasks()
                if t["created_by"] != "burst"
            )
            note = (
                f"\n{schedule.describe()}\nevents:\n{events}\nlast results:\n{summary}\n"
                f"mock tasks (bursts left out):\n{tasks}"
            )
            if isinstance(exc, AssertionError):
                raise type(exc)(f"{exc}\n{note}") from exc
            print(note)
            raise
    return runs


# --------------------------------------------------------------------------- the invariants

_TASK_ID = re.compile(r"\b[0-9a-f]{32}\b")
_UPLOAD_URL = re.compile(r"/media/uploads/([0-9a-f]{32})(?:/|$)")
#: What an input is, as far as money goes: (prompt, first frame, last frame, duration), a
#: frame as its picture's sha256 (or its URL), a chain's frame as ``chain``. Two tasks of
#: one identity are the same input paid for twice (a chained shot's: see `BoardCheck`).
Identity = tuple[str, str | None, str | None, int]
CHAIN = "chain"


@attrs.frozen(kw_only=True)
class Facts:
    """What the mock knows beyond its tasks: the pictures uploaded and the videos made."""

    #: Upload id -> sha256 of the bytes uploaded there, and where they are.
    uploads: dict[str, str]
    files: dict[str, Path]
    #: Task id -> sha256 of its video, for the tasks some shot ended holding.
    videos: dict[str, str]

    def _upload(self, url: object) -> str | None:
        match = _UPLOAD_URL.search(url) if isinstance(url, str) else None
        return match.group(1) if match else None

    def picture(self, url: object) -> str | None:
        """The sha256 behind an image URL of a task, or the URL itself if it is not an upload."""
        if not isinstance(url, str):
            return None
        upload = self._upload(url)
        return url if upload is None else self.uploads.get(upload, url)

    def file(self, url: object) -> Path | None:
        """The uploaded file behind an image URL of a task, if it is an upload."""
        upload = self._upload(url)
        return None if upload is None else self.files.get(upload)

    def identity(self, task: dict[str, Any], *, chained: bool) -> Identity:
        given = task["input"]
        return (
            given["prompt"],
            CHAIN if chained else self.picture(given.get("image")),
            self.picture(given.get("last_image")),
            int(given.get("duration", 5)),
        )


async def gather_facts(mock: MockServer, runs: list[BoardRun]) -> Facts:
    """Hash every upload, and the video of every task a shot ended holding."""
    state = mock.state
    files = {
        upload_id: state.storage.upload_path(upload_id)
        for upload_id, upload in state.uploads.items()
        if upload.complete
    }
    uploads = {upload_id: _files.sha256_file(path) for upload_id, path in files.items()}
    videos = {}
    for run in runs:
        assert run.result is not None
        for s in run.result.shots:
            task = state.book.get(s.task_id) if s.task_id else None
            if s.state in ("done", "cached") and task is not None and task.status == "completed":
                videos[task.id] = _files.sha256_file(await state.output_path(task))
    return Facts(uploads=uploads, files=files, videos=videos)


def _net_by_task(mock: MockServer) -> dict[str, Decimal]:
    """Charges minus refunds per task (a charge is a negative amount in the ledger)."""
    net: dict[str, Decimal] = defaultdict(lambda: Decimal("0.000"))
    for entry in mock.ledger()["entries"]:
        net[entry["task_id"]] -= Decimal(entry["amount_usd"])
    return net


def check_schedule(
    runs: list[BoardRun], mock: MockServer, schedule: Schedule, facts: Facts
) -> None:
    """Assert every invariant of the submit protocol for the schedule's last runs."""
    tasks = [t for t in mock.tasks() if t["created_by"] != "burst"]
    by_id = {t["id"]: t for t in tasks}
    net = _net_by_task(mock)
    task_failures = any(str(r.kind) == "task_failure" for r in schedule.rules)
    all_prompts: dict[str, str] = {}
    taken: dict[str, str] = {}
    for run in runs:
        assert run.result is not None
        for version in run.versions:
            for shot in version.shots:
                all_prompts[shot.final_prompt] = f"{run.plan.name}/{shot.id}"
    # Our requests never made a task for a prompt that is no shot's (in any version).
    for task in tasks:
        if task["created_by"] == "request":
            assert task["input"]["prompt"] in all_prompts, ("a stray task", task)
    for run in runs:
        BoardCheck(
            run,
            by_id,
            net,
            facts,
            task_failures=task_failures,
            taken=taken,
            section=section_for(mock.base_url),
        ).check()
    # The account as a whole: no more than the budgets (and the earlier versions of edited
    # shots), plus what other clients spent.
    ours = sum((net[t["id"]] for t in tasks if t["created_by"] == "request"), Decimal("0.000"))
    budget = sum(
        (r.edited_cost + (r.plan.max_cost or r.plan.unit_total) for r in runs), Decimal("0.000")
    )
    assert ours <= budget, ("the account spent more than the budgets", ours, budget)
    # The key never reaches a file of the runs, the user's registry, or a result.
    for run in runs:
        assert run.result is not None
        text = json.dumps(run.result.as_json())
        assert not key_in(text), (run.plan.name, "the API key is in the run's result")


@attrs.define(slots=False)
class BoardCheck:
    """The invariants of one storyboard's last run, against the mock and its records."""

    run: BoardRun
    by_id: dict[str, dict[str, Any]]
    net: dict[str, Decimal]
    facts: Facts
    task_failures: bool
    taken: dict[str, str]
    section: str

    def check(self) -> None:
        run = self.run
        result, shotlist = run.result, run.shotlist
        assert result is not None
        #: Every prompt any version of the board had -> its shot.
        self.prompts = {s.final_prompt: s.id for v in run.versions for s in v.shots}
        self.ours = [
            t
            for t in self.by_id.values()
            if t["created_by"] == "request" and t["input"]["prompt"] in self.prompts
        ]
        with Store.open(state_dir_for(shotlist.source)) as store:
            self.spent = store.spent()
            self.recorded = {t for _, t in store.task_owners()}
            self.attempts = store.attempts()
        #: Tasks an uncertain attempt of any version named as candidates.
        self.named = {
            t for a in self.attempts if a.state == "uncertain" for t in _TASK_ID.findall(a.error)
        }
        self.now = {s.id: self.identity_in(run.plan, s.id) for s in shotlist.shots}
        for s in shotlist.shots:
            assert self.now[s.id][0] == s.final_prompt, (
                s.id,
                "the plan's prompt is not the shot's",
            )
        self.states()
        self.holdings()
        self.payments()
        self.money()
        self.lock()
        self.records_found()

    def where(self, shot_id: str) -> str:
        return f"{self.run.plan.name}/{shot_id}"

    def chained(self, shot_id: str) -> bool:
        return isinstance(self.plan_of(shot_id).image, tuple)

    def plan_of(self, shot_id: str, plan: BoardPlan | None = None) -> ShotPlan:
        return next(s for s in (plan or self.run.plan).shots if s.id == shot_id)

    def task_identity(self, task: dict[str, Any]) -> Identity:
        shot_id = self.prompts[task["input"]["prompt"]]
        return self.facts.identity(task, chained=self.chained(shot_id))

    def _picture(self, name: str) -> str:
        if name in self.run.removed:  # deleted by an edit (`Edit.remove_old`)
            return self.run.removed[name]
        return _files.sha256_file(self.run.path.parent / "frames" / name)

    def identity_in(self, plan: BoardPlan, shot_id: str, *, deep: bool = False) -> Any:
        """What a task made for the shot in *plan*'s version is made from.

        A chain's frame is ``chain``; with *deep*, it is its source's identity (recursively)
        and end instead: what tells a chain of an edited source from the chain before it.
        """
        shot = self.plan_of(shot_id, plan)
        prompt = f"storyboard {plan.name}, shot {shot.id}: the boat sails on{shot.note}"
        first: Any
        if isinstance(shot.image, tuple):
            _, source, frame = shot.image
            first = (self.identity_in(plan, source, deep=True), frame) if deep else CHAIN
        else:
            first = self._picture(shot.image)
        last = None if shot.last_image is None else self._picture(shot.last_image)
        return (prompt, first, last, shot.duration)

    def made_now(self, shot_id: str) -> list[dict[str, Any]]:
        """Tasks our requests made from the shot's inputs as they are now."""
        return [t for t in self.ours if self.task_identity(t) == self.now[shot_id]]

    def states(self) -> None:
        """Every take ended done/cached, failed with a reason, or uncertain naming candidates
        (or skipped, with a reason: chained from a shot that has no video)."""
        result, shotlist = self.run.result, self.run.shotlist
        assert result is not None
        listed_by_shot: dict[str, set[str]] = defaultdict(set)
        for s in result.shots:
            where = self.where(s.id)
            assert s.state in ("done", "cached", "failed", "uncertain", "skipped"), (
                where,
                s.state,
                s.error,
            )
            if s.state in ("failed", "skipped"):
                assert s.error.strip(), (where, f"{s.state} without a reason")
            if s.state == "skipped":
                source = shotlist.shot(s.shot_id).chained_from
                states = {r.id: r.state for r in result.shots}  # a source's take 1 is picked
                assert any(states[x] not in ("done", "cached") for x in source), (where, s.error)
            if s.state == "uncertain":
                listed = set(_TASK_ID.findall(s.error))
                assert listed, (where, "uncertain without candidates", s.error)
                assert listed <= set(self.by_id), (where, "uncertain names unknown tasks", s.error)
                self.named |= listed
                listed_by_shot[s.shot_id] |= listed
        # Its own requests' tasks (from its inputs as they are now), if one exists and nobody
        # took it, must be named by one of the shot's uncertain takes.
        for shot_id, listed in listed_by_shot.items():
            own = [
                t["id"]
                for t in self.made_now(shot_id)
                if t["status"] != "failed" and t["id"] not in self.recorded
            ]
            assert set(own) <= listed, (
                self.where(shot_id),
                "its own task is not among the candidates",
                own,
            )

    def holdings(self) -> None:
        """A done/cached take holds a task made by a request from the shot's inputs as they
        are now (never an earlier version's), no other take holds it, and its file is that
        task's video."""
        result = self.run.result
        assert result is not None
        for s in result.shots:
            if s.state not in ("done", "cached"):
                continue
            where = self.where(s.id)
            assert s.task_id is not None, (where, "done without a task")
            task = self.by_id.get(s.task_id)
            assert task is not None, (where, "its task is unknown to the server", s.task_id)
            assert task["created_by"] == "request", (where, "took another client's task", task)
            expected = self.run.shotlist.shot(s.shot_id).final_prompt
            assert task["input"]["prompt"] == expected, (where, "took another shot's task", task)
            made_from = self.task_identity(task)
            assert made_from == self.now[s.shot_id], (
                where,
                "holds a task made from other inputs (an earlier version?)",
                made_from,
                self.now[s.shot_id],
            )
            if self.chained(s.shot_id):
                self.same_chain_frame(s.shot_id, task)
            assert s.task_id not in self.taken, (
                where,
                "shares its task with",
                self.taken[s.task_id],
            )
            self.taken[s.task_id] = where
            assert s.file is not None, (where, "done without a file")
            video = self.facts.videos.get(s.task_id)
            assert s.sha256 == _files.sha256_file(s.file) == video, (
                where,
                "its file is not its task's video",
                s.file,
            )

    def same_chain_frame(self, shot_id: str, task: dict[str, Any]) -> None:
        """A chained shot's task was made from the frame its source's video has now.

        Compared as pictures: the PNG of one frame may be encoded from two decodes of it.
        """
        from kling_pipe._decisions import proof  # noqa: PLC0415 - numpy, only when needed
        from kling_pipe._outputs import media  # noqa: PLC0415 - likewise

        _, source, frame = self.plan_of(shot_id).image  # type: ignore[misc]
        # The simulated WaveSpeed is a server on loopback: its renders are a local server's.
        folder = OutputLayout.of(self.run.shotlist, LOCAL_ORIGIN).folder
        on_disk = folder / "frames" / f"{source}.{frame}.png"
        sent = self.facts.file(task["input"]["image"])
        assert sent is not None, (self.where(shot_id), "its chain frame was not uploaded", task)
        verdict = proof.compare(media.load_picture(on_disk), media.load_picture(sent))
        assert verdict != "mismatch", (
            self.where(shot_id),
            "holds a task made from another frame than its source's video has",
            task["id"],
        )

    def payments(self) -> None:
        """No input paid for twice: one task not refunded per take and identity at most;
        and every task our requests made (and not refunded) is known to the records.

        A chained shot's tasks cannot tell which version of its source made their frame: it
        may have one per take and version of its source among the board's versions.
        """
        versions: dict[Identity, set[Any]] = defaultdict(set)
        for plan in self.run.plans:
            for shot in plan.shots:
                versions[self.identity_in(plan, shot.id)].add(
                    self.identity_in(plan, shot.id, deep=True)
                )
        per_input: dict[Identity, list[dict[str, Any]]] = defaultdict(list)
        for t in self.ours:
            per_input[self.task_identity(t)].append(t)
        for identity, made in per_input.items():
            sid = self.prompts[identity[0]]
            takes = self.run.shotlist.shot(sid).takes * max(1, len(versions[identity]))
            alive = [t["id"] for t in made if t["status"] != "failed"]
            assert len(alive) <= takes, (self.where(sid), "paid twice", alive, identity)
            if not self.task_failures:
                submitted = [t["id"] for t in made]
                assert len(made) <= takes, (self.where(sid), "submitted twice", submitted)
        for t in self.ours:
            if t["status"] != "failed":
                assert t["id"] in self.recorded | self.named, (
                    self.run.plan.name,
                    "a paid task nobody knows",
                    t,
                )

    def money(self) -> None:
        """Within the budget (and the earlier versions of edited shots); never under-reported."""
        run = self.run
        board_net = sum((self.net[t["id"]] for t in self.ours), Decimal("0.000"))
        budget = run.plan.max_cost if run.plan.max_cost is not None else run.plan.unit_total
        budget += run.edited_cost
        name = run.plan.name
        assert board_net <= budget, (name, "spent over the budget", board_net, budget)
        assert self.spent >= board_net, (name, "spend under-reported", self.spent, board_net)
        # Equal when every attempt's fate is known: an intent left unsettled, a task last
        # seen running (a poll answered with another task, say) or an uncertain one is
        # counted as paid by the records, whatever the server did with it.
        if not any(a.state in ("intent", "submitted", "uncertain") for a in self.attempts):
            assert self.spent == board_net, (name, "recorded spend differs from the ledger")

    def lock(self) -> None:
        """The last run's result agrees with the lock file; nothing is left half-written."""
        result, shotlist, name = self.run.result, self.run.shotlist, self.run.plan.name
        assert result is not None
        lock = read_lock(lock_path_for(shotlist.source))
        assert lock is not None, (name, "no lock file")
        assert set(lock[self.section]) == {s.shot_id for s in result.shots}
        for s in result.shots:
            entry = lock[self.section][s.shot_id]
            if "takes" in entry:  # a shot of several takes: each take has its own entry
                assert entry["pick"] == 1, (name, s.shot_id, "picked without a pick")
                entry = entry["takes"][s.take - 1]
                assert entry["take"] == s.take
            where = self.where(s.id)
            if s.state in ("done", "cached"):
                assert entry["status"] == "downloaded", (where, entry)
                assert entry["task_id"] == s.task_id, (where, entry, s.task_id)
                path = shotlist.base_dir / entry["file"]
                assert s.file is not None
                assert path == s.file, (where, entry, s.file)
                assert entry["sha256"] == _files.sha256_file(path) == s.sha256, (where, entry)
            else:
                assert entry["status"] != "downloaded", (where, entry)
                if s.state == "uncertain":
                    assert entry["status"] == "uncertain", (where, entry)
        leftovers = list(shotlist.output_path.rglob("*.part"))
        assert not leftovers, (name, "half-written files", leftovers)

    def records_found(self) -> None:
        """A renamed or linked shot list's records are the ones kept before, found again.

        Every attempt recorded before the rename or link is in the records of the name the
        last run reached (same shot, inputs and task), every take downloaded before and not
        edited since is cached with the same task, and nothing is left at the old name (a
        rename) or made beside the link (checked by `check_files` too). Lost records would
        show as paid twice too (`payments`), unless the resume found nothing to render.
        """
        run, kept = self.run, self.run.relinked
        if kept is None:
            return
        name = run.plan.name
        source = run.shotlist.source
        assert Path(os.path.realpath(source)) == Path(os.path.realpath(kept.target)), (
            name,
            "the shot list is not the file its name leads to",
            source,
            kept.target,
        )
        now = {a.id: a for a in self.attempts}
        for a in kept.attempts:
            found = now.get(a.id)
            assert found is not None, (name, f"{kept.how}: an attempt recorded before is lost", a)
            changed = (name, f"{kept.how}: an attempt recorded before changed", a, found)
            same = (found.shot_id, found.fingerprint, found.inputs) == (
                a.shot_id,
                a.fingerprint,
                a.inputs,
            )
            assert same, changed
            assert a.task_id in (None, found.task_id), changed
        edited = {s for e in run.plan.edits for s in _dependants(run.plans[0], e.shot)}
        states = {s.id: s for s in run.result.shots} if run.result else {}
        for unit, task_id in kept.downloaded.items():
            if unit.split("#")[0] in edited:
                continue
            s = states[unit]
            assert (s.state, s.task_id) == ("cached", task_id), (
                self.where(unit),
                f"{kept.how}: downloaded before, not cached with its task after",
                s.state,
                s.task_id,
                task_id,
            )
        # Nothing in the registry under the name left behind (renamed), or under the link's.
        gone = kept.before.resolve() if kept.how == "renamed" else run.path.absolute()
        claims, wires = registry_names(str(gone))
        assert not claims, (name, f"{kept.how}: the registry names {gone.name}", claims)
        assert not wires, (name, f"{kept.how}: on the wire as {gone.name}", wires)
        if kept.how == "renamed":
            old_state, old_lock = state_dir_for(kept.before), lock_path_for(kept.before)
            assert not old_state.exists(), (name, "records left at the old name", old_state)
            assert not old_lock.exists(), (name, "a lock file left at the old name", old_lock)
            assert not kept.before.exists(), (name, "the old name came back", kept.before)


def registry_names(storyboard: str) -> tuple[list[str], list[str]]:
    """What the user's task registry still keeps under *storyboard* (a resolved path).

    Its claims (``<storyboard>#<shot>``) and its submits on the wire: once a storyboard is
    renamed, every one must have moved to the new name, or the resume takes its own submit
    for another shot list's. Read straight from the file, read-only, as a user would look.
    """
    registry = os.environ.get("KLING_PIPE_REGISTRY")
    if not registry or not Path(registry).is_file():
        return [], []
    with contextlib.closing(sqlite3.connect(f"file:{registry}?mode=ro", uri=True)) as db:
        claims = db.execute(
            "SELECT task_id, owner FROM tasks WHERE substr(owner, 1, ?) = ?",
            (len(storyboard) + 1, f"{storyboard}#"),
        ).fetchall()
        wires = db.execute(
            "SELECT attempt FROM wire WHERE storyboard = ?", (storyboard,)
        ).fetchall()
    return [f"claim {t} by {o}" for t, o in claims], [f"attempt {a}" for (a,) in wires]


def _key_pattern(key: str) -> re.Pattern[bytes]:
    """The key as a file may hold it: any letter case, any character percent-encoded or
    escaped, split by whitespace, control characters or their JSON escapes."""
    gap = rb"(?:\s|[\x00-\x1f]|\\[rnt0]|\\u00[0-9a-f]{2}|\\x[0-9a-f]{2}|%0[9ad]|%20)*"
    parts = [b"(?:" + re.escape(c.encode()) + b"|%" + f"{ord(c):02x}".encode() + b")" for c in key]
    return re.compile(gap.join(parts), re.IGNORECASE)


_KEY = _key_pattern(SIM_KEY)


def key_in(text: str | bytes) -> bool:
    """Whether *text* holds the simulation's API key, in any disguise the mock echoes."""
    data = text.encode() if isinstance(text, str) else text
    return _KEY.search(data) is not None


def check_files(runs: list[BoardRun], folder: Path, pool: Path) -> None:
    """Every file is where a run may write, under a plain name; none holds the key.

    A board's folder holds its shot list (and a link to it, or under its new name only), its
    pictures (`frames/`, written by the test), its records (`<shot list>.kling-state/`,
    `<shot list>.lock.json`, beside the file a link leads to) and its output folder; the
    runs' folder holds the boards' folders only. The user's registry is searched for the
    key too.
    """
    boards = {r.path.parent: r for r in runs}
    pictures = {p.name for p in pool.iterdir()}
    registry = os.environ.get("KLING_PIPE_REGISTRY")
    scanned = [p for p in folder.rglob("*") if p.is_file()]
    if registry:
        scanned += [p for p in Path(registry).parent.glob("*") if p.is_file()]
    for path in scanned:
        assert not key_in(path.read_bytes()), ("the API key is in a file", path)
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        assert all(part.isprintable() and part not in ("", ".", "..") for part in rel.parts), (
            "a file with an unprintable name",
            rel,
        )
        run = boards.get(folder / rel.parts[0])
        assert run is not None, ("a file outside every board's folder", rel)
        if len(rel.parts) == 1:
            continue
        inside = Path(*rel.parts[1:])
        # Its records beside the file its current name leads to (a link's target), and
        # the name itself: nothing at a renamed file's old name, nothing beside a link.
        source = run.shotlist.source.name
        allowed = (
            inside in (Path(source), Path(run.path.name))
            or inside == Path(f"{source}.lock.json")
            or (inside.parts[0] == "frames" and (len(inside.parts) == 1 or inside.name in pictures))
            or inside.parts[0] == f"{source}.kling-state"
            or (folder / rel).is_relative_to(run.shotlist.output_path)
            or run.shotlist.output_path.is_relative_to(folder / rel)
        )
        assert allowed, ("a file where no run may write", rel)


#: What the schedules run in this process exercised (printed at the end of the session).
TALLY: Counter[str] = Counter()


def tally(runs: list[BoardRun], mock: MockServer, schedule: Schedule) -> None:
    """Count what a schedule exercised: adversaries, lost answers adopted, kills, states."""
    TALLY["schedules"] += 1
    for name in schedule.adversaries():
        TALLY[f"drew {name}"] += 1
    kills = sum("killed" in e for r in runs for e in r.events)
    TALLY["kills"] += kills
    if len(set(schedule.clock_skews)) > 1:
        skews = schedule.clock_skews[: kills + 1]
        TALLY["clock jumps made"] += sum(a != b for a, b in itertools.pairwise(skews))
    adopted = set()
    for run in runs:
        assert run.result is not None
        TALLY["runs"] += run.runs
        TALLY["edits made"] += sum(e.startswith("edit:") for e in run.events)
        TALLY["history reads past page 20"] += run.deep_reads
        TALLY["history pages read, deepest"] = max(
            TALLY["history pages read, deepest"], run.deepest
        )
        for s in run.result.shots:
            TALLY[f"shots {s.state}"] += 1
            if s.state in ("done", "cached") and s.task_id is not None:
                adopted.add(s.task_id)
    _tally_tasks(mock, adopted)


def _tally_tasks(mock: MockServer, adopted: set[str]) -> None:
    for task in mock.tasks():
        if task["created_by"] in ("second_client", "burst"):
            TALLY[f"{task['created_by']} tasks"] += 1
            continue
        TALLY["tasks"] += 1
        if task["answer"] != "answered":
            TALLY[f"answer {task['answer']}"] += 1
            if task["id"] in adopted:
                TALLY[f"answer {task['answer']}: adopted by proof"] += 1
    for kind, count in mock.stats()["faults"].items():
        TALLY[f"fault {kind}"] += count
