"""Money and files a user can trust: each test is one promise of the README, tried as found.

Real renders are played by a `WaveSpeedClient` against an in-process mock on its own URL (an
origin other than the bundled mock's), so "a real run" and "a mock run" can be told apart.
"""

from __future__ import annotations

import json
import shutil
import signal
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from kling_pipe import _files, load
from kling_pipe._records.lockfile import section_for, totals_key
from kling_pipe._records.store import state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe.exceptions import KlingPipeError
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig
from mockserver.threaded import ThreadedMockServer
from tests.cli_support import Running, kp
from tests.settling import FAST_SETTLE

OPTIONS = RunOptions(settle=FAST_SETTLE)
BOARD = """version = 1
[storyboard]
name = "trust"

[[shots]]
id = "{first}"
prompt = "A paper boat on a puddle"
image = "frames/puddle.png"

[[shots]]
id = "dusk"
prompt = "The sun sets behind the boat"
image = "frames/dusk.png"
"""


@pytest.fixture
def board(tmp_path: Path, frames: Path) -> Path:
    path = tmp_path / "trust.toml"
    path.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    return path


def mock_config() -> MockConfig:
    return MockConfig(processing=FixedTime(seconds=0.1), max_side_px=160, fps=2)


def task_count(server: ThreadedMockServer) -> int:
    return len(server.tasks())


async def test_a_mock_render_never_passes_for_a_real_one(board, client_for, start_mock):
    """The README's order: the demo on the mock, then a real run pays for every shot."""
    mocked = await render(
        board, backend="mock", options=RunOptions(mock_processing_s=0.1, report=False)
    )
    assert mocked.simulated
    assert {s.state for s in mocked.shots} == {"done"}
    real_server = await start_mock(mock_config())
    real = await render(
        board, backend=client_for(real_server), options=attrs.evolve(OPTIONS, report=False)
    )
    assert [s.state for s in real.shots] == ["done", "done"]  # not "cached"
    assert not real.simulated
    assert real.spent == Decimal("0.840")
    out = board.parent / "renders" / "trust"
    assert (out / "local" / "puddle.mp4").is_file()  # a local server's, standing in for it
    assert (out / "mock" / "puddle.mp4").is_file()


async def test_a_mock_run_after_a_real_one_never_touches_the_paid_videos(
    board, client_for, start_mock
):
    real_server = await start_mock(mock_config())
    await render(
        board, backend=client_for(real_server), options=attrs.evolve(OPTIONS, report=False)
    )
    paid = board.parent / "renders" / "trust" / "local" / "puddle.mp4"
    before = _files.sha256_file(paid)
    await render(board, backend="mock", options=RunOptions(mock_processing_s=0.1, report=False))
    assert _files.sha256_file(paid) == before
    lock = json.loads((board.parent / "trust.toml.lock.json").read_text())
    paid = section_for(real_server.base_url)  # the section (and totals) of that origin's kind
    assert lock[paid]["puddle"]["origin"] == real_server.base_url
    assert lock["simulated"]["puddle"]["origin"] == "mock"
    assert lock[totals_key(paid)]["cost"] == "0.840"


async def test_renaming_a_shot_takes_its_render_over_and_pays_nothing(
    board, client_for, start_mock
):
    server = await start_mock(mock_config())
    await render(board, backend=client_for(server), options=attrs.evolve(OPTIONS, report=False))
    tasks = len(server.tasks())
    board.write_text(BOARD.format(first="boat-on-puddle"), encoding="utf-8")
    plan = kp("plan", board, "--json", "--backend", "wavespeed", "--base-url", server.base_url)
    assert json.loads(plan.stdout)["total_cost"] == "0.000", plan.stdout
    again = await render(
        board, backend=client_for(server), options=attrs.evolve(OPTIONS, report=False)
    )
    assert [s.state for s in again.shots] == ["cached", "cached"]
    assert again.spent == Decimal("0.000")
    assert len(server.tasks()) == tasks
    out = board.parent / "renders" / "trust" / "local"
    assert (out / "boat-on-puddle.mp4").is_file()
    assert not (out / "puddle.mp4").exists()


async def test_a_renamed_shots_render_never_lands_on_a_file_of_the_users(
    board, client_for, start_mock
):
    server = await start_mock(mock_config())
    await render(board, backend=client_for(server), options=attrs.evolve(OPTIONS, report=False))
    out = board.parent / "renders" / "trust" / "local"
    paid = _files.sha256_file(out / "puddle.mp4")
    (out / "boat-on-puddle.mp4").write_bytes(b"the user's own boat video")
    board.write_text(BOARD.format(first="boat-on-puddle"), encoding="utf-8")
    again = await render(
        board, backend=client_for(server), options=attrs.evolve(OPTIONS, report=False)
    )
    assert [s.state for s in again.shots] == ["cached", "cached"]
    assert _files.sha256_file(out / "boat-on-puddle.mp4") == paid
    assert (out / "boat-on-puddle.yours-1.mp4").read_bytes() == b"the user's own boat video"


def test_a_folder_of_the_users_without_an_owner_marker_is_never_taken(tmp_path, frames):
    """output_dir = "edit", where the user keeps their cut: refused, their files untouched."""
    board = tmp_path / "trust.toml"
    text = BOARD.format(first="intro").replace(
        'name = "trust"', 'name = "trust"\noutput_dir = "edit"'
    )
    board.write_text(text, encoding="utf-8")
    edit = tmp_path / "edit"
    edit.mkdir()
    (edit / "intro.mp4").write_bytes(b"my intro, cut by hand")
    (edit / "index.html").write_text("<h1>my project</h1>", encoding="utf-8")
    before = {p: p.read_bytes() for p in edit.rglob("*")}
    with ThreadedMockServer(mock_config()) as server:
        args = ["--backend", "wavespeed", "--base-url", server.base_url, "--yes"]
        done = kp("run", board, *args, env={"WAVESPEED_API_KEY": server.api_key})
        tasks = len(server.tasks())
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "edit: holds files kling-pipe did not write (index.html, intro.mp4)" in done.stderr
    assert "Traceback" not in done.stderr
    assert tasks == 0
    assert {p: p.read_bytes() for p in edit.rglob("*")} == before  # no marker, nothing new


def test_a_render_the_user_edited_in_place_is_kept_before_a_refetch_lands(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0
    video = tmp_path / "renders" / "trust" / "mock" / "puddle.mp4"
    paid = _files.sha256_file(video)
    with video.open("r+b") as fh:  # graded in place: the same file, other bytes
        fh.write(b"graded")
    graded = video.read_bytes()
    again = kp("run", board, "--mock-processing", "0.1")
    assert again.returncode == 0, again.stderr
    assert _files.sha256_file(video) == paid  # the render is back, fetched from its task
    kept = video.with_name("puddle.yours-1.mp4")
    assert kept.read_bytes() == graded
    assert f"{video}: not written by kling-pipe" in again.stderr
    assert "kept as puddle.yours-1.mp4" in again.stderr


def test_a_fresh_checkout_adopts_a_task_that_was_in_flight(tmp_path, frames):
    """The lock file records a task in flight; a checkout without state polls it, pays nothing."""
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    with ThreadedMockServer(MockConfig(processing=FixedTime(seconds=3600))) as server:
        env = {"WAVESPEED_API_KEY": server.api_key}
        args = ["--backend", "wavespeed", "--base-url", server.base_url]
        first = kp("run", board, *args, "--yes", "--task-timeout", "1", env=env)
        assert first.returncode == 1, first.stderr  # both tasks still processing: timed out
        lock = json.loads((tmp_path / "trust.toml.lock.json").read_text())
        entries = lock[section_for(server.base_url)]
        assert {e["status"] for e in entries.values()} == {"submitted"}
        shutil.rmtree(state_dir_for(board))  # a fresh checkout: the lock file, no state
        plan = kp("plan", board, "--json", *args, env=env)
        assert json.loads(plan.stdout)["total_cost"] == "0.000"
        status = kp("status", board, "--json", *args, env=env)
        assert {s["status"] for s in json.loads(status.stdout)["shots"]} == {"in flight"}
        for task in server.tasks():
            server.call(lambda mock, task_id=task["id"]: mock.state.finish(task_id))
        again = kp("run", board, *args, "--yes", "--json", env=env)
        assert again.returncode == 0, again.stderr
        summary = json.loads(again.stdout)
        assert summary["totals"]["spent"] == "0.000"
        assert len(server.tasks()) == 2


def test_an_output_folder_that_cannot_be_written_is_found_before_paying(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    # A file where the output folder should be: no folder can be made there, even as root.
    (tmp_path / "renders").write_bytes(b"not a folder")
    done = kp("run", board)
    assert done.returncode == 2
    assert "renders" in done.stderr
    assert "nothing was submitted" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_shot_lists_cannot_share_one_output_folder(tmp_path, frames):
    one = tmp_path / "one.toml"
    two = tmp_path / "two.toml"
    text = BOARD.format(first="puddle").replace('name = "trust"', 'name = "x"')
    one.write_text(text, encoding="utf-8")
    two.write_text(text, encoding="utf-8")
    assert kp("run", one, "-q", "--mock-processing", "0.1").returncode == 0
    done = kp("run", two, "-q", "--mock-processing", "0.1")
    assert done.returncode == 2
    assert str(one) in done.stderr
    assert str(two) in done.stderr


def test_commands_that_only_read_write_nothing(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args in (
        ("validate", board),
        ("plan", board),
        ("status", board),
        ("gc", board, "--dry-run"),
        ("run", board, "--max-cost", "0.10"),  # refused for its budget
    ):
        done = kp(*args)
        assert "Traceback" not in done.stderr, args
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_cut_never_writes_over_an_input_a_record_or_a_render(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0
    lock = tmp_path / "trust.toml.lock.json"
    render_file = tmp_path / "renders" / "trust" / "mock" / "dusk.mp4"
    for target in (board, lock, frames / "puddle.png", render_file):
        before = target.read_bytes()
        done = kp("cut", board, "-o", target)
        assert done.returncode == 2, target
        assert target.read_bytes() == before
    holiday = tmp_path / "holiday.mp4"
    holiday.write_bytes(b"my own video")
    assert kp("cut", board, "-o", holiday).returncode == 2
    assert holiday.read_bytes() == b"my own video"
    film = tmp_path / "film.mp4"
    assert kp("cut", board, "-o", film).returncode == 0
    assert kp("cut", board, "-o", film).returncode == 0  # its own earlier output: replaced


def test_cut_and_export_refuse_a_stale_shot_whose_re_render_failed_and_name_it(tmp_path, frames):
    """puddle edited, its new render failed: the old puddle.mp4 is there, and is not current."""
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    film, timeline = tmp_path / "film.mp4", tmp_path / "film.otio"
    with ThreadedMockServer(mock_config()) as server:
        env = {"WAVESPEED_API_KEY": server.api_key}
        real = ("--backend", "wavespeed", "--base-url", server.base_url)
        assert kp("run", board, *real, "--yes", "-q", env=env).returncode == 0
        board.write_text(board.read_text().replace("on a puddle", "on a rainy puddle"))
        server.set_faults(FaultConfig(seed=1, rules=(FaultRule(kind="task_failure", limit=1),)))
        assert kp("run", board, *real, "--yes", "-q", env=env).returncode == 1
        refused = {
            cmd: kp(cmd, board, "-o", out, *real)
            for cmd, out in (("cut", film), ("export", timeline))
        }
        written = [p for p in (film, timeline) if p.exists()]
        partial = kp("cut", board, "-o", film, "--partial", *real)
        gaps = kp("export", board, "-o", timeline, "--allow-gaps", *real)
    stale = '"puddle" (changed since it was rendered, and its new render failed)'
    for done in refused.values():
        assert done.returncode == 2, done.stdout
        assert stale in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert written == []
    assert partial.returncode == 0, partial.stderr
    assert "1 shot," in partial.stdout
    assert partial.stderr == f"{board}: left out, not current: {stale}\n"
    assert gaps.returncode == 0, gaps.stderr
    assert gaps.stderr == f"{board}: gaps for shots with no current video: {stale}\n"


def test_sigterm_stops_like_ctrl_c_with_a_summary_and_the_task_ids(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    with ThreadedMockServer(MockConfig(processing=FixedTime(seconds=3600))) as server:
        run = Running(
            "run",
            board,
            "--backend",
            "wavespeed",
            "--yes",
            "--json",
            "--base-url",
            server.base_url,
            env={"WAVESPEED_API_KEY": server.api_key},
            cwd=tmp_path,
        )
        # Wait for the event: both tasks exist at the server.
        line = run.wait_for(lambda line: len(server.tasks()) == 2 and "processing" in line)
        assert line is not None, run.finish().stderr
        run.send_signal(signal.SIGTERM)
        stopped = run.finish(timeout_s=60)
        out, err = stopped.stdout, stopped.stderr
        ids = {t["id"] for t in server.tasks()}
    assert stopped.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert {s["task_id"] for s in summary["shots"]} == ids


async def test_a_run_refused_for_its_budget_leaves_no_state(tmp_path, frames):
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    shotlist = load(board)
    with pytest.raises(KlingPipeError, match="nothing was submitted"):
        await render(shotlist, options=RunOptions(max_cost=Decimal("0.10")))
    assert not state_dir_for(board).exists()
    assert not (tmp_path / "renders").exists()


def test_every_command_agrees_that_a_local_servers_renders_are_its_own(tmp_path, frames):
    """Rendered against a server on loopback: never filed, shown or used as WaveSpeed's."""
    board = tmp_path / "trust.toml"
    board.write_text(BOARD.format(first="puddle"), encoding="utf-8")
    with ThreadedMockServer(mock_config()) as server:
        local = ("--backend", "wavespeed", "--base-url", server.base_url)
        run = kp("run", board, *local, "--yes", env={"WAVESPEED_API_KEY": server.api_key})
        assert run.returncode == 0, run.stderr
    label = f"a local server at {server.base_url}, not WaveSpeed"
    assert label in run.stdout  # the summary says whose money it was
    real = ("--backend", "wavespeed")
    lock = json.loads((tmp_path / "trust.toml.lock.json").read_text())
    assert {e["origin"] for e in lock["local"].values()} == {server.base_url}
    assert lock["local_totals"]["cost"] == "0.840"
    assert {e["status"] for e in lock["shots"].values()} == {"pending"}
    assert lock["totals"]["cost"] == "0.000"
    mine = json.loads(kp("status", board, "--json", *local).stdout)
    assert ({s["status"] for s in mine["shots"]}, mine["backend"]) == ({"cached"}, "local")
    assert label in kp("status", board, *local).stdout
    assert label in kp("plan", board, *local).stdout
    # WAVESPEED_BASE_URL names the same server as --base-url does, for every command.
    by_env = kp("status", board, "--json", *real, env={"WAVESPEED_BASE_URL": server.base_url})
    assert {s["status"] for s in json.loads(by_env.stdout)["shots"]} == {"cached"}
    theirs = json.loads(kp("status", board, "--json", *real).stdout)
    assert {s["status"] for s in theirs["shots"]} == {"pending"}
    assert json.loads(kp("plan", board, "--json", *real).stdout)["total_cost"] == "0.840"
    for command, target in (("cut", tmp_path / "film.mp4"), ("export", tmp_path / "film.otio")):
        refused = kp(command, board, "-o", target, *real)
        assert refused.returncode == 2, (command, refused.stdout)
        assert "Traceback" not in refused.stderr
        assert not target.exists()
        used = kp(command, board, "-o", target, *local)
        assert used.returncode == 0, (command, used.stderr)
    assert "not rendered by WaveSpeed" in kp("cut", board, "-o", tmp_path / "x.mp4", *real).stderr
