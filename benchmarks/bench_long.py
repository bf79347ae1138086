"""Long tasks: 200 shots of 20 s ± 20 %, concurrency 50; wall time and result GETs per task.

Each contender (kling-pipe, then the official SDK and the hand-written asyncio script for
comparison) renders the same shots against a fresh mock process with the same seeded
processing times. The ideal is the makespan of the processing times the mock drew, run
greedily in submission order on 50 slots with instant notice and zero overhead. Noticing is
the delay between the mock completing a task and the client learning it.

    python benchmarks/bench_long.py [--shots 200] [--concurrency 50] [--kling-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

MEAN_S = 20.0
JITTER = 0.2
SEED = 1
CONTENDERS = ("kling", "sdk", "naive")


def measure(
    shots: int = 200, concurrency: int = 50, contenders: tuple[str, ...] = CONTENDERS
) -> dict[str, Any]:
    print(
        f"long: {shots} shots, {MEAN_S} s ± {JITTER:.0%}, concurrency {concurrency}",
        flush=True,
    )
    race = benchlib.race(
        contenders,
        shots=shots,
        concurrency=concurrency,
        mean_s=MEAN_S,
        jitter_fraction=JITTER,
        seed=SEED,
    )
    return {
        "shots": shots,
        "concurrency": concurrency,
        "mean_s": MEAN_S,
        "jitter": JITTER,
        "seed": SEED,
        "race": race,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--kling-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    contenders = ("kling",) if args.kling_only else CONTENDERS
    figures = measure(args.shots, args.concurrency, contenders)
    benchlib.write_json(args.json, figures)
    kling = figures["race"]["kling"]
    print(f"{benchlib.machine()}; {benchlib.today()}")
    print(
        f"  ratio {kling['ratio']:.3f} (goal <= 1.03), GETs per task {kling['gets_per_task']:.2f}"
    )


if __name__ == "__main__":
    main()
