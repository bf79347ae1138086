"""Ctrl-C: the first stops submitting and exits cleanly; the next run picks the tasks up."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("kling-pipe")


def test_ctrl_c_records_what_is_in_flight_and_a_rerun_pays_nothing_twice(tmp_path):
    shutil.copytree(
        REPO / "specs",
        tmp_path / "specs",
        ignore=shutil.ignore_patterns("renders", "*.kling-state", "*.lock.json"),
    )
    demo = tmp_path / "specs" / "demo.toml"
    proc = subprocess.Popen(
        [str(SCRIPT), "run", str(demo), "--json", "--mock-processing", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: the tasks above are recorded" in err
    first = json.loads(out)
    in_flight = {s["id"]: s["task_id"] for s in first["shots"] if s["status"] == "cancelled"}
    assert in_flight
    assert not list((demo.parent / "renders" / "paper-boat").glob(".*.part"))

    again = subprocess.run(
        [str(SCRIPT), "run", str(demo), "--json", "--mock-processing", "4"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    second = {s["id"]: s for s in json.loads(again.stdout)["shots"]}
    for shot_id, task_id in in_flight.items():
        assert second[shot_id]["task_ids"] == [task_id]  # polled, never resubmitted
        assert second[shot_id]["cost"] == "0.000"
