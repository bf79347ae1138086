"""The command line: options become a config; the server starts fast and stops cleanly."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from mockserver import AfterPolls, FaultKind, FixedTime, Manual, RandomTime, cli
from tests.cli_support import REPO


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_bind_loopback_port_8089_with_a_key_of_its_own() -> None:
    """No options: 127.0.0.1:8089, a new mock-... key, 2 s tasks, 1000 USD, no faults."""
    config = cli.build_config(parse())
    assert (config.host, config.port) == ("127.0.0.1", 8089)
    assert re.fullmatch(r"mock-[0-9a-f]{32}", config.api_key)
    assert config.processing == FixedTime(seconds=2.0)
    assert config.balance_usd == Decimal(1000)
    assert config.faults.rules == ()


def test_each_start_makes_a_new_key() -> None:
    """Two mocks never share a made-up key, so one cannot be guessed from another's output."""
    assert cli.build_config(parse()).api_key != cli.build_config(parse()).api_key


def test_the_key_comes_from_the_flag_and_never_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WAVESPEED_API_KEY may be a real key: the mock neither accepts it nor reads it."""
    monkeypatch.setenv("WAVESPEED_API_KEY", "ws-real-key-from-env")
    assert cli.build_config(parse()).api_key.startswith("mock-")
    assert cli.build_config(parse("--api-key", "flag")).api_key == "flag"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "--port 99999: a port is 0 to 65535 (0 picks a free one)"),
        (["--port", "-1"], "--port -1: a port is 0 to 65535 (0 picks a free one)"),
        (["--api-key", " "], "--api-key: empty; give the key clients will send, or leave it out"),
    ],
)
def test_an_impossible_port_or_an_empty_key_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(parse(*argv)) == 2
    assert capsys.readouterr() == ("", f"error: {message}\n")


def test_a_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Another server on the port: say so, suggest --port 0, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.run(parse("--port", str(port))) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another server?); "
        "--port 0 picks a free one\n"
    )


@pytest.mark.parametrize(
    ("argv", "processing"),
    [
        (["--processing-s", "0.5"], FixedTime(seconds=0.5)),
        (
            ["--processing-s", "30", "--jitter-s", "5", "--seed", "2"],
            RandomTime(mean_s=30, jitter_s=5, seed=2),
        ),
        (["--after-polls", "4"], AfterPolls(polls=4)),
        (["--manual"], Manual()),
    ],
)
def test_processing_options(argv: list[str], processing: object) -> None:
    """Each processing option maps onto its mode."""
    assert cli.build_config(parse(*argv)).processing == processing


def test_tier_faults_and_state_options(tmp_path: Path) -> None:
    """Quota, submit limit, balance, state folder and repeated --fault flags all arrive."""
    config = cli.build_config(
        parse(
            "--concurrency",
            "3",
            "--submits-per-minute",
            "5",
            "--balance",
            "2.5",
            "--state-dir",
            str(tmp_path),
            "--fault-seed",
            "9",
            "--fault",
            "latency:0.5:latency_s=0.1",
            "--fault",
            "task_failure:0.1:codes=1200",
        )
    )
    assert (config.concurrency_limit, config.submits_per_minute) == (3, 5)
    assert (config.balance_usd, config.state_dir) == (Decimal("2.5"), tmp_path)
    assert config.faults.seed == 9
    assert [r.kind for r in config.faults.rules] == [FaultKind.LATENCY, FaultKind.TASK_FAILURE]


def test_money_options() -> None:
    """--price-factor, --no-quotes and --no-billings-search shape the money routes."""
    plain = cli.build_config(parse())
    assert (plain.price_factor, plain.quotes, plain.billings_search) == (Decimal(1), True, True)
    config = cli.build_config(
        parse("--price-factor", "1.25", "--no-quotes", "--no-billings-search")
    )
    assert (config.price_factor, config.quotes, config.billings_search) == (
        Decimal("1.25"),
        False,
        False,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "gremlins"], "--fault gremlins: 'gremlins' is not a valid FaultKind"),
        (["--balance", "lots"], "--balance: 'lots' is not a number"),
        (["--price-factor", "dear"], "--price-factor: 'dear' is not a number"),
        (["--price-factor", "0"], "--price-factor 0: must be a number above 0"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid options print one error line and return 2, no traceback."""
    assert cli.run(parse(*argv)) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def _start(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``python -m mockserver`` with a real-looking key in its environment.

    Return the process, its base URL and the line that follows (about the key).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "WAVESPEED_API_KEY": REAL_LOOKING_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", "0", "--state-dir", str(tmp_path), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("WaveSpeed mock listening on http://127.0.0.1:"), first
    return process, first.rsplit(" ", 1)[1].strip(), process.stdout.readline()


REAL_LOOKING_KEY = "ws-REAL-looking-key-0123456789abcdef"


def _balance_status(url: str, key: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/v3/balance", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["data"] == {"balance": 1000.0}
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=10)


def test_server_starts_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """python -m mockserver prints its URL and its own key, answers, exits 0 on SIGINT."""
    process, url, key_line = _start(tmp_path)
    try:
        match = re.fullmatch(r"API key: (mock-[0-9a-f]{32})\n", key_line)
        assert match, key_line
        assert _balance_status(url, match[1]) == 200
    finally:
        out, err = _stop(process)
    assert process.returncode == 0
    assert "Traceback" not in err
    assert out.endswith("Stopped.\n")


def test_the_mock_never_echoes_a_key_it_did_not_make(tmp_path: Path) -> None:
    """A real key in the environment is neither printed nor accepted; --api-key is not printed."""
    process, url, key_line = _start(tmp_path)
    try:
        assert _balance_status(url, REAL_LOOKING_KEY) == 401
    finally:
        out, err = _stop(process)
    assert REAL_LOOKING_KEY not in key_line + out + err

    given = "given-key-that-might-be-real-42"
    process, url, key_line = _start(tmp_path, "--api-key", given)
    try:
        assert key_line == "API key: the one given with --api-key\n"
        assert _balance_status(url, given) == 200
    finally:
        out, err = _stop(process)
    assert given not in key_line + out + err
    assert REAL_LOOKING_KEY not in out + err
