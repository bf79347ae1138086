"""Real image files for tests, written with PyAV so their bytes are what encoders make."""

from __future__ import annotations

from pathlib import Path

import av

_CODECS = {
    "png": ("png", "rgb24"),
    "jpeg": ("mjpeg", "yuvj420p"),
    "webp": ("libwebp", "yuv420p"),
    # Formats WaveSpeed does not take, as a user's folder of keyframes may hold them.
    "tiff": ("tiff", "rgb24"),
    "bmp": ("bmp", "bgr24"),
    "gif": ("gif", "rgb8"),
}


def write_image(path: Path, kind: str = "png", width: int = 480, height: int = 320) -> Path:
    """Write a solid-colour image of *kind* (a key of `_CODECS`) and size to *path*."""
    codec, pix_fmt = _CODECS[kind]
    frame = av.VideoFrame(width, height, "rgb24")
    for plane in frame.planes:
        plane.update(bytes([90]) * plane.buffer_size)
    muxer = "gif" if kind == "gif" else "image2"  # image2 writes no GIF
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for packet in stream.encode(frame.reformat(format=pix_fmt)):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
