"""Kill `kling-pipe run` with SIGKILL at many moments, resume, and count the money.

The run under test is a real subprocess with the bundled mock in-process, so a kill takes
the client and the mock down together, exactly as a closed laptop would; the mock's tasks
and ledger persist beside the store. After the last run: every shot is done, the mock holds
exactly one task per shot, and every file matches its sha256 in the lock file.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kling_pipe import load, media
from kling_pipe.store import state_dir_for
from mockserver import MockConfig, MockServer

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("kling-pipe")
PROCESSING_S = "4"


def start(demo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SCRIPT), "run", str(demo), "-q", "--mock-processing", PROCESSING_S],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def kill_after(demo: Path, seconds: float) -> int | None:
    """Run, SIGKILL after *seconds*; return the exit code if it finished first."""
    proc = start(demo)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    finally:
        assert proc.stderr is not None
        proc.stderr.close()
    return proc.returncode


async def tasks_per_prompt(demo: Path) -> Counter[str]:
    """Count the tasks the persisted mock holds, by prompt: one per shot means none twice."""
    config = MockConfig(state_dir=state_dir_for(demo) / "mock")
    async with MockServer(config) as mock:
        return Counter(task.input["prompt"] for task in mock.state.book.tasks.values())


def trial(tmp_path: Path, kill_points: list[float]) -> dict[str, object]:
    shutil.copytree(
        REPO / "specs",
        tmp_path / "specs",
        ignore=shutil.ignore_patterns("renders", "*.kling-state", "*.lock.json"),
    )
    demo = tmp_path / "specs" / "demo.toml"
    finished_early = 0
    for seconds in kill_points:
        if kill_after(demo, seconds) is not None:
            finished_early += 1
    final = subprocess.run(
        [str(SCRIPT), "run", str(demo), "--json", "--mock-processing", PROCESSING_S],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert {s["status"] for s in summary["shots"]} <= {"done", "cached"}

    shotlist = load(demo)
    per_prompt = asyncio.run(tasks_per_prompt(demo))
    assert sorted(per_prompt) == sorted(s.final_prompt for s in shotlist.shots)
    assert set(per_prompt.values()) == {1}, per_prompt

    lock = json.loads((demo.parent / "demo.toml.lock.json").read_text())
    for shot_id, entry in lock["simulated"].items():  # the bundled mock made them
        assert entry["status"] == "downloaded", shot_id
        path = demo.parent / entry["file"]
        assert media.sha256_file(path) == entry["sha256"]
        assert abs(media.probe_duration_s(path) - entry["duration"]) < 0.2
    return {"kills": len(kill_points) - finished_early, "tasks": dict(per_prompt)}


def test_killed_runs_resume_without_a_second_submission_or_a_lost_output(tmp_path):
    """Kills before, during and after submits, while processing and while downloading."""
    outcome = trial(tmp_path, [0.3, 0.6, 0.9, 1.3, 1.9, 2.6, 3.4])
    assert outcome["kills"] >= 5  # a late run may find every task already done


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_kill_and_resume_at_random_moments(tmp_path, seed):
    rng = random.Random(seed)
    points = [round(rng.uniform(0.2, 3.5), 2) for _ in range(rng.randint(4, 10))]
    started = time.monotonic()
    outcome = trial(tmp_path, points)
    assert outcome["kills"] >= 1
    assert time.monotonic() - started < 300
