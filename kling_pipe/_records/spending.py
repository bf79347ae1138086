"""What a storyboard has spent so far, across every run, read from its records.

The storyboard's ``budget`` caps the whole film, so what counts is every attempt that cost
money or may have (`Attempt.charged`), whatever run made it, whatever shot or version of a
shot it was for. Money is kept apart by whose it is (`origin_kind`): WaveSpeed's is real, the
bundled mock's is simulated and a local server's is its own, so each is counted against the
budget only by runs against that kind of backend, and never mixed with another's.

The store holds the whole history; a fresh checkout has only the lock file, whose takes
count too (they name what was paid for), once each: a task is counted once however many
records name it (a copy of a take records the same task at no cost).
"""

from __future__ import annotations

from decimal import Decimal

from kling_pipe._backends.origins import origin_kind
from kling_pipe._decisions.attempts import CHARGED_STATES
from kling_pipe._records.lockfile import SECTIONS, UNKNOWN_ORIGIN, Lock
from kling_pipe._records.store import Store
from kling_pipe._shotlist.rules import ZERO_USD


def spent_on_storyboard(store: Store | None, lock: Lock | None, origin: str) -> Decimal:
    """Return what the records say the storyboard spent at *origin*'s kind of backend.

    Every charged attempt of the store counts (an intent or an uncertain submit may have
    cost, and counts); a take of the lock file counts when its task is not in the store.
    Each task id is counted once, at the highest cost recorded for it.
    """
    kind = origin_kind(origin)
    by_task: dict[str, Decimal] = {}
    untasked = ZERO_USD
    for attempt in [] if store is None else store.attempts():
        if not attempt.charged or origin_kind(attempt.origin) != kind:
            continue
        if attempt.task_id is None:
            untasked += attempt.cost
        else:
            by_task[attempt.task_id] = max(attempt.cost, by_task.get(attempt.task_id, ZERO_USD))
    in_store = set(by_task)
    takes = (
        []
        if lock is None
        else [t for s in SECTIONS for e in lock.entries(s).values() for t in e.takes]
    )
    for take in takes:
        if (
            take.task_id is None
            or take.task_id in in_store
            or take.origin == UNKNOWN_ORIGIN
            or origin_kind(take.origin) != kind
            or (take.status or "submitted") not in CHARGED_STATES
        ):
            continue
        by_task[take.task_id] = max(take.cost, by_task.get(take.task_id, ZERO_USD))
    return sum(by_task.values(), untasked)
