"""The contact sheet: a self-contained page, every text escaped, every path relative."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kling_pipe._outputs.contact_sheet import (
    THUMB_WIDTH_PX,
    SheetShot,
    sheet_shots_from_disk,
    sheet_shots_from_result,
    write_contact_sheet,
)
from kling_pipe._running.results import RunResult, ShotResult
from kling_pipe._shotlist.specs import ChainImage, LocalImage, Shot, ShotList, Storyboard, UrlImage
from tests.mp4clips import write_video


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of a parsed page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture
def shotlist(tmp_path: Path, frames: Path) -> ShotList:
    """Four shots: a local frame, a URL, a chain and a first + last local frame."""
    shots = (
        Shot(
            id="puddle",
            prompt="Boat <script>alert(1)</script> & rain",
            image=LocalImage(path="frames/puddle.png"),
        ),
        Shot(
            id="street",
            prompt="Street",
            image=UrlImage(url="https://x.test/street.png"),
            duration=10,
        ),
        Shot(id="gutter", prompt="Gutter", image=ChainImage(shot="puddle", frame="last")),
        Shot(
            id="river",
            prompt="River",
            image=LocalImage(path="frames/river.png"),
            last_image=LocalImage(path="frames/sea.jpg"),
            duration=7,
            prompt_prefix="35mm. ",
        ),
    )
    return ShotList(
        storyboard=Storyboard(name="Paper <boat>"), shots=shots, source=tmp_path / "board.toml"
    )


def rendered(shotlist: ShotList, *ids: str) -> None:
    shotlist.output_path.mkdir(parents=True, exist_ok=True)
    for shot_id in ids:
        duration = shotlist.shot(shot_id).duration
        write_video(shotlist.output_path / f"{shot_id}.mp4", duration, width=96, height=64)


def sheet(shotlist: ShotList, shots: list[SheetShot], spent: str = "0.420") -> Page:
    path = write_contact_sheet(shotlist, shots, spent=Decimal(spent))
    assert path == shotlist.output_path / "index.html"
    return Page(path.read_text(encoding="utf-8"))


def test_the_page_shows_the_name_the_totals_and_one_card_per_shot_in_file_order(shotlist):
    rendered(shotlist, "puddle", "street", "gutter", "river")
    page = sheet(shotlist, sheet_shots_from_disk(shotlist), spent="2.268")
    text = page.plain()
    assert "Paper <boat>" in text
    assert "4 shots · 27 s · 2.268 USD spent" in text
    assert [a["id"] for a in page.all("article")] == [
        "shot-puddle",
        "shot-street",
        "shot-gutter",
        "shot-river",
    ]
    assert "35mm. River" in text
    assert "7 s" in text
    assert "0.588 USD" in text


def test_every_rendered_shot_gets_a_player_with_a_relative_source(shotlist):
    rendered(shotlist, "puddle", "street", "gutter", "river")
    page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    videos = page.all("video")
    assert [v["src"] for v in videos] == ["puddle.mp4", "street.mp4", "gutter.mp4", "river.mp4"]
    assert all("controls" in v and v["preload"] == "metadata" for v in videos)


def test_thumbnails_of_the_first_and_last_frames_are_small_jpegs_beside_the_page(shotlist):
    rendered(shotlist, "puddle")
    page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    images = page.all("img")
    sources = [i["src"] for i in images]
    assert sources[:2] == ["thumbs/puddle.first.jpg", "thumbs/puddle.last.jpg"]
    for image in images:
        thumb = shotlist.output_path / str(image["src"])
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
        assert int(str(image["width"])) <= THUMB_WIDTH_PX


def test_a_shot_without_video_shows_its_local_input_frames_or_a_placeholder(shotlist):
    page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    assert page.all("video") == []
    assert [i["src"] for i in page.all("img")] == [
        "thumbs/puddle.first.jpg",
        "thumbs/river.first.jpg",
        "thumbs/river.last.jpg",
    ]
    text = page.plain()
    assert text.count("no video") == 4
    assert text.count("no first frame") == 2  # the URL and the chain
    assert text.count("Status missing") == 4
    assert "4 missing" in text


def test_prompts_and_names_are_escaped_so_no_script_runs(shotlist):
    rendered(shotlist, "puddle")
    path = write_contact_sheet(shotlist, sheet_shots_from_disk(shotlist), spent=Decimal(0))
    raw = path.read_text(encoding="utf-8")
    assert "<script" not in raw
    assert "Boat &lt;script&gt;alert(1)&lt;/script&gt; &amp; rain" in raw
    assert "Paper &lt;boat&gt;" in raw
    assert [t for t, _ in Page(raw).tags].count("script") == 0


def test_the_page_refers_to_nothing_outside_its_folder_and_nothing_on_the_network(shotlist):
    rendered(shotlist, "puddle", "street", "gutter", "river")
    path = write_contact_sheet(shotlist, sheet_shots_from_disk(shotlist), spent=Decimal(0))
    raw = path.read_text(encoding="utf-8")
    assert "http" not in raw.lower()
    assert "//" not in raw.replace("<!doctype", "")
    page = Page(raw)
    refs = [a[key] for _, a in page.tags for key in ("src", "href", "poster") if a.get(key)]
    assert len(refs) >= 13
    for ref in refs:
        if ref == "data:,":
            continue  # the empty favicon, there to stop the browser asking for one
        assert not ref.startswith(("/", "..")), ref
        assert ":" not in ref, ref
        assert (path.parent / ref).is_file(), ref


def test_a_failed_shot_shows_its_status_and_error(shotlist):
    shots = [
        SheetShot(
            id="puddle",
            prompt="p",
            duration=5,
            cost=Decimal("0.000"),
            status="failed",
            error="content policy <violation>",
            code=400,
        )
    ]
    page = sheet(shotlist, shots)
    assert page.all("article")[0]["class"] == "shot bad"
    assert "code 400: content policy <violation>" in page.plain()
    assert page.all("video") == []


def test_a_video_that_cannot_be_decoded_still_gets_its_card(shotlist):
    shotlist.output_path.mkdir(parents=True)
    broken = shotlist.output_path / "puddle.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 64)
    shots = [
        SheetShot(
            id="puddle", prompt="p", duration=5, cost=Decimal("0.420"), status="done", video=broken
        )
    ]
    page = sheet(shotlist, shots)
    assert [v["src"] for v in page.all("video")] == ["puddle.mp4"]
    assert "no first frame" in page.plain()


def test_from_disk_a_shot_is_done_when_its_mp4_is_there_and_costs_its_price(shotlist):
    rendered(shotlist, "river")
    (shotlist.output_path / "street.mp4").write_text("not a video")
    shots = sheet_shots_from_disk(shotlist)
    assert [(s.id, s.status, s.cost) for s in shots] == [
        ("puddle", "missing", Decimal("0.000")),
        ("street", "missing", Decimal("0.000")),
        ("gutter", "missing", Decimal("0.000")),
        ("river", "done", Decimal("0.588")),
    ]
    assert shots[3].video == shotlist.output_path / "river.mp4"
    assert shots[3].prompt == "35mm. River"


def test_from_a_run_result_each_shot_keeps_its_state_cost_and_error_in_file_order(shotlist):
    rendered(shotlist, "river")
    result = RunResult(
        storyboard="Paper <boat>",
        output_dir=shotlist.output_path,
        wall_s=1.0,
        shots=(
            ShotResult(
                id="river",
                duration=7,
                state="done",
                file=shotlist.output_path / "river.mp4",
                cost=Decimal("0.588"),
            ),
            ShotResult(id="puddle", duration=5, state="failed", error="boom", code=500),
            ShotResult(id="street", duration=10, state="cached", cost=Decimal("0.000")),
        ),
    )
    shots = sheet_shots_from_result(shotlist, result)
    assert [(s.id, s.status) for s in shots] == [
        ("puddle", "failed"),
        ("street", "cached"),
        ("gutter", "missing"),
        ("river", "done"),
    ]
    assert (shots[0].error, shots[0].code, shots[0].video) == ("boom", 500, None)
    assert shots[3].video == shotlist.output_path / "river.mp4"
    assert shots[3].cost == Decimal("0.588")


def test_thumbnails_are_reused_until_their_video_changes(shotlist):
    rendered(shotlist, "puddle", "street")
    first_page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    thumbs = shotlist.output_path / "thumbs"
    # Everything so far dates from a minute ago (videos) and half a minute ago (thumbnails),
    # so the new video below is newer than its thumbnail whatever the clock's resolution.
    now = time.time()
    for video in shotlist.output_path.glob("*.mp4"):
        os.utime(video, (now - 60, now - 60))
    for thumb in thumbs.glob("*.jpg"):
        os.utime(thumb, (now - 30, now - 30))
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.glob("*.jpg")}
    rendered(shotlist, "street")  # a new video for one shot only
    second_page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    after = {p.name: p.stat().st_mtime_ns for p in thumbs.glob("*.jpg")}
    assert after["puddle.first.jpg"] == before["puddle.first.jpg"]
    assert after["street.first.jpg"] > before["street.first.jpg"]
    assert [i["width"] for i in first_page.all("img")] == [
        i["width"] for i in second_page.all("img")
    ]
