"""`<shot list>.lock.json`: the human-readable record of what was rendered from what.

Rewritten atomically after every run, with sorted keys and one shot per entry so that a diff
shows exactly what changed. Commit it next to the storyboard: with it, `run --locked` refuses
to spend on anything it does not list, and a fresh checkout can fetch the recorded outputs
from their tasks instead of rendering them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from kling_pipe._records import durable
from kling_pipe._records.store import Attempt
from kling_pipe._shotlist.specs import ShotList
from kling_pipe.exceptions import KlingPipeError

LOCK_VERSION = 1


def lock_path_for(shotlist_path: Path) -> Path:
    """Return the lock file's path: ``<shot list>.lock.json`` beside it."""
    return shotlist_path.parent / f"{shotlist_path.name}.lock.json"


def lock_document(
    shotlist: ShotList,
    attempts: Mapping[str, Attempt | None],
    *,
    simulated: Mapping[str, Attempt | None] | None = None,
    fingerprints: Mapping[str, str],
    version: str,
) -> dict[str, Any]:
    """Build the lock document from each shot's latest attempts for its current fingerprint.

    ``shots`` are the real renders (each entry names its origin); ``simulated`` the bundled
    mock's, which cost nothing and never satisfy a real run. Totals count real renders only.
    """
    shots = {
        s.id: _entry(s.id, s.duration, attempts.get(s.id), shotlist, fingerprints)
        for s in shotlist.shots
    }
    document: dict[str, Any] = {
        "lock_version": LOCK_VERSION,
        "kling_pipe": version,
        "storyboard": shotlist.storyboard.name,
        "model": shotlist.storyboard.model,
        "shots": shots,
        "totals": _totals(shots),
    }
    mock = {
        s.id: _entry(s.id, s.duration, attempt, shotlist, fingerprints)
        for s in shotlist.shots
        if (attempt := (simulated or {}).get(s.id)) is not None
    }
    if mock:
        document["simulated"] = mock
        document["simulated_totals"] = _totals(mock)
    return document


def _entry(
    shot_id: str,
    duration: int,
    attempt: Attempt | None,
    shotlist: ShotList,
    fingerprints: Mapping[str, str],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "fingerprint": fingerprints[shot_id],
        "model": shotlist.storyboard.model,
        "duration": duration,
        "status": "pending" if attempt is None else attempt.state,
    }
    if attempt is not None:
        entry.update(
            {
                "origin": attempt.origin,
                "task_id": attempt.task_id,
                "cost": str(attempt.cost),
                "file": attempt.file,
                "sha256": attempt.sha256,
                "bytes": attempt.bytes,
                "submitted_at": attempt.sent_at.isoformat(timespec="milliseconds"),
                "completed_at": None
                if attempt.completed_at is None
                else attempt.completed_at.isoformat(timespec="milliseconds"),
            }
        )
        if attempt.error:
            entry["error"] = attempt.error
    return entry


def _totals(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    done = [e for e in entries.values() if e["status"] == "downloaded"]
    return {
        "shots": len(entries),
        "rendered": len(done),
        "seconds": sum(int(e["duration"]) for e in done),
        "cost": str(sum((Decimal(e["cost"]) for e in done), Decimal("0.000"))),
    }


def write_lock(path: Path, document: Mapping[str, Any]) -> Path:
    """Write the lock file atomically (blocking): a reader sees the old file or the new."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return durable.write_bytes(path, text.encode())


def read_lock(path: Path) -> dict[str, Any] | None:
    """Read a lock file; None if there is none, a clear error if it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KlingPipeError(f"{path}: cannot read the lock file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("shots"), dict):
        raise KlingPipeError(f"{path}: not a kling-pipe lock file")
    return data
