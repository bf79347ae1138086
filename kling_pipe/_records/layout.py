"""Every path under a storyboard's output folder, spelled once: pure path arithmetic.

A run, `pick`, `restore`, `gc`, the contact sheet and the frame worker all write under one
folder, and each used to spell the names it needed itself (``<id>.mp4`` in five modules).
`OutputLayout` is now the only place that knows them; everything else asks it:

=============================================  =============================================
``<output_dir>/``                               the storyboard's output folder (`root`)
``<output_dir>/mock/``                          the bundled mock's renders (`folder` for it)
``<output_dir>/local/``                         a local server's renders (`folder` for it)
``<folder>/<id>.mp4``                           a copy of the shot's current version (`picked`)
``<folder>/versions/<id>.v<N>.mp4``             every render the shot ever had (`version`)
``<folder>/rejected/<id>[.take<k>].<task>.mp4`` a video that failed the checks (`rejected`)
``<folder>/versions/.<stem>.<task>.incoming.mp4`` a download on its way (`incoming`)
``<folder>/frames/<source>.<first|last>.png``   a chain's frame (`chain_frame`)
``<folder>/thumbs/<stem>.<first|last>.jpg``     the contact sheet's thumbnails (`thumbs_of`)
``<folder>/index.html``                         the contact sheet (`sheet`)
``<output_dir>/.kling-pipe-owner.json``         which shot list owns the folder (`owner_marker`)
=============================================  =============================================

**Versions.** A film lives for weeks: rendered, looked at, edited, partly rendered again,
approved shot by shot. Every render a shot ever had is paid work, so each one lands once, under
a name of its own that nothing ever writes again: ``versions/<id>.v<N>.mp4``, N counting the
shot's renders 1, 2, ... in the order they were delivered, whichever take they were of and
whatever the shot's inputs were then (a take is only which render unit, ``id`` or ``id#k``,
a version was made for; the records say which). A file under ``versions/`` is never
overwritten (`kling_pipe._records.versions` lands each with a link that fails rather than
replace anything), and only ``gc --versions`` / ``gc --keep-last N`` remove one, by the user's
word.

``<id>.mp4`` is then only a **copy** of the shot's current version (the approved one, else the
picked take's render for the shot as it is now), placed through the ownership check like any
write. The name everyone uses (`cut`, `export`, an editor, a chain's frame) stays where it
always was; the paid bytes live apart, so a graded file saved over ``<id>.mp4``, a new render
or going back to an older version never destroys a render. Why not keep renders at
``<id>.mp4`` and only the older ones aside (as takes once did)? Because then every new render
must first move the old one, and a kill between the two loses one or the other's record;
landing every render at a fresh name makes "never lose paid work" hold by construction.
Folders written before versions (``takes/<id>.take<k>.mp4`` and renders at ``<id>.mp4``) are
moved into ``versions/`` by the first run or pick (`kling_pipe._outputs.migrate`).

Two borders are kept here, so no caller can forget them. A path read back from the records
(the store or the lock file, which a person may edit) is used only through `inside`, which
refuses anything that resolves outside the output folder (``..``, an absolute path elsewhere,
a symbolic link pointing out). And no file name carries a raw string from a server: a task id
becomes part of a name only through `task_id_part`, which admits the API's form alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final, Literal, Self

import attrs

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN, parse_task_id
from kling_pipe._backends.origins import origin_kind
from kling_pipe._shotlist.specs import ShotList, split_unit_key
from kling_pipe.exceptions import KlingPipeError, ProtocolError

#: Marks an output folder as written by one shot list (its absolute path inside).
OWNER_FILE: Final = ".kling-pipe-owner.json"
#: Where every render lands, under a name of its own (see the module).
VERSIONS_FOLDER: Final = "versions"
#: A version's file name: a shot id (never a dot in it), ``.v``, the number (no leading 0).
_VERSION_NAME: Final = re.compile(r"(?P<shot>[a-z0-9_-]{1,64})\.v(?P<n>[1-9][0-9]*)\.mp4")
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
        """Where the copy of the shot's current version is: ``<id>.mp4``, what `cut` uses."""
        return self.folder / f"{shot_id}.mp4"

    @property
    def versions(self) -> Path:
        """The folder of every render: ``versions/`` beside ``<id>.mp4``."""
        return self.folder / VERSIONS_FOLDER

    def version(self, shot_id: str, number: int) -> Path:
        """Where version *number* (1-based) of a shot lives: ``versions/<id>.v<N>.mp4``."""
        if number < 1:
            raise ValueError(f"version numbers start at 1, not {number}")
        return self.versions / f"{shot_id}.v{number}.mp4"

    def version_of(self, path: str | Path) -> tuple[str, int] | None:
        """Return the (shot id, N) *path* names when it is a version of this folder, else None.

        *path* as the records keep it (relative to the shot list's folder) or absolute; it is
        only compared, never followed.
        """
        given = Path(path)
        full = given if given.is_absolute() else self.base_dir / given
        if os.path.normpath(full.parent) != os.path.normpath(self.versions):
            return None
        return parse_version_name(full.name)

    def rejected(self, unit_key: str, task_id: str) -> Path:
        """Where a take's video that failed the checks is kept for a look, named by its task.

        Raises `OutsideOutputError` for a task id not of the API's form (see `task_id_part`).
        """
        return self.folder / "rejected" / f"{_stem(unit_key)}.{task_id_part(task_id)}.mp4"

    def incoming(self, unit_key: str, task_id: str) -> Path:
        """Where task *task_id*'s video is downloaded before it is checked: in ``versions/``.

        Raises `OutsideOutputError` for a task id not of the API's form.
        """
        return self.versions / f".{_stem(unit_key)}.{task_id_part(task_id)}.incoming.mp4"

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

        A video in a subfolder (``versions/<id>.v2.mp4``) gives ``versions.<id>.v2``; shot ids
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


def _stem(unit_key: str) -> str:
    """Name a render unit in a file name: ``<id>`` for take 1, ``<id>.take<k>`` for take k."""
    shot_id, take = split_unit_key(unit_key)
    return shot_id if take == 1 else f"{shot_id}.take{take}"


def parse_version_name(name: str) -> tuple[str, int] | None:
    """Return the (shot id, N) of a version's file name ``<id>.v<N>.mp4``, else None."""
    match = _VERSION_NAME.fullmatch(name)
    if match is None:
        return None
    return match["shot"], int(match["n"])


def task_id_part(task_id: str) -> str:
    """Return *task_id* for use in a file name, or raise `OutsideOutputError`.

    Only the API's form passes: a letter or digit, then at most 127 letters, digits, ``_``
    and ``-``. Anything else (a hostile ``x/../../home/Videos/wedding``) never becomes part of
    a path. The message does not quote the id: a hostile server may have echoed a secret.
    """
    try:
        return parse_task_id(task_id, "the task id")
    except ProtocolError:
        raise OutsideOutputError(
            "the server's task id is not of the form letters, digits, '_' and '-' (at most "
            "128); it names no file here"
        ) from None
