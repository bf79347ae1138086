"""Output videos on disk: rendered once per request hash, in a small thread pool."""

from __future__ import annotations

import asyncio
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

    async def path(self, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]) -> Path:
        """Return the file of *task*'s video, rendering it the first time it is asked for."""
        key = render_key(task, self._config)
        path = self._storage.output_path(key)
        if path.exists():
            return path
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self._render, path, task, uploads, hosts)
            self._pending[key] = future
            future.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: a client giving up on its download must not cancel the shared render.
        await asyncio.shield(future)
        return path

    def _render(
        self, path: Path, task: Task, uploads: dict[str, Upload], hosts: frozenset[str]
    ) -> None:
        started = time.perf_counter()
        spec = render_spec(task, uploads, self._storage, self._config, hosts)
        write_atomically(path, render_mp4(spec))
        self.times.append(time.perf_counter() - started)

    async def close(self) -> None:
        """Wait for renders under way, then stop the threads."""
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
