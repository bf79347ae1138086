"""The contact sheet from the records: what each shot's latest attempt left behind.

After every run and on `kling-pipe report`, the sheet is built from the store beside the shot
list, so both show the same thing: the video of every shot rendered for its current inputs,
and for the rest why there is none (failed with WaveSpeed's reason, in flight, uncertain,
pending). Without records (a run with `keep_records=False`, or a folder of videos and no
state) it falls back to the run's result or to what is on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kling_pipe._decisions.plan import ZERO_USD
from kling_pipe._outputs.contact_sheet import (
    SheetShot,
    sheet_shots_from_disk,
    sheet_shots_from_result,
    write_contact_sheet,
)
from kling_pipe._outputs.folders import record_written
from kling_pipe._outputs.media import sha256_file
from kling_pipe._records.assessment import is_simulated, output_folder
from kling_pipe._records.store import Store
from kling_pipe._running.results import RunResult
from kling_pipe._shotlist.fingerprint import fingerprints as compute_fingerprints
from kling_pipe._shotlist.specs import ShotList

_SHOWN = {
    "downloaded": "done",
    "completed": "in flight",
    "submitted": "in flight",
    "intent": "in flight",
    "failed": "failed",
    "refused": "failed",
    "uncertain": "uncertain",
    "rejected": "failed",
}


def sheet_shots_from_store(
    shotlist: ShotList, store: Store, fingerprints: Mapping[str, str], origin: str
) -> list[SheetShot]:
    """Describe each shot by its latest attempt from *origin* for its fingerprint (blocking)."""
    shots = []
    for shot in shotlist.shots:
        attempt = store.latest(shot.id, fingerprints[shot.id], origin)
        video = None
        status, cost, error, code = "pending", ZERO_USD, "", None
        if attempt is not None:
            status = _SHOWN[attempt.state]
            cost = attempt.cost if attempt.charged else ZERO_USD
            error, code = attempt.error, attempt.code
            if attempt.file is not None and (shotlist.base_dir / attempt.file).is_file():
                video = shotlist.base_dir / attempt.file
            elif status == "done":
                status, error = "missing", "the recorded video is not on disk; run again"
        shots.append(
            SheetShot(
                id=shot.id,
                prompt=shot.final_prompt,
                duration=shot.duration,
                cost=cost,
                status=status,
                error=error,
                video=video,
                code=code,
            )
        )
    return shots


def write_report(
    shotlist: ShotList,
    *,
    store: Store | None,
    origin: str,
    fingerprints: Mapping[str, str] | None = None,
    result: RunResult | None = None,
) -> Path:
    """Write the contact sheet of *origin*'s renders from the best record there is (blocking).

    The mock's sheet is ``<output_dir>/mock/index.html`` and says its money is simulated.
    """
    if store is not None:
        fps = fingerprints or compute_fingerprints(shotlist, sha256_file)
        shots = sheet_shots_from_store(shotlist, store, fps, origin)
        spent = store.spent(origin)
    elif result is not None:
        shots = sheet_shots_from_result(shotlist, result)
        spent = result.spent
    else:
        shots = sheet_shots_from_disk(shotlist, output_folder(shotlist, origin))
        spent = sum((s.cost for s in shots), ZERO_USD)
    out_dir = output_folder(shotlist, origin)
    page = write_contact_sheet(
        shotlist, shots, spent=spent, out_dir=out_dir, simulated=is_simulated(origin)
    )
    if store is not None:
        _record_sheet(store, shotlist, out_dir, page, origin)
    return page


def _record_sheet(store: Store, shotlist: ShotList, out_dir: Path, page: Path, origin: str) -> None:
    """Record the page and its thumbnails as kling-pipe's, so `gc` may remove stale ones."""
    record_written(store, shotlist, page, kind="report", origin=origin, shot_id=None)
    for shot in shotlist.shots:
        for which in ("first", "last"):
            thumb = out_dir / "thumbs" / f"{shot.id}.{which}.jpg"
            if thumb.is_file():
                record_written(store, shotlist, thumb, kind="thumb", origin=origin, shot_id=shot.id)
