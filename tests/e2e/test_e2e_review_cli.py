"""`run --review` and `review` as a user starts them: real processes, the page over loopback.

`run --review` serves the page during the run and after it until Ctrl-C, so a take can be
approved from the page once the run is over; `review` in another process follows a run of
the same shot list through its records alone. Both are followed here through the page's own
event stream, as the browser follows it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import aiohttp

from kling_pipe._cli.main import main
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from tests.cli_support import Running


def url_of(line: str | None) -> str:
    assert line is not None, "the command ended before printing its URL"
    return line.split("review: ", 1)[1].strip()


async def until_card(stream: aiohttp.ClientResponse, shot: str, wanted: str) -> str:
    """Read the event stream until *shot*'s card contains *wanted*; return that card."""
    while True:
        line = (await stream.content.readline()).decode()
        assert line, "the event stream ended"
        if line.startswith("data: ") and f'"id": "{shot}"' in line:
            card = json.loads(line[6:])["html"]
            if wanted in card:
                return card


async def follow(url: str, shot: str, wanted: str) -> str:
    base = url.split("/?", 1)[0]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url) as page:
            assert page.status == 200
        async with http.get(base + "/events") as stream:
            return await until_card(stream, shot, wanted)


async def test_run_review_serves_the_page_during_the_run_and_after_it_until_ctrl_c(specs: Path):
    running = Running(
        "run", "takes.toml", "--review", "--no-open", "--mock-processing", "0.3", cwd=specs
    )
    try:
        url = url_of(await asyncio.to_thread(running.wait_for, "review: http"))
        assert url.startswith("http://127.0.0.1:")
        card = await follow(url, "sea", "<video")  # sea lands after river, on the page
        assert 'src="/files/versions/sea.v1.mp4"' in card
        await asyncio.to_thread(running.wait_for, "the page stays up")
        token = url.split("token=", 1)[1]
        base = url.split("/?", 1)[0]
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                base + "/api/approve", json={"shot": "sea"}, headers={"X-Review-Token": token}
            ) as answer,
        ):
            assert answer.status == 200
            assert "sea: v1 approved" in (await answer.json())["message"]
    finally:
        running.send_signal(signal.SIGINT)
        done = running.finish()
    assert done.returncode == 0, done.stderr
    assert "contact sheet:" in done.stdout
    lock = json.loads((specs / "takes.toml.lock.json").read_text())
    assert lock["simulated"]["sea"]["approved"]["version"] == 1


async def test_review_in_another_process_follows_a_run_of_the_same_storyboard(specs: Path):
    running = Running("review", "takes.toml", "--no-open", cwd=specs)
    try:
        url = url_of(await asyncio.to_thread(running.wait_for, "review: http"))
        watching = asyncio.create_task(follow(url, "river", 'id="shot-river-take-3"'))
        seen = asyncio.create_task(follow(url, "sea", "<video"))
        await watching  # the page is up, before anything is rendered
        result = await render(specs / "takes.toml", options=RunOptions(mock_processing_s=0.2))
        assert result.exit_code == 0
        card = await seen
        assert "done" in card
    finally:
        running.send_signal(signal.SIGINT)
        done = running.finish()
    assert done.returncode == 0, done.stderr


def test_a_port_in_use_is_one_line_and_run_review_renders_nothing(specs: Path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["review", str(specs / "takes.toml"), "--no-open", "--port", port]) == 2
        assert f"review: cannot serve on port {port}" in capsys.readouterr().err
        code = main(["run", str(specs / "takes.toml"), "--review", "--no-open", "--port", port])
        assert code == 2
        assert "nothing was rendered" in capsys.readouterr().err
    assert not (specs / "renders").exists()
