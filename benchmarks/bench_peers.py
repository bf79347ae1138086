"""Peers side by side: kling-pipe, the official SDK and a hand-written asyncio script.

Runs the scheduling race (1,000 shots of 1.5 s) and the long-task race (200 shots of 20 s),
each contender against a fresh mock with identical seeded settings, and prints wall time and
result GETs per task for each. This is what `run_all.py` does for the peer figure.

    python benchmarks/bench_peers.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_long
import bench_schedule
import benchlib


def table(name: str, race: dict[str, Any]) -> list[str]:
    rows = [f"{name}:"]
    for contender, f in race.items():
        rows.append(
            f"  {contender:>6}: {f['process_wall_s']:.2f} s from process start (shots done "
            f"after {f['shots_wall_s']:.2f} s of rendering, returned after {f['wall_s']:.2f} s), "
            f"ideal {f['ideal_s']:.2f} s, GETs per task {f['gets_per_task']:.2f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shots (200 and 100)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    schedule = bench_schedule.measure(200 if args.quick else 1000)
    long = bench_long.measure(100 if args.quick else 200)
    benchlib.write_json(args.json, {"schedule": schedule, "long": long})
    print("\n".join(table("schedule", schedule["race"]) + table("long", long["race"])))
    print(f"{benchlib.machine()}; {benchlib.today()}")


if __name__ == "__main__":
    main()
