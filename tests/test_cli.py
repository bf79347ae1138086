"""The installed `kling-pipe` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mockserver import MockConfig, ThreadedMockServer
from tests.cli_support import REPO, SCRIPT, kp, user_env
from tests.imagefiles import over_10_mb, write_image


def test_the_console_script_is_installed():
    assert SCRIPT.exists()


def test_validate_accepts_every_example(specs):
    examples = sorted(p.relative_to(specs.parent) for p in specs.glob("*.toml"))
    done = kp("validate", *examples, cwd=specs.parent)
    assert done.returncode == 0, done.stderr
    assert "specs/demo.toml: ok (6 shots, 37 s, 3.108 USD)" in done.stdout


def test_validate_reports_every_problem_and_exits_2_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = 1\n[storyboard]\nname = "b"\n[[shots]]\nid = "a"\nprompt = "p"\n'
        'image = "https://x.test/a.png"\nduration = 7\ndurration = 5\n'
    )
    done = kp("validate", bad)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'{bad}: shots[0] (id "a").durration: unknown key; did you mean "duration"?',
        f'{bad}: shots[0] (id "a").duration: 7 needs last_image; without it only 5 or 10 '
        "are allowed",
    ]
    assert "Traceback" not in done.stderr


def test_validate_json_gives_problems_as_data(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n")
    done = kp("validate", "--json", bad)
    assert done.returncode == 2
    assert json.loads(done.stdout)[0] == {
        "file": str(bad),
        "path": "storyboard",
        "message": "missing; a shot list needs [storyboard] with at least a name",
    }


def test_a_toml_syntax_error_is_one_line_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[storyboard\n")
    done = kp("plan", bad)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{bad}: line 2, column 12: invalid TOML:")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_shot_list_saved_with_a_utf8_byte_order_mark_is_accepted(specs, command):
    """A BOM (Notepad's UTF-8) is not "line 1, column 1: invalid TOML" in any command."""
    demo = specs / "demo.toml"
    demo.write_bytes(b"\xef\xbb\xbf" + demo.read_bytes())
    done = kp(command, demo, *(["--mock-processing", "0.2"] if command == "run" else []))
    assert done.returncode == 0, done.stderr
    assert "invalid TOML" not in done.stderr


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_frame_outside_klings_aspect_ratios_is_warned_of_and_not_refused(specs, command):
    """A 3:1 frame may fail on the server: said in one line naming it, exit still 0."""
    write_image(specs / "frames" / "pano.png", "png", 960, 320)
    demo = specs / "demo.toml"
    demo.write_text(demo.read_text().replace('"frames/dusk.png"', '"frames/pano.png"'))
    done = kp(command, demo, *(["--mock-processing", "0.2"] if command == "run" else []))
    assert done.returncode == 0, done.stderr
    warning = (
        f'{demo}: shots[5] (id "dusk").image: warning: "{specs / "frames" / "pano.png"}" is '
        "960x320 px, an aspect ratio of 3:1; Kling takes frames from 1:2.5 (tall) to 2.5:1 "
        "(wide); WaveSpeed's page for kwaivgi/kling-video-o1-std/image-to-video states no "
        "limit, so the frame may be refused only once it is sent"
    )
    assert warning in done.stderr.splitlines()


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
@pytest.mark.parametrize(
    ("size", "said", "run_exit"),
    [
        ((480, 200), "480x200 px; WaveSpeed needs at least 300 px on the short side", 0),
        ("over 10 MB", "10.0 MB; WaveSpeed takes images of at most 10 MB", 1),
    ],
)
def test_a_frame_under_300_px_or_over_10_mb_is_warned_of_for_o1_standard(
    specs, command, size, said, run_exit
):
    """O1 Standard's page states no image limit: each is a warning naming file and shot.

    Validate and plan go on (exit 0); a run sends the shot, and the server has the last
    word: the mock, as WaveSpeed, takes a small frame and refuses an upload over 10 MB (that
    shot fails, unpaid: exit 1).
    """
    frame = specs / "frames" / "odd.png"
    if size == "over 10 MB":
        over_10_mb(write_image(frame, "png", 480, 320))
    else:
        write_image(frame, "png", *size)
    demo = specs / "demo.toml"
    demo.write_text(demo.read_text().replace('"frames/dusk.png"', '"frames/odd.png"'))
    done = kp(command, demo, *(["--mock-processing", "0.2"] if command == "run" else []))
    warning = (
        f'{demo}: shots[5] (id "dusk").image: warning: "{frame}" is {said}; WaveSpeed\'s page '
        "for kwaivgi/kling-video-o1-std/image-to-video states no limit, so the frame may be "
        "refused only once it is sent"
    )
    assert warning in done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert done.returncode == (run_exit if command == "run" else 0), done.stderr
    if command == "run" and run_exit:
        assert "dusk" in done.stdout
        assert "10 MB" in done.stdout + done.stderr


def test_plan_json_prints_exactly_the_documented_shape(specs):
    done = kp("plan", "specs/demo.toml", "--json", cwd=specs.parent)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["storyboard"] == "paper-boat"
    assert data["model"] == "kwaivgi/kling-video-o1-std/image-to-video"
    assert data["total_cost"] == "3.108"
    assert data["max_cost"] == "5.00"
    assert data["shots"][3] == {
        "id": "river",
        "duration": 7,
        "takes": 1,
        "cost": "0.588",
        "status": "render",
        "pick": 1,
        "take_status": ["render"],
    }


def test_the_readmes_plan_json_sample_is_what_plan_json_prints(specs):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    after = readme.split("`kling-pipe plan specs/demo.toml --json` prints", 1)[1]
    sample = after.split("```json\n", 1)[1].split("```", 1)[0]
    done = kp("plan", "specs/demo.toml", "--json", cwd=specs.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == sample


def test_plan_over_budget_exits_2_and_says_why(specs):
    text = (specs / "demo.toml").read_text().replace("max_cost = 5.00", "max_cost = 1.00")
    (specs / "demo.toml").write_text(text)
    done = kp("plan", specs / "demo.toml")
    assert done.returncode == 2
    assert "total: 3.108 USD" in done.stdout
    assert "more than max_cost 1.00" in done.stderr


@pytest.mark.parametrize("command", ["validate", "plan", "run", "mock"])
def test_every_command_explains_itself_with_an_example(command):
    done = kp(command, "--help")
    assert done.returncode == 0
    assert "examples:" in done.stdout


def test_python_dash_m_is_the_same_command(specs):
    done = subprocess.run(
        [sys.executable, "-m", "kling_pipe", "plan", "specs/demo.toml"],
        capture_output=True,
        text=True,
        cwd=specs.parent,
        env=user_env(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert "total: 3.108 USD" in done.stdout


def test_run_renders_the_demo_against_the_bundled_mock(specs):
    done = kp("run", specs / "demo.toml", "--json", "--mock-processing", "0.2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["totals"]["done"] == 6
    assert summary["totals"]["spent"] == "3.108"
    for shot in summary["shots"]:
        assert Path(shot["file"]).stat().st_size == shot["bytes"]
    # Without a terminal, progress is one plain line per state change.
    assert "puddle: processing: task " in done.stderr


def test_run_refuses_an_invalid_shot_list_before_sending_anything(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[storyboard]\nname = "b"\n')
    done = kp("run", bad)
    assert done.returncode == 2
    assert done.stderr == f"{bad}: shots: missing; add at least one [[shots]] table\n"


def test_the_real_backend_needs_yes_without_a_terminal(specs):
    done = kp("run", specs / "demo.toml", "--backend", "wavespeed", env={"WAVESPEED_API_KEY": "k"})
    assert done.returncode == 2
    assert "pass --yes" in done.stderr


def test_the_real_backend_without_a_key_is_a_one_line_error(specs):
    done = kp("run", specs / "demo.toml", "--backend", "wavespeed", "--yes")
    assert done.returncode == 2
    assert done.stderr.startswith("kling-pipe: WAVESPEED_API_KEY is not set")
    assert len(done.stderr.splitlines()) == 1


def test_plain_http_is_refused_for_a_remote_host(specs):
    done = kp(
        "run",
        specs / "demo.toml",
        "--backend",
        "wavespeed",
        "--yes",
        "--base-url",
        "http://api.example.com",
        env={"WAVESPEED_API_KEY": "k"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "http://" in done.stderr


def test_a_url_frame_from_a_shot_list_is_sent_as_written(specs):
    """The examples hold no URL frame (a real run would pay for a placeholder): this one does."""
    board = specs / "url.toml"
    board.write_text(
        'version = 1\n[storyboard]\nname = "url"\n[[shots]]\nid = "street"\n'
        'prompt = "the boat races downhill"\nimage = "https://frames.test/street.jpg"\n'
    )
    with ThreadedMockServer(MockConfig(api_key="k")) as mock:
        real = ("--backend", "wavespeed", "--yes", "--base-url", mock.base_url)
        done = kp("run", board, *real, env={"WAVESPEED_API_KEY": "k"})
        sent = [t["input"]["image"] for t in mock.tasks()]
    assert done.returncode == 0, done.stderr
    assert sent == ["https://frames.test/street.jpg"]


def test_the_wavespeed_backend_renders_and_never_prints_the_key(specs):
    key = "sk-RECOGNISABLE-secret-0123456789"
    with ThreadedMockServer(MockConfig(api_key=key)) as mock:
        done = kp(
            "run",
            specs / "keyframes.toml",
            "--backend",
            "wavespeed",
            "--yes",
            "-vv",
            "--base-url",
            mock.base_url,
            "--json",
            env={"WAVESPEED_API_KEY": key},
        )
    assert done.returncode == 0, done.stderr
    assert key not in done.stdout
    assert key not in done.stderr
    assert json.loads(done.stdout)["totals"]["done"] == 3


def test_a_wrong_key_fails_every_shot_cleanly_and_stops(specs):
    with ThreadedMockServer() as mock:
        done = kp(
            "run",
            specs / "demo.toml",
            "--backend",
            "wavespeed",
            "--yes",
            "--base-url",
            mock.base_url,
            env={"WAVESPEED_API_KEY": "wrong-key"},
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "401" in done.stderr or "key" in done.stderr


def test_a_mock_runs_contact_sheet_says_its_money_is_simulated(specs):
    done = kp("run", specs / "keyframes.toml", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    html = (specs / "renders" / "keyframes" / "mock" / "index.html").read_text()
    assert "USD simulated (bundled mock: nothing charged)" in html
    assert html.count("USD simulated</dd>") == 3
    assert "spent" not in html


def test_no_report_skips_the_contact_sheet_and_report_writes_it_later(specs):
    done = kp("run", specs / "chain.toml", "--no-report", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    sheet = specs / "renders" / "chain" / "mock" / "index.html"
    assert not sheet.exists()
    later = kp("report", specs / "chain.toml")
    assert later.returncode == 0, later.stderr
    assert later.stdout.strip() == str(sheet)
    assert 'id="shot-c-reverse"' in sheet.read_text()


def test_plan_says_when_the_account_processes_fewer_tasks_than_a_run_would_keep_going(
    specs, private_task_registry
):
    from datetime import UTC, datetime  # noqa: PLC0415

    from kling_pipe._backends.base import MOCK_ORIGIN  # noqa: PLC0415
    from kling_pipe._records.registry import Registry, known_account_limit  # noqa: PLC0415

    # The account's limit is looked up once the storyboard has records (a run was made).
    assert kp("run", specs / "demo.toml", "--mock-processing", "0.05").returncode == 0
    assert "limited by the account" not in kp("plan", specs / "demo.toml").stdout
    with Registry.open(private_task_registry) as registry:
        registry.record_account_limit(MOCK_ORIGIN, 2, datetime(2026, 12, 7, tzinfo=UTC))
    assert known_account_limit(MOCK_ORIGIN, private_task_registry) == (
        2,
        datetime(2026, 12, 7, tzinfo=UTC),
    )
    done = kp("plan", specs / "demo.toml")
    assert done.returncode == 0, done.stderr
    assert (
        "limited by the account: it processed 2 tasks at once when last run (2026-12-07), "
        "below concurrency 4" in done.stdout
    )
