"""The contact sheet: a self-contained page, every text escaped, every path relative."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kling_pipe._decisions.results import RunResult, ShotResult
from kling_pipe._files import sha256_file
from kling_pipe._outputs.contact_sheet import (
    THUMB_WIDTH_PX,
    SheetShot,
    SheetTake,
    sheet_shots_from_disk,
    sheet_shots_from_result,
    write_contact_sheet,
    write_sheet,
)
from kling_pipe._outputs.report import sheet_shots_from_store, sheet_take, write_report
from kling_pipe._records.store import Store
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


def test_an_index_html_of_the_users_is_set_aside_never_overwritten(shotlist):
    rendered(shotlist, "puddle")
    mine = shotlist.output_path / "index.html"
    mine.write_text("<h1>my own page</h1>", encoding="utf-8")
    sheet(shotlist, sheet_shots_from_disk(shotlist))
    kept = shotlist.output_path / "index.yours-1.html"
    assert kept.read_text(encoding="utf-8") == "<h1>my own page</h1>"
    assert "contact sheet" in mine.read_text(encoding="utf-8")


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
    """A thumbnail names its video's file (inode, size, mtime): only a changed video is redone."""
    rendered(shotlist, "puddle", "street")
    first_page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    thumbs = shotlist.output_path / "thumbs"

    def state() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in thumbs.glob("*.jpg")}

    before = state()
    street = shotlist.output_path / "street.mp4"
    new = write_video(shotlist.output_path / "new.mp4", 10, width=96, height=64, shade=200)
    new.replace(street)  # a new render renamed over the old one
    second_page = sheet(shotlist, sheet_shots_from_disk(shotlist))
    after = state()
    assert after["puddle.first.jpg"] == before["puddle.first.jpg"]
    assert after["puddle.last.jpg"] == before["puddle.last.jpg"]
    assert after["street.first.jpg"] != before["street.first.jpg"]
    assert [i["width"] for i in first_page.all("img")] == [
        i["width"] for i in second_page.all("img")
    ]


# --- takes side by side ------------------------------------------------------------------------


def take_videos(shotlist: ShotList) -> tuple[Path, Path]:
    """Take 1 at ``puddle.mp4`` and take 2 under ``takes/``: two renders of one shot."""
    out = shotlist.output_path
    (out / "takes").mkdir(parents=True)
    one = write_video(out / "puddle.mp4", 5, width=96, height=64, shade=60)
    two = write_video(out / "takes" / "puddle.take2.mp4", 5, width=96, height=64, shade=200)
    return one, two


def three_takes(shotlist: ShotList) -> SheetShot:
    one, two = take_videos(shotlist)
    return SheetShot.of_takes(
        id="puddle",
        prompt=shotlist.shot("puddle").final_prompt,
        duration=5,
        takes=[
            SheetTake(number=3, status="failed", cost=Decimal("0.000"), error="boom", code=500),
            SheetTake(number=1, status="done", cost=Decimal("0.420"), video=one, task_id="t-one"),
            SheetTake(
                number=2,
                status="done",
                cost=Decimal("0.420"),
                video=two,
                task_id="t-two",
                picked=True,
            ),
        ],
    )


def sections(raw: str) -> dict[str, str]:
    """The HTML of each take's section, by its id."""
    found: dict[str, str] = {}
    for chunk in raw.split("<section ")[1:]:
        body = chunk.split("</section>")[0]
        found[body.split('id="')[1].split('"')[0]] = body
    return found


def test_a_shot_of_one_take_is_the_card_it_always_was(shotlist):
    rendered(shotlist, "puddle")
    video = shotlist.output_path / "puddle.mp4"
    plain = SheetShot(
        id="puddle", prompt="p", duration=5, cost=Decimal("0.420"), status="done", video=video
    )
    of_one = SheetShot.of_takes(
        id="puddle",
        prompt="p",
        duration=5,
        takes=[SheetTake(status="done", cost=Decimal("0.420"), video=video)],
    )
    assert of_one == plain
    assert plain.takes == (
        SheetTake(status="done", cost=Decimal("0.420"), video=video, picked=True),
    )
    page = write_contact_sheet(shotlist, [of_one], spent=Decimal(0)).read_text()
    assert page == write_contact_sheet(shotlist, [plain], spent=Decimal(0)).read_text()
    assert "<section" not in page
    assert "kling-pipe pick" not in page


def test_a_shot_of_several_takes_is_one_row_with_every_take_side_by_side(shotlist):
    path = write_contact_sheet(shotlist, [three_takes(shotlist)], spent=Decimal("0.840"))
    raw = path.read_text(encoding="utf-8")
    page = Page(raw)
    assert [a["class"] for a in page.all("article")] == ["shot takes"]
    assert [s["id"] for s in page.all("section")] == [
        "shot-puddle-take-1",
        "shot-puddle-take-2",
        "shot-puddle-take-3",
    ]
    assert [s["class"] for s in page.all("section")] == ["take ok", "take ok picked", "take bad"]
    assert [v["src"] for v in page.all("video")] == ["puddle.mp4", "takes/puddle.take2.mp4"]
    assert [i["src"] for i in page.all("img")] == [
        "thumbs/puddle.first.jpg",
        "thumbs/puddle.last.jpg",
        "thumbs/takes.puddle.take2.first.jpg",
        "thumbs/takes.puddle.take2.last.jpg",
        "thumbs/puddle.inputs.first.jpg",  # take 3 has no video: the shot's input frame
    ]
    by_id = sections(raw)
    assert '<span class="badge">picked</span>' in by_id["shot-puddle-take-2"]
    assert "kling-pipe pick" not in by_id["shot-puddle-take-2"]
    assert "<code>kling-pipe pick board.toml puddle 1</code>" in by_id["shot-puddle-take-1"]
    assert "kling-pipe pick" not in by_id["shot-puddle-take-3"]  # failed: nothing to pick
    assert "t-one" in by_id["shot-puddle-take-1"]
    assert "t-two" in by_id["shot-puddle-take-2"]
    assert "code 500: boom" in by_id["shot-puddle-take-3"]
    assert "no video" in by_id["shot-puddle-take-3"]
    text = page.plain()
    assert "3 takes" in text
    assert "Cost 0.840 USD" in text  # the shot's total, under the row
    assert "1 done" in text  # counted once, by its picked take
    for img in page.all("img"):
        assert (path.parent / str(img["src"])).is_file()


def test_the_pick_command_quotes_a_shot_list_name_for_the_shell(tmp_path, frames):
    shotlist = ShotList(
        storyboard=Storyboard(name="b"),
        shots=(Shot(id="puddle", prompt="p", image=LocalImage(path="frames/puddle.png")),),
        source=tmp_path / "my board.toml",
    )
    raw = write_contact_sheet(shotlist, [three_takes(shotlist)], spent=Decimal(0)).read_text()
    assert "kling-pipe pick &#x27;my board.toml&#x27; puddle 1" in raw


def test_takes_are_ordered_and_the_first_is_picked_when_none_is_marked():
    shot = SheetShot.of_takes(
        id="s",
        prompt="p",
        duration=5,
        takes=[
            SheetTake(number=2, status="failed", cost=Decimal("0.000"), picked=False),
            SheetTake(number=1, status="done", cost=Decimal("0.420"), picked=False),
        ],
    )
    assert [(t.number, t.picked) for t in shot.takes] == [(1, True), (2, False)]
    assert (shot.status, shot.cost) == ("done", Decimal("0.420"))
    with pytest.raises(ValueError, match="at least one take"):
        SheetShot.of_takes(id="s", prompt="p", duration=5, takes=[])


def test_the_sheet_says_which_thumbnails_it_shows_and_whose(shotlist):
    rendered(shotlist, "street")
    written = write_sheet(shotlist, sheet_shots_from_disk(shotlist), spent=Decimal(0))
    assert [(sid, t.path.name) for sid, t in written.thumbs] == [
        ("puddle", "puddle.first.jpg"),  # its input frame
        ("street", "street.first.jpg"),
        ("street", "street.last.jpg"),
        ("river", "river.first.jpg"),
        ("river", "river.last.jpg"),
    ]
    assert all(t.sha256 is not None for _, t in written.thumbs)  # all made just now
    again = write_sheet(shotlist, sheet_shots_from_disk(shotlist), spent=Decimal(0))
    assert all(t.sha256 is None for _, t in again.thumbs)  # all reused


# --- the sheet from the records ---------------------------------------------------------------


def relative(shotlist: ShotList, path: Path) -> str:
    return path.relative_to(shotlist.base_dir).as_posix()


def downloaded(store: Store, shotlist: ShotList, shot_id: str, fingerprint: str) -> None:
    """Record a finished render of *shot_id* from the mock, its video in ``mock/``."""
    folder = shotlist.output_path / "mock"
    folder.mkdir(parents=True, exist_ok=True)
    video = write_video(folder / f"{shot_id}.mp4", shotlist.shot(shot_id).duration, width=96)
    attempt = store.record_intent(
        shot_id=shot_id,
        fingerprint=fingerprint,
        inputs="{}",
        model=shotlist.storyboard.model,
        duration=shotlist.shot(shot_id).duration,
        cost=Decimal("0.420"),
        sent_at=datetime.now(UTC),
        origin="mock",
    )
    store.record_task(attempt, f"task-{shot_id}")
    store.record_final(attempt, completed=True)
    store.record_download(attempt, file=relative(shotlist, video), sha256="x", size=1)
    assert video.is_file()


def test_from_the_records_each_shot_has_one_take_with_its_task(shotlist):
    store = Store.in_memory()
    fps = {s.id: f"fp-{s.id}" for s in shotlist.shots}
    downloaded(store, shotlist, "puddle", fps["puddle"])
    shots = sheet_shots_from_store(shotlist, store, fps, "mock")
    assert [(s.id, s.status, len(s.takes)) for s in shots] == [
        ("puddle", "done", 1),
        ("street", "pending", 1),
        ("gutter", "pending", 1),
        ("river", "pending", 1),
    ]
    take = shots[0].takes[0]
    assert (take.number, take.picked, take.task_id, take.cost) == (
        1,
        True,
        "task-puddle",
        Decimal("0.420"),
    )
    assert take.video == shotlist.output_path / "mock" / "puddle.mp4"
    (shotlist.output_path / "mock" / "puddle.mp4").unlink()
    gone = sheet_take(shotlist, store.latest("puddle", fps["puddle"], "mock"), number=2)
    assert (gone.status, gone.video, gone.number) == ("missing", None, 2)


def test_the_report_records_each_thumbnail_once(shotlist, monkeypatch):
    store = Store.in_memory()
    fps = {s.id: f"fp-{s.id}" for s in shotlist.shots}
    downloaded(store, shotlist, "puddle", fps["puddle"])
    page = write_report(shotlist, store=store, origin="mock", fingerprints=fps)
    thumbs = {f.path: f for f in store.files() if f.kind == "thumb"}
    folder = shotlist.output_path / "mock" / "thumbs"
    assert sorted(thumbs) == [
        relative(shotlist, folder / name)
        for name in ("puddle.first.jpg", "puddle.last.jpg", "river.first.jpg", "river.last.jpg")
    ]
    for path, record in thumbs.items():
        assert record.sha256 == sha256_file(shotlist.base_dir / path)
        assert record.origin == "mock"
    assert thumbs[relative(shotlist, folder / "river.last.jpg")].shot_id == "river"
    recorded: list[str] = []
    monkeypatch.setattr(store, "record_file", lambda path, **_: recorded.append(path))
    assert write_report(shotlist, store=store, origin="mock", fingerprints=fps) == page
    assert recorded == [relative(shotlist, page)]  # the thumbnails are known already
