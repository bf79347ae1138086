"""Shared plumbing of the benchmarks: a mock in its own process, contenders in theirs, the ideal.

Every contender (kling-pipe, the official SDK, the hand-written asyncio script) runs in a
fresh Python process against a fresh mock process with the same settings, so that neither
shares an interpreter (or a GIL) with the other and the client's own CPU time and memory can
be read from its process alone. The two processes share the machine's cores, as they would
on a laptop.

Outputs: every shot uses the same image URL and duration, and the mock runs with
``--share-renders`` (its render cache keyed by the request's image, last image and duration,
not the prompt), so it makes one MP4 for the whole run. That MP4 is rendered before timing
starts (`prewarm`), so the mock spends no CPU on video encoding while contenders are
measured; the ideal excludes that work too.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
#: The one image URL all benchmark shots share (the mock draws a placeholder from it).
IMAGE_URL = "https://bench.example/frame.png"
DURATION = 5
API_KEY = "bench-key-0123456789"


def prompt(i: int) -> str:
    return f"benchmark shot {i}: a slow dolly in on a lighthouse"


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"


def today() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d}"


# ----------------------------------------------------------------------------- the mock


class MockProcess:
    """`python -m mockserver` in a child process, with its admin routes at hand."""

    def __init__(self, *args: str, state_dir: Path | None = None) -> None:
        # The balance: the default 1,000 USD pays for only 2,380 shots of 5 s.
        cmd = [PYTHON, "-m", "mockserver", "--port", "0", "--api-key", API_KEY]
        # One video for every shot of the same image (the mock otherwise renders each prompt's).
        # Ten frames a second and placeholders without their checkerboard, as when the goals
        # were set (the mock's default is now film's 24, and its checkered placeholders make
        # videos three times the size that take 2.5 times as long to decode): the client's
        # checks and thumbnails decode what the mock encodes, and the figures are the
        # client's, not the size of the mock's videos. A benchmark's own --fps wins.
        cmd += ["--balance", "1000000", "--share-renders", "--flat-placeholders", "--fps", "10"]
        cmd += args
        if state_dir is not None:
            cmd += ["--state-dir", str(state_dir)]
        self.cmd = cmd
        env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        self.base_url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.base_url = line.rsplit(" ", 1)[-1].strip()
                break
        if not self.base_url:
            self.stop()
            raise RuntimeError(f"the mock did not start: {' '.join(cmd)}")
        self.api_key = API_KEY

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=60) as reply:
            return json.loads(reply.read())["data"]

    def post(self, path: str, body: dict[str, Any], *, key: bool = False) -> Any:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())["data"]

    def stats(self) -> dict[str, Any]:
        return self.get("/_mock/stats")

    def cpu_s(self) -> float:
        """CPU seconds the mock process has used so far (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def prewarm(self) -> str:
        """Render the shared output once, before timing: submit, complete by hand, download."""
        task = self.post(
            f"/api/v3/{MODEL}",
            {"prompt": "prewarm", "image": IMAGE_URL, "duration": DURATION},
            key=True,
        )
        try:
            self.post(f"/_mock/tasks/{task['id']}/complete", {})
        except urllib.error.HTTPError as exc:  # 409: with processing 0 it already completed
            if exc.code != 409:
                raise
        url = f"{self.base_url}/media/outputs/{task['id']}.mp4"
        with urllib.request.urlopen(url, timeout=60) as reply:
            reply.read()
        return str(task["id"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def mock_process(*args: str, state_dir: Path | None = None) -> Iterator[MockProcess]:
    mock = MockProcess(*args, state_dir=state_dir)
    try:
        yield mock
    finally:
        mock.stop()


def processing_args(mean_s: float, jitter_fraction: float, seed: int) -> list[str]:
    args = ["--processing-s", f"{mean_s}", "--seed", str(seed)]
    if jitter_fraction and mean_s:
        args += ["--jitter-s", f"{mean_s * jitter_fraction}"]
    return args


# ----------------------------------------------------------------------------- contenders


def run_contender(name: str, base_url: str, shots: int, concurrency: int, **extra: Any) -> dict:
    """Run one contender in a fresh process; return the JSON it printed."""
    cmd = [
        PYTHON,
        str(HERE / "contenders.py"),
        name,
        "--base-url",
        base_url,
        "--api-key",
        API_KEY,
        "--shots",
        str(shots),
        "--concurrency",
        str(concurrency),
    ]
    for key, value in extra.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value not in (None, False):
            cmd += [flag, str(value)]
    env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    cmd += ["--spawned-at", repr(time.time())]  # its wall time counts from here
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["ok"] != shots:
        raise RuntimeError(f"{name}: only {result['ok']} of {shots} shots done")
    return result


def rusage_self() -> tuple[float, float]:
    """(CPU seconds of this process so far, its peak RSS in MB)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


# ----------------------------------------------------------------------------- the ideal


def ideal_makespan(times: Sequence[float], slots: int) -> float:
    """Makespan of *times*, in order, run greedily on *slots*: instant notice, no overhead."""
    free = [0.0] * slots
    end = 0.0
    for t in times:
        start = heapq.heappop(free)
        finish = start + t
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def run_tasks(stats: dict[str, Any], exclude: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The tasks of the measured run, in submission order."""
    tasks = [(i, t) for i, t in stats["tasks"].items() if i not in exclude]
    return sorted(tasks, key=lambda it: it[1]["submitted_at"])


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def race_figures(
    result: dict[str, Any],
    stats: dict[str, Any],
    exclude: set[str],
    slots: int,
    allowance: float = 1.0,
) -> dict[str, Any]:
    """Wall time against the ideal, GETs per task and noticing delays for one contender.

    *allowance* is the noticing goal for the race's tasks, max(5 % of their time, 1 s): a
    task noticed later than that counts as late.
    """
    tasks = run_tasks(stats, exclude)
    drawn = [t["processing_s"] for _, t in tasks]
    ideal = ideal_makespan(drawn, slots)
    polls = sum(t["polls"] for _, t in tasks)
    # (completed after the first submit, noticing delay), in submission order
    first = tasks[0][1]["submitted_at"] if tasks else 0.0
    timeline = [
        (t["completed_at"] - first, result["noticed"][task_id] - t["completed_at"])
        for task_id, t in tasks
        if task_id in result["noticed"] and t["completed_at"] is not None
    ]
    delays = [d for _, d in timeline]
    # The first wave (the first task of each slot) starts with nothing known about durations.
    polls_by_task = [t["polls"] for _, t in tasks]
    late = [i for i, (task_id, t) in enumerate(tasks) if _late(result, task_id, t, allowance)]
    # Before the contender's first submit: interpreter start and imports.
    startup = result["process_wall_s"] - result["wall_s"]
    return {
        "tasks": len(tasks),
        "ok": result["ok"],
        "wall_s": result["wall_s"],
        "shots_wall_s": result["shots_wall_s"],
        "process_wall_s": result["process_wall_s"],
        "startup_s": startup,
        "ideal_s": ideal,
        "ratio": result["wall_s"] / ideal if ideal else float("nan"),
        "shots_ratio": result["shots_wall_s"] / ideal if ideal else float("nan"),
        "process_ratio": result["process_wall_s"] / ideal if ideal else float("nan"),
        "gets_per_task": polls / max(1, len(tasks)),
        "gets_first_wave": statistics.fmean(polls_by_task[:slots]) if tasks else float("nan"),
        "gets_later": statistics.fmean(polls_by_task[slots:]) if len(tasks) > slots else 0.0,
        "notice_allowance_s": allowance,
        "late_first_wave": sum(i < slots for i in late),
        "late_later": sum(i >= slots for i in late),
        "notice_median_s": quantile(delays, 0.5),
        "notice_p95_s": quantile(delays, 0.95),
        "notice_max_s": max(delays, default=float("nan")),
        "mean_processing_s": statistics.fmean(drawn) if drawn else float("nan"),
        "client_cpu_s": result["cpu_s"],
        "client_process_cpu_s": result["process_cpu_s"],
        "client_shots_cpu_s": result["shots_cpu_s"],
        "notice_to_done_median_s": result.get("notice_to_done_median_s"),
        "client_peak_rss_mb": result["peak_rss_mb"],
        "timeline": [[round(a, 3), round(d, 3)] for a, d in timeline],
    }


def _late(result: dict[str, Any], task_id: str, task: dict[str, Any], allowance: float) -> bool:
    """Whether the contender noticed *task*'s completion later than *allowance* seconds."""
    seen = result["noticed"].get(task_id)
    return (
        seen is not None
        and task["completed_at"] is not None
        and (seen - task["completed_at"] > allowance)
    )


def race(  # noqa: PLR0913 - keyword-only settings of one race
    contenders: Sequence[str],
    *,
    shots: int,
    concurrency: int,
    mean_s: float,
    jitter_fraction: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Each contender against a fresh mock with identical settings (hence identical draws)."""
    out: dict[str, dict[str, Any]] = {}
    for name in contenders:
        with mock_process(*processing_args(mean_s, jitter_fraction, seed)) as mock:
            warm = mock.prewarm()
            result = run_contender(name, mock.base_url, shots, concurrency)
            stats = mock.stats()
        allowance = max(0.05 * mean_s, 1.0)  # the noticing goal of issue 13
        figures = race_figures(result, stats, {warm}, concurrency, allowance)
        figures["submits"] = stats["submits"]
        out[name] = figures
        print(
            f"  {name:>6}: shots done {figures['shots_wall_s']:.2f} s (returned "
            f"{figures['wall_s']:.2f} s, {figures['process_wall_s']:.2f} s from process start), "
            f"ideal {figures['ideal_s']:.2f} s, ratio {figures['shots_ratio']:.3f} "
            f"({figures['process_ratio']:.3f}), GETs/task "
            f"{figures['gets_per_task']:.2f}, "
            f"notice median {figures['notice_median_s']:.3f} s "
            f"p95 {figures['notice_p95_s']:.3f} s",
            flush=True,
        )
    return out


def write_json(path: Path | None, data: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class RaceSpec:
    """One race's fixed settings: the scheduling and long-task benchmarks differ only here."""

    name: str
    mean_s: float
    shots: int
    goal: str
    jitter: float = 0.2
    seed: int = 1
    concurrency: int = 50


CONTENDERS = ("kling", "sdk", "naive")


def measure_race(
    spec: RaceSpec,
    shots: int | None = None,
    concurrency: int | None = None,
    contenders: tuple[str, ...] = CONTENDERS,
) -> dict[str, Any]:
    """Run *spec*'s race (optionally with other N or concurrency) and return its figures."""
    shots = spec.shots if shots is None else shots
    concurrency = spec.concurrency if concurrency is None else concurrency
    print(
        f"{spec.name}: {shots} shots, {spec.mean_s} s ± {spec.jitter:.0%}, "
        f"concurrency {concurrency}",
        flush=True,
    )
    result = race(
        contenders,
        shots=shots,
        concurrency=concurrency,
        mean_s=spec.mean_s,
        jitter_fraction=spec.jitter,
        seed=spec.seed,
    )
    return {
        "shots": shots,
        "concurrency": concurrency,
        "mean_s": spec.mean_s,
        "jitter": spec.jitter,
        "seed": spec.seed,
        "race": result,
    }


def race_main(spec: RaceSpec, description: str) -> None:
    """The command line shared by the race scripts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shots", type=int, default=spec.shots)
    parser.add_argument("--concurrency", type=int, default=spec.concurrency)
    parser.add_argument("--kling-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    contenders = ("kling",) if args.kling_only else CONTENDERS
    figures = measure_race(spec, args.shots, args.concurrency, contenders)
    write_json(args.json, figures)
    kling = figures["race"]["kling"]
    print(f"{machine()}; {today()}")
    print(
        f"  ratio from process start {kling['process_ratio']:.3f} ({spec.goal}), "
        f"GETs per task {kling['gets_per_task']:.2f}"
    )
