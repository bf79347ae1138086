"""Bringing a finished task's video home: fetched, checked, and only then put in place.

A video lands in ``versions/`` under a hidden name first. One that is not a readable MP4 of
the shot's duration is moved to ``rejected/`` for a look (it was paid for, so its record
stays charged) and never replaces an earlier good render; one that passes becomes the shot's
next version, ``versions/<id>.v<N>.mp4``, a name no file ever had (`VersionSlots`), and the
picked take's is then copied to ``<id>.mp4``. A video fetched again from its task (its
version's file went missing) goes back to its own version's name. Every file written here is
recorded as kling-pipe's, with its sha256, so `gc` may later remove it and nothing else.

Every name comes from the run's `OutputLayout`, and the task id (a string from the server)
enters a name only through it: an id that is not of the API's form fails the take before
anything is downloaded, so no answer can make a download land outside the output folder.

Nothing lands on a file of the user's: before a video is renamed into place (a render, a
refetch of a render the user graded in place, the picked take copied to ``<id>.mp4``), the
run's `Ownership` sets any file kling-pipe did not write aside as ``<name>.yours-<n><ext>``
and says so. The paid video always lands; the user's file is always kept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from kling_pipe import _files
from kling_pipe._backends.base import Backend, Download
from kling_pipe._outputs import media
from kling_pipe._outputs.frames import FrameWorker
from kling_pipe._records.layout import OutputLayout, OutsideOutputError
from kling_pipe._records.ownership import Ownership
from kling_pipe._records.store import Store
from kling_pipe._records.versions import VersionSlots
from kling_pipe._shotlist.specs import ShotList, split_unit_key
from kling_pipe.exceptions import ApiError, BackendError, KlingPipeError

#: A rendered video may differ from the asked duration by this much.
DURATION_TOLERANCE_S: Final = 0.5
#: HTTP statuses of an output URL that no longer serves its video (an expired signed URL).
_GONE: Final = frozenset({403, 404, 410})


class DeliveryError(KlingPipeError):
    """The task completed but its video is not usable; it was paid for all the same."""

    def __init__(self, message: str, *, rejected: bool = False, gone: bool = False) -> None:
        #: True when the video arrived but failed the checks (kept aside, never cached).
        self.rejected = rejected
        #: True when the server says the output is not there (404, 403, 410): expired, if
        #: the task is old enough (`kling_pipe._decisions.expiry`).
        self.gone = gone
        super().__init__(message)


class Delivery:
    """Where a run's videos go, and the checks they pass first."""

    def __init__(
        self,
        *,
        backend: Backend,
        store: Store,
        shotlist: ShotList,
        origin: str,
        thumbnails: bool = True,
    ) -> None:
        self._backend = backend
        self._store = store
        self._origin = origin
        #: Where the run's files go: *origin*'s output folder.
        self.layout = OutputLayout.of(shotlist, origin)
        #: What kling-pipe wrote, so what it may replace: read once, kept current as it writes.
        self.ownership = Ownership.of(store, shotlist.base_dir)
        #: The next version number of each shot in this folder.
        self.slots = VersionSlots.of(store, self.layout)
        #: Each video's thumbnails and chain frames, made off the loop once it is in place.
        self.frames = FrameWorker(
            shotlist=shotlist,
            store=store,
            layout=self.layout,
            origin=origin,
            thumbnails=thumbnails,
            ownership=self.ownership,
        )

    async def fetch(  # noqa: PLR0913 - keyword-only: which video, and where it goes
        self,
        *,
        shot_id: str,
        duration: int,
        task_id: str,
        url: str,
        dest: Path | None = None,
        source: bool = False,
    ) -> Download:
        """Download, check and place the video of *task_id*; return it as placed.

        *shot_id* is the take's unit key. The video becomes the shot's next version, unless
        *dest* names the version it already is (fetched again from its task). *source* says
        it is the video the shot's chains use (its picked take's): their frames are made at
        once. A task id not of the API's form is a `DeliveryError` before anything is
        downloaded.
        """
        own = split_unit_key(shot_id)[0]
        try:
            incoming = self.layout.incoming(shot_id, task_id)
            aside = self.layout.rejected(shot_id, task_id)
        except OutsideOutputError as exc:
            raise DeliveryError(
                f"{shot_id}: its task completed, but {exc}; nothing was downloaded"
            ) from None
        incoming.parent.mkdir(parents=True, exist_ok=True)
        try:
            download = await self._backend.download(url, incoming)
        except (BackendError, OSError, KlingPipeError, ValueError) as exc:
            raise DeliveryError(
                f"task {task_id} completed but its video could not be downloaded: {exc}",
                gone=isinstance(exc, ApiError) and exc.status in _GONE,
            ) from None
        problem, seconds = await self._problem(download.path, duration)
        if problem:
            await asyncio.to_thread(self._land, incoming, aside)
            sha256 = await asyncio.to_thread(_files.sha256_file, aside)
            self._record(aside, "rejected", sha256, shot_id)
            raise DeliveryError(
                f"task {task_id} completed but {problem}; kept aside at {aside} for a look, "
                f"not used. Run with --rerender {shot_id} to pay for a new one",
                rejected=True,
            )
        if dest is None:
            dest = await asyncio.to_thread(self.slots.land, incoming, own)
        else:
            await asyncio.to_thread(self._land, incoming, dest)
        self._record(dest, "output", download.sha256, shot_id)
        self.frames.start(
            own if source else shot_id,
            dest,
            sha256=download.sha256,
            duration_s=seconds,
            source=source,
        )
        return Download(path=dest, size=download.size, sha256=download.sha256)

    async def place_pick(self, shot_id: str, video: Download) -> bool:
        """Copy the picked take just delivered to ``<id>.mp4``; False if it was delivered there.

        A file of the user's at ``<id>.mp4`` is set aside first. Raises OSError when the copy
        cannot be made (a full disk): the take itself is in place and recorded already.
        """
        dest = self.layout.picked(shot_id)
        if video.path == dest:
            return False
        await asyncio.to_thread(self._place, video.path, dest)
        self._record(dest, "output", video.sha256, shot_id)
        return True

    async def copy_version(self, unit: str, source: Path) -> Path:
        """Copy another take's video to the shot's next version (of unit key *unit*'s shot)."""
        own = split_unit_key(unit)[0]
        return await asyncio.to_thread(self.slots.land, source, own, copy=True)

    def _land(self, video: Path, dest: Path) -> None:
        """Rename *video* to *dest*, a file of the user's there set aside first (blocking)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.ownership.make_way(dest)
        video.replace(dest)

    def _place(self, source: Path, dest: Path) -> None:
        self.ownership.make_way(dest)
        _files.place(source, dest)

    async def _problem(self, video: Path, duration: int) -> tuple[str, float | None]:
        """Say what is wrong with *video* for a shot of *duration* seconds ("" if nothing).

        Also returns the duration read, for the frames job. Only the container's header is
        read: the download already checked the file starts like an MP4 (`Download`).
        """
        try:
            seconds = await asyncio.to_thread(media.probe_duration_s, video, checked=True)
        except (OSError, KlingPipeError) as exc:
            return f"its video cannot be read ({exc})", None
        if abs(seconds - duration) > DURATION_TOLERANCE_S:
            return f"its video lasts {seconds:.2f} s; the shot asked for {duration} s", seconds
        return "", seconds

    def _record(self, path: Path, kind: str, sha256: str, shot_id: str) -> None:
        self.ownership.record(
            self._store, path, kind=kind, origin=self._origin, sha256=sha256, shot_id=shot_id
        )
