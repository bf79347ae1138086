"""`<shot list>.lock.json`: the human-readable record of what was rendered from what.

Rewritten atomically after every run, with sorted keys and one shot per entry so that a diff
shows exactly what changed. Commit it next to the storyboard: with it, `run --locked` refuses
to spend on anything it does not list, and a fresh checkout can fetch the recorded outputs
from their tasks instead of rendering them again.

Takes: a shot of one take has exactly the entry it always had. A shot of several takes keeps
the same fields at the top of its entry, describing its **picked** take (that take's
fingerprint, task id, file, sha256, cost, ...), plus ``"pick": k`` and ``"takes"``: one item
per take, take 1 first, each with ``"take"`` and the same fields for that take. The pick is
recorded here (so it is committed and reviewed) and nowhere else: `read_picks` reads it back,
and every rewrite carries it on. The bundled mock's renders (``simulated``) have picks of
their own. ``totals`` count every take rendered (``"takes"`` appears once some shot has
several).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe import _files as durable
from kling_pipe._backends.base import MOCK_ORIGIN
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._shotlist.fingerprint import kept_keys
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import Shot, ShotList, split_unit_key, unit_key
from kling_pipe.exceptions import KlingPipeError

LOCK_VERSION = 1
#: The lock's sections: real renders, and the bundled mock's (which never pass for real).
REAL_SECTION = "shots"
MOCK_SECTION = "simulated"
#: Per-take fields that are the shot's, not the take's: kept only at the top of an entry.
_SHOT_FIELDS = ("model", "duration")


@attrs.frozen(kw_only=True)
class Section:
    """What one section of the lock records: every take's latest attempt, and the picks."""

    #: By unit key (a shot's id names its take 1): the latest attempt for its fingerprint.
    attempts: Mapping[str, Attempt | None]
    #: By unit key: each take's current fingerprint (chains follow this section's picks).
    fingerprints: Mapping[str, str]
    #: By shot id: the picked take (absent means take 1).
    picks: Mapping[str, int] = attrs.Factory(dict)


def section_for(origin: str) -> str:
    """Name the lock section that records *origin*'s renders."""
    return MOCK_SECTION if origin == MOCK_ORIGIN else REAL_SECTION


def lock_path_for(shotlist_path: Path) -> Path:
    """Return the lock file's path: ``<shot list>.lock.json`` beside it."""
    return shotlist_path.parent / f"{shotlist_path.name}.lock.json"


def lock_document(
    shotlist: ShotList, real: Section, *, simulated: Section | None = None, version: str
) -> dict[str, Any]:
    """Build the lock document from each take's latest attempt for its current fingerprint.

    ``shots`` are the real renders (each entry names its origin); ``simulated`` the bundled
    mock's, which cost nothing and never satisfy a real run, listed for the shots with any
    attempt. Totals count real renders only.
    """
    shots = {s.id: _shot_entry(s, real, shotlist) for s in shotlist.shots}
    document: dict[str, Any] = {
        "lock_version": LOCK_VERSION,
        "kling_pipe": version,
        "storyboard": shotlist.storyboard.name,
        "model": shotlist.storyboard.model,
        "shots": shots,
        "totals": _totals(shots),
    }
    mock = {}
    if simulated is not None:
        mock = {
            s.id: _shot_entry(s, simulated, shotlist)
            for s in shotlist.shots
            if any(simulated.attempts.get(key) is not None for key in _keys(s, simulated))
        }
    if mock:
        document["simulated"] = mock
        document["simulated_totals"] = _totals(mock)
    return document


def _keys(shot: Shot, section: Section) -> tuple[str, ...]:
    return kept_keys(shot, section.picks.get(shot.id, 1))


def _shot_entry(shot: Shot, section: Section, shotlist: ShotList) -> dict[str, Any]:
    """One shot's entry: as it always was for one take; the picked take and all takes else."""
    pick = section.picks.get(shot.id, 1)
    if unit_key(shot.id, pick) not in section.fingerprints:
        pick = 1
    picked = unit_key(shot.id, pick)
    entry = _entry(picked, shot.duration, section.attempts.get(picked), shotlist, section)
    keys = kept_keys(shot, pick)  # a pick kept past a lowered `takes` keeps its entry
    if keys == (shot.id,):
        return entry
    takes = []
    for key in keys:
        item = _entry(key, shot.duration, section.attempts.get(key), shotlist, section)
        for field in _SHOT_FIELDS:
            del item[field]
        takes.append({"take": split_unit_key(key)[1], **item})
    return {**entry, "pick": pick, "takes": takes}


def _entry(
    key: str,
    duration: int,
    attempt: Attempt | None,
    shotlist: ShotList,
    section: Section,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "fingerprint": section.fingerprints[key],
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
    """Shots whose (picked) take is rendered; seconds and cost of every take rendered."""
    done = [e for e in entries.values() if e["status"] == "downloaded"]
    takes = [
        (int(e["duration"]), t)
        for e in entries.values()
        for t in e.get("takes", [e])
        if t["status"] == "downloaded"
    ]
    totals: dict[str, Any] = {
        "shots": len(entries),
        "rendered": len(done),
        "seconds": sum(seconds for seconds, _ in takes),
        "cost": str(sum((Decimal(t["cost"]) for _, t in takes), ZERO_USD)),
    }
    if any("takes" in e for e in entries.values()):
        totals["takes"] = len(takes)
    return totals


def read_picks(lock: Mapping[str, Any] | None, section: str) -> dict[str, tuple[int, str]]:
    """Return the picks a lock's *section* records: shot id -> (take, that take's fingerprint).

    The fingerprint lets the caller honour a pick only while it names the video it was made
    on (`kling_pipe._shotlist.fingerprint`). Anything malformed is no pick at all.
    """
    entries = None if lock is None else lock.get(section)
    if not isinstance(entries, Mapping):
        return {}
    picks: dict[str, tuple[int, str]] = {}
    for shot_id, entry in entries.items():
        if not isinstance(entry, Mapping):
            continue
        take, fingerprint = entry.get("pick"), entry.get("fingerprint")
        if isinstance(take, int) and not isinstance(take, bool) and isinstance(fingerprint, str):
            picks[str(shot_id)] = (take, fingerprint)
    return picks


def entry_takes(entry: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """Return (take, fields) for each take an entry records: its ``takes``, else itself."""
    items = entry.get("takes")
    if not isinstance(items, list):
        return [(1, entry)]
    found: list[tuple[int, Mapping[str, Any]]] = []
    for item in items:
        if isinstance(item, Mapping):
            take = item.get("take")
            if isinstance(take, int) and not isinstance(take, bool) and take >= 1:
                shared = {k: entry[k] for k in _SHOT_FIELDS if k in entry}
                found.append((take, {**shared, **item}))
    return found


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
