"""The review server at the HTTP level, over a real loopback socket: each refusal, each door.

The storyboard of takes is rendered against the bundled mock once per test; the review is
served on 127.0.0.1 and asked with aiohttp, as a browser (or a hostile page) would ask.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from kling_pipe._backends.base import MOCK_ORIGIN
from kling_pipe._outputs.contact_sheet import SheetShot, SheetTake, write_contact_sheet
from kling_pipe._outputs.picks import preview_pick
from kling_pipe._outputs.rerender import marked_shots
from kling_pipe._review.board import RecordsClock, read_board
from kling_pipe._review.server import CSP, TOKEN_HEADER, Review, ReviewSite
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load


@pytest.fixture
async def served(specs: Path) -> AsyncIterator[ReviewSite]:
    source = specs / "takes.toml"
    result = await render(source, options=RunOptions(mock_processing_s=0.05))
    assert result.exit_code == 0, result.as_json()
    site = ReviewSite(Review(load(source, records_only=True), MOCK_ORIGIN))
    await site.start()
    try:
        yield site
    finally:
        await site.close()


def base(site: ReviewSite) -> str:
    return f"http://127.0.0.1:{site.port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def opened(site: ReviewSite, http: aiohttp.ClientSession) -> str:
    """Open the page as the user does (the URL printed); return its HTML."""
    async with http.get(site.url) as answer:
        assert answer.status == 200
        return await answer.text()


async def test_it_listens_on_loopback_only(served):
    runner = served._runner
    assert runner is not None
    assert [a[0] for a in runner.addresses] == ["127.0.0.1"]
    assert served.url.startswith(f"http://127.0.0.1:{served.port}/?token=")


async def test_the_page_wants_its_token_and_every_answer_forbids_other_origins(served, http):
    async with http.get(base(served) + "/") as answer:
        assert answer.status == 403
        assert answer.headers["Content-Security-Policy"] == CSP
    async with http.get(base(served) + "/?token=wrong") as answer:
        assert answer.status == 403
    page = await opened(served, http)
    assert page.count("<article") == 2  # river (3 takes) and sea, in storyboard order
    assert page.index('id="shot-river"') < page.index('id="shot-sea"')
    assert 'data-act="pick"' in page
    assert "http://" not in page  # nothing from the network
    assert "https://" not in page
    async with http.get(base(served) + "/app.js") as answer:
        assert answer.status == 200
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "EventSource" in await answer.text()


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "[::1]:{port}"]
)
async def test_another_host_is_refused_even_with_the_token(served, http, host):
    headers = {"Host": host.format(port=served.port)}
    async with http.get(served.url, headers=headers) as answer:
        assert answer.status == 421
    async with http.post(
        base(served) + "/api/approve",
        json={"shot": "sea"},
        headers={**headers, TOKEN_HEADER: served.review.token},
    ) as answer:
        assert answer.status == 421


async def test_localhost_by_name_is_the_same_page(served, http):
    async with http.get(served.url, headers={"Host": f"localhost:{served.port}"}) as answer:
        assert answer.status == 200


async def test_a_change_without_the_token_header_is_refused_and_changes_nothing(served, http):
    lock = served.review.shotlist.source.parent / "takes.toml.lock.json"
    before = lock.read_bytes()
    await opened(served, http)  # the cookie alone is not enough to change anything
    for headers in ({}, {TOKEN_HEADER: "wrong"}):
        async with http.post(
            base(served) + "/api/approve", json={"shot": "sea"}, headers=headers
        ) as answer:
            assert answer.status == 403
    assert lock.read_bytes() == before


async def test_files_events_and_script_want_the_session_cookie(served, http):
    for path in ("/events", "/app.js", "/files/versions/river.v1.mp4"):
        async with http.get(base(served) + path) as answer:
            assert answer.status == 403, path


async def test_only_files_inside_the_output_folder_are_served(served, http, tmp_path):
    await opened(served, http)
    folder = served.review.layout.folder
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "escape.txt").symlink_to(secret)
    (folder / "escape-dir").symlink_to(tmp_path)
    async with http.get(base(served) + "/files/versions/river.v1.mp4") as answer:
        assert answer.status == 200
        assert (await answer.read())[4:8] == b"ftyp"
    for path in (
        "/files/escape.txt",
        "/files/escape-dir/secret.txt",
        "/files/%2e%2e/%2e%2e/takes.toml",
        "/files/..%2f..%2ftakes.toml",
        "/files/versions",
        "/files/nothing.mp4",
        "/files/%2Fetc%2Fpasswd",
        "/files/index.html",  # the static sheet: a page, not a picture
    ):
        async with http.get(base(served) + path) as answer:
            assert answer.status in {403, 404}, path
            assert "not yours" not in await answer.text()


async def test_a_refusal_is_the_commands_own_words(served, http):
    await opened(served, http)
    token = {TOKEN_HEADER: served.review.token}
    async with http.post(base(served) + "/api/approve", json={"shot": "river"}, headers=token) as a:
        assert a.status == 200
        assert "approved" in (await a.json())["message"]
    async with http.post(
        base(served) + "/api/pick", json={"shot": "river", "take": 2}, headers=token
    ) as answer:
        assert answer.status == 409
        error = (await answer.json())["error"]
    assert 'shot "river" is approved, so its take is frozen' in error
    async with http.post(
        base(served) + "/api/pick", json={"shot": "nope", "take": 2}, headers=token
    ) as answer:
        assert answer.status == 409
        assert 'no shot "nope"' in (await answer.json())["error"]
    for body in ({"shot": "river", "take": 9}, {"shot": 3}, {"take": 1}):
        async with http.post(base(served) + "/api/pick", json=body, headers=token) as answer:
            assert answer.status == 400
    async with http.post(base(served) + "/api/delete", json={"shot": "x"}, headers=token) as a:
        assert a.status == 404


async def test_the_pick_preview_names_what_goes_stale_and_changes_nothing(served, http):
    await opened(served, http)
    lock = served.review.shotlist.source.parent / "takes.toml.lock.json"
    before = lock.read_bytes()
    async with http.post(
        base(served) + "/api/pick-preview",
        json={"shot": "river", "take": 2},
        headers={TOKEN_HEADER: served.review.token},
    ) as answer:
        message = (await answer.json())["message"]
    assert "Stale after it, chained from river: sea (0.420 USD)" in message
    assert lock.read_bytes() == before
    expected = preview_pick(served.review.shotlist, "river", 2, origin=MOCK_ORIGIN)
    assert [s.id for s in expected.stale] == ["sea"]


async def test_events_send_every_card_then_each_change(served, http):
    await opened(served, http)
    async with http.get(base(served) + "/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        seen: list[str] = []
        while len(seen) < 2:
            line = (await stream.content.readline()).decode()
            if line.startswith("data: ") and '"id"' in line:
                seen.append(json.loads(line[6:])["id"])
        assert seen == ["river", "sea"]
        async with http.post(
            base(served) + "/api/approve",
            json={"shot": "sea"},
            headers={TOKEN_HEADER: served.review.token},
        ) as answer:
            assert answer.status == 200
        while True:  # the approval comes back as sea's card, marked
            line = (await stream.content.readline()).decode()
            if line.startswith("data: ") and '"id": "sea"' in line:
                assert "badge approved" in json.loads(line[6:])["html"]
                break


def test_the_board_reads_the_records_alone_when_images_are_missing(specs):
    import asyncio  # noqa: PLC0415

    source = specs / "takes.toml"
    asyncio.run(render(source, options=RunOptions(mock_processing_s=0.05)))
    shutil.rmtree(specs / "frames")
    board = read_board(load(source, records_only=True), MOCK_ORIGIN)
    river = board.shots[0]
    assert [t.status for t in river.takes] == ["done", "done", "done"]
    assert [v.number for v in river.versions] == [1, 2, 3]
    assert all(t.task_id for t in river.takes)
    assert board.simulated


def test_the_records_clock_says_when_the_records_change(specs):
    shotlist = load(specs / "takes.toml", records_only=True)
    clock = RecordsClock(shotlist, MOCK_ORIGIN)
    assert clock.changed()
    assert not clock.changed()
    (specs / "takes.toml.lock.json").write_text("{}")
    assert clock.changed()


def test_the_static_sheet_keeps_commands_and_has_no_buttons(specs):
    shotlist = load(specs / "takes.toml", records_only=True)
    video = specs / "renders" / "takes" / "river.mp4"
    video.parent.mkdir(parents=True)
    shutil.copy(specs / "frames" / "river.png", video)  # any file: a take with a video
    takes = [
        SheetTake(number=1, status="done", cost=Decimal("0.420"), video=video),
        SheetTake(number=2, status="done", cost=Decimal("0.420"), video=video),
    ]
    shot = SheetShot.of_takes(id="river", prompt="p", duration=5, takes=takes)
    page = write_contact_sheet(shotlist, [shot], spent=Decimal(0)).read_text()
    assert "<button" not in page
    assert "<script" not in page
    assert "kling-pipe pick takes.toml river 2" in page


async def test_mark_for_rerender_is_the_commands_door_and_shows_on_the_card(served, http):
    await opened(served, http)
    token = {TOKEN_HEADER: served.review.token}
    async with http.post(base(served) + "/api/mark", json={"shot": "sea"}, headers=token) as a:
        assert a.status == 200
        assert "sea: marked for re-render" in (await a.json())["message"]
    shotlist = served.review.shotlist
    assert marked_shots(shotlist, MOCK_ORIGIN) == {"sea"}
    board = read_board(shotlist, MOCK_ORIGIN)
    assert [s.marked for s in board.shots] == [False, True]
    await served.review.refresh()
    page = await opened(served, http)
    assert "badge marked" in page
    assert 'data-act="unmark" data-shot="sea"' in page
    async with http.post(base(served) + "/api/unmark", json={"shot": "sea"}, headers=token) as a:
        assert a.status == 200
    assert marked_shots(shotlist, MOCK_ORIGIN) == frozenset()
