"""A production's life at the command line: `--only`, the film's budget, expiry, as users see it.

Every command runs the installed console script on a copy of the examples (`tests.cli_support`).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kling_pipe._records.assessment import assess_shotlist
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._shotlist.loader import load
from mockserver import FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import SCRIPT, copy_specs, kp, user_env
from tests.e2e.e2e_support import HARBOUR

TASK = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return copy_specs(tmp_path) / "demo.toml"


def with_budget(demo: Path, budget: str) -> Path:
    demo.write_text(
        demo.read_text().replace("max_cost = 5.00", f"max_cost = 5.00\nbudget = {budget}")
    )
    return demo


# --only


def test_plan_only_names_and_prices_the_source_the_shot_needs(demo):
    done = kp("plan", demo, "--only", "gutter")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "gutter needs puddle (no current video): +0.420" in lines
    assert "total: 0.840 USD for 2 shots to render (10 s), max_cost 5.00" in lines
    assert "--only gutter: 4 other shots not in --only, left as they are" in lines
    assert sum("not in --only" in line for line in lines) == 5


def test_only_naming_nothing_is_one_line_and_exit_2(demo):
    for command in ("plan", "run"):
        done = kp(command, demo, "--only", "harbour-*")
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            "kling-pipe: --only: 'harbour-*' names no shot or take of demo.toml; its shots: "
            "puddle, gutter, street, river, open-sea, dusk (give ids, id#take or globs such as "
            "'harbour-*')"
        ]


def test_run_only_renders_the_subset_and_says_the_rest_is_not_in_only(demo):
    done = kp("run", demo, "--only", "gutter", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    head, *rows = done.stdout.splitlines()
    assert head.startswith("paper-boat: 2 done, 4 not in --only in ")
    assert "not in --only, left as they are: street, river, open-sea, dusk" in rows
    status = json.loads(kp("status", demo, "--json").stdout)
    assert [s["status"] for s in status["shots"]] == ["cached", "cached", *["pending"] * 4]


def test_plan_only_a_glob_names_the_stale_source_its_chain_needs(demo):
    path = demo.parent / "harbour.toml"
    path.write_text(HARBOUR.format(dock="a paper boat at the dock"))
    assert kp("run", path, "-q", "--mock-processing", "0.1").returncode == 0
    path.write_text(HARBOUR.format(dock="a paper boat at the dock at night"))
    done = kp("plan", path, "--only", "harbour-*")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "harbour-a needs dock (no current video): +0.420" in lines
    assert "total: 1.260 USD for 3 shots to render (15 s); 1 already rendered or paid for" in lines
    shown = json.loads(kp("plan", path, "--only", "harbour-*", "--json").stdout)
    assert [(s["id"], s["status"]) for s in shown["shots"]] == [
        ("dock", "render"),
        ("harbour-a", "render"),
        ("harbour-b", "render"),
        ("storm", "cached"),
    ]
    assert shown["needs"] == [
        {"id": "dock", "needed_by": ["harbour-a"], "status": "render", "cost": "0.420"}
    ]


def read_until(master: int, wanted: str, timeout_s: float = 60) -> str:
    """Read the terminal's output until *wanted* shows (*timeout_s* only guards a hang)."""
    seen = ""
    while wanted not in seen:
        ready, _, _ = select.select([master], [], [], timeout_s)
        assert ready, f"no {wanted!r} on the terminal; it showed: {seen!r}"
        seen += os.read(master, 4096).decode()
    return seen


def test_the_spend_confirmation_names_and_prices_the_source_the_subset_needs(demo):
    """Asked on a terminal before paying: the source is named and priced; "n" pays nothing.

    Regression: the live table was drawn over the question, and its "[y/N]" read as markup.
    """
    with ThreadedMockServer(MockConfig(processing=FixedTime(seconds=0.05))) as mock:
        master, terminal = pty.openpty()
        run = subprocess.Popen(
            [str(SCRIPT), "run", str(demo), "--only", "gutter", "--backend", "wavespeed"],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=user_env({"WAVESPEED_API_KEY": mock.api_key, "WAVESPEED_BASE_URL": mock.base_url}),
            cwd=demo.parent,
        )
        os.close(terminal)
        try:
            shown = read_until(master, "[y/N]")
            os.write(master, b"n\n")
            assert run.wait(timeout=60) == 2
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
            os.close(master)
        lines = shown.splitlines()
        assert "gutter needs puddle (no current video): +0.420" in lines
        assert "total: 0.840 USD for 2 shots to render (10 s), max_cost 5.00" in lines
        assert lines[-1].startswith("Spend up to 0.840 USD on WaveSpeed? [y/N]")
        assert mock.stats()["submits"] == 0


def test_a_rerender_outside_only_is_refused(demo):
    done = kp("run", demo, "--only", "dusk", "--rerender", "river")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kling-pipe: --rerender river: not in --only, so it would not be rendered; name it "
        "in --only too"
    ]


def test_the_help_shows_how_to_test_one_shot_before_paying_for_all(demo):
    run_help = kp("run", "--help").stdout
    assert "Try one shot before paying for all: --only ID" in run_help
    assert "--only river --backend wavespeed   # one shot first" in run_help
    assert "--only ID [ID ...]" in kp("plan", "--help").stdout


# The film's budget


def test_plan_and_status_show_spent_this_run_and_what_is_left(demo):
    with_budget(demo, "4")
    assert kp("run", demo, "--only", "dusk", "-q", "--mock-processing", "0.1").returncode == 0
    plan = kp("plan", demo)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[-2] == (
        "budget 4 USD: 0.420 spent so far, 2.688 this run, 0.892 left"
    )
    status = kp("status", demo)
    assert status.stdout.splitlines()[-1] == (
        "budget 4 USD: 0.420 spent so far, 2.688 still to spend, 0.892 left"
    )
    document = json.loads(kp("status", demo, "--json").stdout)
    assert document["budget"] == {
        "budget": "4",
        "spent": "0.420",
        "this_run": "2.688",
        "left": "0.892",
    }


def test_a_run_that_would_pass_the_budget_is_refused_before_any_request(demo):
    with_budget(demo, "3")
    assert kp("run", demo, "--only", "dusk", "-q", "--mock-processing", "0.1").returncode == 0
    done = kp("run", demo, "-q")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{demo}: storyboard.budget: 0.420 USD spent on this storyboard so far and 2.688 USD "
        "for 5 shots in this run make 3.108, more than its budget 3; raise budget or render "
        "fewer shots; nothing was submitted"
    ]
    plan = kp("plan", demo)
    assert plan.returncode == 2
    assert "budget 3 USD: 0.420 spent so far, 2.688 this run: 0.108 over the budget" in plan.stdout


# Expiry


def recorded_task(demo: Path, shot: str, *, age: timedelta, expired: bool = False) -> None:
    """Record that *shot*'s task (of the bundled mock) was submitted *age* ago, not downloaded."""
    shotlist = load(demo)
    with Store.open(state_dir_for(demo)) as store:
        assessment = assess_shotlist(shotlist, store, origin="mock")
        attempt = store.adopt(
            shot_id=shot,
            fingerprint=assessment.fingerprints[shot],
            inputs=assessment.inputs[shot],
            model=shotlist.storyboard.model,
            duration=shotlist.shot(shot).duration,
            cost=Decimal("0.420"),
            task_id=TASK,
            sent_at=datetime.now(UTC) - age,
            origin="mock",
            state="completed",
        )
        if expired:
            store.record_expired(attempt, f"output expired: task {TASK} ...")


def test_status_warns_about_a_task_not_downloaded_a_day_before_wavespeed_drops_it(demo):
    recorded_task(demo, "dusk", age=timedelta(days=6, hours=12))
    done = kp("status", demo)
    assert done.returncode == 0, done.stderr
    warning = next(line for line in done.stdout.splitlines() if line.startswith("warning:"))
    assert warning.startswith(
        f"warning: dusk: task {TASK} is not downloaded yet and WaveSpeed drops its output in "
        "about 12 h ("
    )
    document = json.loads(kp("status", demo, "--json").stdout)
    assert [(w["id"], w["task_id"]) for w in document["expiring"]] == [("dusk", TASK)]


def test_an_expired_output_says_so_in_status_plan_and_the_run_summary(demo):
    recorded_task(demo, "dusk", age=timedelta(days=9), expired=True)
    status = kp("status", demo).stdout.splitlines()
    assert any(line.startswith("  dusk      expired    output expired: task") for line in status)
    plan = kp("plan", demo).stdout
    assert "--rerender dusk renders it anew: +0.420" in plan
    run = kp("run", demo, "-q", "--mock-processing", "0.1")
    assert run.returncode == 1
    head, *rows = run.stdout.splitlines()
    assert head.startswith("paper-boat: 5 done, 1 output expired in ")
    assert any(row.startswith("  dusk      expired") for row in rows)
