"""How close a run comes to the ideal, against the bundled mock on loopback.

Default: 200 shots, processing 1 s each, concurrency 20. The ideal wall time is
``ceil(200 / 20) x 1 s`` = 10 s: every slot busy all the time, completion noticed at once,
no overhead. Reports the ratio, result GETs (polls) per task and the client's peak memory.
Every shot uses the same first frame, so the mock makes its output MP4 once and the figure
measures kling-pipe, not the mock's video encoder (which shares this machine's cores).

    python benchmarks/bench_run.py [--shots 200] [--concurrency 20] [--processing 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from mockserver import FixedTime, MockConfig, MockServer

KEEP_RECORDS = os.environ.get("KEEP_RECORDS", "1") == "1"


async def bench(shots: int, concurrency: int, processing_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        shotlist = ShotList(
            storyboard=Storyboard(name="bench"),
            shots=tuple(
                Shot(
                    id=f"s{i:05d}",
                    prompt=f"shot {i}",
                    image=UrlImage(url="https://x.test/frame.png"),
                )
                for i in range(shots)
            ),
            source=Path(tmp) / "bench.toml",
        )
        config = MockConfig(processing=FixedTime(seconds=processing_s), fps=10)  # as benchlib's
        async with MockServer(config) as mock, aiohttp.ClientSession() as session:
            client = WaveSpeedClient(session=session, base_url=mock.base_url, api_key=mock.api_key)
            started = time.monotonic()
            result = await render(
                shotlist,
                backend=client,
                options=RunOptions(concurrency=concurrency, keep_records=KEEP_RECORDS),
            )
            total = time.monotonic() - started
            wall = result.wall_s  # the scheduler's time: the contact sheet is written after
            stats = mock.stats()
    assert result.ok, result.as_json()
    ideal = math.ceil(shots / concurrency) * processing_s
    polls = sum(s.polls for s in result.shots)
    return {
        "wall_s": wall,
        "total_s": total,
        "ideal_s": ideal,
        "ratio": wall / ideal,
        "polls_per_task": polls / shots,
        "peak_concurrent": stats["peak_concurrent"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--processing", type=float, default=1.0)
    args = parser.parse_args()
    figures = asyncio.run(bench(args.shots, args.concurrency, args.processing))
    print(
        f"run: {args.shots} shots, concurrency {args.concurrency}, processing "
        f"{args.processing:g} s; {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}"
    )
    print(
        f"  wall {figures['wall_s']:.2f} s against the ideal {figures['ideal_s']:.2f} s: "
        f"ratio {figures['ratio']:.3f}"
    )
    print(f"  with the store, lock file and contact sheet: {figures['total_s']:.2f} s in all")
    print(f"  polls per task {figures['polls_per_task']:.2f}")
    print(f"  peak concurrent tasks on the mock {figures['peak_concurrent']}")
    print(f"  peak RSS (client and mock, one process) {figures['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
