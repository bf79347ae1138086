"""Images are recognised by their bytes and checked against WaveSpeed's limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefiles import write_image

from kling_pipe.images import check_image_file, content_type, sniff


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
