"""Which records are a storyboard's: found once, whatever name reached the storyboard.

Git resolves a worktree to one repository whatever path reached it; kling-pipe resolves a
storyboard to one set of records the same way. A symlink is followed when the shot list is
loaded (`kling_pipe._shotlist.loader`), so every name of one file is one storyboard: one state
folder, one lock file, one run lock, one owner in the task registry, all beside the file the
links lead to.

A storyboard renamed in its folder (``git mv film.toml movie.toml``) is recognised by its
output folder's owner marker, which still names the old file: when that file is gone and its
records (state folder, lock file) are there, they are this storyboard's. `records_home` says
where they are now: read-only commands read them there, write nothing and say so
(`RecordsHome.notice`). `adopt_renamed_records` moves them to the new name under the run lock;
a run and a pick call it before they write anything (`kling_pipe._outputs.folders.preflight`).

When the old name still exists it is another storyboard, not a rename: its records stay its
own, and a run of the new one is refused because the output folder is the old one's (naming
both). When one kind of record is at both names (a state folder, or a lock file, each beside
the old and the new name) nobody can tell which is this storyboard's: every command refuses,
naming both, until one is moved away.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Final

import attrs

from kling_pipe import _files as durable
from kling_pipe._records.layout import OWNER_FILE
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.store import RunLock, StoreBusyError, state_dir_for
from kling_pipe._shotlist.specs import ShotList
from kling_pipe.exceptions import KlingPipeError

#: Marks an output folder as written by one shot list (its absolute path inside); written by
#: `kling_pipe._outputs.folders`, read here to recognise a renamed storyboard.
#: The store's database in a state folder: a folder without it holds no records.
_DATABASE: Final = "state.sqlite"
#: The longest path an owner marker may name (Linux's PATH_MAX): a longer one is no marker.
_LONGEST_PATH: Final = 4096


class RecordsConflictError(KlingPipeError):
    """A renamed storyboard's records are at its old name and its new one: which is unknown."""


@attrs.frozen(kw_only=True)
class RecordsHome:
    """Where a storyboard's records are now (`records_home`)."""

    #: The storyboard file the records belong to (a symlink already followed by the loader).
    storyboard: Path
    #: Its state folder: ``<storyboard>.kling-state``, or the old name's until moved.
    state_dir: Path
    #: Its lock file: ``<storyboard>.lock.json``, or the old name's until moved.
    lock_path: Path
    #: The storyboard's earlier name, when some of its records are still kept under it.
    renamed_from: Path | None = None

    @property
    def notice(self) -> str | None:
        """The line plan, status and run print when the records are a renamed storyboard's."""
        if self.renamed_from is None:
            return None
        return f"records of {self.renamed_from.name} (renamed to {self.storyboard.name}) found"


def records_home(shotlist: ShotList) -> RecordsHome:
    """Find where *shotlist*'s records are (blocking, reads only).

    Raises `RecordsConflictError` (one line naming both) when a renamed storyboard's state
    folder, or lock file, is at both its old and its new name.
    """
    storyboard = shotlist.source
    home = RecordsHome(
        storyboard=storyboard,
        state_dir=state_dir_for(storyboard),
        lock_path=lock_path_for(storyboard),
    )
    old = _renamed_from(shotlist)
    if old is None:
        return home
    old_state, old_lock = state_dir_for(old), lock_path_for(old)
    moved_state = (old_state / _DATABASE).is_file()
    moved_lock = old_lock.is_file()
    if not (moved_state or moved_lock):
        return home
    has_state = (home.state_dir / _DATABASE).is_file()
    has_lock = home.lock_path.is_file()
    for kind, both, before, now in (
        ("state folders", moved_state and has_state, old_state, home.state_dir),
        ("lock files", moved_lock and has_lock, old_lock, home.lock_path),
    ):
        if both:
            raise RecordsConflictError(
                f"{storyboard}: {kind} of {old.name} (gone; its output folder's owner marker "
                f"still names it) and of {storyboard.name} are both here: {before} and {now}; "
                "move away the ones that are not this storyboard's"
            )
    return RecordsHome(
        storyboard=storyboard,
        state_dir=old_state if moved_state else home.state_dir,
        lock_path=old_lock if moved_lock else home.lock_path,
        renamed_from=old,
    )


def marked_owner(folder: Path) -> Path | None:
    """Return the shot list an output folder's owner marker names, if it names one.

    The one border for the marker, which is a file from outside (copied, cloned, edited): it
    counts only when it is a JSON object whose ``shot_list`` is an absolute path without a NUL;
    anything else (unreadable, nested too deep, another shape) is no marker at all.
    """
    try:
        data = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    named = data.get("shot_list") if isinstance(data, dict) else None
    if (
        not isinstance(named, str)
        or len(named) > _LONGEST_PATH
        or "\0" in named
        or not Path(named).is_absolute()
    ):
        return None
    return Path(named)


def claimed_by(shotlist: ShotList) -> Path | None:
    """Return the other, existing shot list whose output folder *shotlist*'s is, if any.

    The owner marker's claim holds only when the shot list it names is there and still
    renders into this very folder: a project copied with ``cp -r`` (the original kept) has
    a marker naming the original, whose output folder is another one, so the copy's folder
    is its own. A named shot list that cannot be read is taken at its word.
    """
    folder = shotlist.output_path
    owner = marked_owner(folder)
    if owner is None or owner == shotlist.source.resolve() or not owner.exists():
        return None
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415 - only when another is named

    try:
        theirs = load(owner, check_image=None).output_path
    except (KlingPipeError, OSError, ValueError, RecursionError):
        return owner
    return owner if theirs.resolve() == folder.resolve() else None


def _renamed_from(shotlist: ShotList) -> Path | None:
    """Return the earlier name of *shotlist*, if its output folder's owner marker says one.

    Only a name that no longer exists, in the storyboard's own folder (where its records
    would be): an existing one is another storyboard.
    """
    old = marked_owner(shotlist.output_path)
    if old is None:
        return None
    me = shotlist.source.resolve()
    if old == me or old.exists() or old.parent != me.parent:
        return None
    return old


def adopt_renamed_records(shotlist: ShotList) -> RecordsHome:
    """Move a renamed storyboard's records to its new name, under its run lock (blocking).

    The state folder is renamed whole (SQLite's journal and the mock's saved state with it),
    the lock file renamed, and the task registry's claims of the old name given to the new
    one, so a settled submit is still known as this storyboard's. Called before anything is
    written for a run or a pick, while the owner marker still names the old file. Returns
    the records' home, now under the new name. Raises `StoreBusyError` while another command
    holds the records, `RecordsConflictError` as `records_home` does.
    """
    home = records_home(shotlist)
    if home.renamed_from is None:
        return home
    with RunLock(home.state_dir):
        # Under the lock: another command may have moved them meanwhile.
        home = records_home(shotlist)
        old = home.renamed_from
        if old is None:
            return home
        # Loaded only to move records: `plan` of a shot list with no records opens no database.
        from kling_pipe._records.registry import Registry  # noqa: PLC0415

        with Registry.open() as registry:
            new_state = state_dir_for(shotlist.source)
            if home.state_dir != new_state:
                _move_state(home.state_dir, new_state)
            new_lock = lock_path_for(shotlist.source)
            if home.lock_path != new_lock:
                home.lock_path.replace(new_lock)
                durable.fsync_folder(new_lock.parent)
            registry.rename_owner(str(old), str(shotlist.source.resolve()))
    return records_home(shotlist)


def _move_state(old: Path, new: Path) -> None:
    """Rename the state folder *old* to *new*, which may exist only empty or as a stale lock.

    A state folder with no records at the new name is left by a command that only checked
    it could write there, or took its run lock; its lock file is removed once it is free.
    """
    stale = new / "run.pid"
    with contextlib.ExitStack() as stack:
        if stale.is_file():
            fd = os.open(stale, os.O_RDWR)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusyError(
                    f"another kling-pipe command holds {new}; wait for it to finish", pid=None
                ) from None
            stale.unlink()
        try:
            old.rename(new)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise RecordsConflictError(
                f"{new}: holds files of its own, and the records of the renamed storyboard are "
                f"in {old}; move one of them away"
            ) from None
    durable.fsync_folder(new.parent)
