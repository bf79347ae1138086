"""Where the mock keeps files: uploads, outputs and (when persistent) its state document.

Everything lives under one root: the configured state folder, or a temp folder the mock
creates and removes. Writes go to a temp file, fsynced, then `os.replace`, so a killed process
(or a power cut) leaves either the old file or the new one, never half of one.

`Snapshot` is the state document saved in a persistent state folder, and read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs

from mockserver.billing import LedgerEntry
from mockserver.media import Upload
from mockserver.tasks import Task

_STATE_FILE = "state.json"


def write_atomically(path: Path, data: bytes) -> None:
    """Write *data* to *path* durably: temp file in the same folder, fsync, rename, fsync.

    The mock is a separate program from the client, so it keeps its own copy of this
    procedure rather than importing kling_pipe's.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every file system can sync a folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@attrs.define
class Storage:
    """The mock's folder; *persistent* means it outlives the process."""

    root: Path
    persistent: bool

    @classmethod
    def plan(cls, state_dir: Path | None) -> Storage:
        """Name the folder (*state_dir*, or a new temp folder) without touching the disk."""
        if state_dir is None:
            name = f"wavespeed-mock-{uuid.uuid4().hex}"
            return cls(Path(tempfile.gettempdir()) / name, persistent=False)
        return cls(state_dir.resolve(), persistent=True)

    def create(self) -> None:
        """Create the folder; a temp folder must not exist yet and is private to this user."""
        if not self.persistent:
            self.root.mkdir(mode=0o700)
        for sub in ("uploads", "outputs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def upload_path(self, upload_id: str) -> Path:
        """Return where an upload's bytes live."""
        return self.root / "uploads" / upload_id

    def output_path(self, key: str) -> Path:
        """Return where the output video with request hash *key* lives."""
        return self.root / "outputs" / f"{key}.mp4"

    def load_state(self) -> dict[str, Any] | None:
        """Return the saved state document, or None if there is none."""
        path = self.root / _STATE_FILE
        if not self.persistent or not path.exists():
            return None
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    def save_state(self, document: dict[str, Any]) -> None:
        """Save the state document atomically; a no-op for a temp folder."""
        if self.persistent:
            write_atomically(self.root / _STATE_FILE, json.dumps(document).encode())

    def clear(self) -> None:
        """Remove every upload, output and the state document (for a reset)."""
        for sub in ("uploads", "outputs"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir()
        (self.root / _STATE_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the folder unless it is the persistent state folder."""
        if not self.persistent:
            shutil.rmtree(self.root, ignore_errors=True)


VERSION: Final = 1


@attrs.frozen(kw_only=True)
class Snapshot:
    """Everything that must survive the process, in plain attrs values."""

    seq: int
    balance_usd: Decimal
    ledger: tuple[LedgerEntry, ...]
    tasks: tuple[Task, ...]
    uploads: tuple[Upload, ...]
    webhook_secret: str
    submit_times: tuple[float, ...]
    peak_concurrent: int


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda value, _: Decimal(value))
    return converter


_CONVERTER: Final = _converter()


def dump_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """Return *snapshot* as a JSON-ready document."""
    document: dict[str, Any] = _CONVERTER.unstructure(snapshot)
    return {"version": VERSION, **document}


def load_snapshot(document: dict[str, Any]) -> Snapshot:
    """Read a document written by `dump`."""
    body = dict(document)
    version = body.pop("version", None)
    if version != VERSION:
        raise ValueError(f"state document version {version!r}; this mock reads {VERSION}")
    return _CONVERTER.structure(body, Snapshot)
