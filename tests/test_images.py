"""Images are recognised by their bytes and checked against WaveSpeed's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_pipe._shotlist.images import check_image_file, content_type, sniff
from tests.imagefiles import write_image


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_real_images_are_recognised_with_their_size(tmp_path, kind):
    path = write_image(tmp_path / "x.img", kind, 640, 360)
    info = sniff(path.read_bytes())
    assert info is not None
    assert (info.kind, info.width, info.height) == (kind, 640, 360)


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_real_images_of_at_least_300_px_pass(tmp_path, kind):
    assert check_image_file(write_image(tmp_path / "x.bin", kind, 300, 301)) is None


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_images_under_300_px_on_the_short_side_are_refused(tmp_path, kind):
    path = write_image(tmp_path / "small", kind, 640, 200)
    assert check_image_file(path) == (
        f'"{path}" is 640x200 px; WaveSpeed needs at least 300 px on the short side'
    )


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


def test_a_file_over_10_mb_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.png"
    with path.open("wb") as fh:
        fh.truncate(10 * 1024 * 1024 + 1)
    assert check_image_file(path) == f'"{path}" is 10.0 MB; WaveSpeed takes images of at most 10 MB'


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


def test_a_size_problem_is_reported_before_decoding(tmp_path):
    """The 300 px rule keeps its message even when the small image is also cut short."""
    data = write_image(tmp_path / "whole", "png", 640, 200).read_bytes()
    path = tmp_path / "small.png"
    path.write_bytes(data[: len(data) // 2])
    assert check_image_file(path) == (
        f'"{path}" is 640x200 px; WaveSpeed needs at least 300 px on the short side'
    )
