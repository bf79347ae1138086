"""Every path under a storyboard's output folder, spelled once: pure path arithmetic.

A run, `pick`, `gc`, the contact sheet and the frame worker all write under one folder, and
each used to spell the names it needed itself (``<id>.mp4`` in five modules). `OutputLayout`
is now the only place that knows them; everything else asks it:

=============================================  =============================================
``<output_dir>/``                               the storyboard's output folder (`root`)
``<output_dir>/mock/``                          the bundled mock's renders (`folder` for it)
``<output_dir>/local/``                         a local server's renders (`folder` for it)
``<folder>/<id>.mp4``                           the shot's picked take (`picked`)
``<folder>/takes/<id>.take<k>.mp4``             any other take (`take`, `kept_take`)
``<folder>/rejected/<id>[.take<k>].<task>.mp4`` a video that failed the checks (`rejected`)
``<folder>/.<stem>.<task>.incoming.mp4``        a download on its way (`incoming`)
``<folder>/frames/<source>.<first|last>.png``   a chain's frame (`chain_frame`)
``<folder>/thumbs/<stem>.<first|last>.jpg``     the contact sheet's thumbnails (`thumbs_of`)
``<folder>/index.html``                         the contact sheet (`sheet`)
``<output_dir>/.kling-pipe-owner.json``         which shot list owns the folder (`owner_marker`)
=============================================  =============================================

Two borders are kept here, so no caller can forget them. A path read back from the records
(the store or the lock file, which a person may edit) is used only through `inside`, which
refuses anything that resolves outside the output folder (``..``, an absolute path elsewhere,
a symbolic link pointing out). And no file name carries a raw string from a server: a task id
becomes part of a name only through `task_id_part`, which admits the API's form alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal, Self

import attrs

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN, parse_task_id
from kling_pipe._backends.origins import origin_kind
from kling_pipe._shotlist.specs import ShotList, split_unit_key
from kling_pipe.exceptions import KlingPipeError, ProtocolError

#: Marks an output folder as written by one shot list (its absolute path inside).
OWNER_FILE: Final = ".kling-pipe-owner.json"
#: Stands for every local server (`origin_kind` "local") where only the kind matters.
LOCAL_ORIGIN: Final = "http://127.0.0.1"
#: The one form a task id may have in a file name: what WaveSpeed and the mock make (32 hex
#: digits) and no more; never ``/``, ``.`` or ``%``, which could name another path.

Which = Literal["first", "last"]


class OutsideOutputError(KlingPipeError):
    """A path (from the records, or made from a server's answer) would leave the output folder."""


@attrs.frozen(kw_only=True)
class OutputLayout:
    """The names under one origin's output folder (see the module's table)."""

    #: The storyboard's output folder, as the shot list resolves it.
    root: Path
    #: Where this origin's renders go: `root` for WaveSpeed's, ``root/mock`` for the bundled
    #: mock's, ``root/local`` for a local server's. Each kind has a folder of its own, so a
    #: render that cost nothing (or someone else's money) never overwrites a paid one.
    folder: Path
    #: The shot list's folder: the records name files relative to it.
    base_dir: Path

    @classmethod
    def of(cls, shotlist: ShotList, origin: str) -> Self:
        """Return the layout of *origin*'s renders of *shotlist*."""
        root = shotlist.output_path
        match origin_kind(origin):
            case "mock":
                folder = root / "mock"
            case "local":
                folder = root / "local"
            case _:
                folder = root
        return cls(root=root, folder=folder, base_dir=shotlist.base_dir)

    @classmethod
    def every(cls, shotlist: ShotList) -> tuple[Self, Self, Self]:
        """Return every layout a shot list may have: WaveSpeed's, a local server's, the mock's."""
        return (
            cls.of(shotlist, DEFAULT_BASE_URL),
            cls.of(shotlist, LOCAL_ORIGIN),
            cls.of(shotlist, MOCK_ORIGIN),
        )

    @classmethod
    def at(cls, folder: Path, base_dir: Path | None = None) -> Self:
        """Return the layout of a folder of videos on its own (a contact sheet of a folder)."""
        return cls(root=folder, folder=folder, base_dir=base_dir or folder)

    # The shot's videos.

    def picked(self, shot_id: str) -> Path:
        """Where the shot's picked take is: ``<id>.mp4``, what `cut` and chains use."""
        return self.folder / f"{shot_id}.mp4"

    def kept_take(self, shot_id: str, take: int) -> Path:
        """Where take *take* lives when it is not delivered to ``<id>.mp4``: under ``takes/``."""
        return self.folder / "takes" / f"{shot_id}.take{take}.mp4"

    def take(self, shot_id: str, take: int, pick: int) -> Path:
        """Where take *take* of a shot is delivered, given the shot's picked take *pick*.

        The picked take 1 goes to ``<id>.mp4`` itself, so a shot of one take is delivered
        exactly as before takes existed; every other take goes to ``takes/<id>.take<k>.mp4``,
        and the picked one is then copied to ``<id>.mp4`` (`kling_pipe._outputs.folders`).
        """
        if take == 1 and pick == 1:
            return self.picked(shot_id)
        return self.kept_take(shot_id, take)

    def rejected(self, unit_key: str, task_id: str) -> Path:
        """Where a take's video that failed the checks is kept for a look, named by its task.

        Raises `OutsideOutputError` for a task id not of the API's form (see `task_id_part`).
        """
        shot_id, take = split_unit_key(unit_key)
        stem = shot_id if take == 1 else f"{shot_id}.take{take}"
        return self.folder / "rejected" / f"{stem}.{task_id_part(task_id)}.mp4"

    def incoming(self, dest: Path, task_id: str) -> Path:
        """Where task *task_id*'s video is downloaded before it is checked: hidden, beside *dest*.

        Raises `OutsideOutputError` for a task id not of the API's form.
        """
        return dest.parent / f".{dest.stem}.{task_id_part(task_id)}.incoming.mp4"

    # Frames, thumbnails, the contact sheet, the owner marker.

    def chain_frame(self, shot_id: str, which: Which) -> Path:
        """Where a chain frame goes: ``frames/<id>.<first|last>.png`` beside the videos."""
        return self.folder / "frames" / f"{shot_id}.{which}.png"

    @property
    def thumbs(self) -> Path:
        """The folder of the contact sheet's thumbnails."""
        return self.folder / "thumbs"

    def thumbs_of(self, stem: str) -> tuple[Path, Path]:
        """Return where the first and the last frame's thumbnails named *stem* go."""
        return self.thumbs / f"{stem}.first.jpg", self.thumbs / f"{stem}.last.jpg"

    def thumb_stem(self, video: Path) -> str:
        """Name a video's thumbnails after its path under the folder: ``<id>`` for ``<id>.mp4``.

        A video in a subfolder (``takes/<id>.take2.mp4``) gives ``takes.<id>.take2``; shot ids
        hold no dots, so no two videos share a stem. A video outside the folder is named by
        its file name alone.
        """
        relative = Path(os.path.relpath(video.absolute(), self.folder.absolute()))
        if relative.parts and relative.parts[0] == os.pardir:
            return video.stem
        return ".".join(relative.with_suffix("").parts)

    @property
    def sheet(self) -> Path:
        """The contact sheet, ``index.html``, beside the videos it shows."""
        return self.folder / "index.html"

    @property
    def owner_marker(self) -> Path:
        """The file that says which shot list the whole output folder belongs to."""
        return self.root / OWNER_FILE

    # The border: paths from the records.

    def inside(self, path: str | Path) -> Path:
        """Return *path* (relative to the shot list's folder, or absolute) proved inside `root`.

        Resolved first, so ``..``, an absolute path elsewhere and a symbolic link pointing out
        are all refused with `OutsideOutputError`; the path returned is the one given (joined
        to the shot list's folder), not the resolved one.
        """
        joined = self.base_dir / path
        try:
            resolved = joined.resolve()
        except (OSError, RuntimeError) as exc:  # a loop of symbolic links
            raise OutsideOutputError(f"{joined}: cannot be followed ({exc})") from None
        if not resolved.is_relative_to(self.root.resolve()):
            raise OutsideOutputError(
                f"{path}: is outside the output folder {self.root}; kling-pipe leaves it alone"
            )
        return joined

    def relative(self, path: Path) -> str:
        """Write *path* as the records keep it: relative to the shot list's folder, resolved."""
        return os.path.relpath(path.resolve(), self.base_dir.resolve())


def task_id_part(task_id: str) -> str:
    """Return *task_id* for use in a file name, or raise `OutsideOutputError`.

    Only the API's form passes: a letter or digit, then at most 127 letters, digits, ``_``
    and ``-``. Anything else (a hostile ``x/../../home/Videos/wedding``) never becomes part of
    a path. The message does not quote the id: a hostile server may have echoed a secret.
    """
    try:
        return parse_task_id(task_id, "the task id")
    except ProtocolError:
        pass
    raise OutsideOutputError(
        "the server's task id is not of the form letters, digits, '_' and '-' (at most 128); "
        "it names no file here"
    )
