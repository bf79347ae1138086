"""Frames made while the run goes on: one decode per video, off the loop, bounded, recorded.

Unit tests drive `kling_pipe._outputs.frames` on real H.264 files with a spy counting decodes;
the end-to-end tests run the real scheduler and client against the mock over sockets and
watch the thumbnails appear before the last shot is done, and the shots go on while a
decoder is stuck.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from kling_pipe import _files
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from kling_pipe._decisions import proof
from kling_pipe._decisions.results import ShotResult
from kling_pipe._outputs import frames, media
from kling_pipe._outputs.frames import FramesJob, FramesMade, FrameWorker, Thumb
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import MediaError
from mockserver import FixedTime, Manual, MockConfig, MockServer
from tests.settling import FAST_SETTLE

WIDTH, HEIGHT, FPS = 96, 64, 10
RED, GREEN, BLUE = (230, 20, 20), (20, 200, 20), (20, 20, 230)
FAST_RETRY = RetryPolicy(wait_initial_s=0.005, wait_max_s=0.02, timeout_s=10.0)
#: Guards against a hang only; never part of what is tested.
HANG_S = 60.0


def make_mp4(path: Path, colours: list[tuple[int, int, int]], *, gop: int = 12) -> Path:
    """Encode one solid-colour frame per entry into an H.264 MP4 at *path*."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=FPS, options={"preset": "ultrafast", "g": str(gop), "threads": "1"}
        )
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, colour in enumerate(colours):
            frame = av.VideoFrame.from_bytes(
                bytes((*colour, 255)) * (WIDTH * HEIGHT), WIDTH, HEIGHT, format="rgba"
            )
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def clip(path: Path, seconds: int = 5, *, first: tuple[int, int, int] = RED) -> Path:
    """A clip that starts *first*, runs green and ends blue."""
    return make_mp4(path, [first] + [GREEN] * (seconds * FPS - 2) + [BLUE])


def centre(path: Path) -> tuple[int, int, int]:
    """The colour at the centre of a picture file (PNG or JPEG)."""
    with av.open(str(path)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    r, g, b = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2]
    return int(r), int(g), int(b)


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - e) <= 16 for a, e in zip(actual, expected, strict=True))


@pytest.fixture
def decodes(monkeypatch) -> list[dict[str, Any]]:
    """Every `media.decode_ends` call from here on, with its arguments (a spy)."""
    calls: list[dict[str, Any]] = []
    real = media.decode_ends

    def spy(path: Path, **kwargs: Any) -> media.EndFrames:
        calls.append({"path": path, **kwargs})
        return real(path, **kwargs)

    monkeypatch.setattr(media, "decode_ends", spy)
    return calls


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "renders" / "board"
    folder.mkdir(parents=True)
    return folder


def job_for(video: Path, out_dir: Path, **changes: Any) -> FramesJob:
    return FramesJob(
        shot_id=video.stem,
        video=video,
        identity=frames.identity_of(video),
        layout=OutputLayout.at(out_dir, out_dir.parent.parent),
        **changes,
    )


# --- one decode per video ---------------------------------------------------------------------


def test_a_job_makes_both_thumbnails_and_both_chain_frames_from_one_decode(out_dir, decodes):
    video = clip(out_dir / "storm.mp4", 6)
    made = frames.make_frames(
        job_for(video, out_dir, duration_s=6.0, chain=frozenset({"first", "last"}))
    )
    assert made.error == ""
    assert len(decodes) == 1
    assert decodes[0]["duration_s"] == 6.0  # delivery's measurement, not a second probe
    thumbs = out_dir / "thumbs"
    assert made.first == Thumb(thumbs / "storm.first.jpg", WIDTH, HEIGHT, made.first.sha256)
    assert made.last is not None
    assert made.last.path == thumbs / "storm.last.jpg"
    assert close_to(centre(made.first.path), RED)
    assert close_to(centre(made.last.path), BLUE)
    first_png, first_sha = made.chain["first"]
    last_png, last_sha = made.chain["last"]
    assert first_png == out_dir / "frames" / "storm.first.png"
    assert close_to(centre(first_png), RED)
    assert close_to(centre(last_png), BLUE)
    assert first_sha == _files.sha256_file(first_png)
    assert last_sha == _files.sha256_file(last_png)
    assert sorted(made.written) == sorted(
        [
            ("renders/board/thumbs/storm.first.jpg", "thumb", made.first.sha256),
            ("renders/board/thumbs/storm.last.jpg", "thumb", made.last.sha256),
            ("renders/board/frames/storm.first.png", "frame", first_sha),
            ("renders/board/frames/storm.last.png", "frame", last_sha),
        ]
    )
    assert made.first.sha256 == _files.sha256_file(made.first.path)


def test_a_file_of_the_users_where_a_frame_or_thumbnail_goes_is_set_aside(out_dir, decodes):
    video = clip(out_dir / "storm.mp4")
    (out_dir / "frames").mkdir()
    (out_dir / "thumbs").mkdir()
    (out_dir / "frames" / "storm.last.png").write_bytes(b"my storyboard sketch")
    (out_dir / "thumbs" / "storm.first.jpg").write_bytes(b"my poster")
    made = frames.make_frames(job_for(video, out_dir, chain=frozenset({"last"})))
    assert made.error == ""
    assert (out_dir / "frames" / "storm.last.yours-1.png").read_bytes() == b"my storyboard sketch"
    assert (out_dir / "thumbs" / "storm.first.yours-1.jpg").read_bytes() == b"my poster"
    assert close_to(centre(out_dir / "frames" / "storm.last.png"), BLUE)


def test_a_stale_thumbnail_of_kling_pipes_own_is_replaced_not_set_aside(out_dir, decodes):
    """Its JPEG comment says kling-pipe made it, even when its record was lost."""
    video = clip(out_dir / "storm.mp4")
    frames.make_frames(job_for(video, out_dir))
    other = clip(out_dir / "new.mp4", first=GREEN)
    other.replace(video)  # a new render: the thumbnails are stale
    frames.make_frames(job_for(video, out_dir))
    assert sorted(p.name for p in (out_dir / "thumbs").iterdir()) == [
        "storm.first.jpg",
        "storm.last.jpg",
    ]
    assert close_to(centre(out_dir / "thumbs" / "storm.first.jpg"), GREEN)


def test_fresh_thumbnails_are_kept_and_nothing_is_decoded(out_dir, decodes):
    video = clip(out_dir / "storm.mp4")
    first = frames.make_frames(job_for(video, out_dir))
    again = frames.make_frames(job_for(video, out_dir))
    assert len(decodes) == 1
    assert again.written == ()
    assert again.first == attrs_without_sha(first.first)
    assert (again.first.width, again.first.height) == (WIDTH, HEIGHT)


def attrs_without_sha(thumb: Thumb | None) -> Thumb:
    assert thumb is not None
    return Thumb(thumb.path, thumb.width, thumb.height)


def test_the_contact_sheet_makes_a_missing_pair_from_one_decode_too(out_dir, decodes):
    video = clip(out_dir / "storm.mp4")
    dests = OutputLayout.at(out_dir).thumbs_of("storm")
    first, last = frames.video_thumbs(video, dests)
    assert first is not None
    assert last is not None
    assert len(decodes) == 1
    assert frames.video_thumbs(video, dests) == (attrs_without_sha(first), attrs_without_sha(last))
    assert len(decodes) == 1


def test_a_video_replaced_or_hard_linked_to_another_take_makes_its_thumbnails_stale(
    out_dir, decodes
):
    """Identity, not clocks: a new file at the name, or a link to another take, is noticed."""
    video = clip(out_dir / "storm.mp4")
    dests = OutputLayout.at(out_dir).thumbs_of("storm")
    frames.video_thumbs(video, dests)
    take2 = clip(out_dir / "storm.take2.mp4", first=BLUE)
    os.utime(take2, ns=(1, 1))  # older than every thumbnail: a clock rule would be fooled
    video.unlink()
    os.link(take2, video)  # `pick` 2: <id>.mp4 is now take 2's file
    first, _ = frames.video_thumbs(video, dests)
    assert len(decodes) == 2
    assert first is not None
    assert close_to(centre(first.path), BLUE)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.write_bytes(p.read_bytes()[:-200]),  # torn: a crash before the data landed
        lambda p: p.write_bytes(b""),  # empty: a power cut after the rename, before the data
        lambda p: p.write_bytes(b"\xff\xd8\xff\xd9"),  # a JPEG that names no video
    ],
    ids=["torn", "empty", "anonymous"],
)
def test_a_spoilt_thumbnail_is_made_again(out_dir, decodes, spoil: Callable[[Path], Any]):
    video = clip(out_dir / "storm.mp4")
    dests = OutputLayout.at(out_dir).thumbs_of("storm")
    frames.video_thumbs(video, dests)
    spoil(dests[0])
    first, _ = frames.video_thumbs(video, dests)
    assert len(decodes) == 2
    assert first is not None
    assert frames.fresh_thumb(dests[0], frames.identity_of(video)) is not None


def test_thumbnails_are_written_whole_and_leave_no_temp_file(out_dir):
    video = clip(out_dir / "storm.mp4")
    frames.make_frames(job_for(video, out_dir))
    assert sorted(p.name for p in (out_dir / "thumbs").iterdir()) == [
        "storm.first.jpg",
        "storm.last.jpg",
    ]


def test_a_video_that_cannot_be_decoded_is_an_error_in_the_result_not_an_exception(out_dir):
    broken = out_dir / "storm.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypisom" + b"\xff" * 500)
    made = frames.make_frames(job_for(broken, out_dir, chain=frozenset({"last"})))
    assert "storm.mp4" in made.error
    assert (made.first, made.last, dict(made.chain), made.written) == (None, None, {}, ())


def test_thumbnail_names_follow_the_video_path_under_the_output_folder(out_dir):
    layout = OutputLayout.at(out_dir)
    assert layout.thumb_stem(out_dir / "storm.mp4") == "storm"
    assert layout.thumb_stem(out_dir / "takes" / "storm.take2.mp4") == "takes.storm.take2"
    assert layout.thumb_stem(out_dir.parent / "elsewhere.mp4") == "elsewhere"


def test_a_proofs_decode_serves_the_delivery_of_the_same_video(out_dir, decodes):
    """A candidate compared twice and then delivered is decoded once in all."""
    video = clip(out_dir / "candidate.mp4")
    sha256 = _files.sha256_file(video)
    first, last = frames.end_pictures(video, sha256)
    assert frames.end_pictures(video, sha256) == (first, last)
    assert proof.compare(first, first) == "match"
    assert (first.width, first.height) == (WIDTH, HEIGHT)
    delivered = clip(out_dir / "storm.mp4")  # the same bytes, as the delivery downloads them
    assert _files.sha256_file(delivered) == sha256
    made = frames.make_frames(job_for(delivered, out_dir, sha256=sha256))
    assert made.first is not None
    assert close_to(centre(made.first.path), RED)
    assert len(decodes) == 1


def test_one_candidate_compared_with_several_shots_at_once_converts_safely(out_dir):
    """Threads share kept pictures, never a PyAV frame (whose scaler would be shared too)."""
    video = clip(out_dir / "candidate.mp4")
    sha256 = _files.sha256_file(video)
    start = threading.Barrier(4)
    results: list[tuple[proof.Picture, proof.Picture]] = []

    def compare() -> None:
        start.wait(HANG_S)
        results.extend(frames.end_pictures(video, sha256) for _ in range(5))

    threads = [threading.Thread(target=compare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_S)
    assert not any(thread.is_alive() for thread in threads)
    assert len(results) == 20
    assert len({(a.pixels, b.pixels) for a, b in results}) == 1


# --- the worker: bounded, chain frames first, recorded ----------------------------------------


class SlowMake:
    """A blocking job: thumbnail jobs wait for the test to let them go; it says who ran how."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []
        self.running = 0
        self.most = 0
        #: The nice value of the thread each job ran in, by shot.
        self.nice: dict[str, int] = {}
        self._lock = threading.Lock()
        self.first_started = threading.Event()

    def __call__(self, job: FramesJob) -> FramesMade:
        with self._lock:
            self.started.append(f"{job.shot_id}{sorted(job.chain)}")
            self.running += 1
            self.most = max(self.most, self.running)
            self.nice[job.shot_id] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.first_started.set()
        try:
            if not job.chain:
                assert self.release.wait(HANG_S)
            return frames.make_frames(job)
        finally:
            with self._lock:
                self.running -= 1


def board(tmp_path: Path, *shots: Shot) -> ShotList:
    return ShotList(storyboard=Storyboard(name="board"), shots=shots, source=tmp_path / "b.toml")


def url_shot(sid: str) -> Shot:
    return Shot(id=sid, prompt=f"shot {sid}", image=UrlImage(url=f"https://x.test/{sid}.png"))


def worker(shotlist: ShotList, store: Store, out_dir: Path, **kwargs: Any) -> FrameWorker:
    layout = OutputLayout.at(out_dir, shotlist.base_dir)
    return FrameWorker(shotlist=shotlist, store=store, layout=layout, origin="mock", **kwargs)


async def test_thumbnails_one_at_a_time_in_a_low_priority_thread_chain_frames_at_once(
    tmp_path, out_dir
):
    shotlist = board(
        tmp_path,
        url_shot("a"),
        url_shot("b"),
        url_shot("c"),
        url_shot("src"),
        Shot(id="next", prompt="p", image=ChainImage(shot="src", frame="last")),
    )
    slow = SlowMake()
    work = worker(shotlist, Store.in_memory(), out_dir, make=slow)
    for sid in ("a", "b", "c"):
        work.start(sid, clip(out_dir / f"{sid}.mp4"))
    await asyncio.to_thread(slow.first_started.wait, HANG_S)
    work.start("src", clip(out_dir / "src.mp4"))  # a chain source, delivered last
    # Its chained shot gets the frame while the thumbnails are stuck: it waits for no one.
    png, sha256 = await work.chain_frame("src", out_dir / "src.mp4", "last")
    assert slow.started == ["a[]", "src['last']"]  # b and c wait their turn behind a
    assert png == out_dir / "frames" / "src.last.png"
    assert sha256 == _files.sha256_file(png)
    slow.release.set()
    await work.drain()
    assert sorted(slow.started[2:]) == ["b[]", "c[]"]
    assert all((out_dir / "thumbs" / f"{s}.first.jpg").is_file() for s in ("a", "b", "c", "src"))
    if sys.platform.startswith("linux"):  # the run's thumbnail thread yields the CPU...
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert slow.nice["a"] == min(19, ours + frames.RUN_NICE)
        assert slow.nice["src"] == ours  # ...not the chain frames a submit waits for


async def test_drain_finishes_the_backlog_at_full_width(tmp_path, out_dir):
    shotlist = board(tmp_path, *(url_shot(s) for s in "abcd"))
    slow = SlowMake()
    work = worker(shotlist, Store.in_memory(), out_dir, make=slow)
    for sid in "abcd":
        work.start(sid, clip(out_dir / f"{sid}.mp4"))
    draining = asyncio.ensure_future(work.drain())
    await asyncio.to_thread(slow.first_started.wait, HANG_S)
    slow.release.set()
    await draining
    assert sorted(slow.started) == ["a[]", "b[]", "c[]", "d[]"]
    assert all((out_dir / "thumbs" / f"{s}.last.jpg").is_file() for s in "abcd")
    assert slow.most <= frames.RUN_WIDTH + frames.DRAIN_WIDTH


async def test_a_chain_frame_awaits_the_delivery_job_instead_of_decoding_again(
    tmp_path, out_dir, decodes
):
    shotlist = board(
        tmp_path,
        url_shot("src"),
        Shot(
            id="next",
            prompt="p",
            image=ChainImage(shot="src", frame="first"),
            last_image=ChainImage(shot="src", frame="last"),
        ),
    )
    store = Store.in_memory()
    work = worker(shotlist, store, out_dir)
    video = clip(out_dir / "src.mp4")
    work.start("src", video, duration_s=5.0)
    first = await work.chain_frame("src", video, "first")
    last = await work.chain_frame("src", video, "last")
    await work.drain()
    assert len(decodes) == 1
    assert close_to(centre(first[0]), RED)
    assert close_to(centre(last[0]), BLUE)
    recorded = {(f.path, f.kind, f.shot_id, f.origin, f.sha256) for f in store.files()}
    assert ("renders/board/frames/src.last.png", "frame", "src", "mock", last[1]) in recorded
    thumb = out_dir / "thumbs" / "src.first.jpg"
    thumb_record = ("renders/board/thumbs/src.first.jpg", "thumb", "src", "mock")
    assert (*thumb_record, _files.sha256_file(thumb)) in recorded


async def test_a_source_from_an_earlier_run_gets_one_job_for_every_end_chained_from_it(
    tmp_path, out_dir, decodes
):
    shotlist = board(
        tmp_path,
        url_shot("src"),
        Shot(
            id="n",
            prompt="p",
            image=ChainImage(shot="src", frame="first"),
            last_image=ChainImage(shot="src", frame="last"),
        ),
    )
    video = clip(out_dir / "src.mp4")
    frames.video_thumbs(video, OutputLayout.at(out_dir).thumbs_of("src"))  # its sheet, last run
    work = worker(shotlist, Store.in_memory(), out_dir)
    first, _ = await work.chain_frame("src", video, "first")
    last, _ = await work.chain_frame("src", video, "last")
    assert close_to(centre(first), RED)
    assert close_to(centre(last), BLUE)
    assert len(decodes) == 2  # last run's sheet, and this run's chain frames, both ends


async def test_a_take_file_makes_thumbnails_but_no_chain_frame(tmp_path, out_dir, decodes):
    """Chains take the picked take's frame, at ``<id>.mp4``; another take's file gives none."""
    shotlist = board(
        tmp_path,
        url_shot("src"),
        Shot(id="n", prompt="p", image=ChainImage(shot="src", frame="last")),
    )
    (out_dir / "takes").mkdir()
    take2 = clip(out_dir / "takes" / "src.take2.mp4", first=BLUE)
    work = worker(shotlist, Store.in_memory(), out_dir)
    work.start("src#2", take2)
    await work.drain()
    assert (out_dir / "thumbs" / "takes.src.take2.first.jpg").is_file()
    assert not (out_dir / "frames").exists()


async def test_an_undecodable_source_fails_its_chain_frame_clearly(tmp_path, out_dir, caplog):
    shotlist = board(
        tmp_path,
        url_shot("src"),
        Shot(id="n", prompt="p", image=ChainImage(shot="src", frame="last")),
    )
    broken = out_dir / "src.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypisom" + b"\xff" * 500)
    work = worker(shotlist, Store.in_memory(), out_dir)
    work.start("src", broken)
    with pytest.raises(MediaError, match=r"src\.mp4"):
        await work.chain_frame("src", broken, "last")
    await work.drain()
    assert "the frames of" in caplog.text


async def test_a_missing_video_is_logged_not_raised(tmp_path, out_dir, caplog):
    work = worker(board(tmp_path, url_shot("a")), Store.in_memory(), out_dir)
    work.start("a", out_dir / "gone.mp4")
    await work.drain()
    assert "gone.mp4" in caplog.text


async def yield_to_the_loop() -> None:
    """Let every callback and task that is ready run (no time passes, nothing is timed)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_closing_drops_waiting_jobs_and_waits_for_the_running_one(tmp_path, out_dir):
    """However a run ends, its frames end with it: after `close` no job runs or starts."""
    shotlist = board(
        tmp_path,
        url_shot("a"),
        url_shot("b"),
        url_shot("src"),
        Shot(id="n", prompt="p", image=ChainImage(shot="src", frame="last")),
    )
    slow = SlowMake()
    work = worker(shotlist, Store.in_memory(), out_dir, make=slow)
    work.start("a", clip(out_dir / "a.mp4"))
    work.start("b", clip(out_dir / "b.mp4"))  # waits its turn behind a
    await asyncio.to_thread(slow.first_started.wait, HANG_S)
    closing = asyncio.ensure_future(work.close())
    try:
        await yield_to_the_loop()
        assert not closing.done()  # a is being made: its thread cannot be stopped half-way
    finally:
        slow.release.set()
    await closing
    assert slow.running == 0
    assert slow.started == ["a[]"]  # b was dropped, never started
    assert (out_dir / "thumbs" / "a.first.jpg").is_file()
    assert not (out_dir / "thumbs" / "b.first.jpg").exists()
    work.start("src", clip(out_dir / "src.mp4"))  # after the run: nothing starts
    with pytest.raises(MediaError, match="the run ended"):
        await work.chain_frame("src", out_dir / "src.mp4", "last")
    assert slow.started == ["a[]"]


async def test_a_cancel_while_closing_is_raised_once_the_running_job_is_done(tmp_path, out_dir):
    slow = SlowMake()
    work = worker(board(tmp_path, url_shot("a")), Store.in_memory(), out_dir, make=slow)
    work.start("a", clip(out_dir / "a.mp4"))
    await asyncio.to_thread(slow.first_started.wait, HANG_S)
    closing = asyncio.ensure_future(work.close())
    try:
        await yield_to_the_loop()
        closing.cancel()
        await yield_to_the_loop()
        assert not closing.done()
    finally:
        slow.release.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert slow.running == 0
    assert (out_dir / "thumbs" / "a.last.jpg").is_file()


async def test_a_cancelled_proof_waits_for_its_decode_before_its_folder_goes(out_dir, monkeypatch):
    """The proof removes the candidate's folder when the comparison ends: never under a decode."""
    video = clip(out_dir / "candidate.mp4")
    started, release, returned = threading.Event(), threading.Event(), threading.Event()
    real = media.decode_ends

    def blocked(path: Path, **kwargs: Any) -> media.EndFrames:
        started.set()
        assert release.wait(HANG_S)
        try:
            return real(path, **kwargs)
        finally:
            returned.set()

    monkeypatch.setattr(media, "decode_ends", blocked)
    proving = asyncio.ensure_future(frames.proof_end_pictures(video, "cancelled-proof"))
    try:
        assert await asyncio.to_thread(started.wait, HANG_S)
        proving.cancel()
        await yield_to_the_loop()
        assert not proving.done()
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await proving
    assert returned.is_set()


# --- end to end: the real scheduler and client against the mock over sockets ---------------


class Watcher:
    """A reporter that lets a test wait for shot states (set from the event loop)."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.changed = asyncio.Event()
        self.on_change: Callable[[dict[str, str]], None] = lambda _: None

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:  # noqa: ARG002
        self.states[result.id] = result.state
        self.on_change(self.states)
        self.changed.set()

    def spent_changed(self, spent: Decimal) -> None:
        pass

    async def until(self, condition: Callable[[dict[str, str]], bool]) -> None:
        async with asyncio.timeout(HANG_S):
            while not condition(self.states):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def mock_and_client() -> Iterator[Callable[[MockConfig], Any]]:
    started: list[tuple[MockServer, aiohttp.ClientSession]] = []

    async def start(config: MockConfig) -> tuple[MockServer, WaveSpeedClient]:
        mock = MockServer(config)
        await mock.start()
        session = aiohttp.ClientSession()
        started.append((mock, session))
        client = WaveSpeedClient(
            session=session, base_url=mock.base_url, api_key=mock.api_key, retry=FAST_RETRY
        )
        return mock, client

    yield start
    for mock, session in started:
        await session.close()
        await mock.close()


@pytest.fixture
def jobs(monkeypatch) -> dict[str, threading.Event]:
    """An event per shot, set once the run's worker has made its frames."""
    made: dict[str, threading.Event] = {}
    real = frames.make_frames

    def spy(job: FramesJob) -> FramesMade:
        result = real(job)
        made.setdefault(job.shot_id, threading.Event()).set()
        return result

    monkeypatch.setattr(frames, "make_frames", spy)
    return made


async def test_thumbnails_are_made_while_the_run_goes_on_not_after_it(
    tmp_path, mock_and_client, jobs, decodes
):
    mock, client = await mock_and_client(MockConfig(processing=Manual()))
    shotlist = board(tmp_path, url_shot("early"), url_shot("late"))
    watcher = Watcher()
    running = asyncio.ensure_future(
        render(
            shotlist,
            backend=client,
            options=RunOptions(concurrency=2, settle=FAST_SETTLE),
            reporter=watcher,
        )
    )
    await watcher.until(lambda s: s.get("early") == s.get("late") == "processing")
    task_of = {t["input"]["prompt"]: t["id"] for t in mock.tasks()}
    mock.complete(task_of["shot early"])
    event = jobs.setdefault("early", threading.Event())
    assert await asyncio.to_thread(event.wait, HANG_S)
    # The early shot's thumbnails exist while the late shot is still rendering.
    assert watcher.states["late"] == "processing"
    thumbs = shotlist.output_path / "local" / "thumbs"  # a loopback server's renders: local/
    # Named after the version they show (every render keeps its own; <id>.mp4 is a copy).
    early = {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in thumbs.glob("versions.early.*.jpg")
    }
    assert sorted(early) == ["versions.early.v1.first.jpg", "versions.early.v1.last.jpg"]
    mock.complete(task_of["shot late"])
    result = await running
    assert result.exit_code == 0
    # The sheet shows them as they were made: the epilogue wrote HTML, no thumbnail.
    assert {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in thumbs.glob("versions.early.*.jpg")
    } == early
    assert result.report is not None
    page = result.report.read_text()
    assert 'src="thumbs/versions.early.v1.first.jpg"' in page
    assert 'src="thumbs/versions.late.v1.last.jpg"' in page
    assert len(decodes) == 2  # one per video
    assert all(call["checked"] and call["duration_s"] is not None for call in decodes)


async def test_polls_and_submits_go_on_while_the_decoder_is_stuck(
    tmp_path, mock_and_client, monkeypatch
):
    """A decoder that blocks until every shot is done cannot stop a single poll or submit."""
    _mock, client = await mock_and_client(MockConfig(processing=FixedTime(seconds=0.05)))
    ids = [f"s{i}" for i in range(6)]
    shotlist = board(tmp_path, *(url_shot(s) for s in ids))
    all_done = threading.Event()
    real = media.decode_ends
    calls: list[bool] = []

    def stuck(path: Path, **kwargs: Any) -> media.EndFrames:
        calls.append(all_done.is_set())
        assert all_done.wait(HANG_S), "the shots did not get done while frames were stuck"
        return real(path, **kwargs)

    monkeypatch.setattr(media, "decode_ends", stuck)
    watcher = Watcher()
    watcher.on_change = lambda states: (
        all_done.set() if all(states.get(s) == "done" for s in ids) else None
    )
    result = await render(
        shotlist,
        backend=client,
        options=RunOptions(concurrency=2, settle=FAST_SETTLE),
        reporter=watcher,
    )
    assert result.exit_code == 0
    assert all_done.is_set()
    # Before every shot was done at most one decode had begun (the bound); the rest after.
    assert calls.count(False) <= 1
    assert len(calls) == len(ids)
    thumbs = result.output_dir / "thumbs"
    assert sorted(p.name for p in thumbs.glob("*.first.jpg")) == [
        f"versions.{s}.v1.first.jpg" for s in ids
    ]


async def test_a_run_that_is_cancelled_returns_only_once_its_frame_jobs_are_over(
    tmp_path, mock_and_client, monkeypatch
):
    """Ctrl-C, an error or a kill: `render` does not return with a thread still decoding."""
    mock, client = await mock_and_client(MockConfig(processing=Manual()))
    shotlist = board(tmp_path, url_shot("early"), url_shot("late"))
    started, release = threading.Event(), threading.Event()
    events: list[str] = []
    real_make, real_close = frames.make_frames, FrameWorker.close

    def blocked(job: FramesJob) -> FramesMade:
        started.set()
        assert release.wait(HANG_S)
        try:
            return real_make(job)
        finally:
            events.append(f"job {job.shot_id} over")

    async def close(self: FrameWorker) -> None:
        release.set()  # the run is ending: only now may the job go on
        await real_close(self)

    monkeypatch.setattr(frames, "make_frames", blocked)
    monkeypatch.setattr(FrameWorker, "close", close)
    watcher = Watcher()
    running = asyncio.ensure_future(
        render(
            shotlist,
            backend=client,
            options=RunOptions(concurrency=2, settle=FAST_SETTLE),
            reporter=watcher,
        )
    )
    try:
        await watcher.until(lambda s: s.get("early") == s.get("late") == "processing")
        task_of = {t["input"]["prompt"]: t["id"] for t in mock.tasks()}
        mock.complete(task_of["shot early"])
        assert await asyncio.to_thread(started.wait, HANG_S)
        running.cancel()  # while the early shot's frames are being made, the late one rendering
        with pytest.raises(asyncio.CancelledError):
            await running
        events.append("render over")
    finally:
        release.set()
    assert events == ["job early over", "render over"]


async def test_a_chain_is_fed_from_its_sources_one_decode(tmp_path, mock_and_client, decodes):
    _mock, client = await mock_and_client(MockConfig(processing=FixedTime(seconds=0.05)))
    shotlist = board(
        tmp_path,
        url_shot("src"),
        Shot(id="next", prompt="p", image=ChainImage(shot="src", frame="last")),
    )
    result = await render(shotlist, backend=client, options=RunOptions(settle=FAST_SETTLE))
    assert result.exit_code == 0
    out = result.output_dir
    assert sorted(c["path"].name for c in decodes) == ["next.v1.mp4", "src.v1.mp4"]
    with Store.open(state_dir_for(shotlist.source)) as store:
        kinds = {(f.path, f.kind) for f in store.files()}
    assert ("renders/board/local/frames/src.last.png", "frame") in kinds
    assert ("renders/board/local/thumbs/versions.next.v1.last.jpg", "thumb") in kinds
    assert (out / "frames" / "src.last.png").is_file()
