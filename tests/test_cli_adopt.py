"""`kling-pipe adopt`, run as a user runs it, against a mock serving on loopback.

The task is made the way someone else would make it (the web playground): straight on the
account, not through this shot list. The command then finds, proves, adopts it, or refuses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from kling_pipe._backends.base import SubmitRequest
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from mockserver import FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import copy_frames, kp, user_env

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
        "adopt", *backend, film, *args, env={"WAVESPEED_API_KEY": mock.api_key}, cwd=film.parent
    )


def test_a_task_whose_video_shows_the_shot_is_adopted_and_downloaded_at_once(film, server):
    task = made_on(server, film.parent / "frames" / "puddle.png")
    done = adopt(film, server, "boat", task)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"boat: task {task} (completed): match: its video shows frames/puddle.png first",
        f"adopted: task {task} is now boat's; nothing was paid",
        f"downloaded now: {film.parent / 'renders' / 'film' / 'local' / 'versions'}/boat.v1.mp4",
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
    assert server.stats()["submits"] == 1  # the playground's: a refusal pays nothing either
    assert not (film.parent / "film.toml.lock.json").exists()


def test_a_task_id_not_of_the_apis_form_is_one_line_and_exit_2(film, server):
    done = adopt(film, server, "boat", "../../etc/passwd")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kling-pipe: TASK_ID is not a task id (letters, digits, '_' and '-', at most 128): it "
        "starts with '.'"
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        "abc/../../tasks",  # a path out of /predictions/{id}/result
        "abc?x=1#frag",  # a query smuggled into the URL
        "\x1b]0;pwned\x07abc",  # a terminal escape to echo
        "abc\ndef",  # a forged second log line
        "a" * 129,  # longer than any task id
        "",  # nothing at all
        "--force",  # an option's name where the task id goes
    ],
)
def test_a_hostile_task_id_is_exit_2_and_never_reaches_the_server(film, server, hostile):
    done = adopt(film, server, "boat", "--", hostile)  # "--": even "--force" is the task id
    assert done.returncode == 2, done
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert "\x1b" not in done.stderr
    assert "Traceback" not in done.stderr
    assert "TASK_ID" in line
    assert server.journal() == []  # not one request: nothing looked up, nothing paid
    assert not (film.parent / "film.kling-state").exists()


def test_the_same_task_is_never_adopted_for_a_second_shot_or_shot_list(film, server, tmp_path):
    film.write_text(
        film.read_text()
        + '[[shots]]\nid = "boat-2"\nprompt = "a second boat"\nimage = "frames/puddle.png"\n'
    )
    other = tmp_path / "other.toml"
    other.write_text(film.read_text().replace('name = "film"', 'name = "other"'))
    task = made_on(server, film.parent / "frames" / "puddle.png")
    assert adopt(film, server, "boat", task).returncode == 0
    # Both shots' frames are the puddle: the proof alone cannot tell them apart, the claim can.
    for path, shot in ((film, "boat-2"), (other, "boat")):
        done = adopt(path, server, shot, task, "--force")
        assert done.returncode == 2, (path, done.stdout)
        assert done.stderr.splitlines() == [
            f"kling-pipe: task {task} belongs to {film.resolve()}#boat (another shot or shot "
            "list); not adopted"
        ]
    status = kp("status", film, "--json", "--backend", "wavespeed", "--base-url", server.base_url)
    shown = {s["id"]: (s["status"], s["task_id"]) for s in json.loads(status.stdout)["shots"]}
    assert shown == {"boat": ("cached", task), "boat-2": ("pending", None)}
    assert server.stats()["submits"] == 1


#: `adopt_task` in a process that dies on the spot (no clean-up, as SIGKILL) at one download:
#: the proof's (the candidate fetched to compare) or the delivery's (after it was recorded).
DIES_AT = """
import asyncio, os, sys
from pathlib import Path

import aiohttp

from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._running.adopting import adopt_task

film, shot, task, base_url, api_key, moment = sys.argv[1:]


class DiesAt:
    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def download(self, url, dest):
        if ("kling-pipe-proof-" in str(dest)) == (moment == "proof"):
            os._exit(137)
        return await self._client.download(url, dest)


async def main():
    async with aiohttp.ClientSession() as session:
        client = WaveSpeedClient(session=session, base_url=base_url, api_key=api_key)
        await adopt_task(Path(film), shot, task, backend=DiesAt(client))


asyncio.run(main())
"""


def killed_adopting(film: Path, mock: ThreadedMockServer, task: str, moment: str) -> None:
    script = [sys.executable, "-c", DIES_AT, str(film), "boat", task]
    died = subprocess.run(
        [*script, mock.base_url, mock.api_key, moment],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=film.parent,
        timeout=120,
        check=False,
    )
    assert died.returncode == 137, died.stderr


def test_killed_while_proving_leaves_nothing_and_adopting_again_works(film, server):
    task = made_on(server, film.parent / "frames" / "puddle.png")
    killed_adopting(film, server, task, "proof")
    assert not (film.parent / "film.toml.lock.json").exists()
    done = adopt(film, server, "boat", task)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == f"adopted: task {task} is now boat's; nothing was paid"
    assert server.stats()["submits"] == 1


def test_killed_after_recording_the_next_run_downloads_the_task_without_paying(film, server):
    task = made_on(server, film.parent / "frames" / "puddle.png")
    killed_adopting(film, server, task, "delivery")
    # Recorded and claimed before the kill: a second adopt says so, the run fetches its video.
    again = adopt(film, server, "boat", task)
    assert again.returncode == 2
    assert "boat has its task: it has task " in again.stderr
    backend = ("--backend", "wavespeed", "--base-url", server.base_url)
    env = {"WAVESPEED_API_KEY": server.api_key}
    run = kp("run", film, "--json", "--yes", *backend, env=env, cwd=film.parent)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert [(s["id"], s["status"], s["task_id"]) for s in shown["shots"]] == [
        ("boat", "done", task)
    ]
    assert (film.parent / "renders" / "film" / "local" / "boat.mp4").exists()  # a loopback server's
    assert server.stats()["submits"] == 1  # the playground's task, paid once, by it


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
