"""The review page in a real browser (Debian's headless Chromium through Playwright).

The page is opened before a run of the storyboard of takes starts against the bundled mock,
and follows it: the shots land without a reload. Then sea is approved from the keyboard and
take 2 of river is picked with a click (the page shows what goes stale first, and asks);
the lock file and ``river.mp4`` must then be exactly what `approve` and `pick` make of a copy
of the same folder. A request from the page without the token header is refused, and the
page asks nothing of any other origin.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from kling_pipe._backends.base import MOCK_ORIGIN
from kling_pipe._outputs.picks import pick_take
from kling_pipe._outputs.versions import approve_shots
from kling_pipe._records.store import RunLock, state_dir_for
from kling_pipe._review.server import Review, ReviewSite
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from tests.e2e.test_e2e_browser import _MISSING, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs {' and '.join(_MISSING)}"),
]


def lock_of(folder: Path) -> dict[str, object]:
    return json.loads((folder / "takes.toml.lock.json").read_text(encoding="utf-8"))


async def test_watch_a_run_land_then_pick_and_approve_as_the_commands_would(  # noqa: PLR0915
    specs, tmp_path_factory
):
    from playwright.async_api import async_playwright  # noqa: PLC0415 - absent means skipped

    source = specs / "takes.toml"
    site = ReviewSite(Review(load(source, records_only=True), MOCK_ORIGIN))
    url = await site.start()
    origin = f"http://127.0.0.1:{site.port}"
    artifacts = os.environ.get("KLING_PIPE_ARTIFACTS")
    requests: list[str] = []
    problems: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            await page.goto(url)
            await page.wait_for_selector("#live.on")
            assert page.url == origin + "/"  # the token left the address bar and history
            await page.reload()  # the session's cookie lets the page in again
            await page.wait_for_selector("#live.on")
            assert await page.locator("#shot-river video").count() == 0  # nothing rendered yet
            await page.evaluate("window.sameDocument = true")

            run = asyncio.create_task(
                render(source, options=RunOptions(mock_processing_s=0.6, concurrency=2))
            )
            # The first take lands while the others are still in flight: no reload.
            await page.wait_for_selector("#shot-river-take-1 video", timeout=30_000)
            mid_run = await page.locator("#shot-sea video").count()
            result = await run
            assert result.exit_code == 0, result.as_json()
            assert mid_run == 0  # sea is chained from river: it came after
            await page.wait_for_selector("#shot-sea video", timeout=30_000)
            await page.wait_for_selector("#shot-river-take-3 img[alt^='first frame']")
            assert await page.evaluate("window.sameDocument") is True
            if artifacts:
                await page.screenshot(path=f"{artifacts}/review-landed.png")

            # The records as the run left them: the CLI's functions will act on this copy.
            twin = tmp_path_factory.mktemp("twin")
            shutil.copytree(specs, twin, dirs_exist_ok=True)

            # No token header: refused, from the page's own origin.
            status = await page.evaluate(
                """() => fetch("/api/approve", {method: "POST",
                     headers: {"Content-Type": "application/json"},
                     body: JSON.stringify({shot: "sea"})}).then((r) => r.status)"""
            )
            assert status == 403
            assert problems.pop().endswith("status of 403 (Forbidden)")  # that refusal

            # Keyboard: j to sea, a to approve it.
            await page.keyboard.press("j")
            assert await page.locator("#shot-sea.focus").count() == 1
            await page.keyboard.press("a")
            await page.wait_for_selector("#shot-sea .badge.approved")

            # k back to river, 3 asks to pick take 3, and Cancel changes nothing.
            await page.keyboard.press("k")
            assert await page.locator("#shot-river.focus").count() == 1
            await page.keyboard.press("3")
            await page.locator("#confirm").wait_for(state="visible")
            assert "Pick take 3 of river" in await page.locator("#confirm-text").inner_text()
            await page.click("#confirm button[value=no]")
            await page.locator("#confirm").wait_for(state="hidden")
            # Space plays the shot's picked take, and pauses it.
            await page.keyboard.press(" ")
            playing = "document.querySelector('#shot-river-take-1 video').paused === false"
            await page.wait_for_function(playing)
            await page.keyboard.press(" ")
            await page.wait_for_function(
                "document.querySelector('#shot-river-take-1 video').paused === true"
            )

            # Pick take 2 of river with a click: what goes stale first, then the confirmation.
            await page.click("#shot-river-take-2 button[data-act=pick]")
            dialog = page.locator("#confirm")
            await dialog.wait_for(state="visible")
            asked = await page.locator("#confirm-text").inner_text()
            assert "Pick take 2 of river (now take 1)?" in asked
            if artifacts:
                await page.screenshot(path=f"{artifacts}/review-pick.png")
            await page.click("#confirm button[value=yes]")
            await page.wait_for_selector("#shot-river-take-2.picked")
            notice = await page.locator("#notice").inner_text()
            assert "river: take 2 picked (was take 1)" in notice

            # A refusal is shown in the page, in the command's words: a run holds the list.
            with RunLock(state_dir_for(source)):
                await page.click("#shot-sea button[data-act=mark]")
                refusal = page.locator("#shot-sea .refusal")
                await refusal.wait_for(state="visible")
                assert "is rendering this shot list" in await refusal.inner_text()
            assert problems.pop().endswith("status of 409 (Conflict)")  # that refusal
            await browser.close()
    finally:
        await site.close()

    assert problems == []
    assert all(u.startswith(origin + "/") for u in requests), requests

    # The same two changes through the commands' functions, on the copy.
    shotlist = load(twin / "takes.toml", records_only=True)
    approve_shots(shotlist, ["sea"], origin=MOCK_ORIGIN)
    pick_take(shotlist, "river", 2, origin=MOCK_ORIGIN)
    assert lock_of(specs) == lock_of(twin)
    folder = Path("renders/takes/mock")
    for name in ("river.mp4", "sea.mp4"):
        assert (specs / folder / name).read_bytes() == (twin / folder / name).read_bytes()
    river = lock_of(specs)["simulated"]["river"]  # type: ignore[index]
    assert river["pick"] == 2
