"""`ThreadedMockServer`: the mock on its own event loop in a thread, for any kind of test.

Synchronous code (the official SDK, `requests`) and async code on any loop can both talk to
it over HTTP; its controls hop onto the server's loop, so they are safe from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar

from mockserver.server import MockServer

if TYPE_CHECKING:
    from types import TracebackType

    from mockserver.clock import Clock
    from mockserver.config import MockConfig
    from mockserver.faults import FaultConfig

T = TypeVar("T")
_TIMEOUT_S = 30.0


class ThreadedMockServer:
    """Run a `MockServer` in a background thread: ``with ThreadedMockServer() as mock: ...``."""

    def __init__(self, config: MockConfig | None = None, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: MockServer | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="wavespeed-mock", daemon=True)

    def start(self) -> None:
        """Start the thread and wait until the server listens."""
        self._thread.start()
        self._ready.wait(_TIMEOUT_S)
        if self._error is not None:
            raise self._error
        if self._server is None:
            raise RuntimeError("the mock server did not start")

    def close(self) -> None:
        """Stop the server and wait for its thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_TIMEOUT_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = MockServer(self._config, clock=self._clock)
            await server.start()
        except Exception as exc:  # noqa: BLE001 - handed to the starting thread, raised there
            self._error = exc
            self._ready.set()
            return
        self._server = server
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.close()

    def call(self, function: Callable[[MockServer], T]) -> T:
        """Run ``function(server)`` on the server's loop and return its result."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            raise RuntimeError("the mock server is not running")

        async def run() -> T:
            return function(server)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(_TIMEOUT_S)

    @property
    def server(self) -> MockServer:
        """The `MockServer` inside (touch its state only through `call`)."""
        if self._server is None:
            raise RuntimeError("the mock server is not running")
        return self._server

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` to hand to a client as its base URL."""
        return self.server.base_url

    @property
    def api_key(self) -> str:
        """The API key the mock accepts."""
        return self.server.api_key

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the requests seen (newer than *since*)."""
        return self.call(lambda s: s.journal(since))

    def stats(self) -> dict[str, Any]:
        """Return counters, concurrency, faults and per-task times."""
        return self.call(MockServer.stats)

    def ledger(self) -> dict[str, Any]:
        """Return the balance and every charge and refund."""
        return self.call(MockServer.ledger)

    def complete(self, task_id: str) -> None:
        """Complete a task now."""
        self.call(lambda s: s.complete(task_id))

    def fail(self, task_id: str, code: int = 5000, error: str = "") -> None:
        """Fail a task now with a documented task-level *code*."""
        self.call(lambda s: s.fail(task_id, code, error))

    def expire(self, task_id: str) -> None:
        """Make a completed task's output expire: its URL answers 404."""
        self.call(lambda s: s.expire(task_id))

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault rules."""
        self.call(lambda s: s.set_faults(faults))

    def tasks(self) -> list[dict[str, Any]]:
        """Return every task with its input and who created it."""
        return self.call(MockServer.tasks)

    def options(self) -> dict[str, Any]:
        """Return the run-time options (``history_lag_s``, ``clock_offset_s``)."""
        return self.call(MockServer.options)

    def set_options(self, **changes: Any) -> dict[str, Any]:
        """Change run-time options, e.g. ``set_options(history_lag_s=30)``."""
        return self.call(lambda s: s.set_options(**changes))

    def advance(self, seconds: float) -> None:
        """Move a manual clock forward."""
        self.call(lambda s: s.advance(seconds))

    def reset(self) -> None:
        """Forget all tasks, uploads, outputs and counters."""
        self.call(MockServer.reset)
