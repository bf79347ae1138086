"""The crash-safe record of every attempt at every shot, kept beside the shot list.

SQLite in WAL mode, one small transaction per fact, `synchronous=FULL` by default: a
transaction that returned is on disk, and a process killed at any instant (`kill -9`, a
closed laptop) leaves a database the next run opens as it was after the last whole
transaction. That is why SQLite rather than a hand-written journal: atomic commits, torn-write
recovery and queries come with it, and it is in the standard library.

The order of writes is the money promise: an attempt's *intent* is committed before its
submit is sent, and its task id the moment the answer arrives, before anything else. A later
run therefore finds every task that may exist: by id, or by its intent's send time in the
prediction history.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import attrs

from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN, UPLOAD_REUSE_LIMIT
from kling_pipe._decisions.attempts import Attempt, AttemptState
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe.exceptions import KlingPipeError

if TYPE_CHECKING:
    # Imported where a database is opened: `plan` of a shot list with no records (and
    # `validate`) never load the SQLite library.
    import sqlite3

#: Kinds of files made again from the renders when missing: their records may wait (`_tx`).
_REMADE: Final = frozenset({"thumb", "frame"})
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shot_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    inputs TEXT NOT NULL,
    model TEXT NOT NULL,
    duration INTEGER NOT NULL,
    cost TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    sent_at TEXT NOT NULL,
    completed_at TEXT,
    error TEXT NOT NULL DEFAULT '',
    code INTEGER,
    file TEXT,
    sha256 TEXT,
    bytes INTEGER,
    polls INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    clock_offset_ms INTEGER,
    origin TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_by_shot ON attempts (shot_id, fingerprint, id);
-- Every take's attempts at its fingerprint, asked after each run for the lock file and by
-- plan for renamed shots: without it each asking scanned the whole table (quadratic in shots).
CREATE INDEX IF NOT EXISTS attempts_by_fingerprint ON attempts (fingerprint, id);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    shot_id TEXT,
    origin TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    written_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    sha256 TEXT NOT NULL,
    base_url TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (sha256, base_url)
);
CREATE TABLE IF NOT EXISTS pictures (
    sha256 TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    started_at TEXT NOT NULL,
    before TEXT NOT NULL,
    ended_at TEXT,
    after TEXT
);
"""


@attrs.frozen(kw_only=True)
class WrittenFile:
    """A file kling-pipe wrote beside a shot list: what it is and what it contained."""

    #: Relative to the shot list's folder.
    path: str
    #: output, frame, thumb, report, cut, rejected.
    kind: str
    shot_id: str | None
    origin: str
    sha256: str


@attrs.frozen(kw_only=True)
class BalanceReading:
    """The account's balance as one real run started, and as it ended (None: it did not)."""

    started_at: datetime
    before: Decimal
    ended_at: datetime | None
    after: Decimal | None


class StoreBusyError(KlingPipeError):
    """Another run holds the shot list's state; `pid` says which process."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        self.pid = pid
        super().__init__(message)


def state_dir_for(shotlist_path: Path) -> Path:
    """Return the folder holding a shot list's state: ``<name>.kling-state`` beside it."""
    return shotlist_path.parent / f"{shotlist_path.name}.kling-state"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Store:
    """The state of one shot list's renders; open it with `Store.open`, close it when done."""

    def __init__(
        self, connection: sqlite3.Connection, folder: Path, *, writable: bool = True
    ) -> None:
        self._db = connection
        self.folder = folder
        #: False for a store opened to be read (`open_read_only`).
        self.writable = writable
        #: Whether commits are fsynced (`synchronous=FULL`); facts that may wait are not.
        self._synchronous_full = False

    @classmethod
    def open(cls, folder: Path, *, durable: bool = True) -> Self:
        """Open (creating if need be) the store in *folder*.

        *durable* False trades power-loss safety for speed (`synchronous=NORMAL`): a killed
        process still loses nothing, since WAL commits reach the OS before returning.
        """
        import sqlite3  # noqa: PLC0415 - loaded only when a database is opened

        folder.mkdir(parents=True, exist_ok=True)
        # Used from one thread at a time (the event loop, or a worker it awaits), never two.
        db = sqlite3.connect(folder / "state.sqlite", isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        _migrate(db, folder)
        store = cls(db, folder)
        store._synchronous_full = durable
        return store

    @classmethod
    def open_read_only(cls, folder: Path) -> Self:
        """Open the store in *folder* to read it, writing nothing there at all.

        For the commands that only read (`plan`, `status`, `gc --dry-run`, a run refused
        before it starts), on a read-only mount too. No schema is created and nothing is
        migrated in the file: the database is opened ``mode=ro``, and ``immutable`` when no
        write-ahead log is beside it (nothing to miss, and SQLite then makes no ``-shm``).
        When SQLite cannot open it so (a log left by a killed run in a folder that cannot be
        written), a copy outside the folder is read. A store of an older schema is copied
        into memory and brought up to this one there (`_migrate`), so it is understood as
        `open` would understand it. Writing through it fails.
        """
        import sqlite3  # noqa: PLC0415 - loaded only when a database is opened

        path = folder / "state.sqlite"
        uri = path.absolute().as_uri() + "?mode=ro"
        if not folder.joinpath("state.sqlite-wal").exists():
            uri += "&immutable=1"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            db = _copied(folder)
        if not _is_current(db):
            db = _migrated_in_memory(db, folder)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA query_only=ON")
        return cls(db, folder, writable=False)

    @classmethod
    def in_memory(cls) -> Self:
        """Open a store that lives and dies with this process (a run that keeps no records)."""
        import sqlite3  # noqa: PLC0415 - loaded only when a database is opened

        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.executescript(_SCHEMA)
        return cls(db, Path())

    def close(self) -> None:
        """Close the database; every committed fact is already on disk."""
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

    @contextlib.contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; *durable* False for a fact that may wait for the next fsync.

        Which facts must be on disk before what (the rest may wait):

        * an attempt's intent before its submit is sent, and its task id as soon as it is
          known: what never paying twice rests on (`record_intent`, `record_task`, and the
          refused, uncertain and rejected states that settle an intent);
        * a render's file and its record after the rename, before anything else happens
          to that shot (`record_download`, `record_file` of an output), so a power cut
          never leaves a paid video the records do not know;
        * everything else is a count or a cache: the polls, the final status (the task id
          is durable, so a later run asks the server again), thumbnails' and chain frames'
          records (the file is made again; unrecorded, `gc` just leaves it), uploads.

        Those commit without an fsync (`synchronous=NORMAL` for that transaction): a killed
        process loses nothing (the OS has the WAL), a power cut can lose only the latest of
        them, since the WAL is replayed in order and the next durable commit's fsync covers
        every frame before it.
        """
        relaxed = self._synchronous_full and not durable
        if relaxed:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if relaxed:
                self._db.execute("PRAGMA synchronous=FULL")

    # Attempts.

    def record_intent(  # noqa: PLR0913 - one row's columns, keyword-only
        self,
        *,
        shot_id: str,
        fingerprint: str,
        inputs: str,
        model: str,
        duration: int,
        cost: Decimal,
        sent_at: datetime,
        origin: str,
        clock_offset: timedelta | None = None,
        pictures: Mapping[str, str] | None = None,
    ) -> int:
        """Record that a submit is about to be sent; return the attempt's id.

        *sent_at* is our clock just before sending; *clock_offset* the server's clock minus
        ours as known then, so that the task's `created_at` can be bounded later. *pictures*
        are where the local pictures its inputs name (by sha256) are, relative to the shot
        list: remembered in the same transaction, so that a later run can prove the intent's
        task with them even once no shot uses them any more (`picture`).
        """
        offset_ms = None if clock_offset is None else round(clock_offset.total_seconds() * 1000)
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO attempts (shot_id, fingerprint, inputs, model, duration, cost, "
                "state, sent_at, updated_at, clock_offset_ms, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?)",
                (
                    shot_id,
                    fingerprint,
                    inputs,
                    model,
                    duration,
                    str(cost),
                    sent_at.isoformat(timespec="milliseconds"),
                    _now(),
                    offset_ms,
                    origin,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO pictures (sha256, path, recorded_at) VALUES (?, ?, ?)",
                [(sha256, path, _now()) for sha256, path in (pictures or {}).items()],
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def picture(self, sha256: str) -> str | None:
        """Return where a picture of content *sha256* was when an intent named it, if one did.

        The path is relative to the shot list, as written then: the file there may have been
        changed or removed since, so its content must be checked before it proves anything.
        """
        row = self._db.execute("SELECT path FROM pictures WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else str(row["path"])

    def adopt(  # noqa: PLR0913 - one row's columns, keyword-only
        self,
        *,
        shot_id: str,
        fingerprint: str,
        inputs: Mapping[str, Any],
        model: str,
        duration: int,
        cost: Decimal,
        task_id: str,
        sent_at: datetime,
        origin: str,
        state: AttemptState = "downloaded",
        file: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> int:
        """Record an attempt known from elsewhere (a lock file, a renamed shot); return its id.

        One transaction: the attempt appears whole, with its task id, or not at all.
        """
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO attempts (shot_id, fingerprint, inputs, model, duration, cost, "
                "state, task_id, sent_at, file, sha256, bytes, updated_at, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    shot_id,
                    fingerprint,
                    json.dumps(inputs, sort_keys=True),
                    model,
                    duration,
                    str(cost),
                    state,
                    task_id,
                    sent_at.isoformat(timespec="milliseconds"),
                    file,
                    sha256,
                    size,
                    _now(),
                    origin,
                ),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def record_task(self, attempt_id: int, task_id: str) -> None:
        """Record the task id the server gave: from now on the task is never submitted again."""
        self._update(attempt_id, state="submitted", task_id=task_id)

    def record_refused(self, attempt_id: int, error: str) -> None:
        """Record that the submit created no task (refused, or absent from the history)."""
        self._update(attempt_id, state="refused", error=error)

    def record_uncertain(self, attempt_id: int, error: str) -> None:
        """Record that the task may exist but could not be found."""
        self._update(attempt_id, state="uncertain", error=error)

    def record_expired(self, attempt_id: int, error: str) -> None:
        """Record that the task's output is gone from the server, never downloaded (paid)."""
        self._update(attempt_id, state="expired", error=error)

    def record_rejected(self, attempt_id: int, error: str) -> None:
        """Record that the task's video was paid for but failed the checks (set aside)."""
        self._update(attempt_id, state="rejected", error=error)

    def record_final(
        self, attempt_id: int, *, completed: bool, error: str = "", code: int | None = None
    ) -> None:
        """Record the task's final status."""
        self._update(
            attempt_id,
            durable=False,
            state="completed" if completed else "failed",
            error=error,
            code=code,
            completed_at=_now(),
        )

    def record_polls(self, attempt_id: int, polls: int) -> None:
        """Record how many result requests the attempt has made so far."""
        self._update(attempt_id, durable=False, polls=polls)

    def record_download(self, attempt_id: int, *, file: str, sha256: str, size: int) -> None:
        """Record the output on disk: its path relative to the shot list, sha256 and size."""
        self._update(attempt_id, state="downloaded", file=file, sha256=sha256, bytes=size)

    def _update(self, attempt_id: int, *, durable: bool = True, **columns: object) -> None:
        names = ", ".join(f"{k} = ?" for k in columns)
        with self._tx(durable=durable) as db:
            db.execute(
                f"UPDATE attempts SET {names}, updated_at = ? WHERE id = ?",  # noqa: S608 - names are ours
                (*columns.values(), _now(), attempt_id),
            )

    def latest(
        self, shot_id: str, fingerprint: str | None = None, origin: str | None = None
    ) -> Attempt | None:
        """Return the shot's latest attempt (for *fingerprint* and *origin*, where given)."""
        where, args = ["shot_id = ?"], [shot_id]
        if fingerprint is not None:
            where.append("fingerprint = ?")
            args.append(fingerprint)
        if origin is not None:
            where.append("origin = ?")
            args.append(origin)
        row = self._db.execute(
            f"SELECT * FROM attempts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 1",  # noqa: S608 - fixed clauses
            args,
        ).fetchone()
        return None if row is None else _attempt(row)

    def attempt(self, attempt_id: int) -> Attempt | None:
        """Return the attempt recorded under *attempt_id*, if there is one."""
        row = self._db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return None if row is None else _attempt(row)

    def unsettled_intents(self, origin: str) -> list[Attempt]:
        """Return every intent of *origin* without a task id, oldest first.

        Each is a submit whose answer was lost, whatever shot or fingerprint it was for.
        """
        rows = self._db.execute(
            "SELECT * FROM attempts WHERE state = 'intent' AND origin = ? ORDER BY id", (origin,)
        )
        return [_attempt(r) for r in rows]

    def with_fingerprint(self, fingerprint: str, origin: str | None) -> list[Attempt]:
        """Return every attempt at *fingerprint* (from *origin*, if given), newest first."""
        if origin is None:
            rows = self._db.execute(
                "SELECT * FROM attempts WHERE fingerprint = ? ORDER BY id DESC", (fingerprint,)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM attempts WHERE fingerprint = ? AND origin = ? ORDER BY id DESC",
                (fingerprint, origin),
            )
        return [_attempt(r) for r in rows]

    def rename_shot(self, old: str, new: str, *, fingerprint: str, origin: str) -> None:
        """Give *old*'s attempts at *fingerprint* to *new*: the shot was renamed, not changed."""
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET shot_id = ?, updated_at = ? "
                "WHERE shot_id = ? AND fingerprint = ? AND origin = ?",
                (new, _now(), old, fingerprint, origin),
            )

    def move_output(self, attempt_id: int, file: str) -> None:
        """Record that the attempt's output now lives at *file* (relative to the shot list)."""
        self._update(attempt_id, file=file)

    # Files kling-pipe wrote: the only ones it may ever delete or overwrite.

    def record_file(
        self, path: str, *, kind: str, origin: str, sha256: str, shot_id: str | None = None
    ) -> None:
        """Remember that kling-pipe wrote *path* (relative to the shot list) with this content.

        A read-only store (its folder cannot be written: `cut -o` elsewhere from a read-only
        mount) remembers nothing: the file then counts as not kling-pipe's, so it is never
        overwritten or deleted by a later command, only refused or set aside.
        """
        if not self.writable:
            return
        with self._tx(durable=kind not in _REMADE) as db:
            db.execute(
                "INSERT OR REPLACE INTO files (path, kind, shot_id, origin, sha256, written_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (path, kind, shot_id, origin, sha256, _now()),
            )

    def files(self) -> list[WrittenFile]:
        """Return every file kling-pipe recorded writing for this shot list."""
        rows = self._db.execute("SELECT * FROM files ORDER BY path")
        return [
            WrittenFile(
                path=r["path"],
                kind=r["kind"],
                shot_id=r["shot_id"],
                origin=r["origin"],
                sha256=r["sha256"],
            )
            for r in rows
        ]

    def written(self, path: str) -> WrittenFile | None:
        """Return the record of *path* if kling-pipe wrote it, else None."""
        return next((f for f in self.files() if f.path == path), None)

    def forget_file(self, path: str) -> None:
        """Forget a file kling-pipe deleted."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE path = ?", (path,))

    def attempts(self) -> list[Attempt]:
        """Return every attempt ever recorded, oldest first."""
        return [_attempt(r) for r in self._db.execute("SELECT * FROM attempts ORDER BY id")]

    def known_task_ids(self) -> set[str]:
        """Return every task id this shot list ever created (so history searches skip them)."""
        rows = self._db.execute("SELECT task_id FROM attempts WHERE task_id IS NOT NULL")
        return {r[0] for r in rows}

    def task_owners(self) -> list[tuple[str, str]]:
        """Return (shot id, task id) for every task this shot list created or adopted."""
        rows = self._db.execute(
            "SELECT shot_id, task_id FROM attempts WHERE task_id IS NOT NULL ORDER BY id"
        )
        return [(r[0], r[1]) for r in rows]

    def spent(self, origin: str | None = None) -> Decimal:
        """Money spent so far (with *origin*, if given): attempts that cost, or may have."""
        return sum(
            (a.cost for a in self.attempts() if a.charged and origin in (None, a.origin)),
            ZERO_USD,
        )

    def task_durations(
        self, model: str, *, origin: str, durations: Collection[int], limit: int = 64
    ) -> list[float]:
        """Seconds from submit to seen completed of the latest *limit* tasks, oldest first.

        Only tasks of *model* from *origin* rendering one of *durations* (seconds of video)
        count: what earlier runs teach the poll pacing before this run's first task ends
        (`kling_pipe._decisions.pacing.DurationEstimator`, which trusts it only so far).
        Read-only.
        """
        wanted = sorted(set(durations))
        if not wanted:
            return []
        rows = self._db.execute(
            "SELECT sent_at, completed_at FROM attempts "  # noqa: S608 - fixed clauses
            "WHERE model = ? AND origin = ? AND completed_at IS NOT NULL "
            "AND state IN ('completed', 'downloaded', 'rejected') "
            f"AND duration IN ({', '.join('?' * len(wanted))}) ORDER BY id DESC LIMIT ?",
            (model, origin, *wanted, limit),
        ).fetchall()
        ends = [(datetime.fromisoformat(r["sent_at"]), r["completed_at"]) for r in reversed(rows)]
        spans = [(datetime.fromisoformat(done) - sent).total_seconds() for sent, done in ends]
        return [s for s in spans if s > 0]

    # Uploads.

    def upload_url(self, sha256: str, base_url: str, *, now: datetime) -> str | None:
        """Return a still-valid upload of content *sha256* to *base_url*, if there is one."""
        row = self._db.execute(
            "SELECT url, uploaded_at FROM uploads WHERE sha256 = ? AND base_url = ?",
            (sha256, base_url),
        ).fetchone()
        if row is None or now - datetime.fromisoformat(row["uploaded_at"]) >= UPLOAD_REUSE_LIMIT:
            return None
        return str(row["url"])

    def record_balance_before(self, origin: str, usd: Decimal) -> int:
        """Record the account's balance as a real run starts; return the reading's id.

        What the bill falls back on where WaveSpeed's billing search does not answer.
        """
        with self._tx(durable=False) as db:  # lost, the bill says it cannot check
            cursor = db.execute(
                "INSERT INTO balances (origin, started_at, before) VALUES (?, ?, ?)",
                (origin, _now(), str(usd)),
            )
        return int(cursor.lastrowid or 0)

    def record_balance_after(self, reading: int, usd: Decimal) -> None:
        """Record the balance as the run of *reading* ends."""
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE balances SET ended_at = ?, after = ? WHERE id = ?",
                (_now(), str(usd), reading),
            )

    def balance_readings(self, origin: str) -> list[BalanceReading]:
        """Return every run's balance before (and after, once ended) at *origin*, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM balances WHERE origin = ? ORDER BY id", (origin,)
        ).fetchall()
        return [
            BalanceReading(
                started_at=datetime.fromisoformat(r["started_at"]),
                before=Decimal(r["before"]),
                ended_at=_when(r["ended_at"]),
                after=None if r["after"] is None else Decimal(r["after"]),
            )
            for r in rows
        ]

    def record_upload(self, sha256: str, base_url: str, url: str, size: int) -> None:
        """Remember an upload so a later run reuses it while it is valid."""
        with self._tx(durable=False) as db:  # lost, it costs an upload again: no money
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, base_url, url, size, uploaded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (sha256, base_url, url, size, _now()),
            )


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        id=row["id"],
        shot_id=row["shot_id"],
        fingerprint=row["fingerprint"],
        inputs=row["inputs"],
        model=row["model"],
        duration=row["duration"],
        cost=Decimal(row["cost"]),
        state=row["state"],
        task_id=row["task_id"],
        sent_at=datetime.fromisoformat(row["sent_at"]),
        completed_at=_when(row["completed_at"]),
        error=row["error"],
        code=row["code"],
        file=row["file"],
        sha256=row["sha256"],
        bytes=row["bytes"],
        polls=row["polls"],
        clock_offset=None
        if row["clock_offset_ms"] is None
        else timedelta(milliseconds=row["clock_offset_ms"]),
        origin=row["origin"],
    )


def _is_current(db: sqlite3.Connection) -> bool:
    """Whether *db* has this version's schema (every table, every column of attempts)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"attempts", "files", "uploads", "balances"} <= tables:
        return False
    columns = {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
    return {"clock_offset_ms", "origin"} <= columns


def _migrated_in_memory(db: sqlite3.Connection, folder: Path) -> sqlite3.Connection:
    """Copy *db* into memory (closing it) and bring the copy up to this schema there."""
    import sqlite3  # noqa: PLC0415 - loaded only when a database is opened

    memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.backup(memory)
    db.close()
    memory.executescript(_SCHEMA)
    _migrate(memory, folder)
    return memory


def _copied(folder: Path) -> sqlite3.Connection:
    """Read the store in *folder* from a copy made elsewhere (its log replayed), in memory."""
    import shutil  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="kling-pipe-read-") as temporary:
        for name in ("state.sqlite", "state.sqlite-wal"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, Path(temporary) / name)
        copy = sqlite3.connect(Path(temporary) / "state.sqlite", isolation_level=None)
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            copy.backup(memory)
        finally:
            copy.close()
    return memory


def _migrate(db: sqlite3.Connection, folder: Path) -> None:
    """Bring a store written by an earlier version up to this schema.

    Tables added since (the intents' `pictures`) come with `_SCHEMA`, created when missing.

    Attempts recorded before origins were (with an empty origin) are given one: ``mock`` when
    the bundled mock's saved state beside the store knows the task, else WaveSpeed's own.
    """
    columns = {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
    if "clock_offset_ms" not in columns:
        db.execute("ALTER TABLE attempts ADD COLUMN clock_offset_ms INTEGER")
    if "origin" not in columns:
        db.execute("ALTER TABLE attempts ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    legacy = db.execute("SELECT id, task_id FROM attempts WHERE origin = ''").fetchall()
    if not legacy:
        return
    mock_tasks = mock_task_ids(folder)
    with contextlib.closing(db.cursor()) as cursor:
        cursor.execute("BEGIN IMMEDIATE")
        for row in legacy:
            origin = MOCK_ORIGIN if row[1] in mock_tasks else DEFAULT_BASE_URL
            cursor.execute("UPDATE attempts SET origin = ? WHERE id = ?", (origin, row[0]))
        cursor.execute("COMMIT")


def mock_task_ids(state_dir: Path) -> set[str]:
    """Return the task ids the bundled mock's saved state in *state_dir* knows (blocking).

    What tells the mock's renders from others in records written before records named their
    origin: the store's (`_migrate`) and the lock file's (`kling_pipe._records.lockfile`).
    """
    path = state_dir / "mock" / "state.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return set()
    tasks = document.get("tasks") if isinstance(document, dict) else None
    if not isinstance(tasks, list):
        return set()
    return {t["id"] for t in tasks if isinstance(t, dict) and isinstance(t.get("id"), str)}


class RunLockFileError(KlingPipeError):
    """The run lock's file is not a plain file of kling-pipe's own (a link, a folder, a pipe)."""


class RunLock:
    """One run per shot list at a time: an exclusive `flock` on a file holding the pid.

    The kernel drops the lock when the process dies however it dies, so a `kill -9` never
    leaves a stale lock behind; the pid inside is only there to name the holder.

    The state folder may come from elsewhere (an archive, a cloned repository), so its
    ``run.pid`` is checked before it is written: never followed through a symbolic link
    (``O_NOFOLLOW``), and used only when it is a regular file with one name. A link to a file
    outside the project, or a hard link to one, is refused, never truncated.
    """

    def __init__(self, folder: Path) -> None:
        self._path = folder / "run.pid"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `StoreBusyError` naming the process that has it."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = int(holder) if holder.isdigit() else None
            who = f"pid {pid}" if pid is not None else "another process"
            raise StoreBusyError(
                f"another kling-pipe run ({who}) is rendering this shot list; "
                "wait for it to finish or stop it",
                pid=pid,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """Open ``run.pid`` (made if missing) or raise `RunLockFileError` for one not ours."""
        refused = RunLockFileError(
            f"{self._path}: is not a plain file (a symbolic link, a hard link, a folder or "
            "a device); kling-pipe will not write through it: remove it and run again"
        )
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self._path, flags, 0o644)
        except OSError as error:
            if error.errno in {errno.ELOOP, errno.EISDIR, errno.ENXIO}:
                raise refused from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise refused
        return fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
