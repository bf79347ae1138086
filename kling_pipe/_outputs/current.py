"""Which shots have a current video: the one rule `cut` and `export` both follow.

A shot's video is ``<output_dir>/<id>.mp4``, the copy of its current version (its approved
one, else its picked take's). It is **current** when the lock file (the record a run leaves,
committed with the storyboard) says that take was downloaded, for the shot as it is now (the
picked take's fingerprint, or the approved version's), with the bytes the file still has.
Otherwise the file, if there is one, is:

* **stale**: the records know the shot, and this file is not its render as it is now. The
  shot was edited since and its new render failed or is not made yet (the old ``<id>.mp4`` is
  still there), or the file is not the one the lock file records (changed since). A film or a
  timeline made of it would silently show an earlier version: both refuse it by default, and
  with ``--partial`` / ``--allow-gaps`` leave it out by name, as they do a missing shot.
* **unrecorded**: there are no records at all (no lock file): a folder of videos kling-pipe
  did not make (a folder another shot list owns is refused outright, `check_owner`). `cut`
  joins such a file as it is (it is the user's to join); `export` needs a record for each
  clip's metadata and leaves it out.
* **missing**: no MP4 there at all, or, where there are records, none of this backend's for
  the shot: a file at its name is then the user's, never joined as this backend's render.

Blocking: reads the lock file and hashes each ``<id>.mp4`` that a record names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from kling_pipe import _files
from kling_pipe._outputs import media
from kling_pipe._outputs.folders import check_owner
from kling_pipe._records.assessment import (
    lock_entries,
    read_lock_of,
    recorded_image_hashes,
    recorded_units,
)
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import section_for
from kling_pipe._shotlist.specs import Shot, ShotList

VideoState = Literal["current", "stale", "unrecorded", "missing"]

#: What the reason says of a lock entry whose shot's new render is not downloaded.
_NEW_RENDER: Final = {
    "failed": "its new render failed",
    "refused": "its new render failed",
    "rejected": "its new render failed the checks",
    "uncertain": "its new render is uncertain",
    "submitted": "its new render is not finished",
    "completed": "its new render is not downloaded yet",
    "intent": "its new render is not finished",
}


@attrs.frozen(kw_only=True)
class ShotVideo:
    """One shot's ``<id>.mp4`` and whether it is the shot's current video (see the module)."""

    shot: Shot
    #: ``<output_dir>/<id>.mp4``: the picked take, what a cut joins and a clip references.
    path: Path
    state: VideoState
    #: Why it is not current ("" when it is), in a few words for a message.
    reason: str
    #: The lock entry's top level (it describes the picked take), when there is one.
    entry: Mapping[str, Any] | None
    #: The picked take.
    pick: int

    @property
    def current(self) -> bool:
        """Whether the file is the shot's render as it is now."""
        return self.state == "current"


def shot_videos(shotlist: ShotList, origin: str) -> list[ShotVideo]:
    """Say, per shot in storyboard order, whether *origin*'s ``<id>.mp4`` is current (blocking).

    Raises `KlingPipeError` when the lock file exists but cannot be read, and `FolderError`
    when the output folder is another shot list's (its owner marker's claim holds): its videos
    are that shot list's, never this one's, records or not.
    """
    check_owner(shotlist, doing="has no renders there")
    lock = read_lock_of(shotlist)
    section_name = section_for(origin)
    # Checked entries of origin's own renders (damaged ones and others' are no records).
    entries, _ = lock_entries(shotlist, origin)
    # A chained shot's fingerprint depends on the take picked of its source; a keyframe not
    # on this machine is the one its records name.
    units = recorded_units(shotlist, lock, section_name, recorded_image_hashes(shotlist))
    layout = OutputLayout.of(shotlist, origin)
    videos: list[ShotVideo] = []
    for shot in shotlist.shots:
        path = layout.picked(shot.id)
        raw = entries.get(shot.id)
        entry = raw if isinstance(raw, Mapping) else None
        state, reason = _judge(path, entry, units.fingerprints[units.picked_key(shot.id)])
        if state == "unrecorded" and lock is not None:
            state = "missing"  # records exist, and none of them is this backend's render
        videos.append(
            ShotVideo(
                shot=shot,
                path=path,
                state=state,
                reason=reason,
                entry=entry,
                pick=units.picks.get(shot.id, 1),
            )
        )
    return videos


def _judge(path: Path, entry: Mapping[str, Any] | None, fingerprint: str) -> tuple[VideoState, str]:
    """Decide what *path* is for a shot whose picked take's fingerprint is *fingerprint*."""
    try:
        there = path.is_file()
        present = there and media.is_mp4(path)
    except OSError:
        there = present = False
    status = None if entry is None else entry.get("status")
    if not present:
        if there and status == "downloaded":
            # Something of the user's (not even a video) where a recorded render was placed.
            return "stale", "not the file the lock file records"
        return "missing", "not rendered"
    if entry is None or status in (None, "pending"):
        return "unrecorded", "not in the lock file"
    if status != "downloaded" or not isinstance(entry.get("sha256"), str):
        new = _NEW_RENDER.get(str(status), f"its new render is {status}")
        return "stale", f"changed since it was rendered, and {new}"
    if entry.get("fingerprint") != fingerprint:
        return "stale", "changed since it was rendered"
    try:
        same = _files.sha256_file(path) == entry["sha256"]
    except OSError:
        same = False
    return ("current", "") if same else ("stale", "not the file the lock file records")
