"""The final cut: every rendered shot joined, in storyboard order, into one MP4.

Shots rendered by one model usually share their encoding (codec, size, pixel format, time
base, and the same SPS/PPS), so their packets are copied into the new file with shifted
timestamps: nothing is decoded, nothing is lost, and a 20-shot film is joined in a moment.
When they differ (a shot from a URL frame of another aspect ratio, say), every frame is
decoded and re-encoded with libx264 at the first shot's size and frame rate, scaled to fit
and padded, because one H.264 stream cannot change parameters half-way.

Only the video stream is carried: Kling Video O1 renders silent video.

Each shot's video is ``<output_dir>/<id>.mp4``, which is always its picked take (see
`kling_pipe._outputs.folders`): a shot of several takes is cut with the take chosen by
`kling-pipe pick`, and the other takes never enter the film. Which shots have a current video
is decided by `kling_pipe._outputs.current`, the rule `export` follows too: a stale one (the
shot edited since, its new render failed or not made yet) is refused by name like a missing
one, never joined silently; ``partial`` leaves both out, naming them. A video the records say
nothing of (a folder of videos kling-pipe did not make) is joined as it is.

`cut` blocks (it reads and writes video); call it in a thread from async code.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final

import attrs
import av

from kling_pipe import _files as durable
from kling_pipe._backends.base import DEFAULT_BASE_URL
from kling_pipe._backends.origins import describe_origin
from kling_pipe._outputs import media
from kling_pipe._outputs.current import shot_videos
from kling_pipe._records.layout import OutputLayout
from kling_pipe._shotlist.specs import ShotList
from kling_pipe.exceptions import KlingPipeError, MediaError

#: Used when a file states no frame rate at all; Kling's own output is 24 fps.
_FALLBACK_RATE: Final = Fraction(24)
#: libx264 quality for the re-encode path: visually lossless for these sources, modest size.
_X264_OPTIONS: Final = {"crf": "18", "preset": "veryfast"}


class MissingShotsError(KlingPipeError):
    """Some shots have no current video: `missing` (not rendered) and `stale`, by name."""

    def __init__(
        self,
        missing: Sequence[str],
        output_dir: Path,
        *,
        none_rendered: bool,
        stale: Sequence[tuple[str, str]] = (),
        by: str = "",
    ) -> None:
        self.missing = tuple(missing)
        #: (id, why) of each shot whose ``<id>.mp4`` is not its render as it is now.
        self.stale = tuple(stale)
        self.output_dir = output_dir
        parts = []
        if self.missing:
            listed = ", ".join(f'"{m}"' for m in self.missing)
            n = len(self.missing)
            whose = f" by {by}" if by else ""
            parts.append(f"{n} shot{'s' * (n != 1)} not rendered{whose} in {output_dir}: {listed}")
        if self.stale:
            listed = ", ".join(f'"{sid}" ({why})' for sid, why in self.stale)
            n = len(self.stale)
            where = "" if self.missing else f" in {output_dir}"
            parts.append(f"{n} shot{'s' * (n != 1)} not current{where}: {listed}")
        advice = "render them first" + (
            "" if none_rendered else ", or join the rest with --partial"
        )
        super().__init__(f"{'; '.join(parts)}; {advice}")


@attrs.frozen(kw_only=True)
class CutResult:
    """What `cut` wrote: the film, the shots in it, the shots left out, and how it was made."""

    output: Path
    #: Ids of the shots joined, in storyboard order.
    shots: tuple[str, ...]
    #: Ids of shots with no rendered video, left out (only with ``partial=True``).
    missing: tuple[str, ...]
    #: (id, why) of shots whose video is stale, left out (only with ``partial=True``).
    stale: tuple[tuple[str, str], ...] = ()
    #: True when packets were copied as they were; False when frames were re-encoded.
    stream_copy: bool
    #: The film's duration as its container states it.
    duration_s: float


@attrs.frozen
class _Params:
    """What two H.264 files must share for their packets to play as one stream."""

    codec: str
    width: int
    height: int
    pix_fmt: str | None
    time_base: Fraction | None
    extradata: bytes


class _CannotCopy(Exception):  # noqa: N818 - internal signal, never escapes this module
    """The packets cannot be joined as they are; the caller re-encodes instead."""


def rendered_shots(
    shotlist: ShotList, folder: Path | None = None
) -> tuple[list[tuple[str, Path]], list[str]]:
    """Return the shots with a rendered MP4 as ``(id, path)`` and the ids of those without.

    Both in storyboard (file) order. A file that exists but is not an MP4 (a partial
    download from another tool, say) counts as not rendered.
    """
    layout = OutputLayout.at(folder or shotlist.output_path)
    present: list[tuple[str, Path]] = []
    missing: list[str] = []
    for shot in shotlist.shots:
        path = layout.picked(shot.id)
        try:
            ok = path.is_file() and media.is_mp4(path)
        except OSError:
            ok = False
        if ok:
            present.append((shot.id, path))
        else:
            missing.append(shot.id)
    return present, missing


def cut(
    shotlist: ShotList, output: Path, *, partial: bool = False, origin: str = DEFAULT_BASE_URL
) -> CutResult:
    """Join *origin*'s renders of *shotlist* in storyboard order into one MP4 at *output*.

    Blocking. Raises `MissingShotsError` naming the shots with no current video (missing or
    stale, `kling_pipe._outputs.current`) unless *partial* (then they are left out; with
    none usable at all it is an error still), and `MediaError` when a video cannot be read
    or the film cannot be written. The film is written to a temporary file beside *output*
    and renamed, so *output* is either the old file or the complete new one.
    """
    videos = shot_videos(shotlist, origin)
    present = [(v.shot.id, v.path) for v in videos if v.state in ("current", "unrecorded")]
    missing = [v.shot.id for v in videos if v.state == "missing"]
    stale = [(v.shot.id, v.reason) for v in videos if v.state == "stale"]
    if not present or ((missing or stale) and not partial):
        folder = OutputLayout.of(shotlist, origin).folder
        raise MissingShotsError(
            missing, folder, none_rendered=not present, stale=stale, by=describe_origin(origin)
        )
    inputs = [path for _, path in present]
    _check_output(output, inputs)
    params = [_probe(path) for path in inputs]
    with _atomic_output(output) as tmp:
        copied = False
        if all(p == params[0] for p in params):
            try:
                _remux(inputs, tmp)
                copied = True
            except _CannotCopy:
                pass
        if not copied:
            _reencode(inputs, tmp, params[0])
    return CutResult(
        output=output,
        shots=tuple(shot_id for shot_id, _ in present),
        missing=tuple(missing),
        stale=tuple(stale),
        stream_copy=copied,
        duration_s=media.probe_duration_s(output),
    )


def _check_output(output: Path, inputs: Sequence[Path]) -> None:
    if not output.parent.is_dir():
        raise MediaError(f"{output}: the folder {output.parent} does not exist")
    if output.exists() and any(output.samefile(i) for i in inputs):
        raise MediaError(f"{output}: is one of the rendered shots; choose another file name")


def _probe(path: Path) -> _Params:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            context = stream.codec_context
            return _Params(
                codec=context.name,
                width=context.width,
                height=context.height,
                pix_fmt=context.pix_fmt,
                time_base=stream.time_base,
                extradata=bytes(context.extradata or b""),
            )
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read the video: {exc}") from exc


@contextlib.contextmanager
def _atomic_output(output: Path) -> Iterator[Path]:
    """Yield a temporary path beside *output*, committed to it durably on success."""
    try:
        with durable.filling(output) as tmp:
            yield tmp
    except av.FFmpegError as exc:
        raise MediaError(f"{output}: cannot write the film: {exc}") from exc


def _frame_ticks(stream: av.VideoStream) -> int:
    """One frame's length in *stream*'s time base, for packets that state no duration."""
    rate = stream.average_rate or stream.guessed_rate or _FALLBACK_RATE
    assert stream.time_base is not None
    return max(1, round(1 / (Fraction(rate) * stream.time_base)))


def _remux(inputs: Sequence[Path], tmp: Path) -> None:
    """Copy every packet, each shot shifted to start where the previous one ended.

    All inputs share one time base (checked by the caller), so the shift is exact integer
    arithmetic. Raises `_CannotCopy` if decode timestamps would not increase across a join
    (shots with different reorder delays), which players cannot handle.
    """
    with av.open(str(tmp), "w", format="mp4") as out:
        with av.open(str(inputs[0])) as first:
            target = out.add_stream_from_template(first.streams.video[0])
        offset = 0
        last_dts: int | None = None
        for path in inputs:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                start = stream.start_time or 0
                ticks = _frame_ticks(stream)
                end = offset
                for packet in container.demux(stream):
                    if packet.pts is None or packet.dts is None:
                        continue  # the demuxer's empty flush packet
                    packet.pts = packet.pts - start + offset
                    packet.dts = packet.dts - start + offset
                    if last_dts is not None and packet.dts <= last_dts:
                        raise _CannotCopy
                    last_dts = packet.dts
                    end = max(end, packet.pts + (packet.duration or ticks))
                    packet.stream = target
                    out.mux(packet)
                offset = end


def _reencode(inputs: Sequence[Path], tmp: Path, first: _Params) -> None:
    """Decode every shot and encode one H.264 stream at the first shot's size and rate."""
    width, height = first.width - first.width % 2, first.height - first.height % 2
    with av.open(str(inputs[0])) as container:
        rate = Fraction(container.streams.video[0].average_rate or _FALLBACK_RATE)
    frame_time = Fraction(1) / rate
    with av.open(str(tmp), "w", format="mp4") as out:
        target = out.add_stream("libx264", rate=rate, options=dict(_X264_OPTIONS))
        target.width, target.height, target.pix_fmt = width, height, "yuv420p"
        index = 0
        for path in inputs:
            for frame in _fitted_frames(path, width, height, rate):
                frame.pts, frame.time_base = index, frame_time
                index += 1
                out.mux(target.encode(frame))
        out.mux(target.encode(None))


def _fitted_frames(path: Path, width: int, height: int, rate: Fraction) -> Iterator[av.VideoFrame]:
    """Yield *path*'s frames at *rate*, scaled to fit *width* x *height* and padded black.

    FFmpeg's fps filter drops or repeats frames so that a shot keeps its duration when its
    frame rate differs from the film's.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            graph = av.filter.Graph()
            source = graph.add_buffer(template=stream)
            chain = [
                source,
                graph.add("fps", f"fps={rate}"),
                graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=decrease"),
                graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:black"),
                graph.add("setsar", "1"),
                graph.add("format", "yuv420p"),
                graph.add("buffersink"),
            ]
            for upstream, downstream in itertools.pairwise(chain):
                upstream.link_to(downstream)
            graph.configure()
            for frame in container.decode(stream):
                graph.push(frame)
                yield from _drain(graph)
            graph.push(None)
            yield from _drain(graph)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode the video: {exc}") from exc


def _drain(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        assert isinstance(frame, av.VideoFrame)
        yield frame
