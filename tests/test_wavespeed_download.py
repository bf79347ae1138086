"""The client over real loopback sockets: streaming downloads, truncation, atomicity, drops."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
import stamina
from aiohttp import web

from kling_pipe._backends.base import SubmitRequest
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe.exceptions import (
    BackendConnectionError,
    NotFoundError,
    SubmitOutcomeUnknown,
    TruncatedDownloadError,
)
from tests.mockserver.mock_support import until

KEY = "ws-SECRET-loopback-key"
HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
BODY = HEAD + bytes(range(256)) * 4096  # about 1 MiB
MODEL = "kwaivgi/kling-video-o1-std/image-to-video"


@pytest.fixture(autouse=True)
def no_sleep():
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Server:
    """A loopback server whose routes count hits and remember the headers they saw."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.app = web.Application()

    def route(self, path: str, handler) -> None:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.headers.setdefault(path, []).append(dict(request.headers))
            return await handler(request, self.hits[path])

        self.app.router.add_route("*", path, counted)


async def full(_request: web.Request, _hit: int) -> web.StreamResponse:
    return web.Response(body=BODY, content_type="video/mp4")


async def half_then_hang_up(request: web.Request, _hit: int) -> web.StreamResponse:
    """Promise the whole body, send half of it, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await response.prepare(request)
    await response.write(BODY[: len(BODY) // 2])
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
async def start(aiohttp_server, server):
    async def started() -> str:
        running = await aiohttp_server(server.app)
        return str(running.make_url("")).rstrip("/")

    return started


async def test_a_download_streams_to_disk_and_lands_atomically(start, server, session, tmp_path):
    """The file arrives whole, with the sha256 and size of the served bytes, nothing else left."""
    server.route("/out.mp4", full)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    dest = tmp_path / "renders" / "shot.mp4"
    result = await client.download(f"{base}/out.mp4", dest)
    assert dest.read_bytes() == BODY
    assert result.size == len(BODY)
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert leftovers(dest.parent) == ["shot.mp4"]


async def test_a_truncated_download_is_retried_until_whole(start, server, session, tmp_path):
    """The first answer stops halfway; the retry gets the whole file."""

    async def flaky(request: web.Request, hit: int) -> web.StreamResponse:
        return await (half_then_hang_up if hit == 1 else full)(request, hit)

    server.route("/out.mp4", flaky)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    result = await client.download(f"{base}/out.mp4", tmp_path / "shot.mp4")
    assert server.hits["/out.mp4"] == 2
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert leftovers(tmp_path) == ["shot.mp4"]


async def test_a_download_truncated_every_time_fails_and_leaves_the_old_file(
    start, server, session, tmp_path
):
    """After the last attempt: TruncatedDownloadError, the old file intact, no temp file."""
    server.route("/out.mp4", half_then_hang_up)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    dest = tmp_path / "shot.mp4"
    dest.write_bytes(b"previous render")
    with pytest.raises(TruncatedDownloadError, match="before the whole file arrived"):
        await client.download(f"{base}/out.mp4", dest)
    assert server.hits["/out.mp4"] == 3
    assert dest.read_bytes() == b"previous render"
    assert leftovers(tmp_path) == ["shot.mp4"]


async def test_a_short_body_with_a_lying_content_length_is_truncation(
    start, server, session, tmp_path
):
    """A server that ends the body early but cleanly is caught by counting bytes."""

    async def short(request: web.Request, _hit: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        response.force_close()
        await response.prepare(request)
        await response.write(BODY[:1000])
        assert request.transport is not None
        request.transport.close()
        return response

    server.route("/out.mp4", short)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    with pytest.raises(TruncatedDownloadError):
        await client.download(f"{base}/out.mp4", tmp_path / "shot.mp4")
    assert leftovers(tmp_path) == []


async def test_cancelling_a_download_midway_leaves_nothing(start, server, session, tmp_path):
    """Cancelled while bytes are flowing: the temp file is removed, dest never appears."""
    halfway = asyncio.Event()
    never = asyncio.Event()

    async def stall(request: web.Request, _hit: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(BODY[: len(BODY) // 2])
        halfway.set()
        await never.wait()
        return response

    server.route("/out.mp4", stall)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    task = asyncio.create_task(client.download(f"{base}/out.mp4", tmp_path / "shot.mp4"))
    await halfway.wait()
    # Wait for the event: the client has started writing what it received.
    await until(lambda: leftovers(tmp_path))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == []


async def test_a_missing_output_is_not_found_and_not_retried(start, server, session, tmp_path):
    async def gone(_request: web.Request, _hit: int) -> web.StreamResponse:
        return web.json_response({"code": 404, "message": "output expired"}, status=404)

    server.route("/out.mp4", gone)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    with pytest.raises(NotFoundError, match="output expired"):
        await client.download(f"{base}/out.mp4", tmp_path / "shot.mp4")
    assert server.hits["/out.mp4"] == 1
    assert leftovers(tmp_path) == []


async def test_memory_does_not_grow_with_the_download(start, server, session, tmp_path):
    """A 48 MiB download peaks at a few MiB of Python allocations (chunks, not the file)."""
    chunk = HEAD + bytes(256 * 1024 - len(HEAD))
    count = 192

    async def big(request: web.Request, _hit: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(chunk) * count)})
        await response.prepare(request)
        for _ in range(count):
            await response.write(chunk)
        await response.write_eof()
        return response

    server.route("/big.mp4", big)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    tracemalloc.start()
    try:
        result = await client.download(f"{base}/big.mp4", tmp_path / "big.mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == len(chunk) * count
    assert peak < 8 * 1024 * 1024


async def test_the_key_is_not_forwarded_across_a_redirect(aiohttp_server, session, tmp_path):
    """The API's origin gets the key; the CDN it redirects to (another origin) does not."""
    cdn = Server()
    cdn.route("/real.mp4", full)
    cdn_server = await aiohttp_server(cdn.app)
    api = Server()

    async def redirect(_request: web.Request, _hit: int) -> web.StreamResponse:
        raise web.HTTPFound(str(cdn_server.make_url("/real.mp4")).replace("127.0.0.1", "localhost"))

    api.route("/out.mp4", redirect)
    api_server = await aiohttp_server(api.app)
    base = str(api_server.make_url("")).rstrip("/")
    client = WaveSpeedClient(session, base, KEY)
    await client.download(f"{base}/out.mp4", tmp_path / "shot.mp4")
    assert api.headers["/out.mp4"][0]["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in cdn.headers["/real.mp4"][0]
    assert (tmp_path / "shot.mp4").read_bytes() == BODY


async def test_a_submit_whose_connection_drops_after_sending_is_not_resent(start, server, session):
    """The server read the request, then the connection died: exactly one POST, ever."""

    async def drop(request: web.Request, _hit: int) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    server.route(f"/api/v3/{MODEL}", drop)
    base = await start()
    client = WaveSpeedClient(session, base, KEY)
    request = SubmitRequest(model=MODEL, prompt="p", image_url="https://x.test/a.png", duration=5)
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(request)
    assert server.hits[f"/api/v3/{MODEL}"] == 1


async def test_connection_refused_is_retried_then_reported(session):
    """Nobody listening: a connection error after the retries, naming the operation."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WaveSpeedClient(session, f"http://127.0.0.1:{port}", KEY)
    with pytest.raises(BackendConnectionError, match="GET /api/v3/predictions/abc/result"):
        await client.get_prediction("abc")
