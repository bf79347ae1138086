"""The contact sheet in a real browser: Debian's headless Chromium, driven by Playwright.

The demo is rendered against the mock, the sheet written, and the page opened as a
``file://`` URL, as someone who unzipped the folder would open it. Skipped only when
/usr/bin/chromium or the playwright package is absent (`.ci/run` installs both).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load

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
    result = await render(source, mock_processing_s=0.2)
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
    assert [src for src, _ in loaded] == [f"{shot_id}.mp4" for shot_id in durations]
    for (src, duration), expected in zip(loaded, durations.values(), strict=True):
        assert isinstance(duration, float | int), f"{src}: {duration}"
        assert abs(duration - expected) <= 0.2, src
    assert requests
    assert all(url.startswith("file://") for url in requests), requests
    assert overflow <= 0
    assert columns == 1
    assert (artifacts / "contact-sheet.png").stat().st_size > 10_000
