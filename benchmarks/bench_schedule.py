"""Scheduling efficiency and noticing completion: 1,000 shots of 1.5 s ± 20 %, concurrency 50.

Each contender (kling-pipe, then the official SDK and the hand-written asyncio script for
comparison) renders the same shots against a fresh mock process with the same seeded
processing times. The ideal is the makespan of the processing times the mock drew, run
greedily in submission order on 50 slots with instant notice and zero overhead. Noticing is
the delay between the mock completing a task and the client learning it.

    python benchmarks/bench_schedule.py [--shots 1000] [--concurrency 50] [--kling-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

MEAN_S = 1.5
JITTER = 0.2
SEED = 1
CONTENDERS = ("kling", "sdk", "naive")


def measure(
    shots: int = 1000, concurrency: int = 50, contenders: tuple[str, ...] = CONTENDERS
) -> dict[str, Any]:
    print(
        f"schedule: {shots} shots, {MEAN_S} s ± {JITTER:.0%}, concurrency {concurrency}",
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
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--kling-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    contenders = ("kling",) if args.kling_only else CONTENDERS
    figures = measure(args.shots, args.concurrency, contenders)
    benchlib.write_json(args.json, figures)
    kling = figures["race"]["kling"]
    print(f"{benchlib.machine()}; {benchlib.today()}")
    print(f"  ratio {kling['ratio']:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
