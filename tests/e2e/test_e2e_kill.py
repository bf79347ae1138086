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
from collections import Counter
from pathlib import Path

import pytest

from kling_pipe import _files, load
from kling_pipe._outputs import media
from kling_pipe._records.store import state_dir_for
from mockserver import MockConfig, MockServer
from tests.cli_support import Running, kp
from tests.settling import FAST_SETTLE

PROCESSING_S = "4"
#: The run's options: the mock's processing time, and the settle window of the other
#: end-to-end tests (a submit killed on the wire is settled within about a second).
RUN = (
    "--mock-processing",
    PROCESSING_S,
    "--act-window",
    str(FAST_SETTLE.act_window.total_seconds()),
    "--history-lag",
    str(FAST_SETTLE.history_lag.total_seconds()),
)
#: The moments a run can be killed at: the n-th progress line saying a shot is uploading,
#: submitting (its submit is on the wire), processing (a submit was answered), downloading
#: or done (an output was written).
STATES = ("uploading", "submitting", "processing", "downloading", "done")
Moment = tuple[str, int]


def kill_at(demo: Path, moment: Moment) -> int | None:
    """Run; SIGKILL at the *moment*'s line of progress; return the exit code if it ended first."""
    state, nth = moment
    run = Running("run", demo, *RUN, cwd=demo.parent)
    if run.wait_for(f": {state}", count=nth) is None:
        return run.finish().returncode
    run.kill()
    return None


async def tasks_per_prompt(demo: Path) -> Counter[str]:
    """Count the tasks the persisted mock holds, by prompt: one per shot means none twice."""
    config = MockConfig(state_dir=state_dir_for(demo) / "mock")
    async with MockServer(config) as mock:
        return Counter(task.input["prompt"] for task in mock.state.book.tasks.values())


def trial(specs: Path, moments: list[Moment]) -> dict[str, object]:
    demo = specs / "demo.toml"
    finished_early = 0
    for moment in moments:
        if kill_at(demo, moment) is not None:
            finished_early += 1
    final = kp("run", demo, "--json", *RUN, cwd=specs)
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
        assert _files.sha256_file(path) == entry["sha256"]
        assert abs(media.probe_duration_s(path) - entry["duration"]) < 0.2
    return {"kills": len(moments) - finished_early, "tasks": dict(per_prompt)}


def test_killed_runs_resume_without_a_second_submission_or_a_lost_output(specs):
    """Kills after the submits, while processing, while downloading, after an output.

    A kill while a submit is on the wire waits out the answer's time-out before the shot
    may be resent (a minute): that case is `test_e2e_lost_submits`'s and the slow trials'.
    """
    first_wave = sum(not shot.chained_from for shot in load(specs / "demo.toml").shots)
    outcome = trial(
        specs,
        [
            ("processing", first_wave),  # every first submit answered, none downloaded
            ("processing", 2),  # a resumed run, while polling its tasks
            ("downloading", 1),  # while an output is downloading
            ("done", 1),  # just after an output was written
        ],
    )
    assert outcome["kills"] >= 3  # a late run may find every task already done


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_kill_and_resume_at_random_moments(specs, seed):
    rng = random.Random(seed)
    moments = [(rng.choice(STATES), rng.randint(1, 4)) for _ in range(rng.randint(4, 10))]
    outcome = trial(specs, moments)
    assert outcome["kills"] >= 1
