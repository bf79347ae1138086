"""The contact sheet from the records: what each shot's latest attempt left behind.

After every run and on `kling-pipe report`, the sheet is built from the store beside the shot
list, so both show the same thing: the video of every shot rendered for its current inputs,
and for the rest why there is none (failed with WaveSpeed's reason, in flight, uncertain,
pending). Without records (a run with `keep_records=False`, or a folder of videos and no
state) it falls back to the run's result or to what is on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kling_pipe._backends.base import DEFAULT_BASE_URL
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.results import RunResult
from kling_pipe._files import sha256_file
from kling_pipe._outputs.contact_sheet import (
    SheetShot,
    SheetTake,
    SheetWritten,
    sheet_shots_from_disk,
    sheet_shots_from_result,
    write_sheet,
)
from kling_pipe._outputs.folders import record_written
from kling_pipe._records.assessment import is_simulated, read_lock_of, recorded_units
from kling_pipe._records.layout import OutputLayout, OutsideOutputError
from kling_pipe._records.lockfile import section_for
from kling_pipe._records.ownership import Ownership
from kling_pipe._records.store import Store
from kling_pipe._shotlist.fingerprint import kept_keys
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, split_unit_key

_SHOWN = {
    "downloaded": "done",
    "completed": "in flight",
    "submitted": "in flight",
    "intent": "in flight",
    "failed": "failed",
    "refused": "failed",
    "uncertain": "uncertain",
    "rejected": "failed",
    "expired": "expired",
}


def sheet_shots_from_store(
    shotlist: ShotList,
    store: Store,
    fingerprints: Mapping[str, str],
    origin: str,
    picks: Mapping[str, int] | None = None,
) -> list[SheetShot]:
    """Describe each shot by the latest attempt of each of its takes from *origin* (blocking).

    *fingerprints* are by unit key (a shot's id names its take 1); *picks* by shot id. A shot
    of one take looks as it always has; a shot of several shows them side by side.
    """
    shots = []
    for shot in shotlist.shots:
        pick = (picks or {}).get(shot.id, 1)
        keys = kept_keys(shot, pick)  # a pick kept past a lowered `takes` is shown, alone
        several = len(keys) > 1
        takes = [
            sheet_take(
                shotlist,
                store.latest(key, fingerprints.get(key), origin),
                number=number,
                picked=several and number == pick,
            )
            for key in keys
            for number in (split_unit_key(key)[1],)
        ]
        shots.append(
            SheetShot.of_takes(
                id=shot.id, prompt=shot.final_prompt, duration=shot.duration, takes=takes
            )
        )
    return shots


def sheet_take(
    shotlist: ShotList, attempt: Attempt | None, *, number: int = 1, picked: bool = False
) -> SheetTake:
    """Describe one take by its latest attempt (None: never tried), checking its video is there.

    A take whose attempt was downloaded but whose file is gone is "missing", with the way out.
    """
    if attempt is None:
        return SheetTake(number=number, status="pending", cost=ZERO_USD, picked=picked)
    status = _SHOWN[attempt.state]
    error = attempt.error
    video = _recorded_video(shotlist, attempt.file)
    if video is None and status == "done":
        status, error = "missing", "the recorded video is not on disk; run again"
    return SheetTake(
        number=number,
        status=status,
        cost=attempt.cost if attempt.charged else ZERO_USD,
        error=error,
        code=attempt.code,
        video=video,
        task_id=attempt.task_id,
        picked=picked,
    )


def _recorded_video(shotlist: ShotList, file: str | None) -> Path | None:
    """Return the video the records name, if it is on disk inside the output folder."""
    if file is None:
        return None
    try:
        video = OutputLayout.of(shotlist, DEFAULT_BASE_URL).inside(file)
    except OutsideOutputError:
        return None
    return video if video.is_file() else None


def write_report(  # noqa: PLR0913 - keyword-only: each is its own source of truth
    shotlist: ShotList,
    *,
    store: Store | None,
    origin: str,
    fingerprints: Mapping[str, str] | None = None,
    picks: Mapping[str, int] | None = None,
    result: RunResult | None = None,
) -> Path:
    """Write the contact sheet of *origin*'s renders from the best record there is (blocking).

    The mock's sheet is ``<output_dir>/mock/index.html`` and says its money is simulated.
    *fingerprints* (by unit key) and *picks* (by shot id) are the run's; without them they
    are worked out from the shot list and the picks its lock file records for *origin*.
    """
    layout = OutputLayout.of(shotlist, origin)
    if store is not None:
        if fingerprints is None:
            lock = read_lock_of(shotlist)
            units = recorded_units(shotlist, lock, section_for(origin), sha256_file)
            fingerprints, picks = units.fingerprints, units.picks
        shots = sheet_shots_from_store(shotlist, store, fingerprints, origin, picks)
        spent = store.spent(origin)
    elif result is not None:
        shots = sheet_shots_from_result(shotlist, result)
        spent = result.spent
    else:
        shots = sheet_shots_from_disk(shotlist, layout.folder)
        spent = sum((s.cost for s in shots), ZERO_USD)
    sheet = write_sheet(
        shotlist,
        shots,
        spent=spent,
        out_dir=layout.folder,
        simulated=is_simulated(origin),
        ownership=Ownership.of(store, shotlist.base_dir),
    )
    if store is not None:
        _record_sheet(store, shotlist, sheet, layout, origin)
    return sheet.page


def _record_sheet(
    store: Store, shotlist: ShotList, sheet: SheetWritten, layout: OutputLayout, origin: str
) -> None:
    """Record the page and its thumbnails as kling-pipe's, so `gc` may remove stale ones.

    The run's frame worker records the thumbnails it makes as it makes them; here only those
    the records lack, or that this page made anew, cost a transaction. A thumbnail already
    recorded and reused as it is needs no hashing: should its bytes differ from the record,
    `gc` leaves it alone, which is the safe way to be wrong.
    """
    record_written(store, shotlist, sheet.page, kind="report", origin=origin, shot_id=None)
    if not sheet.thumbs:
        return
    known = {f.path: f.sha256 for f in store.files()}
    folder = layout.relative(layout.thumbs)
    for shot_id, thumb in sheet.thumbs:
        relative = os.path.join(folder, thumb.path.name)  # noqa: PTH118 - the store's spelling
        recorded = known.get(relative)
        if recorded is not None and thumb.sha256 in (None, recorded):
            continue
        sha256 = thumb.sha256 or sha256_file(thumb.path)
        store.record_file(relative, kind="thumb", origin=origin, sha256=sha256, shot_id=shot_id)
        known[relative] = sha256
