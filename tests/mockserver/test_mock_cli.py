"""The command line: options become a config; the server starts fast and stops cleanly."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from mockserver import AfterPolls, FaultKind, FixedTime, Manual, RandomTime, cli

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_bind_loopback_port_8089_with_the_documented_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No options: 127.0.0.1:8089, key mock-key, 2 s tasks, 1000 USD, no faults."""
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    config = cli.build_config(parse())
    assert (config.host, config.port, config.api_key) == ("127.0.0.1", 8089, "mock-key")
    assert config.processing == FixedTime(seconds=2.0)
    assert config.balance_usd == Decimal(1000)
    assert config.faults.rules == ()


def test_api_key_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--api-key wins over WAVESPEED_API_KEY, which wins over the default."""
    monkeypatch.setenv("WAVESPEED_API_KEY", "from-env")
    assert cli.build_config(parse()).api_key == "from-env"
    assert cli.build_config(parse("--api-key", "flag")).api_key == "flag"


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "gremlins"], "--fault gremlins: 'gremlins' is not a valid FaultKind"),
        (["--balance", "lots"], "--balance: 'lots' is not a number"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid options print one error line and return 2, no traceback."""
    assert cli.run(parse(*argv)) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_server_starts_fast_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """python -m mockserver prints its URL and key quickly, answers, and exits 0 on SIGINT."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAVESPEED_API_KEY": "sekret"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        elapsed = time.perf_counter() - started
        key_line = process.stdout.readline()
        url = first.rsplit(" ", 1)[1].strip()
        assert first.startswith("WaveSpeed mock listening on http://127.0.0.1:")
        assert key_line == "API key: sekret\n"
        assert elapsed < 1.5, f"took {elapsed:.2f} s to start"
        request = urllib.request.Request(
            f"{url}/api/v3/balance", headers={"Authorization": "Bearer sekret"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["data"] == {"balance": 1000.0}
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in err
    assert out.endswith("Stopped.\n")
