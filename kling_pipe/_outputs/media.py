"""Video and image files with PyAV: is it an MP4, how long is it, what are its end frames.

PyAV is imported by the functions that decode, so hashing a file or checking its first
bytes loads no FFmpeg.

Every function here blocks (file I/O, decoding): callers in async code run them in a thread,
e.g. ``await asyncio.to_thread(probe_duration_s, path)``.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from kling_pipe._records import durable
from kling_pipe.exceptions import MediaError, NotMp4Error

if TYPE_CHECKING:
    import av

#: The ISO BMFF box type that opens every MP4: bytes 4..8 of the file.
_FTYP: Final = b"ftyp"
#: How far before the end to seek when looking for the last frame: past one keyframe interval
#: of typical encoders, so that decoding from there reaches the final frame quickly.
_LAST_FRAME_SEEK_BACK_S: Final = 3.0


def looks_like_mp4(head: bytes) -> bool:
    """Whether *head* (the first 8 bytes or more of a file) starts an ISO BMFF ``ftyp`` box."""
    return len(head) >= 8 and head[4:8] == _FTYP


def is_mp4(path: Path) -> bool:
    """Whether the file at *path* starts like an MP4 (blocking; missing file is an OSError)."""
    with path.open("rb") as fh:
        return looks_like_mp4(fh.read(8))


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at *path*, read in chunks (blocking)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _require_mp4(path: Path) -> None:
    """Raise NotMp4Error unless *path* starts like an MP4, before handing it to FFmpeg."""
    try:
        ok = is_mp4(path)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not ok:
        raise NotMp4Error(f"{path}: not an MP4 file (no ftyp box at the start)")


def probe_duration_s(path: Path) -> float:
    """Return the duration of the MP4 at *path* in seconds (blocking).

    The container's duration is used when it states one; otherwise the first video stream's.
    Raises NotMp4Error for a file that is not an MP4, MediaError if no duration can be read.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

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


def _decode_last(path: Path, *, seek: bool) -> av.VideoFrame | None:
    """Return the final decoded video frame, optionally seeking near the end first."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    last: av.VideoFrame | None = None
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        if seek and container.duration is not None and stream.time_base is not None:
            target_s = float(container.duration) / av.time_base - _LAST_FRAME_SEEK_BACK_S
            if target_s > 0:
                offset = int(Fraction(target_s).limit_denominator(1000) / stream.time_base)
                container.seek(offset, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            last = frame
    return last


def _decode_first(path: Path) -> av.VideoFrame | None:
    """Return the first decoded video frame, or None if the stream has none."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: the file has no video stream")
        for frame in container.decode(container.streams.video[0]):
            return frame
    return None


def _encode_png(frame: av.VideoFrame) -> bytes:
    """Encode one decoded frame as PNG bytes with FFmpeg's encoder (no Pillow needed)."""
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    codec = av.CodecContext.create("png", "w")
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "rgb24"
    rgb = frame.reformat(format="rgb24")
    packets = [*codec.encode(rgb), *codec.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def extract_frame(video_path: Path, which: Literal["first", "last"], png_out: Path) -> Path:
    """Decode the first or the last frame of an MP4 and save it as a PNG at *png_out* (blocking).

    "last" means the final frame a decoder outputs (in presentation order). To avoid decoding
    the whole video, decoding starts from a keyframe a few seconds before the end; if that
    yields nothing (an odd index), the whole file is decoded. The PNG has the video's size and
    is written atomically. Returns *png_out*.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    _require_mp4(video_path)
    try:
        if which == "first":
            frame = _decode_first(video_path)
        else:
            frame = _decode_last(video_path, seek=True) or _decode_last(video_path, seek=False)
        if frame is None:
            raise MediaError(f"{video_path}: the video has no frames")
        png = _encode_png(frame)
    except av.FFmpegError as exc:
        raise MediaError(f"{video_path}: cannot decode the video: {exc}") from exc
    return durable.write_bytes(png_out, png)
