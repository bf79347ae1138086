"""The pytest plugin: a working fixture in a foreign test suite, and a light import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli_support import REPO

SUITE = """
import asyncio
import json
import urllib.request

import aiohttp
import pytest

from mockserver import ThreadedMockServer


def test_sync_client(wavespeed_mock: ThreadedMockServer) -> None:
    request = urllib.request.Request(
        wavespeed_mock.base_url + "/api/v3/balance",
        headers={"Authorization": f"Bearer {wavespeed_mock.api_key}"},
    )
    with urllib.request.urlopen(request) as response:
        assert json.load(response)["code"] == 200
    assert [e["path"] for e in wavespeed_mock.journal()] == ["/api/v3/balance"]


@pytest.mark.asyncio
async def test_async_client(wavespeed_mock: ThreadedMockServer) -> None:
    headers = {"Authorization": f"Bearer {wavespeed_mock.api_key}"}
    body = {"prompt": "p", "image": "https://example.com/a.png"}
    url = wavespeed_mock.base_url + "/api/v3/kwaivgi/kling-video-o1-std/image-to-video"
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(url, json=body) as response:
            task_id = (await response.json())["data"]["id"]
        wavespeed_mock.complete(task_id)
        result = wavespeed_mock.base_url + f"/api/v3/predictions/{task_id}/result"
        async with session.get(result) as response:
            assert (await response.json())["data"]["status"] == "completed"
    assert wavespeed_mock.stats()["submits"] == 1
"""


def test_fixture_serves_sync_and_async_tests_of_another_suite(tmp_path: Path) -> None:
    """A suite loading the plugin gets a running mock in both kinds of test."""
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:wavespeed_mock",
        "-p",
        "mockserver.plugin",
        "-W",
        "error",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_loading_the_plugin_imports_neither_aiohttp_nor_pyav() -> None:
    """The entry point loads in every pytest session, so it must stay light."""
    code = "import sys, mockserver.plugin; print(sorted({'aiohttp', 'av'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n"
