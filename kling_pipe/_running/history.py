"""Reading WaveSpeed's history of one window, whole, or saying that it was not.

The history lists every task of the account, newest first, a page of at most 100 at a time.
On a busy account thousands of tasks of the model fall inside a lost submit's window; a read
that stopped early would miss the task and conclude "no task", which pays twice. So a read
of a window goes on until the history itself says the window is done (a short page, or a task
older than the window's start), and one that cannot get there says it is incomplete, which
the settle step (`kling_pipe._decisions.settle`) never takes for "no task".
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import attrs

from kling_pipe._backends.base import MAX_PAGE_SIZE, Backend, Prediction

#: Pages read at most for one window: 100,000 tasks. Past that the read is incomplete.
MAX_PAGES: Final = 1000


@attrs.frozen(kw_only=True)
class WindowRead:
    """The tasks of a window, and whether every one of them was seen."""

    tasks: tuple[Prediction, ...]
    complete: bool


async def read_window(
    backend: Backend, *, model: str, start: datetime, end: datetime, max_pages: int = MAX_PAGES
) -> WindowRead:
    """Read every page of the model's tasks created in ``[start, end]`` (server clock).

    Complete when a page comes back short, or holds a task created before *start* (the
    history is newest first, so nothing further can be in the window). A full page that adds
    no task not seen before means the server is not paging as asked (or the account is
    creating tasks faster than we read): incomplete. So is a read that hits *max_pages*.
    Duplicates (a task pushed onto the next page by new ones) are dropped by id.
    """
    seen: dict[str, Prediction] = {}
    for page in range(1, max_pages + 1):
        items = await backend.list_predictions(
            model=model,
            created_after=start,
            created_before=end,
            page=page,
            page_size=MAX_PAGE_SIZE,
        )
        new = [p for p in items if p.id not in seen]
        for prediction in new:
            seen[prediction.id] = prediction
        if len(items) < MAX_PAGE_SIZE or any(p.created_at < start for p in items):
            return WindowRead(tasks=tuple(seen.values()), complete=True)
        if not new:
            break
    return WindowRead(tasks=tuple(seen.values()), complete=False)
