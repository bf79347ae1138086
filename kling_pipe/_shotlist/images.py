"""Recognise an image by its bytes, read its size, and make sure it decodes.

WaveSpeed takes PNG, JPEG and WebP of at most 10 MB and at least 300 px on the short side.
A file named `.png` that is really something else, or a keyframe cut short by an interrupted
copy, would only fail after upload (or worse, after being paid for), so the loader checks
content here: the header says what the file claims to be, then the image is decoded (with
PyAV, imported only then, so that `import kling_pipe` stays light). Decoding one keyframe
takes milliseconds; the validator decodes each file once however many shots use it.
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path
from typing import Final

import attrs

from kling_pipe._shotlist.rules import MAX_IMAGE_BYTES, MIN_IMAGE_SHORT_SIDE_PX

#: Enough of the file for every header parsed here, except JPEG's, which is scanned further.
_HEAD_BYTES = 64 * 1024
#: FFmpeg's demuxer per kind: chosen by content, never by the file's name.
_DEMUXERS: Final = {"png": "png_pipe", "jpeg": "jpeg_pipe", "webp": "webp_pipe"}
#: Make the decoders fail on damaged data instead of concealing it (a truncated JPEG would
#: otherwise decode, its missing part painted grey), and check PNG's chunk checksums.
_STRICT_DECODING: Final = {"err_detect": "crccheck+explode"}


@attrs.frozen
class ImageInfo:
    """What a file's header says: its format, and its size in pixels when it could be read."""

    kind: str  # "png", "jpeg" or "webp"
    width: int | None
    height: int | None


def sniff(data: bytes) -> ImageInfo | None:
    """Identify PNG, JPEG or WebP from the first bytes of a file; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return ImageInfo("png", w, h)
        return ImageInfo("png", None, None)
    if data.startswith(b"\xff\xd8\xff"):
        return ImageInfo("jpeg", *_jpeg_size(data))
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageInfo("webp", *_webp_size(data))
    return None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    """Walk JPEG segments to the first start-of-frame marker, which holds the size."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None, None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), carry height then width.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None, None


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    """Read the canvas size from a WebP's first chunk (lossy, lossless or extended)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None, None


def check_image_file(path: Path) -> str | None:
    """Explain why *path* is not an image WaveSpeed would take, or return None if it is.

    Never raises for a bad file: a missing file, a folder, a device or unreadable bytes are
    the user's to fix, so they come back as a message.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return f'file not found: "{path}"'
    except OSError as exc:
        return f'cannot read "{path}": {exc.strerror or exc}'
    if stat.S_ISDIR(st.st_mode):
        return f'"{path}" is a folder, not an image file'
    if not stat.S_ISREG(st.st_mode):
        return f'"{path}" is not a regular file (a device, pipe or socket cannot be an image)'
    if st.st_size > MAX_IMAGE_BYTES:
        mb = st.st_size / (1024 * 1024)
        return f'"{path}" is {mb:.1f} MB; WaveSpeed takes images of at most 10 MB'
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        return f'cannot read "{path}": {exc.strerror or exc}'
    info = sniff(head)
    if info is None:
        return f'"{path}" is not a PNG, JPEG or WebP image (checked by content, not by name)'
    if info.width is not None and info.height is not None:
        short = min(info.width, info.height)
        if short < MIN_IMAGE_SHORT_SIDE_PX:
            return (
                f'"{path}" is {info.width}x{info.height} px; WaveSpeed needs at least '
                f"{MIN_IMAGE_SHORT_SIDE_PX} px on the short side"
            )
    return decode_problem(path, info.kind)


def decode_problem(path: Path, kind: str) -> str | None:
    """Decode the image at *path* (a *kind* returned by `sniff`); say why it failed, or None.

    A file whose header is right but whose data is cut short or damaged fails here.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when an image is really checked

    name = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}[kind]
    try:
        with av.open(str(path), format=_DEMUXERS[kind]) as container:
            stream = container.streams.video[0]
            stream.codec_context.options = dict(_STRICT_DECODING)
            for _frame in container.decode(stream):
                return None
    except av.FFmpegError as exc:
        reason = exc.strerror or type(exc).__name__
    except (IndexError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
    else:
        reason = "no picture in it"
    return f'"{path}" is a damaged or truncated {name} image: it does not decode ({reason})'


def content_type(kind: str) -> str:
    """Return the MIME type of an image kind returned by `sniff`."""
    return {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[kind]
