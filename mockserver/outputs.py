"""Output videos on disk: rendered once per request hash, in a small thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from mockserver.media import render_key, render_spec
from mockserver.storage import write_atomically
from mockserver.video import render_mp4

if TYPE_CHECKING:
    from pathlib import Path

    from mockserver.config import MockConfig
    from mockserver.media import Upload
    from mockserver.storage import Storage
    from mockserver.tasks import Task


class Renderer:
    """Make each distinct output once, off the event loop; equal requests share the file."""

    def __init__(self, storage: Storage, config: MockConfig) -> None:
        self._storage = storage
        self._config = config
        # Two workers: enough to overlap downloads on a small machine without starving it.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mock-render")
        self._pending: dict[str, asyncio.Future[None]] = {}
        #: Seconds each render took, for the statistics and the benchmark.
        self.times: list[float] = []

    def prepare(self, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]) -> None:
        """Start rendering *task*'s video now, while it processes, without waiting for it.

        WaveSpeed's output is there when a task completes; rendering it only at the first
        download made every download of a new video wait for the mock's encoder, and that
        wait looked like the client's (a chained shot's next submit waits on its source's
        download). A render that fails here is tried again, and its error answered, by the
        download that asks for it (`path`).
        """
        with contextlib.suppress(RuntimeError):  # no running loop: rendered when downloaded
            self._start(task, uploads, hosts)

    async def path(self, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]) -> Path:
        """Return the file of *task*'s video, rendering it the first time it is asked for."""
        future = self._start(task, uploads, hosts)
        if future is not None:
            # Shielded: a client giving up on its download must not cancel the shared render.
            await asyncio.shield(future)
        return self._storage.output_path(render_key(task, self._config))

    def _start(
        self, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]
    ) -> asyncio.Future[None] | None:
        """Return the render of *task*'s video under way (started if need be); None if made."""
        key = render_key(task, self._config)
        path = self._storage.output_path(key)
        if path.exists():
            return None
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self._render, path, task, uploads, hosts)
            self._pending[key] = future
            future.add_done_callback(functools.partial(self._rendered, key))
        return future

    def _rendered(self, key: str, future: asyncio.Future[None]) -> None:
        self._pending.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved: a download that asks again gets it raised anew

    def _render(
        self, path: Path, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]
    ) -> None:
        started = time.perf_counter()
        spec = render_spec(task, uploads, self._storage, self._config, hosts)
        write_atomically(path, render_mp4(spec))
        self.times.append(time.perf_counter() - started)

    async def idle(self) -> None:
        """Wait until no render is under way (each one's error is left to its download)."""
        await asyncio.gather(*self._pending.values(), return_exceptions=True)

    async def close(self) -> None:
        """Wait for renders under way, then stop the threads."""
        await self.idle()
        self._executor.shutdown(wait=True, cancel_futures=True)
