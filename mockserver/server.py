"""`MockServer`: the mock on a free loopback port inside the caller's event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

from mockserver import admin
from mockserver.app import create_app
from mockserver.clock import ManualClock
from mockserver.config import MockConfig
from mockserver.wire import STATE

if TYPE_CHECKING:
    from types import TracebackType

    from mockserver.clock import Clock
    from mockserver.faults import FaultConfig
    from mockserver.state import MockState


class MockServer:
    """Run the mock in this event loop: ``async with MockServer(config) as mock: ...``.

    The controls (`complete`, `fail`, `set_faults`, `advance`, ...) act directly on the
    state, so they must be called from the loop's thread.
    """

    def __init__(self, config: MockConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or MockConfig()
        self.app = create_app(self.config, clock=clock)
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def start(self) -> None:
        """Bind the configured host and port (0: a free one) and start serving."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address: Any = runner.addresses[0]
        self._port = int(address[1])
        self.state.origin = self.base_url

    async def close(self) -> None:
        """Stop serving and clean up (a temp folder is removed, a state folder kept)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def state(self) -> MockState:
        """The live state (tasks, ledger, uploads), for tests that need to look inside."""
        return self.app[STATE]

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` to hand to a client as its base URL."""
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._port}"

    @property
    def api_key(self) -> str:
        """The API key the mock accepts."""
        return self.config.api_key

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the requests seen (newer than *since*), without any header values."""
        return admin.journal_view(self.state, since)

    def stats(self) -> dict[str, Any]:
        """Return counters, concurrency, faults and per-task times (see docs/mock.md)."""
        return admin.stats_view(self.state)

    def ledger(self) -> dict[str, Any]:
        """Return the balance and every charge and refund."""
        return admin.ledger_view(self.state)

    def complete(self, task_id: str) -> None:
        """Complete a task now, whatever the processing mode."""
        self.state.finish(task_id)

    def fail(self, task_id: str, code: int = 5000, error: str = "") -> None:
        """Fail a task now with a documented task-level *code* (and optional *error* text)."""
        self.state.finish(task_id, code=code, error=error)

    def expire(self, task_id: str) -> None:
        """Make a completed task's output expire: its URL answers 404, the task still answers."""
        self.state.expire_output(task_id)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault rules; their random streams restart from the seed."""
        self.state.faults.configure(faults)

    def tasks(self) -> list[dict[str, Any]]:
        """Return every task with its input and who created it (``GET /_mock/tasks``)."""
        return self.state.describe_tasks()

    def options(self) -> dict[str, Any]:
        """Return the run-time options (``history_lag_s``, ``clock_offset_s``)."""
        return self.state.options()

    def set_options(self, **changes: Any) -> dict[str, Any]:
        """Change run-time options, e.g. ``set_options(clock_offset_s=-120, quotes=False)``."""
        return self.state.set_options(**changes)

    def advance(self, seconds: float) -> None:
        """Move the manual clock forward and apply what happened meanwhile."""
        clock = self.state.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs a MockServer built with clock=ManualClock()")
        clock.advance(seconds)
        self.state.refresh()

    def reset(self) -> None:
        """Forget all tasks, uploads, outputs and counters; refill the balance."""
        self.state.reset()
