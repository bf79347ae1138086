"""An in-process kill -9 for tests: after a kill, nothing more reaches the disk.

A test that emulates `kill -9` raises `Killed` (a BaseException, so no ``except Exception``
in kling-pipe swallows it) at some await point, lets the run unwind, and resumes with a new
`render()`. A real kill stops every write at once; the unwinding here must not write either:
`kills_stop_writes` makes the store's transactions, the registry's claims and the lock file
raise `Killed` once the process they belong to was killed.

Which "process" a write belongs to: by default every switch given to `kills_stop_writes`
(one process per test, as in `tests/test_submit_protocol.py`). Tests that run several
emulated processes in one event loop (two storyboards rendered at once, each killed on its
own) enter `running_as(switch)` inside each one's coroutine: asyncio tasks and
`asyncio.to_thread` copy the context, so every write of that render consults its own switch.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol

from kling_pipe._records.registry import Registry
from kling_pipe._records.store import Store
from kling_pipe._running import run as run_module


class Killed(BaseException):
    """The process died here (kill -9): nothing after this point happens."""


class Switch(Protocol):
    """Anything that says whether its process was killed (a `KillSwitch`, a fake account)."""

    @property
    def killed(self) -> bool:
        """Whether the process is dead."""
        ...


class KillSwitch:
    """One emulated process: `kill()` marks it dead and cancels the calls it has in flight."""

    def __init__(self) -> None:
        self.killed = False
        self._in_flight: set[object] = set()

    def track(self, task: object) -> None:
        """Remember a backend call in flight (an asyncio task), to cancel it on a kill."""
        self._in_flight.add(task)

    def untrack(self, task: object) -> None:
        self._in_flight.discard(task)

    def kill(self) -> None:
        """Die: no more writes, and the requests on the wire lose their client."""
        self.killed = True
        for task in list(self._in_flight):
            task.cancel()  # type: ignore[attr-defined]
        self._in_flight.clear()

    def revive(self) -> None:
        """A new process starts (the resume)."""
        self.killed = False
        self._in_flight.clear()


_CURRENT: contextvars.ContextVar[Switch | None] = contextvars.ContextVar(
    "killswitch_current", default=None
)
#: Switches of the `kills_stop_writes` blocks entered, outermost first.
_ACTIVE: list[Switch] = []
_SAVED: list[tuple[object, str, object]] = []
_DEPTH = [0]


@contextlib.contextmanager
def running_as(switch: Switch) -> Iterator[None]:
    """Writes made in this context (and tasks and threads started from it) are *switch*'s."""
    token = _CURRENT.set(switch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _dead() -> bool:
    current = _CURRENT.get()
    if current is not None:
        return current.killed
    return any(s.killed for s in _ACTIVE)


def _guard(real):  # type: ignore[no-untyped-def]
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        if _dead():
            raise Killed
        return real(*args, **kwargs)

    return guarded


@contextlib.contextmanager
def kills_stop_writes(*switches: Switch) -> Iterator[None]:
    """After a kill nothing more reaches the disk: not the store, the registry or the lock.

    Patches `Store._tx`, `Registry.claim`, `Registry.claim_many` and the lock writer `render`
    uses; blocks may nest (the patches are installed once and removed by the outermost).
    """
    if _DEPTH[0] == 0:
        targets = [
            (Store, "_tx"),
            (Registry, "claim"),
            (Registry, "claim_many"),
            (run_module, "write_lock_for"),
        ]
        for owner, name in targets:
            real = getattr(owner, name)
            _SAVED.append((owner, name, real))
            setattr(owner, name, _guard(real))
    _DEPTH[0] += 1
    _ACTIVE.extend(switches)
    try:
        yield
    finally:
        for switch in switches:
            _ACTIVE.remove(switch)
        _DEPTH[0] -= 1
        if _DEPTH[0] == 0:
            for owner, name, real in reversed(_SAVED):
                setattr(owner, name, real)
            _SAVED.clear()
