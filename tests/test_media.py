"""MP4 checks, duration probing and first/last frame extraction, on real H.264 files."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import pytest

from kling_pipe._files import looks_like_mp4, sha256_file
from kling_pipe._outputs import media
from kling_pipe._outputs.media import (
    decode_ends,
    extract_frame,
    is_mp4,
    probe_duration_s,
)
from kling_pipe.exceptions import MediaError, NotMp4Error

WIDTH, HEIGHT, FPS = 64, 48, 24
RED, GREEN, BLUE = (230, 20, 20), (20, 200, 20), (20, 20, 230)


def make_mp4(path: Path, colours: list[tuple[int, int, int]], *, gop: int = 12) -> Path:
    """Encode one solid-colour frame per entry with libx264 into an MP4 at *path*."""
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


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Decode a PNG with FFmpeg and return (width, height, tightly packed RGB bytes)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    plane = frame.planes[0]
    rows = bytes(plane)
    packed = b"".join(
        rows[y * plane.line_size : y * plane.line_size + frame.width * 3]
        for y in range(frame.height)
    )
    return frame.width, frame.height, packed


def centre(pixels: bytes) -> tuple[int, int, int]:
    offset = ((HEIGHT // 2) * WIDTH + WIDTH // 2) * 3
    r, g, b = pixels[offset : offset + 3]
    return r, g, b


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    """H.264 and YUV 4:2:0 shift colours a little; a solid frame stays within a few levels."""
    return all(abs(a - e) <= 12 for a, e in zip(actual, expected, strict=True))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """Six seconds (past the seek-back distance, so "last" seeks): red, green..., blue."""
    colours = [RED] + [GREEN] * (6 * FPS - 2) + [BLUE]
    return make_mp4(tmp_path / "shot.mp4", colours)


def test_a_real_mp4_is_recognised(video):
    assert is_mp4(video)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00\x18ftyp"[:7], b"<html>not a video</html>", b"\x89PNG\r\n\x1a\n...."],
)
def test_other_bytes_are_not_mp4(tmp_path, data):
    path = tmp_path / "x.mp4"
    path.write_bytes(data)
    assert not is_mp4(path)
    assert not looks_like_mp4(data)


def test_duration_of_a_six_second_video(video):
    assert probe_duration_s(video) == pytest.approx(6.0, abs=1 / FPS)


def test_duration_of_a_non_mp4_is_a_clear_error(tmp_path):
    path = tmp_path / "page.mp4"
    path.write_bytes(b"<html>expired link</html>")
    with pytest.raises(NotMp4Error, match="not an MP4"):
        probe_duration_s(path)


def test_a_missing_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot read"):
        probe_duration_s(tmp_path / "nowhere.mp4")


def test_a_broken_mp4_is_a_media_error_not_an_ffmpeg_one(tmp_path):
    """An ftyp box followed by garbage passes the sniff but fails to decode, clearly."""
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\xff" * 500)
    with pytest.raises(MediaError, match=r"broken\.mp4"):
        extract_frame(path, "first", tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(("which", "colour"), [("first", RED), ("last", BLUE)])
def test_extracted_frames_have_the_video_size_and_content(video, tmp_path, which, colour):
    """The first frame is red and the last blue, as encoded; the PNG is the video's size."""
    out = extract_frame(video, which, tmp_path / f"{which}.png")
    assert out == tmp_path / f"{which}.png"
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    width, height, pixels = png_pixels(out)
    assert (width, height) == (WIDTH, HEIGHT)
    assert close_to(centre(pixels), colour)


def test_last_frame_of_a_short_video_with_one_keyframe(tmp_path):
    """A video shorter than the seek-back distance is decoded from its start."""
    path = make_mp4(tmp_path / "short.mp4", [RED, GREEN, BLUE], gop=250)
    out = extract_frame(path, "last", tmp_path / "last.png")
    assert close_to(centre(png_pixels(out)[2]), BLUE)


def test_last_frame_when_the_keyframe_is_far_from_the_end(tmp_path):
    """With one keyframe for 5 s, the seek lands at the start and still reaches the end."""
    colours = [RED] * (5 * FPS - 1) + [BLUE]
    path = make_mp4(tmp_path / "long_gop.mp4", colours, gop=1000)
    out = extract_frame(path, "last", tmp_path / "last.png")
    assert close_to(centre(png_pixels(out)[2]), BLUE)


def test_extracting_from_a_non_mp4_leaves_no_png(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(NotMp4Error):
        extract_frame(path, "last", tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_extraction_replaces_an_old_png_atomically(video, tmp_path):
    """An existing PNG is replaced whole, and no temp file stays beside it."""
    out = tmp_path / "frame.png"
    out.write_bytes(b"old")
    extract_frame(video, "first", out)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png", "shot.mp4"]


def test_sha256_matches_hashlib(video):
    assert sha256_file(video) == hashlib.sha256(video.read_bytes()).hexdigest()


# --- both ends in one pass -------------------------------------------------------------------


def frame_centre(frame: av.VideoFrame) -> tuple[int, int, int]:
    rgb = frame.to_ndarray(format="rgb24")
    r, g, b = rgb[HEIGHT // 2, WIDTH // 2]
    return int(r), int(g), int(b)


@pytest.fixture
def opens(monkeypatch) -> list[str]:
    """Every file PyAV opens from here on."""
    opened: list[str] = []
    real = av.open

    def counting(path: str, *args: object, **kwargs: object) -> object:
        opened.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting)
    return opened


@pytest.mark.parametrize("duration_s", [None, 6.0], ids=["read", "given"])
def test_both_ends_come_from_one_open_of_the_file(video, opens, duration_s):
    ends = decode_ends(video, duration_s=duration_s)
    assert close_to(frame_centre(ends.first), RED)
    assert close_to(frame_centre(ends.last), BLUE)
    assert (ends.first.width, ends.first.height) == (WIDTH, HEIGHT)
    assert opens == [str(video)]


@pytest.mark.parametrize(
    ("colours", "gop"),
    [([RED, GREEN, BLUE], 250), ([RED] + [GREEN] * (5 * FPS - 2) + [BLUE], 1000)],
    ids=["shorter-than-the-seek", "one-keyframe"],
)
def test_both_ends_of_short_and_single_keyframe_videos(tmp_path, opens, colours, gop):
    path = make_mp4(tmp_path / "v.mp4", colours, gop=gop)
    opens.clear()  # the encoder's
    ends = decode_ends(path)
    assert close_to(frame_centre(ends.first), RED)
    assert close_to(frame_centre(ends.last), BLUE)
    assert opens == [str(path)]


def test_a_one_frame_video_has_the_same_frame_at_both_ends(tmp_path):
    ends = decode_ends(make_mp4(tmp_path / "still.mp4", [GREEN]))
    assert close_to(frame_centre(ends.first), GREEN)
    assert close_to(frame_centre(ends.last), GREEN)


def test_a_checked_download_is_not_sniffed_again(video, monkeypatch):
    """A download checked its first bytes while streaming: the checks do not read them again."""
    sniffed: list[Path] = []
    monkeypatch.setattr(media, "is_mp4", lambda path: sniffed.append(path) or True)
    assert probe_duration_s(video, checked=True) == pytest.approx(6.0, abs=1 / FPS)
    decode_ends(video, checked=True)
    assert sniffed == []
    probe_duration_s(video)
    assert sniffed == [video]


def test_decoding_ends_of_a_broken_or_foreign_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\xff" * 500)
    with pytest.raises(MediaError, match=r"broken\.mp4"):
        decode_ends(broken)
    page = tmp_path / "page.mp4"
    page.write_bytes(b"<html>expired link</html>")
    with pytest.raises(NotMp4Error):
        decode_ends(page)
