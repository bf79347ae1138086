"""The media routes outside ``/api``: the upload PUT target and file downloads.

Like WaveSpeed's storage and CDN URLs they need no API key: the upload URL carries its own
token and download URLs are unguessable. Downloads honour the slow and truncated faults.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Final

from aiohttp import web

from mockserver import catalogue
from mockserver.faults import FaultKind
from mockserver.tasks import Status
from mockserver.wire import DRAWN, STATE, TASK_ID, ApiError

if TYPE_CHECKING:
    from pathlib import Path

    from mockserver.faults import Drawn

_CHUNK: Final = 16 * 1024


async def upload_put(request: web.Request) -> web.Response:
    """Receive an upload's bytes at the URL its ticket gave (no Authorization needed)."""
    state = request.app[STATE]
    upload = state.uploads.get(request.match_info["upload_id"])
    token = request.query.get("token", "")
    if upload is None or not hmac.compare_digest(token.encode(), upload.token.encode()):
        raise ApiError(403, "upload: invalid or expired upload URL")
    if upload.complete:
        raise ApiError(409, "upload: this upload URL was already used")
    data = await request.read()
    if len(data) > catalogue.MAX_IMAGE_BYTES:
        raise ApiError(413, "file: larger than 10 MB")
    if len(data) != upload.size:
        raise ApiError(400, f"size: the ticket announced {upload.size} bytes, got {len(data)}")
    await state.store_upload(upload, data)
    return web.Response(status=200)


async def upload_file(request: web.Request) -> web.StreamResponse:
    """Serve an uploaded file at its ``download_url``."""
    state = request.app[STATE]
    upload = state.uploads.get(request.match_info["upload_id"])
    if upload is None or not upload.complete:
        raise ApiError(404, "file not found")
    return await _serve(request, state.storage.upload_path(upload.id), upload.content_type)


async def output_file(request: web.Request) -> web.StreamResponse:
    """Serve a completed task's video, rendering it on first request."""
    state = request.app[STATE]
    state.refresh()
    task_id = request.match_info["name"].removesuffix(".mp4")
    request[TASK_ID] = task_id
    task = state.book.get(task_id)
    if task is None or task.status is not Status.COMPLETED or task.output_expired:
        raise ApiError(404, "file not found")
    return await _serve(request, await state.output_path(task), "video/mp4")


async def _serve(request: web.Request, path: Path, content_type: str) -> web.StreamResponse:
    drawn: Drawn | None = request.get(DRAWN)
    if drawn is None or drawn.download is None:
        return web.FileResponse(path, headers={"Content-Type": content_type})
    rule = drawn.download
    data = await asyncio.to_thread(path.read_bytes)
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = len(data)
    await response.prepare(request)
    if rule.kind is FaultKind.TRUNCATED_DOWNLOAD:
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        await response.write(chunk)
        await asyncio.sleep(len(chunk) / rule.bytes_per_s)
    await response.write_eof()
    return response


ROUTES: Final = [
    web.put("/media/put/{upload_id}", upload_put, name="upload_put"),
    web.get("/media/uploads/{upload_id}/{filename}", upload_file, name="upload_file"),
    web.get("/media/outputs/{name}", output_file, name="output_file"),
]
