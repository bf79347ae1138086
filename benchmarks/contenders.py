"""One contender renders N benchmark shots against a running mock; prints one JSON line.

Run by the benchmarks in a fresh process each time (see `benchlib.run_contender`), so that
its CPU time and peak RSS are its own:

    python benchmarks/contenders.py kling|sdk|naive --base-url URL --api-key KEY \
        --shots N --concurrency C [--spawned-at EPOCH] [--no-records] [--profile FILE] [--sample]

The JSON holds ``ok`` (shots done); ``wall_s`` and ``cpu_s`` (from the call that renders to
its return: kling-pipe's lock file and contact sheet included, imports not);
``process_wall_s`` and ``process_cpu_s`` (from the process's start, as its parent saw it
spawned with ``--spawned-at``, to the same return: interpreter start and imports included);
``shots_wall_s`` and ``shots_cpu_s`` (to the last shot done); ``thread_cpu_s`` (kling-pipe:
CPU seconds by thread when `render()` returned: the event loop, and the worker threads that
hash, fsync and make thumbnails); ``peak_rss_mb`` (the process's peak, imports included),
``base_rss_mb`` (RSS just before rendering) and ``noticed`` (task id -> epoch seconds at which
the client learned the task had completed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


class NoticeReporter:
    """A kling-pipe reporter that notes when each task is seen completed (it starts downloading)."""

    def __init__(self) -> None:
        self.noticed: dict[str, float] = {}
        #: Task id -> epoch seconds at which its shot was done (downloaded and checked).
        self.done: dict[str, float] = {}
        #: Monotonic time and process CPU seconds when the latest shot became done.
        self.last_done = (0.0, 0.0)

    def shot_changed(self, result: Any, detail: str = "") -> None:  # noqa: ARG002
        if result.state == "downloading" and result.task_id is not None:
            self.noticed[result.task_id] = time.time()
        elif result.state == "done":
            if result.task_id is not None:
                self.done[result.task_id] = time.time()
            self.last_done = (time.monotonic(), benchlib.rusage_self()[0])

    def spent_changed(self, spent: Decimal) -> None:
        pass


#: Filled by `kling`: when its last shot was done, to tell the shots from the run's epilogue
#: (the lock file and the contact sheet written after the last download).
EPILOGUE: dict[str, float] = {}
#: Filled by `kling`: CPU seconds of each live thread when `render()` returned.
THREADS: dict[str, float] = {}


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[thread.name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def kling(args: argparse.Namespace, out_dir: Path) -> tuple[int, dict[str, float]]:
    import aiohttp  # noqa: PLC0415

    from kling_pipe._backends.wavespeed.client import WaveSpeedClient  # noqa: PLC0415
    from kling_pipe._running.options import RunOptions  # noqa: PLC0415
    from kling_pipe._running.run import render  # noqa: PLC0415
    from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage  # noqa: PLC0415

    shotlist = ShotList(
        storyboard=Storyboard(name="bench"),
        shots=tuple(
            Shot(
                id=f"s{i:05d}",
                prompt=benchlib.prompt(i),
                image=UrlImage(url=benchlib.IMAGE_URL),
                duration=benchlib.DURATION,
            )
            for i in range(args.shots)
        ),
        source=out_dir / "bench.toml",
    )
    reporter = NoticeReporter()

    async def go() -> Any:
        async with aiohttp.ClientSession() as session:
            client = WaveSpeedClient(session=session, base_url=args.base_url, api_key=args.api_key)
            result = await render(
                shotlist,
                backend=client,
                reporter=reporter,
                options=RunOptions(concurrency=args.concurrency, keep_records=not args.no_records),
            )
            THREADS.update(thread_cpu_s())  # before asyncio.run ends its worker threads
            return result

    result = asyncio.run(go())
    EPILOGUE["last_done_monotonic"], EPILOGUE["last_done_cpu_s"] = reporter.last_done
    after_notice = [reporter.done[t] - n for t, n in reporter.noticed.items() if t in reporter.done]
    EPILOGUE["notice_to_done_median_s"] = sorted(after_notice)[len(after_notice) // 2]
    return sum(s.state == "done" for s in result.shots), reporter.noticed


def sdk(args: argparse.Namespace, out_dir: Path) -> tuple[int, dict[str, float]]:
    import requests  # noqa: PLC0415
    import wavespeed  # noqa: PLC0415

    client = wavespeed.Client(api_key=args.api_key, base_url=args.base_url)
    noticed: dict[str, float] = {}

    def one(i: int) -> bool:
        output = client.run(
            benchlib.MODEL,
            {"prompt": benchlib.prompt(i), "image": benchlib.IMAGE_URL, "duration": 5},
        )
        url = output["outputs"][0]
        # The SDK returns only the outputs; the mock names them after the task id.
        noticed[url.rsplit("/", 1)[-1].removesuffix(".mp4")] = time.time()
        reply = requests.get(url, timeout=60)
        reply.raise_for_status()
        (out_dir / f"s{i:05d}.mp4").write_bytes(reply.content)
        return True

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        done = list(pool.map(one, range(args.shots)))
    return sum(done), noticed


def naive(args: argparse.Namespace, out_dir: Path) -> tuple[int, dict[str, float]]:
    import peer_naive  # noqa: PLC0415

    shots = [
        {
            "id": f"s{i:05d}",
            "input": {
                "prompt": benchlib.prompt(i),
                "image": benchlib.IMAGE_URL,
                "duration": benchlib.DURATION,
            },
        }
        for i in range(args.shots)
    ]
    return asyncio.run(
        peer_naive.render_all(args.base_url, args.api_key, shots, args.concurrency, out_dir)
    )


CONTENDERS = {"kling": kling, "sdk": sdk, "naive": naive}


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


class Sampler:
    """Samples RSS and open file descriptors every 50 ms in a thread, for the traces."""

    def __init__(self) -> None:
        self.peak_fds = 0
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.05):
            fds = open_fds()
            self.peak_fds = max(self.peak_fds, fds)
            self.samples.append((time.monotonic() - started, current_rss_mb(), fds))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--shots", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument(
        "--spawned-at", type=float, help="epoch seconds at which the parent spawned this process"
    )
    parser.add_argument("--no-records", action="store_true", help="kling: keep_records=False")
    parser.add_argument("--profile", type=Path, help="write cProfile stats to this file")
    parser.add_argument(
        "--sample", action="store_true", help="sample RSS and open fds every 50 ms (costs CPU)"
    )
    args = parser.parse_args()
    # Import everything the contender needs before measuring, as a long-lived program would.
    if args.contender == "kling":
        import kling_pipe._running.run  # noqa: F401, PLC0415
    elif args.contender == "sdk":
        import wavespeed  # noqa: F401, PLC0415
    base_rss = current_rss_mb()
    sampler = Sampler()
    with tempfile.TemporaryDirectory() as tmp, sampler if args.sample else _nothing():
        cpu0, _ = benchlib.rusage_self()
        started = time.monotonic()
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        ok, noticed = CONTENDERS[args.contender](args, Path(tmp))
        if profiler is not None:
            profiler.disable()
        ended = time.monotonic()
        returned_at = time.time()
        wall = ended - started
        cpu1, peak = benchlib.rusage_self()
    # From the process's start: the interpreter, the imports and the run.
    process_wall = returned_at - args.spawned_at if args.spawned_at else float("nan")
    if profiler is not None:
        profiler.dump_stats(str(args.profile))
    print(
        json.dumps(
            {
                "contender": args.contender,
                "ok": ok,
                "wall_s": wall,
                "cpu_s": cpu1 - cpu0,
                "process_wall_s": process_wall,
                "process_cpu_s": cpu1,
                "thread_cpu_s": THREADS,
                # Up to the last shot done (kling-pipe: before its lock file and contact sheet).
                "shots_wall_s": EPILOGUE.get("last_done_monotonic", ended) - started,
                "shots_cpu_s": EPILOGUE.get("last_done_cpu_s", cpu1) - cpu0,
                # kling-pipe: from noticing completion to the shot done (download, checks).
                "notice_to_done_median_s": EPILOGUE.get("notice_to_done_median_s"),
                "peak_rss_mb": peak,
                "base_rss_mb": base_rss,
                "peak_fds": sampler.peak_fds,
                "rss_trace": sampler.samples[:: max(1, len(sampler.samples) // 200)],
                "noticed": noticed,
            }
        )
    )


if __name__ == "__main__":
    main()
