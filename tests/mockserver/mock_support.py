"""Helpers for the mock server's tests: constants, a small JSON client, test images."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from fractions import Fraction

import aiohttp
import av

from mockserver import MockServer

KEY = "mock-key"
I2V = "kwaivgi/kling-video-o1-std/image-to-video"
T2V = "kwaivgi/kling-video-o1-std/text-to-video"
AUTH = {"Authorization": f"Bearer {KEY}"}


def image_bytes(width: int, height: int, colour: tuple[int, int, int], codec: str = "png") -> bytes:
    """Encode a solid-colour image with a light gradient, as PNG or JPEG, using PyAV."""
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    rows = bytearray()
    for y in range(height):
        shade = bytes([(colour[0] + y // 8) % 256, colour[1], (colour[2] + y // 16) % 256]) * width
        rows += shade + bytes(plane.line_size - 3 * width)
    plane.update(bytes(rows))
    pix = "rgb24" if codec == "png" else "yuvj420p"
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = width, height, pix
    context.time_base = Fraction(1, 25)
    packets = context.encode(frame.reformat(format=pix)) + context.encode(None)
    return b"".join(bytes(p) for p in packets)


MakeMock = Callable[..., Awaitable[MockServer]]


class Api:
    """A tiny client over a real socket: JSON in, (status, body, headers) out."""

    def __init__(self, session: aiohttp.ClientSession, server: MockServer) -> None:
        self.session = session
        self.server = server

    async def call(
        self, method: str, path: str, *, json: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, object], dict[str, str]]:
        url = path if path.startswith("http") else self.server.base_url + path
        async with self.session.request(
            method, url, json=json, headers=AUTH if headers is None else headers
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body, dict(response.headers)

    async def submit(self, body: dict[str, object], model: str = I2V, query: str = "") -> str:
        status, reply, _ = await self.call("POST", f"/api/v3/{model}{query}", json=body)
        assert status == 200, reply
        data = reply["data"]
        assert isinstance(data, dict)
        return str(data["id"])

    async def result(self, task_id: str) -> dict[str, object]:
        status, reply, _ = await self.call("GET", f"/api/v3/predictions/{task_id}/result")
        assert status == 200, reply
        data = reply["data"]
        assert isinstance(data, dict)
        return data


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Yield to the loop until *condition()* holds (in-process servers share this loop)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition is server state, not an event
            await asyncio.sleep(0.001)


def i2v(duration: int = 5, **extra: object) -> dict[str, object]:
    return {
        "prompt": "a lighthouse",
        "image": "https://example.com/a.png",
        "duration": duration,
        **extra,
    }
