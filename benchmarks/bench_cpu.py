"""Client CPU per shot: 2,000 shots that take 0 s on the server, concurrency 50.

Each contender runs in its own process; its CPU seconds (user + system, all threads) for the
whole run, from the process's start (interpreter and imports included) to its last video
saved (kling-pipe: `render()` returned, lock file and contact sheet written), are divided by
the number of shots. The goal: kling-pipe's at most the hand-written script's. The mock runs in
another process, so its work (about 1 ms per shot) is not counted; it is printed for scale.
kling-pipe is measured as users run it (with its SQLite records); `--no-records` adds a run
without them.

`--profile DIR` also renders once more under cProfile (the event loop's thread; a separate run,
since profiling slows it down) and writes the stats there; `profile_summary` reads them.

    python benchmarks/bench_cpu.py [--shots 2000] [--concurrency 50] [--profile DIR]
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import Counter
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
        "process_wall_s": result["process_wall_s"],
        "process_cpu_ms_per_shot": 1000 * result["process_cpu_s"] / shots,
        "shots_wall_s": result["shots_wall_s"],
        "shots_cpu_ms_per_shot": 1000 * result["shots_cpu_s"] / shots,
        "thread_cpu_ms_per_shot": {
            name: 1000 * cpu / shots for name, cpu in result.get("thread_cpu_s", {}).items()
        },
        "mock_cpu_ms_per_shot": 1000 * mock_cpu / shots,
        "peak_rss_mb": result["peak_rss_mb"],
    }


def profile_summary(path: Path, shots: int, top: int = 12) -> dict[str, Any]:
    """The event loop's own time per shot, by module and by function, from cProfile stats.

    Built-in functions (a socket's send, SQLite's execute) count for the module that called
    them, so the table says whose work it is. Waiting in the selector (the loop idle until a
    socket or a timer is ready) is left out: it is not work.
    """
    stats = pstats.Stats(str(path)).stats
    by_module: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for (filename, line, name), (_, _, own, _, callers) in stats.items():
        if name in _IDLE:
            continue
        label = f"{_short(filename)}:{line}({name})" if line else name
        by_function[label] += own
        if filename == "~" and callers:  # a built-in: its callers' modules share its time
            for (caller_file, _, _), (_, _, caller_own, _) in callers.items():
                by_module[_short(caller_file)] += caller_own
        else:
            by_module[_short(filename)] += own
    total = sum(by_function.values())
    return {
        "profiled_s": total,
        "by_module_ms_per_shot": {
            k: 1000 * v / shots for k, v in by_module.most_common(top) if k != "~"
        },
        "by_function_ms_per_shot": {k: 1000 * v / shots for k, v in by_function.most_common(top)},
    }


#: The selector's wait: the event loop idle, not working.
_IDLE = frozenset(
    {"<method 'poll' of 'select.epoll' objects>", "<method 'select' of 'select.epoll' objects>"}
)


def _short(filename: str) -> str:
    """A module's path from its package: ``kling_pipe/_records/store.py``, ``aiohttp/...``."""
    for anchor in ("/kling_pipe/", "/site-packages/", "/python3.11/", "/benchmarks/"):
        if anchor in filename:
            tail = filename.rsplit(anchor, 1)[1]
            return ("kling_pipe/" + tail) if anchor == "/kling_pipe/" else tail
    return filename


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
        figures = one(contender, shots, concurrency, **extra)
        out["runs"][label] = figures
        print(
            f"  {label:>16}: {figures['process_cpu_ms_per_shot']:.2f} ms CPU per shot for the "
            f"whole process ({figures['cpu_ms_per_shot']:.2f} ms rendering, "
            f"{figures['shots_cpu_ms_per_shot']:.2f} ms until the last shot was done; wall "
            f"{figures['wall_s']:.2f} s; mock {figures['mock_cpu_ms_per_shot']:.2f} ms per shot)",
            flush=True,
        )
    if profile_dir is not None:
        path = profile_dir / "cpu-kling.pstats"
        one("kling", shots, concurrency, path)
        out["profile"] = profile_summary(path, shots)
        out["profile"]["path"] = str(path)
        top = ", ".join(
            f"{k} {v:.2f} ms" for k, v in list(out["profile"]["by_module_ms_per_shot"].items())[:6]
        )
        print(f"  kling-pipe's event loop, own time per shot under cProfile: {top}", flush=True)
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
    print(f"{benchlib.machine()}; {benchlib.today()}; goal: at most the naive script's per shot")


if __name__ == "__main__":
    main()
