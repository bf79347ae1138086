"""Clocks: the real one, and a manual one that tests advance so that nothing really sleeps.

Task times are wall-clock seconds since the epoch, so that tasks persisted in a state folder
keep their deadlines across a restart of the process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import attrs

#: Where a `ManualClock` starts: 2026-01-01T00:00:00Z, so that timestamps in tests are stable.
MANUAL_EPOCH = 1_767_225_600.0


class Clock(Protocol):
    """What the mock needs from a clock."""

    def now(self) -> float:
        """Return wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic reading in seconds, comparable with the client's if in-process."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now()` has reached *deadline*."""
        ...


class SystemClock:
    """The real clock: `time.time()` and `asyncio.sleep`."""

    def now(self) -> float:
        """Return `time.time()`."""
        return time.time()

    def monotonic(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep for real until *deadline*."""
        delay = deadline - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


@attrs.define
class ManualClock:
    """A clock that only moves when told to, for tests of the task lifecycle.

    `advance` must be called from the event loop's thread (the threaded server marshals it).
    """

    _now: float = MANUAL_EPOCH
    _waiters: list[tuple[float, asyncio.Future[None]]] = attrs.field(factory=list, init=False)

    def now(self) -> float:
        """Return the current manual time."""
        return self._now

    def monotonic(self) -> float:
        """Return the manual time too: it never goes backwards."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* and wake whatever was waiting for it."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        still: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, future in self._waiters:
            if future.done():
                continue
            if deadline <= self._now:
                future.set_result(None)
            else:
                still.append((deadline, future))
        self._waiters = still

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `advance` has moved time to *deadline*."""
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((deadline, future))
        await future
