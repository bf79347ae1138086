"""A run's input frames: each uploaded once per content, each chain frame extracted once.

Shots share frames (a keyframe used twice, a chain from one source's last frame), and the
same frame serves twice within a shot: as the upload a task is made from, and as the picture
the proof compares a lost submit's candidates with. This unit hands out both, doing the work
once per run and remembering uploads in the store so that a later run reuses them while the
server keeps them.

A chain frame is not decoded here: the source's video was decoded once when it was
delivered, by the run's frame worker (`kling_pipe._outputs.frames`), which wrote the frame
and recorded it; this unit awaits that job (a job that makes chain frames is urgent: it never
waits behind thumbnails). Only a source rendered by an earlier run, or a video other than the
one delivered, gets a job of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

from kling_pipe import _files
from kling_pipe._backends.base import Backend
from kling_pipe._backends.wavespeed.urls import safe_url
from kling_pipe._outputs.frames import FrameWorker
from kling_pipe._records.store import Store
from kling_pipe._shotlist.specs import ChainImage, ImageRef, LocalImage, ShotList, UrlImage
from kling_pipe.exceptions import KlingPipeError

log = logging.getLogger("kling_pipe")


class InputError(KlingPipeError):
    """A shot's input frame cannot be had (its source has no video, or it cannot be read)."""


class ShotInputs:
    """Uploads and chain frames of one run; see the module docstring."""

    def __init__(  # noqa: PLR0913 - the run's context, keyword-only
        self,
        *,
        shotlist: ShotList,
        backend: Backend,
        store: Store,
        base_url: str,
        origin: str,
        output_dir: Path,
        now: Callable[[], datetime],
        video_of: Callable[[str], Path | None],
        frames: FrameWorker,
    ) -> None:
        self._shotlist = shotlist
        self._backend = backend
        self._store = store
        self._base_url = base_url
        self._origin = origin
        self._output_dir = output_dir
        self._now = now
        self._video_of = video_of
        self._frame_worker = frames
        self._uploads: dict[str, asyncio.Future[str]] = {}
        self._frames: dict[tuple[str, str], asyncio.Future[tuple[Path, str]]] = {}
        self._by_hash: dict[str, Path] | None = None

    async def url(self, image: ImageRef) -> str:
        """Return the URL a task can use for *image*, uploading it if need be."""
        match image:
            case UrlImage(url=url):
                return url
            case LocalImage():
                return await self._upload(self._shotlist.resolve(image))
            case ChainImage(shot=source, frame=frame):
                return await self._upload(await self.chain_frame(source, frame))

    async def proof_image(self, image: ImageRef) -> tuple[str, Path | None]:
        """Return an image's identity (sha256, or its URL) and its local file, if there is one."""
        match image:
            case UrlImage(url=url):
                return url, None
            case LocalImage():
                path = self._shotlist.resolve(image)
            case ChainImage(shot=source, frame=frame):
                path = await self.chain_frame(source, frame)
        digest, _ = await asyncio.to_thread(hash_and_size, path)
        return digest, path

    def relative(self, path: Path) -> str:
        """Write *path* as the store keeps a picture: relative to the shot list's folder."""
        return relative_to_shotlist(path, self._shotlist)

    async def local_image_with(self, sha256: str) -> Path | None:
        """Return a local image whose content is *sha256*, if one can be found.

        First among the shot list's images; else where an earlier intent's inputs had it
        (`Store.picture`: the user may have swapped it for another since), used only if the
        file there still has that content: a file from outside, checked here, once.
        """
        if self._by_hash is None:
            paths = {
                self._shotlist.resolve(image)
                for shot in self._shotlist.shots
                for image in shot.images
                if isinstance(image, LocalImage)
            }
            self._by_hash = await asyncio.to_thread(_hash_all, paths)
        found = self._by_hash.get(sha256)
        if found is not None:
            return found
        recorded = self._store.picture(sha256)
        if recorded is None:
            return None
        path = self._shotlist.base_dir / recorded
        try:
            content = await asyncio.to_thread(_files.sha256_file, path)
        except OSError:
            return None
        if content != sha256:
            log.info("%s no longer holds the picture an earlier submit was sent with", path)
            return None
        self._by_hash[sha256] = path
        return path

    async def chain_frame(self, source: str, frame: Literal["first", "last"]) -> Path:
        """Return a chain frame, made once per run (the upload and the proof both use it)."""
        video = self._video_of(source)
        if video is None:  # the engine starts a chained shot only after its source
            raise InputError(f"shot {source!r} has no video")
        key = (source, frame)
        pending = self._frames.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._frame_worker.chain_frame(source, video, frame))
            self._frames[key] = pending
        try:
            return (await asyncio.shield(pending))[0]
        except (OSError, KlingPipeError) as exc:
            raise InputError(
                f"the {frame} frame of shot {source!r} could not be extracted: {exc}"
            ) from None

    async def _upload(self, path: Path) -> str:
        """Upload a file once per content hash per run, however many shots use it."""
        digest, size = await asyncio.to_thread(hash_and_size, path)
        known = self._store.upload_url(digest, self._base_url, now=self._now())
        if known is not None:
            return known
        pending = self._uploads.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._uploads[digest] = future
        try:
            url = await self._backend.upload_image(path)
        except BaseException as exc:
            del self._uploads[digest]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved here; shots waiting on it get it too
            else:
                future.cancel()
            raise
        future.set_result(url)
        self._store.record_upload(digest, self._base_url, url, size)
        return url


def _hash_all(paths: set[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(paths):
        try:
            found.setdefault(_files.sha256_file(path), path)
        except OSError:
            continue
    return found


def hash_and_size(path: Path) -> tuple[str, int]:
    """Return a file's sha256 and size (blocking)."""
    return _files.sha256_file(path), path.stat().st_size


def relative_to_shotlist(path: Path, shotlist: ShotList) -> str:
    """Write *path* relative to the shot list's folder, as the store and lock file keep it."""
    return os.path.relpath(path.resolve(), shotlist.base_dir.resolve())


class UrlFrames:
    """A shot list's URL frames, fetched for the proof only when a proof needs one.

    WaveSpeed fetches a URL frame itself, so a run never needs its bytes, but for one thing:
    to prove which task in the history a lost submit made. Each URL is fetched at most once
    per run, by `kling_pipe._backends.fetch.fetch_image` (no credential, bounded size, time
    and redirects, no address a shot list should not reach unless it names it), into a
    private folder removed when the run ends. A URL that cannot be had leaves its shot
    unprovable: its lost answer ends uncertain as soon as nothing can change that.
    """

    def __init__(self, fetch: Callable[[str, Path], Awaitable[Path]], folder: Path) -> None:
        self._fetch = fetch
        self._folder = folder
        self._pending: dict[str, asyncio.Future[Path | None]] = {}

    async def get(self, url: str) -> Path | None:
        """Return the URL's picture as a local file, or None when it cannot be had."""
        pending = self._pending.get(url)
        if pending is None:
            dest = self._folder / f"{len(self._pending)}.img"
            pending = asyncio.ensure_future(self._fetch_or_none(url, dest))
            self._pending[url] = pending
        return await asyncio.shield(pending)

    async def _fetch_or_none(self, url: str, dest: Path) -> Path | None:
        try:
            return await self._fetch(url, dest)
        except (KlingPipeError, OSError) as exc:
            log.warning("the frame %s could not be fetched for the proof: %s", safe_url(url), exc)
            return None


@contextlib.asynccontextmanager
async def url_frames() -> AsyncIterator[UrlFrames]:
    """URL frames for the proof: fetched without the key, kept in a folder of the run's own.

    The HTTP session opens on the first fetch only: most runs never lose an answer.
    """
    import aiohttp  # noqa: PLC0415 - HTTP loads with the run, never for plan or validate

    from kling_pipe._backends.fetch import fetch_image  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        session: aiohttp.ClientSession | None = None

        async def fetch(url: str, dest: Path) -> Path:
            nonlocal session
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            return (await fetch_image(session, url, dest)).path

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="kling-pipe-frames-"))
        yield UrlFrames(fetch, Path(folder))
