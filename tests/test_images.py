"""Images are recognised by their bytes, checked against WaveSpeed's limits, and whole."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._shotlist.images import (
    ImageMeasures,
    check_image_file,
    content_type,
    integrity_problem,
    measure_image,
    other_image_format,
    sniff,
)
from tests.imagefiles import over_10_mb, write_image


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_real_images_are_recognised_with_their_size(tmp_path, kind):
    path = write_image(tmp_path / "x.img", kind, 640, 360)
    info = sniff(path.read_bytes())
    assert info is not None
    assert (info.kind, info.width, info.height) == (kind, 640, 360)


@pytest.mark.parametrize(("kind", "name"), [("tiff", "TIFF"), ("bmp", "BMP"), ("gif", "GIF")])
def test_images_wavespeed_does_not_take_are_named_by_their_format(tmp_path, kind, name):
    data = write_image(tmp_path / "x.img", kind).read_bytes()
    assert sniff(data) is None
    assert other_image_format(data) == name


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "AVIF"),
        (b"8BPS\x00\x01", "Photoshop (PSD)"),
        (b"BMW service notes, 2024", None),  # text that starts like a BMP is not one
        (b"lens: 35mm\n", None),
    ],
)
def test_other_formats_are_recognised_by_their_first_bytes_only_when_they_are(head, name):
    assert other_image_format(head) == name


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_real_images_of_at_least_300_px_pass(tmp_path, kind):
    assert check_image_file(write_image(tmp_path / "x.bin", kind, 300, 301)) is None


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_an_image_under_300_px_passes_and_is_measured_for_the_models_limits(tmp_path, kind):
    """Whether 300 px is a rule depends on the model (validate decides): the file is fine."""
    path = write_image(tmp_path / "small", kind, 640, 200)
    assert check_image_file(path) is None
    assert measure_image(path) == ImageMeasures(640, 200, path.stat().st_size)


def test_a_png_named_jpg_is_still_accepted_because_content_decides(tmp_path):
    assert check_image_file(write_image(tmp_path / "frame.jpg", "png")) is None


def test_a_text_file_named_png_is_refused(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("<svg/>")
    assert "is not a PNG, JPEG or WebP image" in (check_image_file(path) or "")


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "x.png"
    path.touch()
    assert "is not a PNG, JPEG or WebP image" in (check_image_file(path) or "")


def test_a_whole_image_over_10_mb_passes_and_is_measured_for_the_models_limits(tmp_path):
    path = over_10_mb(write_image(tmp_path / "big.png", "png", 640, 360))
    assert check_image_file(path) is None
    assert measure_image(path) == ImageMeasures(640, 360, 10 * 1024 * 1024 + 100)


def test_a_file_that_cannot_be_read_has_no_measures(tmp_path):
    assert measure_image(tmp_path / "missing.png") is None


def test_an_unreadable_file_is_a_message_not_an_exception(tmp_path, monkeypatch):
    path = write_image(tmp_path / "x.png")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests run as root in CI, where chmod 0 does not stop a read: refuse it at the call.
    monkeypatch.setattr(Path, "open", refuse)
    assert check_image_file(path) == f'cannot read "{path}": Permission denied'


def test_a_truncated_png_header_is_recognised_without_a_size():
    info = sniff(b"\x89PNG\r\n\x1a\n")
    assert info is not None
    assert (info.width, info.height) == (None, None)


@pytest.mark.parametrize(
    ("kind", "mime"), [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")]
)
def test_content_types_match_the_kind(kind, mime):
    assert content_type(kind) == mime


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("keep", [0.99, 0.5])
def test_a_truncated_image_is_refused_naming_the_file(tmp_path, kind, keep):
    """The header is right, the data is cut short (an interrupted copy): it does not decode."""
    data = write_image(tmp_path / "whole", kind, 640, 360).read_bytes()
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: int(len(data) * keep)])
    assert sniff(path.read_bytes()) is not None
    name = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}[kind]
    message = check_image_file(path) or ""
    assert message.startswith(f'"{path}" is a damaged or truncated {name} image: it does not')


def test_a_png_with_a_damaged_chunk_is_refused(tmp_path):
    """A flipped byte inside the image data fails PNG's checksum rather than decoding wrongly."""
    data = bytearray(write_image(tmp_path / "whole.png", "png", 640, 360).read_bytes())
    data[data.index(b"IDAT") + 8] ^= 0xFF
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    assert "is a damaged or truncated PNG image" in (check_image_file(path) or "")


def test_a_header_alone_is_refused_though_it_names_a_valid_size(tmp_path):
    """The old header-only check let this through: a PNG signature and IHDR, no pixels."""
    whole = write_image(tmp_path / "whole.png", "png", 640, 360).read_bytes()
    path = tmp_path / "header.png"
    path.write_bytes(whole[:33])
    info = sniff(path.read_bytes())
    assert info is not None
    assert (info.width, info.height) == (640, 360)
    assert "does not decode" in (check_image_file(path) or "")


def test_a_small_image_cut_short_is_refused_as_damaged(tmp_path):
    """The size limits are held later, against the model; a broken file is broken first."""
    data = write_image(tmp_path / "whole", "png", 640, 200).read_bytes()
    path = tmp_path / "small.png"
    path.write_bytes(data[: len(data) // 2])
    assert "does not decode" in (check_image_file(path) or "")


# ----------------------------------------------------------- the structure, format by format


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


#: Adam7's passes (first column, first row, column step, row step), from the PNG specification.
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def handmade_png(  # noqa: PLR0913 - every field of IHDR that matters here
    width: int = 320,
    height: int = 310,
    *,
    colour: int = 2,
    depth: int = 8,
    interlaced: bool = False,
    filters: int = 0,
    extra_rows: int = 0,
) -> bytes:
    """A PNG written here byte by byte, for the layouts FFmpeg's encoder never writes."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        columns = max(0, (width - x0 + dx - 1) // dx)
        rows = max(0, (height - y0 + dy - 1) // dy)
        if columns and rows:
            stride = (columns * channels * depth + 7) // 8
            for r in range(rows + extra_rows):
                raw += bytes([filters if r == 0 else 0]) + bytes([r % 251]) * stride
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlaced))
    chunks = _png_chunk(b"IHDR", header)
    if colour == 3:
        chunks += _png_chunk(b"PLTE", bytes(range(48)))
    data = zlib.compress(bytes(raw))
    # The image data split over several IDAT chunks, as large encoders write it.
    for start in range(0, len(data), 1000):
        chunks += _png_chunk(b"IDAT", data[start : start + 1000])
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


def noisy_image(path: Path, kind: str, pix_fmt: str, width: int = 641, height: int = 377) -> Path:
    """An image of random pixels (so it compresses badly and has long scans), written by FFmpeg."""
    codec, fmt = {"png": ("png", "image2"), "jpeg": ("mjpeg", "image2")}.get(
        kind, ("libwebp", "webp")
    )
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
    options = {"lossless": "1"} if kind == "webp-lossless" else {}
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


#: (kind for `noisy_image`, FFmpeg pixel format): every PNG colour type and depth FFmpeg
#: writes, JPEG's three chroma subsamplings, lossy and lossless WebP.
ENCODED = [
    *(
        ("png", f)
        for f in ("rgb24", "rgba", "rgb48be", "rgba64be", "gray", "ya8", "gray16be", "ya16be")
    ),
    ("png", "monob"),
    *(("jpeg", f) for f in ("yuvj420p", "yuvj422p", "yuvj444p")),
    ("webp", "yuv420p"),
    ("webp-lossless", "bgra"),
]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of each ENCODED image, written once for the module."""
    folder = tmp_path_factory.mktemp("encoded")
    return {
        f"{kind}-{fmt}": noisy_image(folder / f"{kind}-{fmt}", kind, fmt).read_bytes()
        for kind, fmt in ENCODED
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the files the property tests write (hypothesis runs a test many times)."""
    return tmp_path_factory.mktemp("scratch")


@pytest.mark.parametrize("name", [f"{k}-{f}" for k, f in ENCODED])
def test_encoded_images_of_every_layout_pass(encoded, scratch, name):
    path = scratch / name
    path.write_bytes(encoded[name])
    assert check_image_file(path) is None


@pytest.mark.parametrize(
    ("colour", "depth"),
    [(0, 1), (0, 2), (0, 4), (0, 16), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8), (6, 16)],
)
@pytest.mark.parametrize("interlaced", [False, True])
def test_png_of_every_colour_type_depth_and_interlacing_passes(tmp_path, colour, depth, interlaced):
    """Adam7 passes and sub-byte pixels are sized as the PNG specification says."""
    path = tmp_path / "x.png"
    path.write_bytes(handmade_png(colour=colour, depth=depth, interlaced=interlaced))
    assert check_image_file(path) is None


@pytest.mark.parametrize("interlaced", [False, True])
def test_an_interlaced_png_of_odd_size_passes(tmp_path, interlaced):
    """Passes that hold no pixel (a width under 5) hold no row either."""
    path = tmp_path / "x.png"
    path.write_bytes(handmade_png(3, 2, interlaced=interlaced, colour=0, depth=1))
    # Too small for WaveSpeed: the integrity check is what this test looks at.
    assert integrity_problem(path, path.read_bytes(), "png") is None


@given(data=st.data())
@pytest.mark.parametrize("name", [f"{k}-{f}" for k, f in ENCODED])
def test_truncating_a_valid_image_anywhere_is_always_caught(encoded, scratch, name, data):
    """Every format ends with a marker or states its length: no prefix passes for whole."""
    whole = encoded[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1), label="kept bytes")
    path = scratch / f"cut-{name}"
    path.write_bytes(whole[:cut])
    assert check_image_file(path) is not None


@given(cut=st.integers(min_value=0, max_value=4000), interlaced=st.booleans())
def test_truncating_a_multi_chunk_png_anywhere_is_always_caught(scratch, cut, interlaced):
    whole = handmade_png(interlaced=interlaced)
    path = scratch / "cut-handmade.png"
    path.write_bytes(whole[: min(cut, len(whole) - 1)])
    assert check_image_file(path) is not None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ({"filters": 9}, "a row of its image data has an unknown filter"),
        ({"extra_rows": 1}, "it holds more image data than its size calls for"),
    ],
)
def test_png_image_data_must_match_its_header(tmp_path, damage, reason):
    """Checksums pass, yet the rows are not what IHDR describes: a decoder would refuse it."""
    path = tmp_path / "x.png"
    path.write_bytes(handmade_png(**damage))
    assert check_image_file(path) == (
        f'"{path}" is a damaged or truncated PNG image: it does not decode ({reason})'
    )


def test_png_image_data_cut_short_inside_valid_chunks_is_refused(tmp_path):
    """A zlib stream that ends early, re-wrapped with good CRCs, is still caught."""
    full = handmade_png()
    start = full.index(b"IDAT") - 4
    body = zlib.compressobj().compress(b"\x00" * 100)  # a stream never finished
    path = tmp_path / "x.png"
    path.write_bytes(full[:start] + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))
    assert "its image data ends early" in (check_image_file(path) or "")


def test_a_png_chunk_with_a_bad_crc_is_named(tmp_path):
    data = bytearray(handmade_png())
    data[data.index(b"IEND") + 4] ^= 0x01  # IEND's CRC
    path = tmp_path / "x.png"
    path.write_bytes(bytes(data))
    assert "chunk 'IEND' fails its CRC check" in (check_image_file(path) or "")


def test_a_png_with_an_unknown_critical_chunk_is_refused(tmp_path):
    data = handmade_png()
    end = data.index(b"IEND") - 4
    path = tmp_path / "x.png"
    path.write_bytes(data[:end] + _png_chunk(b"ZZZZ", b"?") + data[end:])
    assert "unknown critical chunk 'ZZZZ'" in (check_image_file(path) or "")


def test_a_png_with_an_unknown_ancillary_chunk_passes(tmp_path):
    """Lower-case first letter: safe to ignore, as every decoder does."""
    data = handmade_png()
    end = data.index(b"IEND") - 4
    path = tmp_path / "x.png"
    path.write_bytes(data[:end] + _png_chunk(b"zzZz", b"?") + data[end:])
    assert check_image_file(path) is None


def test_a_palette_png_without_its_palette_is_refused(tmp_path):
    data = handmade_png(colour=3)
    start = data.index(b"PLTE") - 4
    path = tmp_path / "x.png"
    path.write_bytes(data[:start] + data[start + 12 + 48 :])
    assert "without a PLTE chunk" in (check_image_file(path) or "")


def _jpeg(encoded: dict[str, bytes]) -> bytes:
    return encoded["jpeg-yuvj420p"]


def test_a_jpeg_without_its_end_marker_is_refused(encoded, tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg(encoded)[:-2])
    assert "the file ends inside its image data" in (check_image_file(path) or "")


def test_a_jpeg_with_data_after_its_end_passes(encoded, tmp_path):
    """Cameras append data after the image; decoders stop at the end marker."""
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg(encoded) + b"trailer")
    assert check_image_file(path) is None


def test_a_jpeg_with_an_unknown_marker_is_refused(encoded, tmp_path):
    whole = _jpeg(encoded)
    path = tmp_path / "x.jpg"
    path.write_bytes(whole[:2] + b"\xff\x02\x00\x04ab" + whole[2:])
    assert "unexpected marker 0xFF02" in (check_image_file(path) or "")


def test_a_jpeg_scan_before_its_frame_header_is_refused(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\x12\x34\xff\xd9")
    assert "a scan comes before the frame header" in (check_image_file(path) or "")


def test_a_progressive_jpeg_layout_passes(tmp_path):
    """Several scans with tables between them (progressive JPEG), restart markers inside."""
    frame = b"\xff\xc2\x00\x11\x08\x01\x40\x01\x40\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    table = b"\xff\xc4\x00\x05\x00\x00\x00"
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x12\xff\x00\x34\xff\xd0\x56"
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8" + frame + table + scan + table + scan + b"\xff\xd9")
    assert check_image_file(path) is None


def test_a_webp_shorter_than_its_riff_size_is_refused(encoded, tmp_path):
    whole = encoded["webp-yuv420p"]
    path = tmp_path / "x.webp"
    path.write_bytes(whole[:-1])
    assert check_image_file(path) == (
        f'"{path}" is a damaged or truncated WebP image: it does not decode (the file has '
        f"{len(whole) - 1} bytes where its header announces {len(whole)}: it ends early)"
    )


def _vp8x(flags: int, *chunks: bytes) -> bytes:
    canvas = (640 - 1).to_bytes(3, "little") + (360 - 1).to_bytes(3, "little")
    body = _riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + canvas) + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _vp8_chunk(encoded: dict[str, bytes]) -> bytes:
    return encoded["webp-yuv420p"][12:]  # the lossy file's one chunk, padding included


def test_an_extended_webp_holding_one_image_passes(encoded, tmp_path):
    path = tmp_path / "x.webp"
    path.write_bytes(_vp8x(0, _riff_chunk(b"ICCP", b"profile"), _vp8_chunk(encoded)))
    assert check_image_file(path) is None


@pytest.mark.parametrize("how", ["flag", "frames"])
def test_an_animated_webp_is_refused_asking_for_a_still_image(encoded, tmp_path, how):
    anim = _riff_chunk(b"ANIM", bytes(6)) + _riff_chunk(b"ANMF", bytes(16) + _vp8_chunk(encoded))
    path = tmp_path / "x.webp"
    path.write_bytes(_vp8x(0x02, anim) if how == "flag" else _vp8x(0, anim))
    assert check_image_file(path) == (
        f'"{path}" is an animated WebP; WaveSpeed needs a still image (export the frame you '
        "want as PNG, JPEG or WebP)"
    )


def test_an_animated_webp_written_by_an_encoder_is_refused(tmp_path):
    path = tmp_path / "anim.webp"
    with av.open(str(path), "w", format="webp") as container:
        stream = container.add_stream("libwebp_anim", rate=10)
        stream.width, stream.height, stream.pix_fmt = 400, 320, "yuv420p"
        for k in range(3):
            pixels = np.full((320, 400, 3), 60 * k, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "is an animated WebP" in (check_image_file(path) or "")


def test_a_webp_whose_image_is_not_a_key_frame_is_refused(encoded, tmp_path):
    data = bytearray(encoded["webp-yuv420p"])
    data[20] |= 0x01  # the VP8 frame tag's "inter frame" bit
    path = tmp_path / "x.webp"
    path.write_bytes(bytes(data))
    assert "its VP8 frame header holds values" in (check_image_file(path) or "")
