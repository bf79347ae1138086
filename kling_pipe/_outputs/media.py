"""Video and image files with PyAV: is it an MP4, how long is it, what are its end frames.

PyAV is imported by the functions that decode, so hashing a file or checking its first
bytes loads no FFmpeg.

Every function here blocks (file I/O, decoding): callers in async code run them in a thread,
e.g. ``await asyncio.to_thread(probe_duration_s, path)``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from kling_pipe import _files as durable
from kling_pipe._decisions.proof import Picture
from kling_pipe._files import looks_like_mp4
from kling_pipe.exceptions import MediaError, NotMp4Error

if TYPE_CHECKING:
    import av

#: How far before the end to seek when looking for the last frame: past one keyframe interval
#: of typical encoders, so that decoding from there reaches the final frame quickly.
_LAST_FRAME_SEEK_BACK_S: Final = 3.0


def is_mp4(path: Path) -> bool:
    """Whether the file at *path* starts like an MP4 (blocking; missing file is an OSError)."""
    with path.open("rb") as fh:
        return looks_like_mp4(fh.read(8))


def _require_mp4(path: Path) -> None:
    """Raise NotMp4Error unless *path* starts like an MP4, before handing it to FFmpeg."""
    try:
        ok = is_mp4(path)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not ok:
        raise NotMp4Error(f"{path}: not an MP4 file (no ftyp box at the start)")


def probe_duration_s(path: Path, *, checked: bool = False) -> float:
    """Return the duration of the MP4 at *path* in seconds (blocking).

    The container's duration is used when it states one; otherwise the first video stream's.
    Only the container's header is read, nothing is decoded. *checked* says the file is known
    to start like an MP4 (a download checks that while streaming), so its first bytes are
    not read again. Raises NotMp4Error for a file that is not an MP4, MediaError if no
    duration can be read.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    if not checked:
        _require_mp4(path)
    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration) / av.time_base
            for stream in container.streams.video:
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read the video: {exc}") from exc
    raise MediaError(f"{path}: the file states no duration")


class EndFrames(NamedTuple):
    """A video's first and final decoded frames (the same frame for a one-frame video)."""

    first: av.VideoFrame
    last: av.VideoFrame


def decode_ends(path: Path, *, duration_s: float | None = None, checked: bool = False) -> EndFrames:
    """Decode the first and the last frame of the MP4 at *path* in one pass (blocking).

    One open of the file: the first frame is decoded, then decoding jumps to a keyframe a few
    seconds before the end (`_LAST_FRAME_SEEK_BACK_S`) and runs to the final frame, so a long
    video is not decoded in full; with one keyframe for the whole video that is the start
    again, which costs one frame more than decoding straight through. Only an odd index that
    yields nothing after the seek makes a second, plain pass. "Last" is the final frame a
    decoder outputs, in presentation order.

    *duration_s* is the duration a caller already measured (delivery checks it before the
    video is put in place): given, the container's is not read again. *checked* says the
    file is known to start like an MP4 (a download checks its first bytes while streaming),
    so it is not read again for that. Decoding uses one thread: callers bound how many
    decodes run at once, and FFmpeg's own threads would slip past that bound.
    Raises NotMp4Error for a file that is not an MP4, MediaError for one that cannot be decoded.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    if not checked:
        _require_mp4(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                raise MediaError(f"{path}: the video has no frames")
            if duration_s is None and container.duration is not None:
                duration_s = float(container.duration) / av.time_base
            target_s = (duration_s or 0.0) - _LAST_FRAME_SEEK_BACK_S
            if target_s <= 0 or stream.time_base is None:
                last = first
                for frame in frames:
                    last = frame
                return EndFrames(first, last)
            offset = int(Fraction(target_s).limit_denominator(1000) / stream.time_base)
            container.seek(offset, stream=stream, backward=True, any_frame=False)
            tail: av.VideoFrame | None = None
            for frame in container.decode(stream):
                tail = frame
        if tail is None:  # an index that seeks nowhere useful: decode the whole file
            tail = _decode_through(path)
        return EndFrames(first, tail or first)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode the video: {exc}") from exc


def _decode_through(path: Path) -> av.VideoFrame | None:
    """Return the final frame of a plain pass from the start, or None if there is none."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    last: av.VideoFrame | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            last = frame
    return last


def encode_png(frame: av.VideoFrame) -> bytes:
    """Encode one decoded frame as PNG bytes with FFmpeg's encoder (no Pillow needed)."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    codec = av.CodecContext.create("png", "w")
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "rgb24"
    rgb = frame.reformat(format="rgb24", threads=1)  # one thread: callers bound the work
    packets = [*codec.encode(rgb), *codec.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def extract_frame(video_path: Path, which: Literal["first", "last"], png_out: Path) -> Path:
    """Decode the first or the last frame of an MP4 and save it as a PNG at *png_out* (blocking).

    See `decode_ends` for how the frames are found. The PNG has the video's size and is
    written durably (`durable.write_bytes`). Returns *png_out*. A run does not call this: its
    frames come from `kling_pipe._outputs.frames`, one decode per video for every use.
    """
    ends = decode_ends(video_path)
    frame = ends.first if which == "first" else ends.last
    return durable.write_bytes(png_out, encode_png(frame))


# Pictures for the frame proof (`kling_pipe._decisions.proof`), decoded with FFmpeg.


def _to_picture(frame: object) -> Picture:
    rgb = frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
    height, width = rgb.shape[:2]
    return Picture(width=width, height=height, channels=3, pixels=rgb.tobytes())


def load_picture(path: Path) -> Picture:
    """Decode a PNG, JPEG or WebP file with FFmpeg (the decoder the mock and videos use)."""
    import av  # noqa: PLC0415 - PyAV loads only when a file is decoded

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
            if frame is None:
                raise MediaError(f"{path}: the file holds no picture")
            return _to_picture(frame)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot decode the picture: {exc}") from exc


def video_end_pictures(path: Path) -> tuple[Picture, Picture]:
    """Return the first and the last frame of a video, decoding it once from the start.

    Seeking for the last frame (as ``media.extract_frame`` does) would decode the start
    twice; proofs need both ends, so one pass is cheaper.
    """
    import av  # noqa: PLC0415

    first: Picture | None = None
    last_frame: object = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: the file has no video stream")
            for frame in container.decode(container.streams.video[0]):
                if first is None:
                    first = _to_picture(frame)
                last_frame = frame
            if first is None or last_frame is None:
                raise MediaError(f"{path}: the video has no frames")
            return first, _to_picture(last_frame)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot decode the video: {exc}") from exc
