"""A shot whose first frame is a URL, with its submit's answer lost: proved, or uncertain at once.

The picture is served on 127.0.0.1 (the shot list names that address, so kling-pipe may
fetch it; the bundled mock fetches loopback URLs as WaveSpeed fetches any). A proved task is
adopted once its window closed (a few seconds here); an unprovable shot's verdict comes with
the default five-minute window, far above the bound the run must end inside.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig

#: The default windows: an unprovable shot must not wait for them.
DEFAULT_WINDOWS = SettleOptions(poll_s=0.2)
#: Short windows, for a provable shot, whose task is adopted once its window closed.
SHORT_WINDOWS = SettleOptions(
    act_window=timedelta(seconds=2),
    history_lag=timedelta(seconds=1),
    slack=timedelta(seconds=1),
    poll_s=0.2,
)
#: Far below the window (five minutes and two): a run still inside it has stalled.
BOUND_S = 60.0


@pytest.fixture
async def picture_server(aiohttp_server, frames: Path):
    """Serve the example frames on 127.0.0.1; any other path is a 404."""

    async def picture(request: web.Request) -> web.StreamResponse:
        path = frames / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name}", picture)
    return await aiohttp_server(app)


def board(folder: Path, url: str) -> ShotList:
    folder.mkdir(parents=True, exist_ok=True)
    shot = Shot(id="street", prompt="the boat races downhill", image=UrlImage(url=url))
    return ShotList(storyboard=Storyboard(name="u"), shots=(shot,), source=folder / "u.toml")


async def lost_answer_run(  # noqa: PLR0913, PLR0917 - the run's whole setting
    tmp_path, start_mock, client_for, url: str, windows=DEFAULT_WINDOWS, faults=()
):
    mock = await start_mock(
        MockConfig(
            processing=FixedTime(seconds=0.2),
            max_side_px=160,
            fps=2,
            faults=FaultConfig(
                seed=1,
                rules=(FaultRule(kind="drop_after", routes=["submit"], limit=1), *faults),
            ),
        )
    )
    options = RunOptions(settle=windows, report=False)
    run = render(board(tmp_path, url), backend=client_for(mock), options=options)
    return mock, await asyncio.wait_for(run, BOUND_S)


async def test_a_url_frames_lost_answer_is_proved_with_the_fetched_picture(
    tmp_path, start_mock, client_for, picture_server
):
    url = str(picture_server.make_url("/puddle.png"))
    mock, result = await lost_answer_run(tmp_path, start_mock, client_for, url, SHORT_WINDOWS)
    (shot,) = result.shots
    assert shot.state == "done", shot.error
    (task,) = mock.tasks()
    assert shot.task_id == task["id"]  # found in the history and proved, not paid again


async def test_an_unprovable_url_frame_ends_uncertain_as_soon_as_nothing_can_change_it(
    tmp_path, start_mock, client_for, picture_server
):
    """The picture cannot be had: the task in the window can never be proved, nor ruled out."""
    url = str(picture_server.make_url("/gone.png"))
    mock, result = await lost_answer_run(tmp_path, start_mock, client_for, url)
    (shot,) = result.shots
    (task,) = mock.tasks()
    assert shot.state == "uncertain"
    assert task["id"] in shot.error
    assert "cannot prove" in shot.error


async def test_a_candidate_that_cannot_be_compared_ends_uncertain_without_waiting_the_window(
    tmp_path, start_mock, client_for, picture_server
):
    """The shot is provable, but its candidate's video never downloads whole: it stays
    undecided, and with it the shot, so the run ends long before the five-minute window."""
    url = str(picture_server.make_url("/puddle.png"))
    broken = FaultRule(kind="truncated_download", routes=["download"])
    mock, result = await lost_answer_run(tmp_path, start_mock, client_for, url, faults=(broken,))
    (shot,) = result.shots
    (task,) = mock.tasks()
    assert shot.state == "uncertain"
    assert task["id"] in shot.error
    assert "could not be compared" in shot.error
