"""The API key, at the most verbose level, under faults: in no output, log, error or file.

A recognisable key is used for every request; afterwards every place a key could leak to is
searched for it (and for either half of it): standard output and error of each command at
`-vv`, log records at DEBUG, exception texts, the lock file, the `--json` report, the store's
SQLite files (database, WAL and shared memory), the renders, the mock's journal, statistics,
ledger and state folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import kp
from tests.reliability.rel_support import mock_and_client, url_board
from tests.settling import FAST_SETTLE

KEY = "ws-SECRET-RELIABILITY-3f9a0c7e5d1b-KEY"
FRAGMENTS = (KEY, KEY[:14], KEY[-14:])
FAULTS = FaultConfig(
    seed=4,
    rules=(
        FaultRule(kind="server_error", rate=0.15),
        FaultRule(kind="rate_limit", rate=0.1, retry_after_s=0),
        FaultRule(kind="drop_after", rate=0.1),
        FaultRule(kind="truncated_download", rate=0.2),
        FaultRule(kind="task_failure", rate=0.2),
    ),
)


def assert_no_key(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for fragment in FRAGMENTS:
        assert fragment.encode() not in data, f"the key appears in {where}"


def assert_no_key_in_files(folder: Path) -> int:
    """Search every file under *folder*, byte for byte; return how many were searched."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert_no_key(path.read_bytes(), str(path))
            count += 1
    return count


def test_a_verbose_run_under_faults_leaks_the_key_nowhere(tmp_path, specs):
    mock_state = tmp_path / "mock-state"
    config = MockConfig(
        api_key=KEY, processing=FixedTime(seconds=0.05), faults=FAULTS, state_dir=mock_state
    )
    with ThreadedMockServer(config) as mock:
        env = {"WAVESPEED_API_KEY": KEY}
        url = ["--base-url", mock.base_url]
        fast = ("--act-window", "1", "--history-lag", "0.5")
        run = ("run", "--backend", "wavespeed", "--yes", "-vv", *fast, *url)
        runs = [
            kp(*run, "--json", specs / name, env=env)
            for name in ("keyframes.toml", "demo.toml", "chain.toml")
        ]
        # Run again over the records (resume, refetch, cached paths), then ask for status.
        runs.append(kp(*run, specs / "demo.toml", env=env))
        runs.append(kp("status", specs / "demo.toml", "--json", env=env))
        runs.append(kp("plan", specs / "demo.toml", "--json", env=env))
        journal = mock.journal()
        stats, ledger = mock.stats(), mock.ledger()
    for done in runs:
        assert "Traceback" not in done.stderr, done.stderr
        assert_no_key(done.stdout, f"stdout of {done.args}")
        assert_no_key(done.stderr, f"stderr of {done.args}")
    # The -vv runs did log HTTP detail, faults happened, and a report was printed.
    assert any("DEBUG" in done.stderr for done in runs)
    assert stats["faults"], "no fault was injected"
    report = json.loads(runs[0].stdout)
    assert report["shots"]
    assert len(journal) > 20
    assert_no_key(json.dumps(journal), "the mock's journal")
    assert_no_key(json.dumps(stats), "the mock's statistics")
    assert_no_key(json.dumps(ledger), "the mock's ledger")
    # Every file written: lock files, the SQLite store (db, -wal, -shm), renders, mock state.
    store_files = list(specs.glob("*.kling-state/**/*"))
    assert any(
        p.name.endswith((".db", ".sqlite", ".sqlite3")) or "wal" in p.name for p in store_files
    )
    assert list(specs.glob("*.lock.json"))
    assert assert_no_key_in_files(specs) > 10
    assert assert_no_key_in_files(mock_state) >= 1


def test_a_wrong_key_fails_cleanly_without_printing_either_key(specs):
    with ThreadedMockServer(MockConfig(api_key="the-right-key-0000")) as mock:
        done = kp(
            "run", specs / "demo.toml", "--backend", "wavespeed", "--yes", "-vv",
            "--base-url", mock.base_url, env={"WAVESPEED_API_KEY": KEY},
        )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "401" in done.stderr or "key" in done.stderr.lower()
    assert_no_key(done.stdout + done.stderr, "the output of a run with a wrong key")


def echoing_app() -> web.Application:
    """A hostile server that echoes the Authorization header back in every error."""

    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        status = 400 if request.method == "POST" else 500
        body = {"code": status, "message": f"bad request from {auth}; key={auth[7:]}"}
        return web.json_response(body, status=status, headers={"X-Echo": auth})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_a_server_echoing_the_key_back_never_gets_it_into_errors_or_logs(
    tmp_path, aiohttp_server, caplog
):
    caplog.set_level(logging.DEBUG)
    server = await aiohttp_server(echoing_app())
    retry = RetryPolicy(attempts=3, wait_initial_s=0.001, wait_max_s=0.002)
    async with aiohttp.ClientSession() as session:
        client = WaveSpeedClient(
            session=session, base_url=str(server.make_url("")).rstrip("/"), api_key=KEY, retry=retry
        )
        assert_no_key(repr(client), "the client's repr")
        result = await render(
            url_board(tmp_path, 2),
            backend=client,
            options=RunOptions(keep_records=False, settle=FAST_SETTLE),
        )
        errors = []
        for call in (client.get_prediction("0" * 32), client.list_predictions()):
            with pytest.raises(Exception) as caught:
                await call
            errors.append(caught.value)
    assert [s.state for s in result.shots] == ["failed", "failed"]
    for s in result.shots:
        assert "bad request from" in s.error  # the server's message is kept...
        assert_no_key(s.error, "a shot's error")  # ...without the key
    assert_no_key(json.dumps(result.as_json()), "the run report")
    for exc in errors:
        assert_no_key(str(exc), "an exception message")
        assert_no_key(repr(exc), "an exception repr")
        assert_no_key(repr(exc.__cause__) + repr(exc.__context__), "a chained exception")
    assert caplog.records
    assert_no_key(caplog.text, "the log")
    for record in caplog.records:
        assert_no_key(repr(record.args), "a log record's arguments")


async def test_an_in_process_debug_run_under_faults_logs_no_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = MockConfig(api_key=KEY, processing=FixedTime(seconds=0.05), faults=FAULTS)
    shotlist = url_board(tmp_path, 12)
    async with mock_and_client(config) as (mock, client):
        result = await render(
            shotlist, backend=client, options=RunOptions(concurrency=4, settle=FAST_SETTLE)
        )
        assert mock.stats()["faults"]
    assert any(s.state == "done" for s in result.shots)
    assert caplog.records
    assert_no_key(caplog.text, "the log")
    for record in caplog.records:
        assert_no_key(repr(record.args), "a log record's arguments")
    assert_no_key(json.dumps(result.as_json()), "the run report")
    assert assert_no_key_in_files(tmp_path) >= 3
