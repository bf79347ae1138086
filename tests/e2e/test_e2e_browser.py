"""The contact sheet in a real browser: Debian's headless Chromium, driven by Playwright.

The demo is rendered against the mock, the sheet written, and the page opened as a
``file://`` URL, as someone who unzipped the folder would open it. A sheet of takes side by
side is built from constructed data and opened the same way. Skipped only when
/usr/bin/chromium or the playwright package is absent (`.ci/run` installs both).
"""

from __future__ import annotations

import importlib.util
import os
from decimal import Decimal
from pathlib import Path

import pytest

from kling_pipe._outputs.contact_sheet import SheetShot, SheetTake, write_contact_sheet
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import LocalImage, Shot, ShotList, Storyboard
from tests.mp4clips import write_video

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_MISSING = [
    what
    for what, present in (
        ("/usr/bin/chromium (apt-get install chromium)", CHROMIUM.exists()),
        ("playwright (pip install playwright)", importlib.util.find_spec("playwright") is not None),
    )
    if not present
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs {' and '.join(_MISSING)}"),
]

#: Resolves, per <video>, to [src, duration] once metadata is loaded, or [src, "error ..."].
WAIT_FOR_METADATA = """() => Promise.all([...document.querySelectorAll("video")].map(
  (v) => new Promise((resolve) => {
    const done = () => resolve([v.getAttribute("src"), v.duration]);
    if (v.readyState >= 1) { done(); return; }
    v.addEventListener("loadedmetadata", done, { once: true });
    v.addEventListener("error", () => resolve([v.getAttribute("src"),
      "error " + (v.error ? v.error.code : "?")]), { once: true });
  })))"""


@pytest.fixture
async def sheet(specs: Path) -> tuple[Path, dict[str, int]]:
    """The demo rendered against the mock, and its contact sheet; with each shot's duration."""
    source = specs / "demo.toml"
    result = await render(source, options=RunOptions(mock_processing_s=0.2))
    assert result.exit_code == 0, result.as_json()
    shotlist = load(source)
    assert result.report is not None  # the sheet the run wrote, beside the mock's videos
    return result.report, {s.id: s.duration for s in shotlist.shots}


async def test_the_contact_sheet_plays_every_shot_in_headless_chromium(sheet, tmp_path_factory):
    from playwright.async_api import async_playwright  # noqa: PLC0415 - absent means skipped

    page_path, durations = sheet
    # Screenshots to look at: where KLING_PIPE_ARTIFACTS says, else a temporary folder.
    artifacts = Path(os.environ.get("KLING_PIPE_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    os.makedirs(artifacts, exist_ok=True)  # noqa: PTH103 - before the browser starts
    problems: list[str] = []
    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(page_path.as_uri())
            loaded = await page.evaluate(WAIT_FOR_METADATA)
            await page.screenshot(path=str(artifacts / "contact-sheet.png"), full_page=True)

            await page.set_viewport_size({"width": 390, "height": 844})
            overflow = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            columns = await page.evaluate(
                "() => getComputedStyle(document.querySelector('main'))"
                ".gridTemplateColumns.split(' ').length"
            )
            await page.screenshot(path=str(artifacts / "contact-sheet-phone.png"), full_page=True)
        finally:
            await browser.close()

    assert problems == []
    # Each shot's render as it was delivered: its version (<id>.mp4 is a copy of it).
    assert [src for src, _ in loaded] == [f"versions/{shot_id}.v1.mp4" for shot_id in durations]
    for (src, duration), expected in zip(loaded, durations.values(), strict=True):
        assert isinstance(duration, float | int), f"{src}: {duration}"
        assert abs(duration - expected) <= 0.2, src
    assert requests
    assert all(url.startswith("file://") for url in requests), requests
    assert overflow <= 0
    assert columns == 1
    assert (artifacts / "contact-sheet.png").stat().st_size > 10_000


@pytest.fixture
def takes_sheet(tmp_path: Path, frames: Path) -> Path:
    """A sheet built from constructed data: a shot of three takes (take 2 picked) and one of one.

    The takes' records are not needed to show them: the sheet renders whatever takes it is
    given, so this is the page a run with ``takes = 3`` leaves once the records feed it.
    """
    shotlist = ShotList(
        storyboard=Storyboard(name="takes"),
        shots=(
            Shot(
                id="storm",
                prompt="Rain sweeps the lantern room",
                image=LocalImage(path="frames/sea.jpg"),
            ),
            Shot(id="calm", prompt="The sea at dawn", image=LocalImage(path="frames/dusk.png")),
        ),
        source=tmp_path / "board.toml",
    )
    out = shotlist.output_path
    (out / "takes").mkdir(parents=True)
    one = write_video(out / "storm.mp4", 5, width=320, height=180, shade=70)
    two = write_video(out / "takes" / "storm.take2.mp4", 5, width=320, height=180, shade=160)
    calm = write_video(out / "calm.mp4", 5, width=320, height=180, shade=220)
    storm = SheetShot.of_takes(
        id="storm",
        prompt=shotlist.shot("storm").final_prompt,
        duration=5,
        takes=[
            SheetTake(number=1, status="done", cost=Decimal("0.420"), video=one, task_id="t1"),
            SheetTake(
                number=2, status="done", cost=Decimal("0.420"), video=two, task_id="t2", picked=True
            ),
            SheetTake(
                number=3, status="failed", cost=Decimal("0.000"), error="content policy", code=400
            ),
        ],
    )
    single = SheetShot(
        id="calm",
        prompt="The sea at dawn",
        duration=5,
        cost=Decimal("0.420"),
        status="done",
        video=calm,
    )
    return write_contact_sheet(shotlist, [storm, single], spent=Decimal("1.260"))


#: Per take of the storm row: its id, classes, top edge, border width and pick command.
DESCRIBE_TAKES = """() => [...document.querySelectorAll("#shot-storm .take")].map((t) => [
  t.id, t.className, Math.round(t.getBoundingClientRect().top),
  getComputedStyle(t).borderTopWidth,
  t.querySelector(".pick code") ? t.querySelector(".pick code").textContent : null,
  t.querySelector(".badge") ? t.querySelector(".badge").textContent : null])"""
ROW_SCROLLS = """() => { const r = document.querySelector("#shot-storm .row");
  return [r.scrollWidth, r.clientWidth]; }"""
IMAGES_LOADED = """() => [...document.querySelectorAll("#shot-storm img")].every(
  (i) => i.complete && i.naturalWidth > 0)"""


async def test_takes_show_side_by_side_with_the_pick_marked_in_headless_chromium(
    takes_sheet, tmp_path_factory
):
    from playwright.async_api import async_playwright  # noqa: PLC0415 - absent means skipped

    artifacts = Path(os.environ.get("KLING_PIPE_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    os.makedirs(artifacts, exist_ok=True)  # noqa: PTH103 - before the browser starts
    problems: list[str] = []
    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(takes_sheet.as_uri())
            loaded = await page.evaluate(WAIT_FOR_METADATA)
            await page.wait_for_function(IMAGES_LOADED)
            wide = await page.evaluate(DESCRIBE_TAKES)
            wide_row = await page.evaluate(ROW_SCROLLS)
            single = await page.evaluate(
                "() => [document.querySelector('#shot-calm').className,"
                " document.querySelectorAll('#shot-calm section').length]"
            )
            await page.screenshot(path=str(artifacts / "takes.png"), full_page=True)

            await page.set_viewport_size({"width": 390, "height": 844})
            narrow = await page.evaluate(DESCRIBE_TAKES)
            narrow_row = await page.evaluate(ROW_SCROLLS)
            overflow = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            await page.screenshot(path=str(artifacts / "takes-phone.png"), full_page=True)
        finally:
            await browser.close()

    assert problems == []
    assert all(url.startswith("file://") for url in requests), requests
    assert [src for src, _ in loaded] == ["storm.mp4", "takes/storm.take2.mp4", "calm.mp4"]
    assert all(isinstance(d, float | int) and abs(d - 5) <= 0.2 for _, d in loaded), loaded
    ids = ["shot-storm-take-1", "shot-storm-take-2", "shot-storm-take-3"]
    for described in (wide, narrow):
        assert [t[0] for t in described] == ids
        assert len({t[2] for t in described}) == 1  # one row, at every width
        assert [t[4] for t in described] == [
            "kling-pipe pick board.toml storm 1",
            None,
            None,  # a failed take has nothing to pick
        ]
        assert [t[5] for t in described] == [None, "picked", None]
        assert "picked" in described[1][1]
        assert described[1][3] == "2px"  # the picked take stands out
        assert described[0][3] == "1px"
    assert wide_row[0] <= wide_row[1]  # three takes fit a desktop row
    assert narrow_row[0] > narrow_row[1]  # on a phone the row scrolls sideways...
    assert overflow <= 0  # ...and the page does not
    assert single == ["shot ok", 0]  # a shot of one take is the card it always was
