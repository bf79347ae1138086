"""What the mock saw: a journal of requests and counters for statistics.

Entries hold the method, path, status, times, task id and faults; never a header's value,
so a journal can be printed or attached to a CI log without leaking a key.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Entry:
    """One request as the mock answered it; *status* is None when the connection was dropped."""

    seq: int
    method: str
    path: str
    status: int | None
    monotonic: float
    wall: float
    route: str | None
    task_id: str | None
    faults: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {**attrs.asdict(self), "faults": list(self.faults)}


@attrs.define
class Journal:
    """The most recent *limit* requests, and counters that count every request."""

    limit: int
    _entries: deque[Entry] = attrs.field(init=False)
    _seq: int = attrs.field(default=0, init=False)
    counts: Counter[str] = attrs.field(factory=Counter, init=False)

    def __attrs_post_init__(self) -> None:
        self._entries = deque(maxlen=self.limit)

    def record(  # noqa: PLR0913 - one field per column of the journal
        self,
        *,
        method: str,
        path: str,
        status: int | None,
        monotonic: float,
        wall: float,
        route: str | None,
        task_id: str | None,
        faults: list[str],
    ) -> int:
        """Append one request; return its sequence number."""
        self._seq += 1
        self._entries.append(
            Entry(
                seq=self._seq,
                method=method,
                path=path,
                status=status,
                monotonic=monotonic,
                wall=wall,
                route=route,
                task_id=task_id,
                faults=tuple(faults),
            )
        )
        return self._seq

    def entries(self, since: int = 0) -> list[Entry]:
        """Return the kept entries with a sequence number above *since*."""
        return [e for e in self._entries if e.seq > since]

    def clear(self) -> None:
        """Forget every entry and counter."""
        self._entries.clear()
        self._seq = 0
        self.counts.clear()
