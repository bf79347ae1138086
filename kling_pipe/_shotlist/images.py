"""Recognise an image by its bytes, read its size, and make sure it is whole.

WaveSpeed takes PNG, JPEG and WebP; Kling's limits on their size and shape (10 MB, 300 px,
aspect ratio) are held against the model by `validate`, from what `measure_image` reads.
A file named `.png` that is really something else, or a keyframe cut short by an interrupted
copy, would only fail after upload (or worse, after being paid for), so the loader checks
content here: the header says what the file claims to be, then the file's structure is
walked to its end with the standard library alone, so that `validate` loads no FFmpeg:

* PNG: every chunk's CRC, IHDR first and IEND last, and the image data inflated to the end
  of its zlib stream (whose own checksum is verified), holding exactly the bytes the header's
  size, colour type, bit depth and interlacing call for, each row with a valid filter byte.
* JPEG: every segment up to each scan, then each scan's entropy-coded data up to the next
  marker, and an end-of-image marker at the end; markers no decoder knows are refused.
* WebP: the RIFF size against the file's, every chunk within it, and a lossy (VP8) or
  lossless (VP8L) image whose header is sound. An animated WebP is refused: a keyframe is
  one picture.

A cut-short file always fails (every format ends with a marker or states its length); a
damaged PNG fails its checksums; a damaged JPEG or WebP body is caught only where the
damage breaks the structure, since checking its pixels means decoding them.
"""

from __future__ import annotations

import re
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs

from kling_pipe._shotlist.rules import MAX_IMAGE_BYTES

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> (channels, allowed bit depths).
_PNG_COLOURS: Final = {
    0: (1, (1, 2, 4, 8, 16)),  # greyscale
    2: (3, (8, 16)),  # truecolour
    3: (1, (1, 2, 4, 8)),  # palette
    4: (2, (8, 16)),  # greyscale with alpha
    6: (4, (8, 16)),  # truecolour with alpha
}
#: Adam7's passes: (first column, first row, column step, row step).
_ADAM7: Final = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
#: PNG's five row filters are numbered 0..4; any other first byte of a row is damage.
_MAX_PNG_FILTER: Final = 4
#: Inflate in pieces of this size, so a 10 MB file that expands to gigabytes never does so
#: in memory.
_INFLATE_STEP: Final = 1 << 20
_IHDR_BYTES: Final = 13

#: JPEG markers that carry a length and may appear between SOI and EOI: SOF0..SOF15 (but
#: C8, reserved), DHT, DAC, DQT, DNL, DRI, DHP, EXP, APP0..APP15, COM. SOS is handled apart.
_JPEG_SEGMENTS: Final = frozenset(
    {*range(0xC0, 0xC8), *range(0xC9, 0xD0), *range(0xDB, 0xE0), *range(0xE0, 0xF0), 0xFE}
)
_JPEG_NOT_FRAMES: Final = frozenset({0xC4, 0xC8, 0xCC})  # DHT, JPG, DAC: not SOFn
_JPEG_SOS: Final = 0xDA
_JPEG_EOI: Final = 0xD9
_JPEG_TEM: Final = 0x01
#: The end of a scan's entropy-coded data: 0xFF followed by anything but a stuffed zero or a
#: restart marker (which belong to the scan).
_JPEG_SCAN_END: Final = re.compile(rb"\xff[^\x00\xd0-\xd7]")

_VP8_START_CODE: Final = b"\x9d\x01\x2a"
_VP8L_SIGNATURE: Final = 0x2F
_VP8X_ANIMATION_FLAG: Final = 0x02
_WEBP_ANIMATION_CHUNKS: Final = frozenset({b"ANIM", b"ANMF"})

_NAMES: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}


@attrs.frozen
class ImageInfo:
    """What a file's header says: its format, and its size in pixels when it could be read."""

    kind: str  # "png", "jpeg" or "webp"
    width: int | None
    height: int | None


class _DamagedError(Exception):
    """Why a file's structure is not whole (internal: becomes the user's message)."""


class _AnimatedError(Exception):
    """A WebP with more than one frame (internal: becomes the user's message)."""


def sniff(data: bytes) -> ImageInfo | None:
    """Identify PNG, JPEG or WebP from the first bytes of a file; None for anything else."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return ImageInfo("png", w, h)
        return ImageInfo("png", None, None)
    if data.startswith(b"\xff\xd8\xff"):
        return ImageInfo("jpeg", *_jpeg_size(data))
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageInfo("webp", *_webp_size(data))
    return None


def other_image_format(data: bytes) -> str | None:
    """Name the image format of a file WaveSpeed does not take (TIFF, BMP, GIF, ...), or None.

    From the first bytes of the file, as `sniff` reads PNG, JPEG and WebP: what `init` says
    of a keyframe it leaves out, so that a TIFF is "a TIFF image", not "not an image".
    """
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data.startswith(b"BM") and data[6:10] == b"\x00\x00\x00\x00":  # reserved, always zero
        return "BMP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"8BPS"):
        return "Photoshop (PSD)"
    if data.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    return None


_HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1"})


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
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == _VP8_START_CODE:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == _VP8L_SIGNATURE:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None, None


def check_image_file(path: Path) -> str | None:
    """Explain why *path* is not a whole still PNG, JPEG or WebP image, or return None.

    Never raises for a bad file: a missing file, a folder, a device or unreadable bytes are
    the user's to fix, so they come back as a message. Kling's limits on size and shape are
    not checked here: whether they are rules depends on the model (`measure_image` gives
    what they are checked against).
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
    try:
        with path.open("rb") as fh:
            data = fh.read()
    except OSError as exc:
        return f'cannot read "{path}": {exc.strerror or exc}'
    info = sniff(data)
    if info is None:
        return f'"{path}" is not a PNG, JPEG or WebP image (checked by content, not by name)'
    return integrity_problem(path, data, info.kind)


@attrs.frozen
class ImageMeasures:
    """What Kling's image limits are held against: the size the file states, and its bytes."""

    width: int | None
    height: int | None
    size_bytes: int


def measure_image(path: Path) -> ImageMeasures | None:
    """Return the image file at *path*'s stated size and its length, or None if unreadable."""
    try:
        size_bytes = path.stat().st_size
    except OSError:
        return None
    size = image_size(path)
    return ImageMeasures(
        width=None if size is None else size[0],
        height=None if size is None else size[1],
        size_bytes=size_bytes,
    )


def image_size(path: Path) -> tuple[int, int] | None:
    """Return the width and height in pixels the image file at *path* states, or None.

    None for anything that is not a PNG, JPEG or WebP whose size can be read (a missing or
    unreadable file too): `check_image_file` is what says what is wrong with such a file.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(_SIZE_HEAD_BYTES)
            info = sniff(head)
            if info is not None and info.width is None and info.kind == "jpeg":
                # A JPEG states its size after its metadata, which may be long (EXIF).
                info = sniff(head + fh.read(MAX_IMAGE_BYTES))
    except OSError:
        return None
    if info is None or info.width is None or info.height is None:
        return None
    return info.width, info.height


#: Enough of an image file to read its size, but for a JPEG with long metadata.
_SIZE_HEAD_BYTES: Final = 64 * 1024


def integrity_problem(path: Path, data: bytes, kind: str) -> str | None:
    """Say why *data* (the file at *path*, of a *kind* from `sniff`) is not whole, or None."""
    try:
        _CHECKS[kind](data)
    except _AnimatedError:
        return (
            f'"{path}" is an animated WebP; WaveSpeed needs a still image (export the frame '
            "you want as PNG, JPEG or WebP)"
        )
    except _DamagedError as exc:
        reason = str(exc)
    else:
        return None
    return f'"{path}" is a damaged or truncated {_NAMES[kind]} image: it does not decode ({reason})'


def content_type(kind: str) -> str:
    """Return the MIME type of an image kind returned by `sniff`."""
    return {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[kind]


# PNG.


def _check_png(data: bytes) -> None:
    """Walk a PNG's chunks and inflate its image data; raise _DamagedError at the first fault."""
    chunks = _png_chunks(data)
    kind, body = next(chunks)
    if kind != b"IHDR" or len(body) != _IHDR_BYTES:
        raise _DamagedError("its first chunk is not a valid IHDR")
    width, height, depth, colour, interlace = _png_header(body)
    palette = closed = False
    idat: list[bytes] = []
    for kind, body in chunks:
        if kind == b"IDAT":
            if closed:
                raise _DamagedError("its image data is split by other chunks")
            idat.append(body)
            continue
        closed = bool(idat)  # IDAT chunks must be consecutive: no more of them after this
        if kind == b"PLTE":
            palette = _png_palette(body, after_image_data=bool(idat))
        elif kind == b"IHDR":
            raise _DamagedError("it has a second IHDR chunk")
        elif kind != b"IEND" and not kind[0] & 0x20:  # a critical chunk unknown to readers
            raise _DamagedError(f"unknown critical chunk {kind.decode('latin-1')!r}")
    if not idat:
        raise _DamagedError("it has no image data")
    if colour == 3 and not palette:  # colour type 3 is "palette"
        raise _DamagedError("a palette image without a PLTE chunk")
    rows = _png_rows(width, height, depth * _PNG_COLOURS[colour][0], interlaced=interlace == 1)
    _inflate_png(b"".join(idat), rows)


def _png_palette(body: bytes, *, after_image_data: bool) -> bool:
    """Check a PLTE chunk: 1 to 256 colours of 3 bytes, before the image data."""
    if after_image_data or len(body) % 3 or not 3 <= len(body) <= 3 * 256:
        raise _DamagedError("its PLTE chunk is misplaced or the wrong size")
    return True


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield (type, body) of each chunk, its CRC checked, up to IEND included."""
    i = len(_PNG_SIGNATURE)
    kind = b""
    while kind != b"IEND":
        if i + 8 > len(data):
            raise _DamagedError("the file ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        end = i + 8 + length
        if end + 4 > len(data):
            raise _DamagedError(f"chunk {kind.decode('latin-1')!r} is cut short")
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[i + 4 : end]) != crc:
            raise _DamagedError(f"chunk {kind.decode('latin-1')!r} fails its CRC check")
        yield kind, data[i + 8 : end]
        i = end + 4


def _png_header(body: bytes) -> tuple[int, int, int, int, int]:
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    known = _PNG_COLOURS.get(colour)
    if (
        not 0 < width < 2**31
        or not 0 < height < 2**31
        or known is None
        or depth not in known[1]
        or compression
        or filtering
        or interlace not in (0, 1)
    ):
        raise _DamagedError("its IHDR chunk holds values no PNG may have")
    return width, height, depth, colour, interlace


def _png_rows(width: int, height: int, bits_per_pixel: int, *, interlaced: bool) -> list[int]:
    """Return the byte length of each row (filter byte included), pass after pass."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    rows: list[int] = []
    for x0, y0, dx, dy in passes:
        columns = (width - x0 + dx - 1) // dx if width > x0 else 0
        count = (height - y0 + dy - 1) // dy if height > y0 else 0
        if columns and count:
            rows.extend([1 + (columns * bits_per_pixel + 7) // 8] * count)
    return rows


def _inflate_png(compressed: bytes, rows: list[int]) -> None:
    """Inflate PNG image data to the end of its stream, checking its size and filter bytes."""
    expected = sum(rows)
    starts = _row_starts(rows)
    next_row = next(starts, None)
    inflater = zlib.decompressobj()
    produced = 0
    pending = compressed
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, _INFLATE_STEP)
            pending = inflater.unconsumed_tail
            end = produced + len(piece)
            if end > expected:
                raise _DamagedError("it holds more image data than its size calls for")
            while next_row is not None and next_row < end:
                if piece[next_row - produced] > _MAX_PNG_FILTER:
                    raise _DamagedError("a row of its image data has an unknown filter")
                next_row = next(starts, None)
            produced = end
            if not piece and not pending:
                break
    except zlib.error as exc:
        raise _DamagedError(f"its image data does not inflate: {exc}") from None
    if not inflater.eof or produced < expected:
        raise _DamagedError("its image data ends early")


def _row_starts(rows: list[int]) -> Iterator[int]:
    offset = 0
    for length in rows:
        yield offset
        offset += length


# JPEG.


def _check_jpeg(data: bytes) -> None:
    """Walk a JPEG's segments and scans to its end-of-image marker."""
    frame = scanned = False
    i = 2  # after SOI
    while True:
        marker, i = _jpeg_marker(data, i)
        if marker == _JPEG_EOI:
            if not scanned:
                raise _DamagedError("it ends before any image data")
            return
        if marker == _JPEG_TEM:
            continue
        body, i = _jpeg_segment(data, i, marker)
        if marker == _JPEG_SOS:
            if not frame:
                raise _DamagedError("a scan comes before the frame header")
            _check_scan_header(body)
            scanned = True
            found = _JPEG_SCAN_END.search(data, i)
            if found is None:
                raise _DamagedError("the file ends inside its image data")
            i = found.start()
        elif 0xC0 <= marker <= 0xCF and marker not in _JPEG_NOT_FRAMES:
            _check_frame_header(body)
            frame = True


def _jpeg_marker(data: bytes, i: int) -> tuple[int, int]:
    """Return the marker at *i* (fill bytes skipped) and the offset after it."""
    n = len(data)
    if i < n and data[i] != 0xFF:
        raise _DamagedError(f"stray bytes where a marker should be (offset {i})")
    while i < n and data[i] == 0xFF:
        i += 1
    if i >= n:
        raise _DamagedError("the file ends before its end-of-image marker")
    return data[i], i + 1


def _jpeg_segment(data: bytes, i: int, marker: int) -> tuple[bytes, int]:
    """Return the body of the segment whose length field is at *i*, and the offset after it."""
    if marker != _JPEG_SOS and marker not in _JPEG_SEGMENTS:
        raise _DamagedError(f"unexpected marker 0xFF{marker:02X} (offset {i - 2})")
    if i + 2 > len(data):
        raise _DamagedError("the file ends inside a segment")
    (length,) = struct.unpack(">H", data[i : i + 2])
    if length < 2 or i + length > len(data):  # the length counts its own two bytes
        raise _DamagedError(f"segment 0xFF{marker:02X} is cut short")
    return data[i + 2 : i + length], i + length


def _check_frame_header(body: bytes) -> None:
    if len(body) < 6:
        raise _DamagedError("its frame header is cut short")
    _precision, _height, width, components = struct.unpack(">BHHB", body[:6])
    if width == 0 or components == 0 or len(body) != 6 + 3 * components:
        raise _DamagedError("its frame header holds values no JPEG may have")


def _check_scan_header(body: bytes) -> None:
    components = body[0] if body else 0
    if not 1 <= components <= 4 or len(body) != 4 + 2 * components:
        raise _DamagedError("a scan header holds values no JPEG may have")


# WebP.


def _check_webp(data: bytes) -> None:
    """Check a WebP's RIFF size and chunks, and the header of its one image."""
    chunks = _riff_chunks(data)
    first, body = chunks[0]
    if first == b"VP8X":
        if not body or body[0] & _VP8X_ANIMATION_FLAG:
            raise _AnimatedError
        if any(kind in _WEBP_ANIMATION_CHUNKS for kind, _ in chunks):
            raise _AnimatedError
        images = [(kind, b) for kind, b in chunks if kind in (b"VP8 ", b"VP8L")]
        if len(images) != 1:
            raise _DamagedError("it does not hold exactly one image")
        first, body = images[0]
    if first == b"VP8 ":
        _check_vp8(body)
    elif first == b"VP8L":
        _check_vp8l(body)
    else:
        raise _DamagedError(f"its first chunk is {first.decode('latin-1')!r}, not an image")


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Return (type, body) of every chunk within the RIFF size, which the file must hold."""
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = riff_size + 8
    if end > len(data):
        raise _DamagedError(
            f"the file has {len(data)} bytes where its header announces {end}: it ends early"
        )
    chunks: list[tuple[bytes, bytes]] = []
    i = 12
    while i < end:
        if i + 8 > end:
            raise _DamagedError("a chunk header is cut short")
        kind, size = struct.unpack("<4sI", data[i : i + 8])
        if i + 8 + size > end:
            raise _DamagedError(f"chunk {kind.decode('latin-1')!r} is cut short")
        chunks.append((kind, data[i + 8 : i + 8 + size]))
        i += 8 + size + (size & 1)  # chunks are padded to an even size
    if not chunks:
        raise _DamagedError("it holds no image")
    return chunks


def _check_vp8(body: bytes) -> None:
    """Check a lossy image's header: a key frame, its start code and size, its first partition."""
    if len(body) < 10:
        raise _DamagedError("its VP8 frame header is cut short")
    tag = int.from_bytes(body[:3], "little")
    width, height = struct.unpack("<HH", body[6:10])
    if (
        tag & 1  # not a key frame
        or body[3:6] != _VP8_START_CODE
        or not width & 0x3FFF
        or not height & 0x3FFF
        or (tag >> 5) > len(body) - 10  # the first partition's size
    ):
        raise _DamagedError("its VP8 frame header holds values no WebP may have")


def _check_vp8l(body: bytes) -> None:
    """Check a lossless image's header: its signature and version."""
    if len(body) < 5 or body[0] != _VP8L_SIGNATURE or body[4] >> 5:
        raise _DamagedError("its VP8L header holds values no WebP may have")


_CHECKS: Final = {"png": _check_png, "jpeg": _check_jpeg, "webp": _check_webp}
