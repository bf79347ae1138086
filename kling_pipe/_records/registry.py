"""The user-level registry of task ids kling-pipe created or adopted, shared by every shot list.

WaveSpeed's history lists every task of the account and cannot say which request made one.
When a submit's answer is lost, the tasks found there are only candidates; a task that any
kling-pipe record on this machine already owns is never one of them. Each shot list keeps its
own store, so without a registry two storyboards rendered on one key could each take the
other's task. The registry is that one list: a task id is *claimed* once, atomically, by the
attempt that owns it; a second claim by another owner fails.

Two runs on one machine can also race the other way: a submit of storyboard B is on the wire
(its answer late) while storyboard A, whose own answer was lost, finds B's new task in the
history, and B's task shows A's first frame when both start from the same picture. So every
submit is entered *on the wire* here before it is sent (`open_wire`), and left when its fate
is known (`close_wire`); A never takes a task while a like submit of another run is on the
wire in its window. And a run's own answer always wins over a proof: an answer's claim takes
a task over from a claim made by proof (`claim(..., proved=False)`), and the run that had
proved it finds out (`owner`) before it uses the task.

One SQLite file per user (``$KLING_PIPE_REGISTRY``, else ``$XDG_STATE_HOME/kling-pipe/``,
else ``~/.local/state/kling-pipe/``), WAL and ``synchronous=FULL`` like the store: a claim
that returned survives a kill.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import attrs

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
CREATE TABLE IF NOT EXISTS wire (
    storyboard TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    model TEXT NOT NULL,
    frame TEXT NOT NULL,
    origin TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    clock_offset_ms INTEGER,
    gave_up_at TEXT,
    PRIMARY KEY (storyboard, attempt)
);
CREATE TABLE IF NOT EXISTS accounts (
    origin TEXT PRIMARY KEY,
    processing_limit INTEGER NOT NULL,
    learned_at TEXT NOT NULL
);
"""


@attrs.frozen(kw_only=True)
class OnTheWire:
    """A submit of some run on this machine whose fate is not known yet."""

    #: The storyboard whose store holds its intent (its resolved path).
    storyboard: str
    #: The intent's attempt id in that store.
    attempt: int
    model: str
    #: The identity of its first frame (a file's sha256, or a URL).
    frame: str
    origin: str
    #: The sending run's clock when it was sent.
    sent_at: datetime
    #: The server's clock minus the sending run's, read together with `sent_at` (None when
    #: that run did not know it): ``sent_at + clock_offset`` is the server's time of the send,
    #: whatever any machine clock did since. Another run never places it with its own offset.
    clock_offset: timedelta | None = None
    #: When its run gave up on the answer (the sending run's clock), once it was left
    #: uncertain; None while it may still be on the wire (an answer may yet come).
    gave_up_at: datetime | None = None

    @property
    def uncertain(self) -> bool:
        """Whether it was left uncertain: its fate will not change without the user."""
        return self.gave_up_at is not None


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
            _migrate(db)
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
        _migrate(db)
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

    def claim(self, task_id: str, *, owner: str, origin: str, proved: bool = False) -> bool:
        """Make *owner* the owner of *task_id*; return False if someone else owns it already.

        *owner* names the shot list and shot (``/path/film.toml#shot``); claiming twice for
        the same owner is fine (a resume finding its own task again). *proved* says the claim
        rests on a proof from the history, not on the submit's own answer: an answer's claim
        takes the task over from another owner's proved claim (the run's own answer is the
        stronger fact), never the other way round.
        """
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR IGNORE INTO tasks (task_id, owner, origin, claimed_at, proved) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (task_id, owner, origin, now, int(proved)),
                )
                row = self._db.execute(
                    "SELECT owner, proved FROM tasks WHERE task_id = ?", (task_id,)
                ).fetchone()
                if row is not None and row[0] != owner and row[1] and not proved:
                    self._db.execute(
                        "UPDATE tasks SET owner = ?, proved = 0, claimed_at = ? WHERE task_id = ?",
                        (owner, now, task_id),
                    )
                    return True
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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "UPDATE tasks SET owner = ? || substr(owner, ?) WHERE substr(owner, 1, ?) = ?",
                    (new, len(old) + 1, len(prefix), prefix),
                )
                # Its submits on the wire are its own still, not another run's.
                self._db.execute("UPDATE wire SET storyboard = ? WHERE storyboard = ?", (new, old))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None
        return cursor.rowcount

    def owner(self, task_id: str) -> str | None:
        """Return who owns *task_id*, or None when no kling-pipe record here does."""
        row = self._db.execute("SELECT owner FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def owned(self, task_ids: list[str], *, but: str | None = None) -> set[str]:
        """Return those of *task_ids* that some kling-pipe record on this machine owns.

        Claims of owner *but* are left out: a submit's own claim, made before its store
        recorded the task (a kill in between), does not hide the task from its own settling.
        """
        found: set[str] = set()
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT task_id FROM tasks WHERE task_id IN ({marks}) AND owner != ?",  # noqa: S608 - marks only
                [*chunk, but or ""],
            )
            found.update(r[0] for r in rows)
        return found

    # Submits on the wire.

    def record_account_limit(self, origin: str, processing: int, at: datetime) -> None:
        """Keep the processing limit a run learned of the account behind *origin*."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO accounts (origin, processing_limit, learned_at) "
                "VALUES (?, ?, ?)",
                (origin, processing, at.isoformat(timespec="seconds")),
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None

    def open_wire(self, wire: OnTheWire) -> None:
        """Enter a submit about to be sent (before it is sent: a kill leaves it entered)."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO wire (storyboard, attempt, model, frame, origin, "
                "sent_at, clock_offset_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    wire.storyboard,
                    wire.attempt,
                    wire.model,
                    wire.frame,
                    wire.origin,
                    wire.sent_at.isoformat(timespec="milliseconds"),
                    None
                    if wire.clock_offset is None
                    else round(wire.clock_offset.total_seconds() * 1000),
                ),
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None

    def leave_uncertain(self, storyboard: str, attempt: int, gave_up_at: datetime) -> None:
        """Keep a submit left uncertain on the wire, with when its run gave up on it.

        Its task may exist: no other submit may take it by proof. It is no longer in flight:
        nothing waits for it, a task of its window is simply undecided.
        """
        try:
            self._db.execute(
                "UPDATE wire SET gave_up_at = ? WHERE storyboard = ? AND attempt = ?",
                (gave_up_at.isoformat(timespec="milliseconds"), storyboard, attempt),
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None

    def close_wire(self, storyboard: str, attempt: int) -> None:
        """Forget a submit whose fate is known: its task claimed, or shown never made.

        An intent left uncertain stays on the wire: its task may exist, and another run must
        never take it by proof.
        """
        try:
            self._db.execute(
                "DELETE FROM wire WHERE storyboard = ? AND attempt = ?", (storyboard, attempt)
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write kling-pipe's task registry: {exc}") from None

    def on_the_wire(self, *, model: str, frame: str, origin: str) -> list[OnTheWire]:
        """Return the submits on the wire of *model* whose first frame is *frame*."""
        rows = self._db.execute(
            "SELECT storyboard, attempt, model, frame, origin, sent_at, clock_offset_ms, "
            "gave_up_at FROM wire "
            "WHERE model = ? AND frame = ? AND origin = ?",
            (model, frame, origin),
        )
        return [
            OnTheWire(
                storyboard=r[0],
                attempt=r[1],
                model=r[2],
                frame=r[3],
                origin=r[4],
                sent_at=datetime.fromisoformat(r[5]),
                clock_offset=None if r[6] is None else timedelta(milliseconds=r[6]),
                gave_up_at=None if r[7] is None else datetime.fromisoformat(r[7]),
            )
            for r in rows
        ]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a registry of an earlier version up to this schema (claims then were answers).

    A ``wire`` table of another shape is made anew: what it held only ever lasts for a
    submit's flight, and a run settling its own intents does not need it.
    """
    columns = {r[1] for r in db.execute("PRAGMA table_info(tasks)")}
    if "proved" not in columns:
        db.execute("ALTER TABLE tasks ADD COLUMN proved INTEGER NOT NULL DEFAULT 0")
    wire = {r[1] for r in db.execute("PRAGMA table_info(wire)")}
    if "storyboard" not in wire:
        db.execute("DROP TABLE IF EXISTS wire")
        db.executescript(_SCHEMA)
    else:
        if "clock_offset_ms" not in wire:  # an earlier version's entries: placed with doubt
            db.execute("ALTER TABLE wire ADD COLUMN clock_offset_ms INTEGER")
        if "gave_up_at" not in wire:
            db.execute("ALTER TABLE wire ADD COLUMN gave_up_at TEXT")


def known_account_limit(origin: str, path: Path | None = None) -> tuple[int, datetime] | None:
    """Return the processing limit the last run learned of *origin*'s account, and when.

    Read only, for `plan`: a registry that does not exist or cannot be read knows nothing
    (it is never created by looking).
    """
    where = path or default_registry_path()
    if not where.is_file():
        return None
    try:
        db = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT processing_limit, learned_at FROM accounts WHERE origin = ?", (origin,)
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    try:
        return int(row[0]), datetime.fromisoformat(row[1])
    except (TypeError, ValueError):
        return None
