"""Client CPU per shot: 2,000 shots that take 0 s on the server, concurrency 50.

The client runs in its own process; its CPU seconds (user + system, all threads) from the
start of rendering to the end are divided by the number of shots. The mock runs in another
process, so its work (about 1 ms per shot) is not counted; it is printed for scale. kling-pipe
is measured as users run it (with its SQLite records) and without records; the two peers
are printed for comparison.

    python benchmarks/bench_cpu.py [--shots 2000] [--concurrency 50] [--profile DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

#: (label, contender, extra options); `--no-records` adds kling-pipe without its store.
RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("kling", "kling", {}),
    ("sdk", "sdk", {}),
    ("naive", "naive", {}),
)


def one(
    contender: str, shots: int, concurrency: int, profile: Path | None = None, **extra: Any
) -> dict[str, Any]:
    with benchlib.mock_process(*benchlib.processing_args(0.0, 0.0, 1)) as mock:
        mock.prewarm()
        mock_cpu0 = mock.cpu_s()
        result = benchlib.run_contender(
            contender, mock.base_url, shots, concurrency, profile=profile, **extra
        )
        mock_cpu = mock.cpu_s() - mock_cpu0
    return {
        "ok": result["ok"],
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "cpu_ms_per_shot": 1000 * result["cpu_s"] / shots,
        "shots_wall_s": result["shots_wall_s"],
        "shots_cpu_ms_per_shot": 1000 * result["shots_cpu_s"] / shots,
        "mock_cpu_ms_per_shot": 1000 * mock_cpu / shots,
        "peak_rss_mb": result["peak_rss_mb"],
    }


def measure(
    shots: int = 2000,
    concurrency: int = 50,
    profile_dir: Path | None = None,
    *,
    no_records: bool = False,
) -> dict[str, Any]:
    print(f"cpu: {shots} shots, processing 0 s, concurrency {concurrency}", flush=True)
    out: dict[str, Any] = {"shots": shots, "concurrency": concurrency, "runs": {}}
    runs = RUNS + ((("kling-no-records", "kling", {"no_records": True}),) if no_records else ())
    for label, contender, extra in runs:
        profile = None if profile_dir is None else profile_dir / f"cpu-{label}.pstats"
        figures = one(contender, shots, concurrency, profile, **extra)
        out["runs"][label] = figures
        print(
            f"  {label:>16}: {figures['cpu_ms_per_shot']:.2f} ms CPU per shot, "
            f"{figures['shots_cpu_ms_per_shot']:.2f} ms until the last shot was done "
            f"(wall {figures['wall_s']:.2f} s, {figures['shots_wall_s']:.2f} s; mock "
            f"{figures['mock_cpu_ms_per_shot']:.2f} ms per shot)",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="write cProfile stats into this folder")
    parser.add_argument("--no-records", action="store_true", help="also kling without records")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    figures = measure(args.shots, args.concurrency, args.profile, no_records=args.no_records)
    benchlib.write_json(args.json, figures)
    print(f"{benchlib.machine()}; {benchlib.today()}; goal <= 1 ms per shot")


if __name__ == "__main__":
    main()
