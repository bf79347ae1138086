"""MP4 clips for the cut and contact-sheet tests: a shade per shot, B-frames on request.

(`videofiles.write_mp4` makes plain grey clips; these tests need to tell shots apart in a
joined film and to exercise reordered frames, so they have their own.)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av


def write_video(  # noqa: PLR0913 - keyword-only options, each with a default
    path: Path,
    seconds: float = 2,
    *,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    shade: int = 60,
    preset: str = "ultrafast",
) -> Path:
    """Write an H.264 MP4 of solid *shade* grey frames; ``preset="medium"`` adds B-frames."""
    frames = round(seconds * fps)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": preset})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame(width, height, "gray")
            frame.planes[0].update(bytes([shade]) * frame.planes[0].buffer_size)
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def frame_shades(path: Path) -> list[int]:
    """Return the mean luma of every decoded frame of *path*, in presentation order."""
    shades: list[int] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            data = bytes(frame.reformat(format="gray").planes[0])
            shades.append(round(sum(data) / len(data)))
    return shades
