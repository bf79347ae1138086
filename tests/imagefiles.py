"""Real image files for tests, written with PyAV so their bytes are what encoders make."""

from __future__ import annotations

import zlib
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


def over_10_mb(path: Path, size: int = 10 * 1024 * 1024 + 100) -> Path:
    """Grow the PNG at *path* to *size* bytes with a private ancillary chunk: still whole."""
    data = path.read_bytes()
    ihdr_end = 8 + 8 + 13 + 4  # signature, then IHDR's length, type, body and CRC
    body = bytes(size - len(data) - 12)
    chunk = len(body).to_bytes(4, "big") + b"kpPd" + body
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    return path
