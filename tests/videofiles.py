"""Small real MP4 files for tests, encoded with PyAV (H.264)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av


def write_mp4(
    path: Path, *, seconds: int = 5, fps: int = 4, size: tuple[int, int] = (64, 48)
) -> Path:
    """Encode *seconds* of a grey clip at *fps* frames per second into *path*."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_bytes(
                bytes((90, 90, 90, 255)) * (width * height), width, height, format="rgba"
            )
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
