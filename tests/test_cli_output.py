"""What the command prints where, and how it ends when the user or the machine says no.

Results on stdout, progress and logs on stderr; a closed pipe, a full disk, a read-only
folder or a locked database is one line and an exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
import stamina

from kling_pipe._cli import main as cli
from mockserver import FaultConfig, FaultKind, FaultRule, FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import SCRIPT, kp, user_env
from tests.imagefiles import write_image


@pytest.fixture
def in_process():
    """Run `cli.main` here; put back stamina's retry hooks, which `main` turns off."""
    yield cli.main
    stamina.instrumentation.set_on_retry_hooks(None)


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "demo.toml"),
        ("plan", "demo.toml", "--json"),
        ("validate", "demo.toml"),
        ("schema",),
    ],
)
def test_a_closed_stdout_is_not_a_traceback(specs, command):
    """`kling-pipe plan x.toml | head -1`: the reader went away; stop quietly with 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all, before the command writes a byte
    env = user_env()
    try:
        done = subprocess.run(
            [str(SCRIPT), *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=specs,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == cli.EXIT_BROKEN_PIPE


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_stdout_is_one_line_and_exit_2(specs):
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [str(SCRIPT), "plan", "demo.toml"],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=specs,
            env=user_env(),
            timeout=120,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.endswith("No space left on device\n")
    assert done.stderr.startswith("kling-pipe: ")
    assert done.stderr.count("\n") == 1


def test_the_run_summary_goes_to_stdout_so_a_redirect_keeps_it(specs):
    """`kling-pipe run x.toml > log`: the summary is the result; progress stays on stderr."""
    done = kp("run", specs / "chain.toml", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chain: 3 done in ")
    assert "a-start" in done.stdout
    assert "chain: 3 done" not in done.stderr
    assert "a-start: processing: task " in done.stderr
    assert "a-start: processing" not in done.stdout


def test_with_json_the_json_is_all_of_stdout_and_the_summary_goes_to_stderr(specs):
    done = kp("run", specs / "chain.toml", "--mock-processing", "0.1", "--json", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["done"] == 3
    assert "chain: 3 done in " in done.stderr


REFUSALS = {
    "read-only": (
        PermissionError(13, "Permission denied", "/work/renders/x"),
        "kling-pipe: /work/renders/x: Permission denied",
    ),
    "disk full": (
        OSError(28, "No space left on device", "/work/renders/x/a.mp4.part"),
        "kling-pipe: /work/renders/x/a.mp4.part: No space left on device",
    ),
    "no path": (OSError(5, "Input/output error"), "kling-pipe: Input/output error"),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_folder_or_disk_that_refuses_is_one_line_naming_the_path_and_exit_2(
    specs, in_process, monkeypatch, capsys, refusal
):
    """Tests run as root, where chmod stops nothing: the refusal is raised where it would be."""
    error, line = refusal

    def refuse(*_args: object, **_kwargs: object) -> object:
        raise error

    monkeypatch.setattr("kling_pipe._running.run.render_sync", refuse)
    assert in_process(["run", str(specs / "chain.toml"), "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n"
    assert captured.out == ""


def test_a_locked_records_database_is_one_line_and_exit_2(specs, in_process, monkeypatch, capsys):
    """Another process holds the SQLite records: say so, naming the shot list."""

    def locked(*_args: object, **_kwargs: object) -> object:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr("kling_pipe._running.run.render_sync", locked)
    board = specs / "chain.toml"
    assert in_process(["run", str(board), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"kling-pipe: {board}: the run records could not be used: database is locked\n"
    )


def test_init_into_a_read_only_folder_names_the_file_asked_for(
    tmp_path, in_process, monkeypatch, capsys
):
    """Not the temporary file it would have written first: the user never named that one."""
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "a.png")

    def read_only(*_args: object, **_kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".board.toml.x.part"))

    monkeypatch.setattr("kling_pipe._files.tempfile.mkstemp", read_only)
    assert in_process(["init", str(keys), "--name", "b", "-o", str(tmp_path / "board.toml")]) == 2
    assert capsys.readouterr().err == f"kling-pipe: {tmp_path / 'board.toml'}: Permission denied\n"
    assert list(tmp_path.glob("*.toml")) == []


def test_init_output_does_not_validate_until_the_prompts_are_written(tmp_path):
    """`init` says what to do; `validate` then names each placeholder prompt and exits 2."""
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "harbour.png")
    write_image(keys / "storm.png")
    init = kp("init", keys, "--name", "lighthouse", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    board = tmp_path / "lighthouse.toml"
    assert init.stdout.startswith(f"{board}: 2 shots from {keys}; replace the prompts starting")

    done = kp("validate", board, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'{board}: shots[{i}] (id "{sid}").prompt: still the placeholder written by '
        "kling-pipe init; describe what happens in the shot"
        for i, sid in enumerate(["harbour", "storm"])
    ]
    refused = kp("run", board, cwd=tmp_path)
    assert refused.returncode == 2
    assert not (tmp_path / "renders").exists()

    text = board.read_text(encoding="utf-8")
    board.write_text(
        "\n".join(
            'prompt = "Dawn over the harbour"' if line.startswith("prompt = ") else line
            for line in text.splitlines()
        ),
        encoding="utf-8",
    )
    assert kp("validate", board, cwd=tmp_path).returncode == 0


def test_an_impossible_mock_port_is_one_line_and_exit_2():
    done = kp("mock", "--port", "99999")
    assert done.returncode == 2
    assert done.stderr == "error: --port 99999: a port is 0 to 65535 (0 picks a free one)\n"


def test_a_retry_is_logged_as_one_line_saying_what_failed_and_when(specs):
    """The client's own line, with the wait and the error; stamina's bare line is silenced."""
    key = "ws-retry-log-key-0123456789"
    faults = FaultConfig(
        rules=(FaultRule(kind=FaultKind.SERVER_ERROR, routes=frozenset({"poll"}), limit=1),)
    )
    config = MockConfig(api_key=key, processing=FixedTime(seconds=0.05), faults=faults)
    with ThreadedMockServer(config) as mock:
        done = kp(
            "run",
            specs / "keyframes.toml",
            "--backend",
            "wavespeed",
            "--yes",
            "--base-url",
            mock.base_url,
            env={"WAVESPEED_API_KEY": key},
        )
    assert done.returncode == 0, done.stderr
    retries = [line for line in done.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 1
    assert re.fullmatch(
        r"WARNING kling_pipe\.wavespeed: retrying get_prediction in \d+\.\d s "
        r"\(attempt 2 of 6\) after: GET /api/v3/predictions/\w+/result: HTTP 503 .*",
        retries[0],
    )
    assert "stamina" not in done.stderr
    assert key not in done.stderr


def test_a_run_whose_reader_went_away_still_renders_every_shot(specs):
    """`run x.toml 2>&1 | head -1`: the shots are paid for, so the run finishes, then 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = user_env()
    try:
        done = subprocess.run(
            [str(SCRIPT), "run", "chain.toml", "--mock-processing", "0.1"],
            stdout=write_end,
            stderr=write_end,
            stdin=subprocess.DEVNULL,
            cwd=specs,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == cli.EXIT_BROKEN_PIPE
    shots = ["a-start", "b-continue", "c-reverse"]
    rendered = sorted(p.name for p in (specs / "renders").rglob("versions/*.mp4"))
    assert rendered == [f"{shot}.v1.mp4" for shot in shots]
    copies = sorted(p.name for p in (specs / "renders").rglob("*.mp4") if p.parent.name == "mock")
    assert copies == [f"{shot}.mp4" for shot in shots]
