"""Every video's first and last frames from one decode, made while the run goes on.

Three things need a video's end frames: the contact sheet (a thumbnail of each), a chained
shot (its source's first or last frame, uploaded full size) and the proof of a lost submit
(a candidate video's ends, compared with the shot's pictures). All three are served from one
`media.decode_ends` per video, and the contact sheet's thumbnails no longer wait for the end
of the run: measured before this module, they were most of the client's CPU and came after
the last download, while the event loop sat idle (benchmarks/RESULTS.md).

When and where the work runs
----------------------------

Delivery calls `FrameWorker.start` the moment a video is in place. The event loop only
queues the job; the decode, the JPEG and PNG encodes and the writes run in a thread, and
FFmpeg releases the GIL while it works, so the loop keeps polling and submitting. Thumbnails
are made one video at a time (`RUN_WIDTH`) in a thread of the run's own, at a lower priority
(`RUN_NICE`, Linux): the loop and the rest of the machine go first, and the thumbnails take
the idle CPU; measured, the shots of a 1.5 s race finish no later than without them. A job
that makes chain frames is urgent (a chained shot's submit waits for it): it starts at once,
at normal priority. When the last shot is done, `drain` finishes the backlog at full width
(`DRAIN_WIDTH`): nothing else waits then. The contact sheet then finds every thumbnail made
and only writes the page; a thumbnail that is missing or stale (a killed run, an older
version, a video replaced since) it makes itself, with the same one-decode function
(`video_thumbs`).

Files, and which are durable
----------------------------

* Thumbnails, ``thumbs/<stem>.<first|last>.jpg`` (`OutputLayout.thumbs_of`), are small JPEGs written
  atomically (temp file, rename) but **not fsynced**: they are re-creatable from the video
  at any time, and one that a crash left empty or torn is recognised and made again, since
  `fresh_thumb` accepts only a whole JPEG (EOI at the end) whose comment names the video.
* Each thumbnail's JPEG comment holds its source's identity (device, inode, size, mtime):
  it is reused only while it names the file as it is now. A new render renamed over the
  video, a copy of another take placed there by ``pick``, or an edit in place all make it
  stale, whatever the clocks say.
* Chain frames, ``frames/<id>.<first|last>.png``, are full-size PNGs written with the durable
  writer (fsync): they are few (one per chain source and end), they are what a paid task is
  made from and what a lost submit's proof compares with, and their sha256 goes into the
  store at once; the record should never describe bytes a power cut could take back.

Both kinds are recorded as kling-pipe's in the store (``thumb``, ``frame``), on the event
loop when their job ends (the store belongs to the loop's thread), so `gc` may remove them.

End frames a proof decoded are kept briefly, by the video's sha256 (`end_pictures`): when the
proved candidate becomes the shot's task, delivery downloads the same bytes and its job uses
them instead of decoding again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import heapq
import itertools
import logging
import os
import secrets
import sqlite3
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from kling_pipe import _files as durable
from kling_pipe._outputs import media
from kling_pipe._records.layout import OutputLayout, Which
from kling_pipe._records.ownership import Ownership
from kling_pipe._shotlist.specs import ChainImage, ShotList
from kling_pipe.exceptions import MediaError

if TYPE_CHECKING:
    import av

    from kling_pipe._decisions.proof import Picture
    from kling_pipe._records.store import Store

log = logging.getLogger("kling_pipe")

#: Thumbnails are this wide (or narrower, for smaller videos): sharp on a phone, light to load.
THUMB_WIDTH_PX: Final = 320
#: MJPEG quantiser for thumbnails: 2 is best, 31 worst; 3 is visually clean at a few KB.
_JPEG_QSCALE: Final = 3
#: Jobs at once while shots are rendering: one core for frames, the other for the loop.
RUN_WIDTH: Final = 1
#: How much nicer than the run the thread that makes thumbnails while shots render is (Linux):
#: it gets the CPU the loop and the rest of the machine leave idle, and little more.
RUN_NICE: Final = 10
#: Jobs at once once every shot is done, when nothing else waits for the CPU.
DRAIN_WIDTH: Final = max(1, min(4, os.cpu_count() or 1))
#: How many videos' end frames a proof's decode keeps for the delivery that may follow.
_RECENT_ENDS: Final = 3
#: Starts every thumbnail's JPEG comment; the source's identity follows.
_COMMENT_PREFIX: Final = b"kling-pipe frames of "
_SOI: Final = b"\xff\xd8"
_EOI: Final = b"\xff\xd9"
#: JPEG start-of-frame markers (all but DHT, JPG and DAC), which carry the picture's size.
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@attrs.frozen
class Thumb:
    """A thumbnail under ``thumbs/``, with its size for the ``<img>`` tag."""

    path: Path
    width: int
    height: int
    #: The sha256 of its bytes when it was written just now; None when an existing one is reused.
    sha256: str | None = None


# --- Identity, names and freshness ---------------------------------------------------------


def identity_of(path: Path) -> str:
    """Name the file at *path* as it is now: device, inode, size and mtime (blocking)."""
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def fresh_thumb(dest: Path, identity: str) -> Thumb | None:
    """Return the thumbnail at *dest* if it is whole and was made from *identity* (blocking)."""
    try:
        data = dest.read_bytes()
    except OSError:
        return None
    if not data.startswith(_SOI) or not data.endswith(_EOI):
        return None
    comment, size = _jpeg_header(data)
    if comment != _COMMENT_PREFIX + identity.encode() or size is None:
        return None
    return Thumb(dest, *size)


def _jpeg_header(data: bytes) -> tuple[bytes | None, tuple[int, int] | None]:
    """Return the comment and the (width, height) of a JPEG, read from its header segments."""
    comment: bytes | None = None
    size: tuple[int, int] | None = None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the header is over
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + length]
        if marker == 0xFE and comment is None:
            comment = body
        elif marker in _SOF and len(body) >= 5:
            size = (int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big"))
        i += 2 + length
    return comment, size


# --- Encoding and writing (blocking) -------------------------------------------------------


def jpeg_thumbnail(frame: av.VideoFrame, identity: str) -> tuple[bytes, int, int]:
    """Encode *frame* as a JPEG at most `THUMB_WIDTH_PX` wide, naming its source in a comment."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a picture is really made

    width = min(THUMB_WIDTH_PX, frame.width)
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    width -= width % 2
    small = frame.reformat(
        width=width, height=height, format="yuvj420p", interpolation="AREA", threads=1
    )
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.qmin = codec.qmax = _JPEG_QSCALE
    jpeg = b"".join(bytes(p) for p in [*codec.encode(small), *codec.encode(None)])
    text = _COMMENT_PREFIX + identity.encode()
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg[:2] + segment + jpeg[2:], width, height


def write_thumb(
    frame: av.VideoFrame, dest: Path, identity: str, ownership: Ownership | None = None
) -> Thumb:
    """Write *frame*'s thumbnail to *dest*: atomically, without fsync (see the module).

    A file at *dest* that is neither kling-pipe's (*ownership*, or a thumbnail by its
    signature) nor empty is set aside first, never overwritten.
    """
    data, width, height = jpeg_thumbnail(frame, identity)
    make_way(dest, ownership, also=is_our_thumb)
    write_replaceable(dest, data)
    return Thumb(dest, width, height, hashlib.sha256(data).hexdigest())


def is_our_thumb(path: Path) -> bool:
    """Whether *path* is a thumbnail kling-pipe made (of any video): its comment says so.

    Torn ones too (a crash before the data landed): the comment comes first. Blocking.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if not head.startswith(_SOI):
        return False
    comment, _ = _jpeg_header(head)
    return comment is not None and comment.startswith(_COMMENT_PREFIX)


def make_way(
    dest: Path, ownership: Ownership | None, *, also: Callable[[Path], bool] | None = None
) -> None:
    """Set a file of the user's at *dest* aside before kling-pipe writes there (blocking).

    Without *ownership* (no records: a sheet of a folder of videos) nothing is known as
    kling-pipe's but what *also* recognises.
    """
    (ownership or Ownership((), dest.parent)).make_way(dest, also=also)


def write_replaceable(dest: Path, data: bytes) -> None:
    """Write a re-creatable file: whole under its name or not at all, but not fsynced.

    A reader never sees half a file (temp file, then rename); a power cut may leave it empty,
    which its reader must detect and make again (`fresh_thumb` does).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        with temp.open("xb") as fh:
            fh.write(data)
        temp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def video_thumbs(
    video: Path,
    dests: tuple[Path, Path],
    *,
    identity: str | None = None,
    ownership: Ownership | None = None,
) -> tuple[Thumb | None, Thumb | None]:
    """Return a video's first and last thumbnails, reusing fresh ones, decoding at most once.

    For the contact sheet, when the run's worker did not make them. A video that cannot be
    read or decoded gives (None, None): the sheet shows placeholders for it (blocking).
    """
    try:
        identity = identity or identity_of(video)
    except OSError:
        return None, None
    first, last = (fresh_thumb(dest, identity) for dest in dests)
    if first is not None and last is not None:
        return first, last
    try:
        ends = media.decode_ends(video)
        return (
            first or write_thumb(ends.first, dests[0], identity, ownership),
            last or write_thumb(ends.last, dests[1], identity, ownership),
        )
    except (MediaError, OSError) as exc:
        log.info("no thumbnails for %s: %s", video, exc)
        return first, last


def image_thumb(
    image: Path,
    dest: Path,
    *,
    check: Callable[[Path], str | None] | None = None,
    ownership: Ownership | None = None,
) -> Thumb | None:
    """Return the thumbnail of a still image (a shot's input frame), made if need be (blocking).

    *check* says what is wrong with the image, if anything, before it is decoded: one it
    finds fault with gets no thumbnail. A fresh thumbnail is reused without it.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a picture is really made

    try:
        identity = identity_of(image)
        fresh = fresh_thumb(dest, identity)
        if fresh is not None:
            return fresh
        if check is not None and check(image) is not None:
            return None
        with av.open(str(image)) as container:
            frame = next(container.decode(video=0), None)
        if frame is None:
            return None
        return write_thumb(frame, dest, identity, ownership)
    except (av.FFmpegError, OSError) as exc:
        log.info("no thumbnail for %s: %s", image, exc)
        return None


# --- End frames a proof decoded, for the delivery of the same video -------------------------


EndPictures = tuple["Picture", "Picture"]


class _RecentEnds:
    """A few videos' end pictures by sha256, shared by the threads that decode (thread-safe).

    Pictures (immutable bytes), never PyAV frames: a frame keeps the scaler it was last
    converted with, and two threads converting one frame at once share it and can hang in
    FFmpeg's slice threads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._ends: OrderedDict[str, EndPictures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> EndPictures | None:
        with self._lock:
            ends = self._ends.get(sha256)
            if ends is not None:
                self._ends.move_to_end(sha256)
            return ends

    def put(self, sha256: str, ends: EndPictures) -> None:
        with self._lock:
            self._ends[sha256] = ends
            self._ends.move_to_end(sha256)
            while len(self._ends) > self._size:
                self._ends.popitem(last=False)

    def take(self, sha256: str) -> EndPictures | None:
        with self._lock:
            return self._ends.pop(sha256, None)


_recent = _RecentEnds(_RECENT_ENDS)


def end_pictures(video: Path, sha256: str) -> EndPictures:
    """Return a downloaded video's first and last frames as proof pictures (blocking).

    The decode is kept by *sha256* (see the module): comparing one candidate with several
    shots decodes it once, and delivering it afterwards decodes it no more.
    """
    pictures = _recent.get(sha256)
    if pictures is None:
        ends = media.decode_ends(video, checked=True)
        pictures = (_picture(ends.first), _picture(ends.last))
        _recent.put(sha256, pictures)
    return pictures


async def proof_end_pictures(video: Path, sha256: str) -> EndPictures:
    """`end_pictures` in a thread, awaited to its end even when the caller is cancelled.

    The proof decodes a candidate in a temporary folder that it removes when this returns:
    a cancel (a run stopped, killed or failed) waits for the decode under way, which is one
    video's, and is raised after it, so no thread decodes a file of a run that is over.
    """
    running = asyncio.ensure_future(asyncio.to_thread(end_pictures, video, sha256))
    await _outlast_cancel({running})
    return running.result()


async def _outlast_cancel(running: Collection[asyncio.Future[Any]]) -> None:
    """Wait until every future in *running* is done, a cancel meanwhile included.

    A thread cannot be stopped half-way (FFmpeg holds it), so a cancel is deferred, not
    lost: it is raised once they are all done. Their own outcomes are left to the caller.
    """
    cancelled = False
    while not all(f.done() for f in running):
        try:
            await asyncio.wait(running)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        for future in running:  # retrieved, so that none is reported as never retrieved
            if not future.cancelled():
                future.exception()
        raise asyncio.CancelledError


def _picture(frame: av.VideoFrame) -> Picture:
    from kling_pipe._decisions.proof import Picture  # noqa: PLC0415 - numpy-free import

    rgb = frame.to_ndarray(format="rgb24", threads=1)
    height, width = rgb.shape[:2]
    return Picture(width=width, height=height, channels=3, pixels=rgb.tobytes())


def _frames_of(pictures: EndPictures) -> media.EndFrames:
    """Turn kept pictures back into frames of this thread's own, to encode from."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a picture is really made
    import numpy as np  # noqa: PLC0415 - loaded already: the proof made these pictures

    first, last = (
        av.VideoFrame.from_ndarray(
            np.frombuffer(p.pixels, dtype=np.uint8).reshape(p.height, p.width, 3), format="rgb24"
        )
        for p in pictures
    )
    return media.EndFrames(first, last)


# --- One video's frames: the job ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FramesJob:
    """What to make from one video: its thumbnails, and the chain frames it is the source of."""

    #: The shot (or render unit) the video belongs to, as delivery names it.
    shot_id: str
    video: Path
    #: The video's `identity_of` when the job was made.
    identity: str
    #: Where its thumbnails and chain frames go.
    layout: OutputLayout
    #: The video's sha256 when known (a download): a proof's decode of it is reused.
    sha256: str | None = None
    #: The duration delivery measured, so the container is not asked again.
    duration_s: float | None = None
    chain: frozenset[Which] = frozenset()
    #: What kling-pipe may replace: a file of the user's where a frame goes is set aside.
    ownership: Ownership | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class FramesMade:
    """What a job left: thumbnails, chain frames, and the files to record as kling-pipe's."""

    first: Thumb | None = None
    last: Thumb | None = None
    #: Chain frames made, by end: (PNG, its sha256).
    chain: Mapping[Which, tuple[Path, str]] = attrs.field(factory=dict)
    #: (path relative to the shot list, kind, sha256) of every file written.
    written: tuple[tuple[str, str, str], ...] = ()
    error: str = ""


def make_frames(job: FramesJob) -> FramesMade:
    """Make a job's thumbnails and chain frames from one decode of its video (blocking).

    Fresh thumbnails are kept, and with nothing else to make nothing is decoded. Never raises
    for a video that cannot be decoded or a file that cannot be written: the error is in the
    result, the sheet shows placeholders, and a chained shot fails with it.
    """
    layout = job.layout
    dests = layout.thumbs_of(layout.thumb_stem(job.video))
    first, last = (fresh_thumb(dest, job.identity) for dest in dests)
    if first is not None and last is not None and not job.chain:
        return FramesMade(first=first, last=last)
    written: list[tuple[str, str, str]] = []
    chain: dict[Which, tuple[Path, str]] = {}
    try:
        proved = _recent.take(job.sha256) if job.sha256 else None
        ends = (
            _frames_of(proved)
            if proved is not None
            else media.decode_ends(
                job.video, duration_s=job.duration_s, checked=job.sha256 is not None
            )
        )
        if first is None:
            first = write_thumb(ends.first, dests[0], job.identity, job.ownership)
        if last is None:
            last = write_thumb(ends.last, dests[1], job.identity, job.ownership)
        written += [(layout.relative(t.path), "thumb", t.sha256) for t in (first, last) if t.sha256]
        for which in sorted(job.chain):
            png = media.encode_png(ends.first if which == "first" else ends.last)
            path = layout.chain_frame(job.shot_id, which)
            path.parent.mkdir(parents=True, exist_ok=True)
            make_way(path, job.ownership)
            durable.write_bytes(path, png)
            sha256 = hashlib.sha256(png).hexdigest()
            chain[which] = (path, sha256)
            written.append((layout.relative(path), "frame", sha256))
    except (MediaError, OSError) as exc:
        return FramesMade(
            first=first, last=last, chain=chain, written=tuple(written), error=str(exc)
        )
    return FramesMade(first=first, last=last, chain=chain, written=tuple(written))


# --- The run's worker ------------------------------------------------------------------------


@attrs.define(eq=False)
class _Queued:
    job: FramesJob
    done: asyncio.Future[FramesMade]
    #: A chained shot waits for it (it makes chain frames): it goes first, at normal priority.
    urgent: bool


class FrameWorker:
    """A run's frames: jobs queued from the event loop, made in a bounded number of threads.

    Two lanes. Thumbnails only: one job at a time (*width*, `RUN_WIDTH`) in the run's own
    thread, at a low priority (`RUN_NICE`), while shots render. Chain frames, which a chained
    shot's submit waits for: at once, in the loop's default threads at normal priority, at
    most `DRAIN_WIDTH` together (one per chain source in flight, so few). `drain` moves the
    thumbnail backlog to that lane too. Use from the event loop's thread only. *make* is the
    blocking job (`make_frames`); tests give a slow or counting one.
    """

    def __init__(  # noqa: PLR0913 - the run's context, keyword-only
        self,
        *,
        shotlist: ShotList,
        store: Store,
        layout: OutputLayout,
        origin: str,
        width: int = RUN_WIDTH,
        make: Callable[[FramesJob], FramesMade] | None = None,
        thumbnails: bool = True,
        ownership: Ownership | None = None,
    ) -> None:
        self._shotlist = shotlist
        #: What kling-pipe may replace (the run's, shared with delivery), kept current here.
        self._ownership = ownership or Ownership.of(store, layout.base_dir)
        #: Without a contact sheet (`run --no-report`), only a chain frame is worth a decode.
        self._thumbnails = thumbnails
        self._store = store
        self._layout = layout
        self._origin = origin
        self._width = width
        self._make = make
        #: Which ends of which shots some shot of the list is chained from.
        self._chained: frozenset[tuple[str, Which]] = frozenset(_chain_ends(shotlist))
        #: The latest job of each video, by identity: hard links to one file share it.
        self._by_identity: dict[str, _Queued] = {}
        #: Waiting jobs, urgent first, then in the order they came.
        self._queue: list[tuple[bool, int, _Queued]] = []
        self._order = itertools.count()
        #: Jobs running in the low-priority thread, and in the default threads.
        self._in_background = 0
        self._in_foreground = 0
        self._unfinished: set[_Queued] = set()
        #: The jobs in a thread now (never cancelled: each is done when its thread is).
        self._running: set[asyncio.Future[FramesMade]] = set()
        #: The run's own thread (made on the first job), shut down by `drain` and `close`.
        self._thread: ThreadPoolExecutor | None = None
        self._draining = False
        #: The run is over (`close`): nothing more starts.
        self._closed = False

    def start(
        self,
        shot_id: str,
        video: Path,
        *,
        sha256: str | None = None,
        duration_s: float | None = None,
        source: bool = False,
    ) -> None:
        """Queue the frames of a video just put in place; returns at once, never raises.

        The chain frames a shot of the list needs are made too when *video* is the file
        chains use: the shot's ``<id>.mp4``, or with *source* the version delivered for its
        picked take (*shot_id* is then the shot's id).
        """
        if self._closed:
            return
        try:
            identity = identity_of(video)
        except OSError as exc:
            log.warning("the frames of %s cannot be made: %s", video, exc)
            return
        main = source or video == self._layout.picked(shot_id)
        chain = self._chain_of(shot_id) if main else frozenset()
        if not chain and not self._thumbnails:
            return
        self._queue_job(
            FramesJob(
                shot_id=shot_id,
                video=video,
                identity=identity,
                layout=self._layout,
                ownership=self._ownership,
                sha256=sha256,
                duration_s=duration_s,
                chain=chain,
            )
        )

    async def chain_frame(self, shot_id: str, video: Path, which: Which) -> tuple[Path, str]:
        """Return a chain frame of *video* (shot *shot_id*'s) as (PNG, sha256).

        The frame its delivery's job made, awaited if need be; else (a source rendered by an
        earlier run, or a video other than the one delivered) a job made now, in the urgent
        lane. Raises MediaError or OSError when the video cannot give it.
        """
        identity = await asyncio.to_thread(identity_of, video)
        queued = self._by_identity.get(identity)
        if queued is None or which not in queued.job.chain:
            queued = self._queue_job(
                FramesJob(
                    shot_id=shot_id,
                    video=video,
                    identity=identity,
                    layout=self._layout,
                    ownership=self._ownership,
                    chain=self._chain_of(shot_id) | {which},
                )
            )
        made = await asyncio.shield(queued.done)
        if which not in made.chain:
            raise MediaError(made.error or f"{video}: the {which} frame was not made")
        return made.chain[which]

    async def drain(self) -> None:
        """Finish every queued job at full width (`DRAIN_WIDTH`): the run's shots are done.

        The backlog goes to the loop's default threads, at normal priority: nothing of the
        run competes with it any more.
        """
        self._draining = True
        self._pump()
        pending = [q.done for q in self._unfinished]
        if pending:
            await asyncio.wait(pending)
        if self._thread is not None:
            self._thread.shutdown(wait=False)

    async def close(self) -> None:
        """End the run's frames, however the run ends: after this no job of it runs.

        Jobs not started are dropped (their waiters get an error); the jobs in a thread are
        waited for, as they cannot be stopped half-way (one video's decode and writes each),
        and a cancel meanwhile is raised once they are done. So no thread decodes, and none
        writes to the output folder, after the run is over: not after an error, a Ctrl-C or
        a kill, when `drain` was never reached. A normal end drains first; then this only
        joins the idle thread. Nothing starts afterwards (`start` does nothing).
        """
        self._closed = True
        dropped, self._queue = self._queue, []
        for _, _, queued in dropped:
            self._unfinished.discard(queued)
            if not queued.done.done():
                queued.done.set_result(FramesMade(error="not made: the run ended"))
        await _outlast_cancel(self._running)
        if self._thread is not None:
            self._thread.shutdown(wait=True)  # idle now: returns at once

    def _chain_of(self, shot_id: str) -> frozenset[Which]:
        """Return the ends of *shot_id* that shots of the list are chained from (often none)."""
        return frozenset(w for s, w in self._chained if s == shot_id)

    def _queue_job(self, job: FramesJob) -> _Queued:
        urgent = bool(job.chain)
        queued = _Queued(job, asyncio.get_running_loop().create_future(), urgent)
        if self._closed:
            queued.done.set_result(FramesMade(error="not made: the run ended"))
            return queued
        self._by_identity[job.identity] = queued
        self._unfinished.add(queued)
        heapq.heappush(self._queue, (not urgent, next(self._order), queued))
        self._pump()
        return queued

    def _pump(self) -> None:
        """Start waiting jobs, urgent first, while their lane has room (see the class)."""
        loop = asyncio.get_running_loop()
        make = self._make or make_frames
        while self._queue and not self._closed:
            queued = self._queue[0][2]
            executor: Executor | None = None
            if queued.urgent or self._draining:
                if self._in_foreground >= DRAIN_WIDTH:
                    return
                self._in_foreground += 1
            else:
                if self._in_background >= self._width:
                    return
                self._in_background += 1
                executor = self._background()
            heapq.heappop(self._queue)
            running = loop.run_in_executor(executor, make, queued.job)
            self._running.add(running)
            running.add_done_callback(functools.partial(self._ended, queued, executor is None))

    def _background(self) -> Executor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(
                max_workers=RUN_WIDTH, thread_name_prefix="kling-pipe-frames", initializer=_yield
            )
        return self._thread

    def _ended(self, queued: _Queued, foreground: bool, ended: asyncio.Future[FramesMade]) -> None:
        """Record what a job wrote, hand it to whoever waits, start the next (on the loop).

        Whatever recording raises, the waiter gets its result and the next job starts: a
        `drain` or a chained shot never waits for a job that is over.
        """
        self._running.discard(ended)
        if foreground:
            self._in_foreground -= 1
        else:
            self._in_background -= 1
        self._unfinished.discard(queued)
        if not queued.job.chain and self._by_identity.get(queued.job.identity) is queued:
            # Only chain frames are asked for later: a run of 10,000 shots keeps no trace of
            # the others (a later ask for one gets a job of its own).
            del self._by_identity[queued.job.identity]
        if ended.cancelled():
            made = FramesMade(error="cancelled")
        elif (exc := ended.exception()) is not None:
            made = FramesMade(error=f"{type(exc).__name__}: {exc}")
        else:
            made = ended.result()
        if made.error:
            log.warning("the frames of %s could not be made: %s", queued.job.video, made.error)
        try:
            self._record(queued.job, made.written)
        finally:
            if not queued.done.done():
                queued.done.set_result(made)
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to start
                self._pump()

    def _record(self, job: FramesJob, written: Iterable[tuple[str, str, str]]) -> None:
        shot_id = job.shot_id.partition("#")[0]  # a take's unit key names its shot
        for path, kind, sha256 in written:
            try:
                self._store.record_file(
                    path, kind=kind, origin=self._origin, sha256=sha256, shot_id=shot_id
                )
                self._ownership.note(
                    path, kind=kind, origin=self._origin, sha256=sha256, shot_id=shot_id
                )
            except (sqlite3.Error, OSError) as exc:
                log.warning("%s was written but could not be recorded: %s", path, exc)


def _yield() -> None:
    """Lower this thread's priority (Linux, where a nice value is per thread; else nothing).

    The frames thread then takes the CPU nothing else wants: on a busy machine the loop's
    polls and submits go first. Its work releases the GIL (FFmpeg decodes and encodes), so a
    low priority cannot hold the loop up for long.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + RUN_NICE)
            os.setpriority(os.PRIO_PROCESS, tid, nice)


def _chain_ends(shotlist: ShotList) -> Iterable[tuple[str, Which]]:
    for shot in shotlist.shots:
        for image in (shot.image, shot.last_image):
            if isinstance(image, ChainImage):
                yield image.shot, image.frame
