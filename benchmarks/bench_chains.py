"""Chained storyboards: how close the real client comes to the lower bound, and the account's limit.

**Chained boards.** Generated boards of 12 to 40 shots, about half chaining from the shot
before (its first frame is the last frame of the shot before), rendered at 2, 3 and 5 slots
by ``kling-pipe run`` in its own process (interpreter start included) against a mock in
another, tasks drawn uniformly from 0.6 to 1.8 s (a Kling task's 60 to 180 s, scaled down a
hundredfold so the benchmark runs in minutes). The lower bound is
``max(longest chain, total work / slots)`` on the processing times the mock drew for that
run: no order and no client can beat it. Besides the ratio from process start, each board
reports the ratio from the run's start, the ratio the pure engine reaches on the same drawn
times with instant notice (its order alone), and what a chain link costs the real client
between a source's completion on the server and its dependant's submit (noticing it,
downloading the video, taking its last frame, uploading it). At a hundredth of a real task's
time those fixed costs weigh a hundred times what they would.

**Above the account's limit.** The same unchained shots at concurrency 5 on an account that
processes 2 tasks at once (``--concurrency 2`` of the mock), against concurrency 2 on the
same account: the run learns the limit, so its polls per task stay those of a run at it.

    python benchmarks/bench_chains.py [--boards 5] [--seed 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import benchlib  # noqa: E402 - found through the path set just above

#: A task's time on the mock: 60 to 180 s scaled down a hundredfold.
MEAN_S, JITTER_S = 1.2, 0.6
SLOTS = (2, 3, 5)
GOAL_MEAN, GOAL_WORST = 1.03, 1.10


def board_toml(rng: random.Random, name: str) -> tuple[str, dict[str, str | None]]:
    """A generated board as a shot list, and each shot's chain source (None: its own frame)."""
    count = rng.randint(12, 40)
    sources: dict[str, str | None] = {}
    lines = ["version = 1", "", "[storyboard]", f'name = "{name}"', ""]
    previous = None
    for n in range(count):
        sid = f"s{n:02d}"
        source = previous if previous is not None and rng.random() < 0.5 else None
        sources[sid] = source
        image = f'{{ shot = "{source}", frame = "last" }}' if source else f'"{benchlib.IMAGE_URL}"'
        lines += ["[[shots]]", f'id = "{sid}"', f'prompt = "chain board shot {sid}"']
        lines += [f"image = {image}", "duration = 5", ""]
        previous = sid
    return "\n".join(lines), sources


def lower_bound(times: dict[str, float], sources: dict[str, str | None], slots: int) -> float:
    chain: dict[str, float] = {}
    for sid, source in sources.items():  # sources come first in a board
        chain[sid] = (chain[source] if source else 0.0) + times[sid]
    return max(*chain.values(), sum(times.values()) / slots)


def engine_makespan(times: dict[str, float], sources: dict[str, str | None], slots: int) -> float:
    """The pure engine's makespan on these times: its order with instant notice, no overhead."""
    from kling_pipe._shotlist.specs import ChainImage, Shot, UrlImage  # noqa: PLC0415
    from tests.chained_boards import Board, simulate  # noqa: PLC0415

    shots = tuple(
        Shot(
            id=sid,
            prompt=sid,
            image=ChainImage(shot=src, frame="last") if src else UrlImage(url=benchlib.IMAGE_URL),
        )
        for sid, src in sources.items()
    )
    return simulate(Board(shots=shots, seconds=times), slots)[0]


def run_cli(board: Path, mock: benchlib.MockProcess, concurrency: int) -> tuple[dict, float]:
    """``kling-pipe run`` in its own process; its JSON summary and wall time from spawn."""
    env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    env["WAVESPEED_API_KEY"] = mock.api_key
    env["KLING_PIPE_REGISTRY"] = str(board.parent / "registry.sqlite")
    cmd = [benchlib.PYTHON, "-m", "kling_pipe", "run", str(board), "--backend", "wavespeed"]
    cmd += ["--base-url", mock.base_url, "--concurrency", str(concurrency), "--yes"]
    cmd += ["--no-report", "--json", "-q"]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"kling-pipe run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), wall


def one_board(rng: random.Random, slots: int, seed: int, folder: Path) -> dict[str, Any]:
    text, sources = board_toml(rng, f"chains-{slots}-{seed}")
    board = folder / "board.toml"
    board.write_text(text)
    args = [*benchlib.processing_args(MEAN_S, JITTER_S / MEAN_S, seed), "--fps", "2"]
    with benchlib.mock_process(*args) as mock:
        summary, process_wall = run_cli(board, mock, slots)
        stats = mock.stats()
        journal = mock.get("/_mock/journal")
    task_of = {s["id"]: s["task_id"] for s in summary["shots"]}
    tasks = stats["tasks"]
    times = {sid: tasks[task_of[sid]]["processing_s"] for sid in sources}
    bound = lower_bound(times, sources, slots)
    gaps = [
        tasks[task_of[sid]]["submitted_at"] - tasks[task_of[src]]["completed_at"]
        for sid, src in sources.items()
        if src
    ]
    polls = sum(t["polls"] for t in tasks.values())
    run_wall = summary["totals"]["wall_seconds"]
    notice, after = link_profile(journal, tasks, task_of, sources)
    return {
        "link_notice_s": notice,
        "link_after_notice_s": after,
        "shots": len(sources),
        "chained": len(gaps),
        "lower_bound_s": bound,
        "process_wall_s": process_wall,
        "run_wall_s": run_wall,
        "ratio": process_wall / bound,
        "run_ratio": run_wall / bound,
        "engine_ratio": engine_makespan(times, sources, slots) / bound,
        "startup_s": process_wall - run_wall,
        "link_gap_mean_s": statistics.fmean(gaps) if gaps else 0.0,
        "polls_per_task": polls / len(tasks),
    }


def link_profile(
    journal: list[dict[str, Any]],
    tasks: dict[str, dict[str, Any]],
    task_of: dict[str, str],
    sources: dict[str, str | None],
) -> tuple[float, float]:
    """Split a chain link: source completed -> the poll that saw it -> the dependant's submit.

    The journal stamps each request when its answer went out (the mock's clock, as the
    task times are), so the first poll of a task answered after its completion is the one
    that saw it. Returns the mean of each part over the board's chained shots.
    """
    polls: dict[str, list[float]] = {}
    for entry in journal:
        if entry["route"] == "poll" and entry["task_id"]:
            polls.setdefault(entry["task_id"], []).append(entry["wall"])
    notice, after = [], []
    for sid, src in sources.items():
        if not src:
            continue
        source = tasks[task_of[src]]
        seen = min(
            (t for t in polls.get(task_of[src], []) if t >= source["completed_at"]), default=None
        )
        if seen is None:
            continue
        notice.append(seen - source["completed_at"])
        after.append(tasks[task_of[sid]]["submitted_at"] - seen)
    mean = statistics.fmean
    return (mean(notice) if notice else 0.0, mean(after) if after else 0.0)


def chained(boards: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slots in SLOTS:
        rows = []
        for b in range(boards):
            board_seed = seed * 1000 + slots * 100 + b
            with tempfile.TemporaryDirectory(prefix="bench-chains-") as tmp:
                row = one_board(random.Random(board_seed), slots, board_seed, Path(tmp))
            rows.append(row)
            print(
                f"  {slots} slots, board {b + 1}/{boards} ({row['shots']} shots, "
                f"{row['chained']} chained): ratio {row['ratio']:.3f} from process start, "
                f"{row['run_ratio']:.3f} from run start, engine order {row['engine_ratio']:.3f}; "
                f"chain link {row['link_gap_mean_s']:.3f} s (noticed after "
                f"{row['link_notice_s']:.3f} s, submit {row['link_after_notice_s']:.3f} s later), "
                f"{row['polls_per_task']:.2f} polls/task",
                flush=True,
            )
        out[str(slots)] = {
            "boards": rows,
            "mean": statistics.fmean(r["ratio"] for r in rows),
            "worst": max(r["ratio"] for r in rows),
            "run_mean": statistics.fmean(r["run_ratio"] for r in rows),
            "run_worst": max(r["run_ratio"] for r in rows),
            "engine_mean": statistics.fmean(r["engine_ratio"] for r in rows),
            "engine_worst": max(r["engine_ratio"] for r in rows),
            "startup_mean_s": statistics.fmean(r["startup_s"] for r in rows),
            "link_gap_mean_s": statistics.fmean(r["link_gap_mean_s"] for r in rows),
            "link_notice_s": statistics.fmean(r["link_notice_s"] for r in rows),
            "link_after_notice_s": statistics.fmean(r["link_after_notice_s"] for r in rows),
        }
    return out


def account_limit(seed: int, shots: int = 24) -> dict[str, Any]:
    """Concurrency 5 on an account that processes 2 at once, against concurrency 2 on it."""
    out: dict[str, Any] = {}
    lines = ["version = 1", "", "[storyboard]", 'name = "limited"', ""]
    for n in range(shots):
        lines += ["[[shots]]", f'id = "s{n:02d}"', f'prompt = "limited shot {n}"']
        lines += [f'image = "{benchlib.IMAGE_URL}"', "duration = 5", ""]
    for concurrency in (2, 5):
        with tempfile.TemporaryDirectory(prefix="bench-limit-") as tmp:
            board = Path(tmp) / "board.toml"
            board.write_text("\n".join(lines))
            args = [*benchlib.processing_args(MEAN_S, JITTER_S / MEAN_S, seed), "--fps", "2"]
            with benchlib.mock_process(*args, "--concurrency", "2") as mock:
                warm = mock.prewarm()
                summary, wall = run_cli(board, mock, concurrency)
                stats = mock.stats()
        totals = summary["totals"]
        # In submission order: the first `concurrency` went out before any limit was known.
        polls = [t["polls"] for _, t in benchlib.run_tasks(stats, {warm})]
        row = {
            "polls_first_wave": statistics.fmean(polls[:concurrency]),
            "polls_later": statistics.fmean(polls[concurrency:]),
            "polls_per_task": totals["polls_per_task"],
            "process_wall_s": wall,
            "run_wall_s": totals["wall_seconds"],
            "account_limit": totals.get("account_limit"),
            "peak_concurrent": stats["peak_concurrent"],
        }
        out[str(concurrency)] = row
        print(
            f"  account limit 2, concurrency {concurrency}: "
            f"{row['polls_per_task']:.2f} polls/task, "
            f"{row['run_wall_s']:.2f} s, learned limit {row['account_limit']}",
            flush=True,
        )
    out["polls_ratio"] = out["5"]["polls_per_task"] / out["2"]["polls_per_task"]
    return out


def measure(boards: int = 5, seed: int = 1) -> dict[str, Any]:
    """Run both parts and return their figures."""
    print(f"chains: {boards} boards per slot count, tasks {MEAN_S} ± {JITTER_S} s", flush=True)
    return {
        "boards": boards,
        "seed": seed,
        "chains": chained(boards, seed),
        "limit": account_limit(seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = measure(args.boards, args.seed)
    benchlib.write_json(args.json, figures)
    print(f"{benchlib.machine()}; {benchlib.today()}")
    for slots, row in figures["chains"].items():
        print(
            f"  {slots} slots: mean {row['mean']:.3f} worst {row['worst']:.3f} from process start "
            f"(goal mean <= {GOAL_MEAN}, worst <= {GOAL_WORST}); from run start "
            f"{row['run_mean']:.3f} / {row['run_worst']:.3f}; engine order "
            f"{row['engine_mean']:.3f} / {row['engine_worst']:.3f}"
        )
    print(
        "  above the account's limit: polls per task "
        f"x{figures['limit']['polls_ratio']:.2f} of a run at it"
    )


if __name__ == "__main__":
    main()
