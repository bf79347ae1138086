"""The user-level registry of task ids kling-pipe created or adopted, shared by every shot list.

WaveSpeed's history lists every task of the account and cannot say which request made one.
When a submit's answer is lost, the tasks found there are only candidates; a task that any
kling-pipe record on this machine already owns is never one of them. Each shot list keeps its
own store, so without a registry two storyboards rendered on one key could each take the
other's task. The registry is that one list: a task id is *claimed* once, atomically, by the
attempt that owns it; a second claim by another owner fails.

One SQLite file per user (``$KLING_PIPE_REGISTRY``, else ``$XDG_STATE_HOME/kling-pipe/``,
else ``~/.local/state/kling-pipe/``), WAL and ``synchronous=FULL`` like the store: a claim
that returned survives a kill.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from kling_pipe.exceptions import KlingPipeError

#: Environment variable naming the registry file (tests and shared machines set it).
REGISTRY_ENV: Final = "KLING_PIPE_REGISTRY"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    origin TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
"""


class RegistryError(KlingPipeError):
    """The registry cannot be opened or written: no submit may be settled without it."""


def default_registry_path() -> Path:
    """Return where this user's registry lives (see the module docstring)."""
    explicit = os.environ.get(REGISTRY_ENV)
    if explicit:
        return Path(explicit).expanduser()
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "kling-pipe" / "tasks.sqlite"


class Registry:
    """Task ids owned by kling-pipe on this machine; open with `Registry.open`."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path | None = None) -> Self:
        """Open (creating if need be) the registry at *path* (default: the user's)."""
        where = path or default_registry_path()
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(
                f"cannot open kling-pipe's task registry {where}: {exc}; "
                f"set {REGISTRY_ENV} to a writable file"
            ) from None
        return cls(db, where)

    @classmethod
    def in_memory(cls) -> Self:
        """Open a registry private to this process (tests, runs that keep no records)."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        return cls(db, None)

    def close(self) -> None:
        """Close the database; every claim is already on disk."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def claim(self, task_id: str, *, owner: str, origin: str) -> bool:
        """Make *owner* the owner of *task_id*; return False if someone else owns it already.

        *owner* names the shot list and shot (``/path/film.toml#shot``); claiming twice for
        the same owner is fine (a resume finding its own task again).
        """
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, owner, origin, claimed_at) "
                "VALUES (?, ?, ?, ?)",
                (task_id, owner, origin, datetime.now(UTC).isoformat(timespec="milliseconds")),
            )
            row = self._db.execute(
                "SELECT owner FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None
        return row is not None and row[0] == owner

    def claim_many(self, owned: list[tuple[str, str]], *, origin: str) -> None:
        """Claim (task id, owner) pairs a shot list's store already holds, in one transaction.

        Tasks recorded before this registry existed (or by a copy of the state folder) are
        entered here, so no other shot list's lost submit can take them.
        """
        if not owned:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR IGNORE INTO tasks (task_id, owner, origin, claimed_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(task, who, origin, now) for task, who in owned],
                )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None

    def rename_owner(self, old: str, new: str) -> int:
        """Give every claim of shot list *old* (``old#shot``) to *new*; return how many.

        A renamed storyboard keeps its tasks: its records move to the new name
        (`kling_pipe._records.identity`), and so do its claims here, in one statement.
        """
        prefix = f"{old}#"
        try:
            cursor = self._db.execute(
                "UPDATE tasks SET owner = ? || substr(owner, ?) WHERE substr(owner, 1, ?) = ?",
                (new, len(old) + 1, len(prefix), prefix),
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None
        return cursor.rowcount

    def owner(self, task_id: str) -> str | None:
        """Return who owns *task_id*, or None when no kling-pipe record here does."""
        row = self._db.execute("SELECT owner FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def owned(self, task_ids: list[str]) -> set[str]:
        """Return those of *task_ids* that some kling-pipe record on this machine owns."""
        found: set[str] = set()
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT task_id FROM tasks WHERE task_id IN ({marks})",  # noqa: S608 - marks only
                chunk,
            )
            found.update(r[0] for r in rows)
        return found
