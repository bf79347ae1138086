"""Seeded schedules of faults, kills and other clients against the real mock, and the checks.

One integer seed draws a whole schedule (`draw_schedule`): one or two storyboards of local
images (chained shots, a `last_image` shot, sometimes two shots on one image, shots of several
takes: each take its own paid task, with the same frames as its shot's others), the mock's
faults on submits, polls, downloads and history reads, its history lag and clock offset,
and, per storyboard, the backend calls at which its run is killed. `run_schedule` renders
it over real loopback sockets (the in-process `MockServer` and the real `WaveSpeedClient`),
killing and resuming with a new `render()` each time, then `check_schedule` asserts the
invariants of the submit protocol against what the mock knows (`MockServer.tasks()`, who
created which task, and its ledger) and what kling-pipe recorded (store, lock file).

A helper module of its own: conftest is not for importing.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiohttp
import attrs

from kling_pipe import _files
from kling_pipe._backends.base import Download, Prediction, SubmitRequest
from kling_pipe._backends.wavespeed.client import Timeouts, WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from kling_pipe._decisions.results import RunResult
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._records.lockfile import lock_path_for, read_lock, section_for
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions
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

Frame = Literal["first", "last"]


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


@attrs.frozen(kw_only=True)
class BoardPlan:
    name: str
    shots: tuple[ShotPlan, ...]
    concurrency: int
    #: None, or the budget: the plan's whole cost, or a little more.
    max_cost: Decimal | None
    retry_failed: int
    #: Each kills one run: (the backend call it trips on, before or after the call acts).
    kills: tuple[tuple[int, Literal["before", "after"]], ...]

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

    def describe(self) -> str:
        lines = [
            f"schedule seed={self.seed}: {len(self.boards)} storyboard(s), "
            f"{'together' if self.together else 'one after the other'}; "
            f"history_lag_s={self.history_lag_s} clock_offset_s={self.clock_offset_s} "
            f"processing_s={self.processing_s} fault_seed={self.fault_seed}",
        ]
        for rule in self.rules:
            params = {
                "latency_s": rule.latency_s,
                "status": rule.status,
                "delay_s": rule.delay_s,
                "image": rule.image,
                "within_s": rule.within_s,
                "codes": rule.codes,
            }
            shown = {
                "gateway_error": ("status",),
                "server_error": ("status",),
                "late_create": ("delay_s",),
                "late_answer": ("delay_s",),
                "second_client": ("image", "within_s"),
                "task_failure": ("codes",),
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
    return Schedule(
        seed=seed,
        boards=tuple(_with_takes(board, random.Random(f"takes-{seed}")) for board in boards),
        together=n_boards == 2 and rng.random() < 0.6,
        fault_seed=rng.randrange(1 << 30),
        rules=tuple(rule_list),
        history_lag_s=rng.choice(HISTORY_LAGS),
        clock_offset_s=rng.choice(CLOCK_OFFSETS),
        processing_s=rng.choice((0.1, 0.3)),
    )


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


def write_board(board: BoardPlan, folder: Path, pool: Path) -> Path:
    """Write the board's shot list and copy its pictures into *folder*; return its path."""
    frames = folder / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    lines = ["version = 1", "", "[storyboard]", f'name = "{board.name}"']
    if board.max_cost is not None:
        lines.append(f"max_cost = {board.max_cost}")
    for shot in board.shots:
        lines += ["", "[[shots]]", f'id = "{shot.id}"']
        lines.append(f'prompt = "storyboard {board.name}, shot {shot.id}: the boat sails on"')
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
    path = folder / f"{board.name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mock_config(schedule: Schedule) -> MockConfig:
    """Tiny fast videos (2 fps, 192 px), the schedule's faults, lag and clock offset."""
    return MockConfig(
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
        kill: tuple[int, Literal["before", "after"]] | None,
    ) -> None:
        self._inner = inner
        self._switch = switch
        self._kill = kill
        self.calls = 0
        self.tripped = ""
        #: History reads made before this client knew the server's clock (nothing may be
        #: concluded from them: the simulation counts them to show the case is exercised).
        self.blind_reads = 0

    @property
    def base_url(self) -> str:
        return self._inner.base_url

    @property
    def origin(self) -> str:
        return self._inner.origin

    @property
    def clock_offset(self) -> timedelta | None:
        return self._inner.clock_offset

    async def _call(self, name: str, coro: Any) -> Any:
        if self._switch.killed:
            coro.close()
            raise Killed
        self.calls += 1
        trip = self._kill is not None and self.calls == self._kill[0]
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
        return await self._call("list_predictions", self._inner.list_predictions(**filters))

    async def download(self, url: str, dest: Path) -> Download:
        return await self._call("download", self._inner.download(url, dest))


# --------------------------------------------------------------------------- running


@attrs.define
class BoardRun:
    plan: BoardPlan
    path: Path
    shotlist: ShotList
    result: RunResult | None = None
    runs: int = 0
    blind_reads: int = 0
    events: list[str] = attrs.Factory(list)


async def run_board(run: BoardRun, mock: MockServer) -> None:
    """Render the board: one run per kill point (killed there), then a last run."""
    switch = KillSwitch()
    pending = list(run.plan.kills)
    with running_as(switch):
        while True:
            kill = pending.pop(0) if pending else None
            switch.revive()
            run.runs += 1
            async with aiohttp.ClientSession() as session:
                client = WaveSpeedClient(
                    session=session,
                    base_url=mock.base_url,
                    api_key=mock.api_key,
                    retry=RETRY,
                    timeouts=Timeouts(api_total_s=API_TOTAL_S),
                )
                backend = KillableBackend(client, switch, kill)
                try:
                    result = await render(
                        run.path,
                        backend=backend,
                        options=attrs.evolve(
                            RunOptions(
                                concurrency=run.plan.concurrency,
                                settle=SETTLE,
                                retry_failed=run.plan.retry_failed,
                            ),
                            report=False,
                        ),
                    )
                except BaseException:
                    if not switch.killed:
                        raise
                    run.events.append(f"run {run.runs}: {backend.tripped}")
                    continue
                finally:
                    run.blind_reads += backend.blind_reads
            states = Counter(s.state for s in result.shots)
            run.events.append(
                f"run {run.runs}: ended after {backend.calls} calls"
                + (f" (kill at {kill} not reached)" if kill else "")
                + f": {dict(states)}"
            )
            if kill is None:
                run.result = result
                return


async def run_schedule(schedule: Schedule, folder: Path, pool: Path) -> list[BoardRun]:
    """Run every board of the schedule against one mock; check the invariants; return runs.

    A failing schedule raises AssertionError naming everything drawn.
    """
    runs = []
    for board in schedule.boards:
        path = write_board(board, folder / board.name, pool)
        runs.append(BoardRun(plan=board, path=path, shotlist=load(path)))
    async with MockServer(mock_config(schedule)) as mock:
        try:
            async with asyncio.timeout(SCHEDULE_LIMIT_S):
                with kills_stop_writes():
                    if schedule.together:
                        await asyncio.gather(*(run_board(r, mock) for r in runs))
                    else:
                        for r in runs:
                            await run_board(r, mock)
            check_schedule(runs, mock, schedule)
            tally(runs, mock)
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
                f"prompt={t['input'].get('prompt', '')[:40]!r}"
                for t in mock.tasks()
            )
            note = (
                f"\n{schedule.describe()}\nevents:\n{events}\nlast results:\n{summary}\n"
                f"mock tasks:\n{tasks}"
            )
            if isinstance(exc, AssertionError):
                raise AssertionError(f"{exc}\n{note}") from exc  # noqa: TRY004
            print(note)
            raise
    return runs


# --------------------------------------------------------------------------- the invariants

_TASK_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _net_by_task(mock: MockServer) -> dict[str, Decimal]:
    """Charges minus refunds per task (a charge is a negative amount in the ledger)."""
    net: dict[str, Decimal] = defaultdict(lambda: Decimal("0.000"))
    for entry in mock.ledger()["entries"]:
        net[entry["task_id"]] -= Decimal(entry["amount_usd"])
    return net


def check_schedule(runs: list[BoardRun], mock: MockServer, schedule: Schedule) -> None:
    """Assert every invariant of the submit protocol for the schedule's last runs."""
    tasks = mock.tasks()
    by_id = {t["id"]: t for t in tasks}
    net = _net_by_task(mock)
    task_failures = any(str(r.kind) == "task_failure" for r in schedule.rules)
    all_prompts: dict[str, str] = {}
    taken: dict[str, str] = {}
    for run in runs:
        assert run.result is not None
        for shot in run.shotlist.shots:
            all_prompts[shot.final_prompt] = f"{run.plan.name}/{shot.id}"
    # Our requests never made a task for a prompt that is no shot's.
    for task in tasks:
        if task["created_by"] == "request":
            assert task["input"]["prompt"] in all_prompts, ("a stray task", task)
    for run in runs:
        _check_board(
            run,
            by_id,
            net,
            task_failures=task_failures,
            taken=taken,
            section=section_for(mock.base_url),
        )
    # The account as a whole: no more than the budgets, plus what other clients spent.
    ours = sum((net[t["id"]] for t in tasks if t["created_by"] == "request"), Decimal("0.000"))
    budget = sum((r.plan.max_cost or r.plan.unit_total for r in runs), Decimal("0.000"))
    assert ours <= budget, ("the account spent more than the budgets", ours, budget)


def _check_board(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one place for every invariant of one storyboard
    run: BoardRun,
    by_id: dict[str, dict[str, Any]],
    net: dict[str, Decimal],
    *,
    task_failures: bool,
    taken: dict[str, str],
    section: str,
) -> None:
    result, shotlist, name = run.result, run.shotlist, run.plan.name
    assert result is not None
    prompts = {s.final_prompt: s.id for s in shotlist.shots}
    ours = [
        t
        for t in by_id.values()
        if t["created_by"] == "request" and t["input"]["prompt"] in prompts
    ]
    with Store.open(state_dir_for(shotlist.source)) as store:
        spent = store.spent()
        recorded = {t for _, t in store.task_owners()}
    uncertain_ids: set[str] = set()
    #: Per shot, the candidates its uncertain takes name (takes share a prompt and frames).
    listed_by_shot: dict[str, set[str]] = defaultdict(set)
    # 1. Every take ended done/cached, failed with a reason, or uncertain naming candidates
    # (or skipped, with a reason: chained from a shot that has no video).
    for s in result.shots:
        where = f"{name}/{s.id}"
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
            assert listed <= set(by_id), (where, "uncertain names unknown tasks", s.error)
            uncertain_ids |= listed
            listed_by_shot[s.shot_id] |= listed
    # Its own requests' tasks, if one exists and nobody took it, must be named by one of the
    # shot's uncertain takes.
    for shot_id, listed in listed_by_shot.items():
        own = [
            t["id"]
            for t in ours
            if prompts[t["input"]["prompt"]] == shot_id
            and t["status"] != "failed"
            and t["id"] not in recorded
        ]
        where = f"{name}/{shot_id}"
        assert set(own) <= listed, (where, "its own task is not among the candidates", own)
    # 2. A done/cached take's task was made by a request for that very shot, and no two takes
    # share one.
    for s in result.shots:
        if s.state not in ("done", "cached"):
            continue
        where = f"{name}/{s.id}"
        assert s.task_id is not None, (where, "done without a task")
        task = by_id.get(s.task_id)
        assert task is not None, (where, "its task is unknown to the server", s.task_id)
        assert task["created_by"] == "request", (where, "took another client's task", task)
        expected = shotlist.shot(s.shot_id).final_prompt
        assert task["input"]["prompt"] == expected, (where, "took another shot's task", task)
        assert s.task_id not in taken, (where, "shares its task with", taken[s.task_id])
        taken[s.task_id] = where
    # 3. No input paid for twice: one non-failed task per take at most.
    per_shot: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in ours:
        per_shot[prompts[t["input"]["prompt"]]].append(t)
    for sid, made in per_shot.items():
        takes = shotlist.shot(sid).takes
        alive = [t["id"] for t in made if t["status"] != "failed"]
        assert len(alive) <= takes, (f"{name}/{sid}", "paid twice", alive)
        if not task_failures:
            submitted = [t["id"] for t in made]
            assert len(made) <= takes, (f"{name}/{sid}", "submitted twice", submitted)
    # Every task our requests made (and not refunded) is known: recorded, or named as a
    # candidate of an uncertain shot. None is paid for and forgotten.
    for t in ours:
        if t["status"] != "failed":
            assert t["id"] in recorded | uncertain_ids, (name, "a paid task nobody knows", t)
    # 4. The money: within the budget, and never under-reported.
    board_net = sum((net[t["id"]] for t in ours), Decimal("0.000"))
    budget = run.plan.max_cost if run.plan.max_cost is not None else run.plan.unit_total
    assert board_net <= budget, (name, "spent over the budget", board_net, budget)
    assert spent >= board_net, (name, "spend under-reported", spent, board_net)
    if not any(s.state == "uncertain" for s in result.shots):
        assert spent == board_net, (name, "recorded spend differs from the ledger", spent)
    # 5. The last run's result agrees with the lock file.
    lock = read_lock(lock_path_for(shotlist.source))
    assert lock is not None, (name, "no lock file")
    assert set(lock[section]) == {s.shot_id for s in result.shots}
    for s in result.shots:
        entry = lock[section][s.shot_id]
        if "takes" in entry:  # a shot of several takes: each take has its own entry
            assert entry["pick"] == 1, (name, s.shot_id, "picked without a pick")
            entry = entry["takes"][s.take - 1]
            assert entry["take"] == s.take
        where = f"{name}/{s.id}"
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


#: What the schedules run in this process exercised (printed at the end of the session).
TALLY: Counter[str] = Counter()


def tally(runs: list[BoardRun], mock: MockServer) -> None:
    """Count what a schedule exercised: lost answers adopted, kills, final states."""
    TALLY["schedules"] += 1
    adopted = set()
    for run in runs:
        assert run.result is not None
        TALLY["runs"] += run.runs
        TALLY["kills"] += sum("killed" in e for e in run.events)
        for s in run.result.shots:
            TALLY[f"shots {s.state}"] += 1
            if s.state in ("done", "cached") and s.task_id is not None:
                adopted.add(s.task_id)
    for task in mock.tasks():
        if task["created_by"] == "second_client":
            TALLY["second_client tasks"] += 1
            continue
        TALLY["tasks"] += 1
        if task["answer"] != "answered":
            TALLY[f"answer {task['answer']}"] += 1
            if task["id"] in adopted:
                TALLY[f"answer {task['answer']}: adopted by proof"] += 1
    for kind, count in mock.stats()["faults"].items():
        TALLY[f"fault {kind}"] += count
