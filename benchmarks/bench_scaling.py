"""Scaling: per-shot wall time, CPU and memory at N = 100, 1,000 and 10,000 shots.

kling-pipe (with its records, as users run it) renders N shots of 0 s at concurrency 50
against a mock in its own process. Per-shot wall time and CPU should stay flat as N grows;
so should the memory each extra shot costs (peak RSS above the RSS before rendering, per
shot). The N = 10,000 run also gives the memory figure (peak RSS of the client).

    python benchmarks/bench_scaling.py [--sizes 100,1000,10000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

SIZES = (100, 1000, 10_000)


def one(shots: int, concurrency: int, profile: Path | None = None) -> dict[str, Any]:
    with benchlib.mock_process(*benchlib.processing_args(0.0, 0.0, 1)) as mock:
        mock.prewarm()
        result = benchlib.run_contender(
            "kling", mock.base_url, shots, concurrency, profile=profile, sample=True
        )
    grown = result["peak_rss_mb"] - result["base_rss_mb"]
    return {
        "ok": result["ok"],
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "wall_ms_per_shot": 1000 * result["wall_s"] / shots,
        "cpu_ms_per_shot": 1000 * result["cpu_s"] / shots,
        "shots_wall_ms_per_shot": 1000 * result["shots_wall_s"] / shots,
        "shots_cpu_ms_per_shot": 1000 * result["shots_cpu_s"] / shots,
        "base_rss_mb": result["base_rss_mb"],
        "peak_rss_mb": result["peak_rss_mb"],
        "kb_per_shot": 1024 * grown / shots,
        "peak_fds": result["peak_fds"],
    }


def measure(
    sizes: tuple[int, ...] = SIZES, concurrency: int = 50, profile_dir: Path | None = None
) -> dict[str, Any]:
    print(f"scaling: N = {', '.join(map(str, sizes))}, processing 0 s, concurrency {concurrency}")
    out: dict[str, Any] = {"concurrency": concurrency, "sizes": {}}
    for n in sizes:
        profile = None if profile_dir is None else profile_dir / f"scaling-{n}.pstats"
        figures = one(n, concurrency, profile)
        out["sizes"][str(n)] = figures
        print(
            f"  N={n:>6}: {figures['wall_ms_per_shot']:.2f} ms wall and "
            f"{figures['cpu_ms_per_shot']:.2f} ms CPU per shot (until the last shot was done: "
            f"{figures['shots_wall_ms_per_shot']:.2f} and {figures['shots_cpu_ms_per_shot']:.2f});"
            " peak RSS "
            f"{figures['peak_rss_mb']:.0f} MB ({figures['kb_per_shot']:.1f} kB per shot above "
            f"{figures['base_rss_mb']:.0f} MB); peak fds {figures['peak_fds']}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="write cProfile stats into this folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    figures = measure(sizes, args.concurrency, args.profile)
    benchlib.write_json(args.json, figures)
    print(f"{benchlib.machine()}; {benchlib.today()}")


if __name__ == "__main__":
    main()
