"""`kling-pipe adopt`, run as a user runs it, against a mock serving on loopback.

The task is made the way someone else would make it (the web playground): straight on the
account, not through this shot list. The command then finds, proves, adopts it, or refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from kling_pipe._backends.base import SubmitRequest
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from mockserver import FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import copy_frames, kp

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"


@pytest.fixture
def server() -> Iterator[ThreadedMockServer]:
    with ThreadedMockServer(MockConfig(processing=FixedTime(seconds=0.05))) as mock:
        yield mock


@pytest.fixture
def film(tmp_path: Path) -> Path:
    copy_frames(tmp_path / "frames")
    path = tmp_path / "film.toml"
    path.write_text(
        'version = 1\n[storyboard]\nname = "film"\n'
        '[[shots]]\nid = "boat"\nprompt = "a paper boat"\nimage = "frames/puddle.png"\n'
    )
    return path


def made_on(mock: ThreadedMockServer, picture: Path) -> str:
    """Make a finished task from *picture* on the mock's account; return its id."""

    async def make() -> str:
        async with aiohttp.ClientSession() as session:
            client = WaveSpeedClient(session=session, base_url=mock.base_url, api_key=mock.api_key)
            url = await client.upload_image(picture)
            request = SubmitRequest(model=MODEL, prompt="p", image_url=url, duration=5)
            task = await client.submit(request)
            while not (await client.get_prediction(task.id)).is_final:  # noqa: ASYNC110 - the server's state
                await asyncio.sleep(0.02)
            return task.id

    return asyncio.run(make())


def adopt(film: Path, mock: ThreadedMockServer, *args: str):
    backend = ("--backend", "wavespeed", "--base-url", mock.base_url)
    return kp(
        "adopt", film, *args, *backend, env={"WAVESPEED_API_KEY": mock.api_key}, cwd=film.parent
    )


def test_a_task_whose_video_shows_the_shot_is_adopted_and_downloaded_at_once(film, server):
    task = made_on(server, film.parent / "frames" / "puddle.png")
    done = adopt(film, server, "boat", task)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"boat: task {task} (completed): match: its video shows frames/puddle.png first",
        f"adopted: task {task} is now boat's; nothing was paid",
        f"downloaded now: {film.parent / 'renders' / 'film' / 'boat.mp4'}",
    ]
    assert server.stats()["submits"] == 1  # the playground's, none of ours
    status = kp("status", film, "--json", "--backend", "wavespeed", "--base-url", server.base_url)
    shown = json.loads(status.stdout)
    assert [(s["status"], s["task_id"]) for s in shown["shots"]] == [("cached", task)]


def test_a_mismatch_prints_the_verdict_and_refuses_with_exit_2(film, server):
    task = made_on(server, film.parent / "frames" / "river.png")
    done = adopt(film, server, "boat", task, "--force")
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"boat: task {task} (completed): mismatch: its video does not show frames/puddle.png first"
    ]
    assert done.stderr.splitlines() == [
        f"kling-pipe: task {task} not adopted: a task that is not the shot's is never adopted, "
        "not even with --force"
    ]


def test_a_task_id_not_of_the_apis_form_is_one_line_and_exit_2(film, server):
    done = adopt(film, server, "boat", "../../etc/passwd")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kling-pipe: TASK_ID is not a task id (letters, digits, '_' and '-', at most 128): it "
        "starts with '.'"
    ]


def test_an_unknown_shot_is_one_line_and_exit_2(film, server):
    done = adopt(film, server, "boot", "0123456789abcdef0123456789abcdef")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'kling-pipe: {film}: no shot "boot" in the shot list; did you mean "boat"?'
    ]


def test_the_help_says_it_never_pays_and_when_force_applies():
    text = kp("adopt", "--help").stdout
    assert "Sends no submit, pays nothing." in text
    assert "with --force; a mismatch never" in text
