"""Long tasks: 200 shots of 20 s ± 20 %, concurrency 50; wall time and result GETs per task.

Each contender (kling-pipe, then the official SDK and the hand-written asyncio script for
comparison) renders the same shots against a fresh mock process with the same seeded
processing times. The ideal is the makespan of the processing times the mock drew, run
greedily in submission order on 50 slots with instant notice and zero overhead. Noticing is
the delay between the mock completing a task and the client learning it.

    python benchmarks/bench_long.py [--shots 200] [--concurrency 50] [--kling-only]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

SPEC = benchlib.RaceSpec(name="long", mean_s=20.0, shots=200, goal="goal <= 1.03")
CONTENDERS = benchlib.CONTENDERS


def measure(
    shots: int = SPEC.shots,
    concurrency: int = SPEC.concurrency,
    contenders: tuple[str, ...] = CONTENDERS,
) -> dict[str, Any]:
    """Run this race and return its figures."""
    return benchlib.measure_race(SPEC, shots, concurrency, contenders)


if __name__ == "__main__":
    benchlib.race_main(SPEC, __doc__.splitlines()[0])
