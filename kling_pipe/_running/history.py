"""Reading WaveSpeed's history of one window, whole, or saying that it was not.

The history lists every task of the account, newest first, a page of at most 100 at a time.
On a busy account thousands of tasks of the model fall inside a lost submit's window; a read
that stopped early would miss the task and conclude "no task", which pays twice. So a read
of a window goes on until the history itself says the window is done (an empty page: a short
one is not proof, since a server may cap the page size below what was asked), and one that
cannot get there says it is incomplete, which the settle step (`kling_pipe._decisions.settle`)
never takes for "no task".
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

    Complete only when a page comes back empty: a short page may be a server's own cap on
    the page size (20 when 100 were asked), and ending there would miss the rest. The empty
    page costs one free request.

    Incomplete when the server lists a task dated outside the window it was asked for: its
    dates and the filter disagree (a clock, a zone, a server ignoring the filter), so what
    it lists cannot be placed and the window cannot be shown to hold no task of ours. Also
    incomplete: a page that adds no task not seen before (the server is not paging as
    asked, or the account creates tasks faster than we read), and a read that hits
    *max_pages*. Duplicates (a task pushed onto the next page by new ones) are dropped by id.
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
        if not items:
            return WindowRead(tasks=tuple(seen.values()), complete=True)
        new = [p for p in items if p.id not in seen]
        for prediction in new:
            seen[prediction.id] = prediction
        if any(not start <= p.created_at <= end for p in items) or not new:
            break
    return WindowRead(tasks=tuple(seen.values()), complete=False)
