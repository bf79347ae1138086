"""What the review page shows, read from the records alone: every shot, its takes and versions.

The same records `status` reads (the store, read-only, and the lock file): each take's latest
attempt for its current inputs (pending, in flight, done, failed), the pick and the approval
in force, and every version with what changed from the one before. Source images are never
needed: a missing keyframe's hash comes from the records (`image_hashes`), as for `status`.

`RecordsClock` is how the page follows a run without being told: the store, its journal and
the lock file change whenever a run records anything, so a change of their sizes and
modification times (a few `stat` calls) says when to read the board again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import attrs

from kling_pipe._outputs.contact_sheet import SheetShot, SheetTake, SheetVersion
from kling_pipe._outputs.report import sheet_shots_from_store
from kling_pipe._outputs.rerender import marked_shots
from kling_pipe._records.assessment import (
    assess_shotlist,
    existing_store,
    image_hashes,
    is_simulated,
    read_lock_of,
)
from kling_pipe._records.identity import records_home
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.versions import VersionView, shot_versions
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList


@attrs.frozen(kw_only=True)
class Board:
    """Every shot of a storyboard as the records say now, for one origin's renders."""

    shots: tuple[SheetShot, ...]
    spent: Decimal
    simulated: bool
    #: The origin's output folder: the only folder the page serves files from.
    folder: Path


def read_board(shotlist: ShotList, origin: str) -> Board:
    """Read the board from the records (blocking; writes nothing, sends nothing)."""
    layout = OutputLayout.of(shotlist, origin)
    marked = marked_shots(shotlist, origin)
    lock = read_lock_of(shotlist)
    with existing_store(shotlist) as store:
        images = image_hashes(shotlist, store, lock)
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=images)
        versions = shot_versions(shotlist, store, assessment)
        if store is None:
            shots = [_never_rendered(shotlist, shot.id) for shot in shotlist.shots]
            spent = ZERO_USD
        else:
            shots = sheet_shots_from_store(
                shotlist, store, assessment.fingerprints, origin, assessment.picks
            )
            spent = store.spent(origin)
    return Board(
        shots=tuple(
            attrs.evolve(
                shot,
                approved=shot.id in assessment.held,
                marked=shot.id in marked,
                versions=_versions(versions.get(shot.id, ())),
            )
            for shot in shots
        ),
        spent=spent,
        simulated=is_simulated(origin),
        folder=layout.folder,
    )


def _never_rendered(shotlist: ShotList, shot_id: str) -> SheetShot:
    shot = shotlist.shot(shot_id)
    takes = [
        SheetTake(number=k, status="pending", cost=ZERO_USD, picked=k == 1)
        for k in range(1, shot.takes + 1)
    ]
    return SheetShot.of_takes(
        id=shot.id, prompt=shot.final_prompt, duration=shot.duration, takes=takes
    )


def _versions(views: Sequence[VersionView]) -> tuple[SheetVersion, ...]:
    return tuple(
        SheetVersion(
            number=v.number,
            take=v.take,
            cost=v.cost,
            change=v.change,
            task_id=v.task_id,
            video=v.file if v.present else None,
            marks=v.marks,
        )
        for v in views
    )


class RecordsClock:
    """Tells when the records of a shot list may have changed: their sizes and times, stat'ed.

    The store, its write-ahead journal, the lock file and the output folder's listing of
    versions change whenever a run (or `pick`, `approve`) records anything.
    """

    def __init__(self, shotlist: ShotList, origin: str) -> None:
        state = records_home(shotlist).state_dir
        layout = OutputLayout.of(shotlist, origin)
        self._paths = (
            state / "state.sqlite",
            state / "state.sqlite-wal",
            state / "rerender.json",
            lock_path_for(shotlist.source),
            layout.folder,
            layout.versions,
            layout.thumbs,
        )
        self._seen: tuple[tuple[int, int], ...] | None = None

    def changed(self) -> bool:
        """Whether anything changed since the last call (the first call says yes)."""
        now = tuple(_stamp(p) for p in self._paths)
        if now == self._seen:
            return False
        self._seen = now
        return True


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)  # noqa: PTH116 - one call for size and time
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)
