"""Ctrl-C: the first stops submitting and exits cleanly; the next run picks the tasks up."""

from __future__ import annotations

import json
import signal

from kling_pipe import load
from tests.cli_support import Running, kp


def test_ctrl_c_records_what_is_in_flight_and_a_rerun_pays_nothing_twice(specs):
    demo = specs / "demo.toml"
    first_wave = sum(not shot.chained_from for shot in load(demo).shots)
    run = Running("run", demo, "--json", "--mock-processing", "4", cwd=specs)
    # Wait for the event: every shot that can start has its task at the mock, processing.
    line = run.wait_for(": processing: task ", count=first_wave)
    assert line is not None, run.finish().stderr
    run.send_signal(signal.SIGINT)
    first_run = run.finish(timeout_s=60)
    err = first_run.stderr
    assert first_run.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: the tasks above are recorded" in err
    first = json.loads(first_run.stdout)
    in_flight = {s["id"]: s["task_id"] for s in first["shots"] if s["status"] == "cancelled"}
    assert in_flight
    assert not list((specs / "renders" / "paper-boat").glob(".*.part"))

    again = kp("run", demo, "--json", "--mock-processing", "4", cwd=specs)
    assert again.returncode == 0, again.stderr
    second = {s["id"]: s for s in json.loads(again.stdout)["shots"]}
    for shot_id, task_id in in_flight.items():
        assert second[shot_id]["task_ids"] == [task_id]  # polled, never resubmitted
        assert second[shot_id]["cost"] == "0.000"
