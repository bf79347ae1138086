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

Sections: WaveSpeed's renders are under ``shots``, a local server's (a base URL on this
machine, `kling_pipe._backends.origins`) under ``local``, the bundled mock's under
``simulated``, each with its own totals; every entry names its origin. An entry also names
the sha256 of each local image it was rendered from (``image_sha256``), so a shot can be told
apart from its records when its keyframe is not on this machine.

Approvals: an approved shot's entry says which version it holds, ``"approved": {"version": N,
"take": k, "fingerprint": ..., "sha256": ...}``, and its top level then describes that
version. Like picks, approvals are kept here and nowhere else (per section: the mock's, a
local server's and WaveSpeed's renders each have their own), so a teammate's checkout has
them, and every rewrite carries them on (`read_approvals`). An approval is read on its own,
even from an entry that is otherwise damaged: an approval that cannot be read
(`BrokenApproval`) is one line, and its shot stays held (nothing renders it) until it is
approved, unapproved or restored again; the value is carried on as it was written meanwhile.

Reading is parsed here, once (`parse_lock`): the rest of kling-pipe sees checked values, never
the document. An entry with a field of the wrong type or form (``"bytes": "2e5"`` after a
hand-merged conflict, a task id that is not one, a ``file`` outside the output folder) is a
`DamagedEntry`, one line naming the shot and the field, and is ignored as a record. An entry
that names no origin (written before records did) is the bundled mock's when the mock's saved
state beside the records knows its task, else of unknown origin: never anyone's render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, get_args

import attrs

from kling_pipe import _files as durable
from kling_pipe._backends.base import MOCK_ORIGIN, parse_task_id
from kling_pipe._backends.origins import origin_kind
from kling_pipe._decisions.attempts import Attempt, AttemptState
from kling_pipe._shotlist.fingerprint import Approval, kept_keys
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import Shot, ShotList, split_unit_key, unit_key
from kling_pipe.exceptions import KlingPipeError, ProtocolError

LOCK_VERSION = 1
#: The lock's sections: WaveSpeed's renders, a local server's, and the bundled mock's.
REAL_SECTION = "shots"
LOCAL_SECTION = "local"
MOCK_SECTION = "simulated"
SECTIONS: Final = (REAL_SECTION, LOCAL_SECTION, MOCK_SECTION)
#: The origin of an entry that names none, when nothing known says whose render it was.
UNKNOWN_ORIGIN: Final = "unknown"
#: Per-take fields that are the shot's, not the take's: kept only at the top of an entry.
_SHOT_FIELDS = ("model", "duration")
#: The frames whose local file's sha256 an entry records.
_IMAGE_FIELDS = ("image", "last_image")
#: A task id as the API forms it (until `kling_pipe._backends.base.parse_task_id` is there).
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_STATUSES: Final = frozenset({"pending", *get_args(AttemptState)})
#: The largest whole number a record keeps (SQLite's INTEGER): a larger one is no record.
_LARGEST_INT: Final = 2**63 - 1


@attrs.frozen(kw_only=True)
class Section:
    """What one section of the lock records: every take's latest attempt, and the picks."""

    #: By unit key (a shot's id names its take 1): the latest attempt for its fingerprint.
    attempts: Mapping[str, Attempt | None]
    #: By unit key: each take's current fingerprint (chains follow this section's picks).
    fingerprints: Mapping[str, str]
    #: By shot id: the picked take (absent means take 1).
    picks: Mapping[str, int] = attrs.Factory(dict)
    #: By shot id: the approvals to record (an approved take's attempt is its version's).
    approvals: Mapping[str, Hold] = attrs.Factory(dict)


def section_for(origin: str) -> str:
    """Name the lock section that records *origin*'s renders (by its kind: mock, local, real)."""
    match origin_kind(origin):
        case "mock":
            return MOCK_SECTION
        case "local":
            return LOCAL_SECTION
    return REAL_SECTION


def totals_key(section: str) -> str:
    """Name the totals of *section*: ``totals`` for WaveSpeed's renders, ``<section>_totals``."""
    return "totals" if section == REAL_SECTION else f"{section}_totals"


def lock_path_for(shotlist_path: Path) -> Path:
    """Return the lock file's path: ``<shot list>.lock.json`` beside it."""
    return shotlist_path.parent / f"{shotlist_path.name}.lock.json"


def lock_document(
    shotlist: ShotList, sections: Mapping[str, Section], *, version: str
) -> dict[str, Any]:
    """Build the lock document from each take's latest attempt for its current fingerprint.

    ``shots`` are WaveSpeed's renders, every shot listed. ``local`` (a local server's, which
    may stand for WaveSpeed: a proxy, a staging copy) has the same shape once it has any
    attempt; ``simulated`` (the bundled mock's, which cost nothing) lists the shots with any
    attempt. Neither ever satisfies a run against WaveSpeed. ``totals`` count WaveSpeed's
    renders only; the other sections have their own.
    """
    real = sections[REAL_SECTION]
    shots = {s.id: _shot_entry(s, real, shotlist) for s in shotlist.shots}
    document: dict[str, Any] = {
        "lock_version": LOCK_VERSION,
        "kling_pipe": version,
        "storyboard": shotlist.storyboard.name,
        "model": shotlist.storyboard.model,
        REAL_SECTION: shots,
        totals_key(REAL_SECTION): _totals(shots),
    }
    for name in (LOCAL_SECTION, MOCK_SECTION):
        section = sections.get(name)
        if section is None:
            continue
        attempted = [
            s
            for s in shotlist.shots
            if s.id in section.approvals
            or any(section.attempts.get(key) is not None for key in _keys(s, section))
        ]
        listed = shotlist.shots if name == LOCAL_SECTION and attempted else attempted
        entries = {s.id: _shot_entry(s, section, shotlist) for s in listed}
        if entries:
            document[name] = entries
            document[totals_key(name)] = _totals(entries)
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
    hold = section.approvals.get(shot.id)
    if hold is not None:
        entry["approved"] = hold.raw if isinstance(hold, BrokenApproval) else _approval(hold)
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
        "model": shotlist.shot(split_unit_key(key)[0]).model,
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
        images = _local_image_hashes(attempt.inputs)
        if images:
            entry["image_sha256"] = images
        if attempt.error:
            entry["error"] = attempt.error
    return entry


def _approval(approval: Approval) -> dict[str, Any]:
    return {
        "version": approval.version,
        "take": approval.take,
        "fingerprint": approval.fingerprint,
        "sha256": approval.sha256,
    }


def _local_image_hashes(inputs: str) -> dict[str, str]:
    """Return the sha256 of each local image an attempt's recorded inputs name, by field."""
    try:
        recorded = json.loads(inputs)
    except ValueError:
        return {}
    if not isinstance(recorded, Mapping):
        return {}
    found = {}
    for field in _IMAGE_FIELDS:
        frame = recorded.get(field)
        if isinstance(frame, Mapping) and isinstance(frame.get("sha256"), str):
            found[field] = frame["sha256"]
    return found


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


def write_lock(path: Path, document: Mapping[str, Any]) -> Path:
    """Write the lock file atomically (blocking): a reader sees the old file or the new."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return durable.write_bytes(path, text.encode())


def read_lock(path: Path) -> dict[str, Any] | None:
    """Read a lock file's document; None if there is none, a clear error if it is no lock file.

    The document as written: `parse_lock` turns it into checked values, and nothing else
    in kling-pipe reads it.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KlingPipeError(f"{path}: cannot read the lock file: {exc}") from None
    except RecursionError:
        raise KlingPipeError(f"{path}: cannot read the lock file: nested too deep") from None
    if not isinstance(data, dict) or not isinstance(data.get("shots"), dict):
        raise KlingPipeError(f"{path}: not a kling-pipe lock file")
    _check_version(path, data.get("lock_version"))
    return data


def _check_version(path: Path, version: object) -> None:
    """Refuse a lock file this version cannot read whole: a newer one is never rewritten.

    A newer kling-pipe may have recorded what this one does not know; reading it as version
    `LOCK_VERSION` and writing it back would drop that silently.
    """
    if version is None:
        return  # written before lock files said their version: version 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KlingPipeError(f"{path}: lock_version: {_not('a whole number from 1', version)}")
    if version > LOCK_VERSION:
        raise KlingPipeError(
            f"{path}: lock_version: {version} was written by a newer kling-pipe; this one reads "
            f"lock_version {LOCK_VERSION}: upgrade kling-pipe (the lock file is left as it is)"
        )


# Reading: the lock file parsed at the border.


@attrs.frozen(kw_only=True)
class LockTake:
    """One take as a lock entry records it, every field checked."""

    #: 1-based.
    take: int
    fingerprint: str
    #: As recorded (``pending``, or an attempt's state); None when the entry says none.
    status: str | None
    #: ``mock``, a base URL, another backend's name, or `UNKNOWN_ORIGIN`.
    origin: str
    #: In the API's form; None when the take records no task.
    task_id: str | None
    cost: Decimal
    #: Relative to the shot list's folder, proved to lead inside its output folder.
    file: Path | None
    sha256: str | None
    size: int | None
    submitted_at: datetime | None
    completed_at: datetime | None
    error: str
    #: The sha256 of each local image the take was rendered from, by field (image, last_image).
    image_sha256: Mapping[str, str]
    model: str | None
    duration: int | None


@attrs.frozen(kw_only=True)
class LockEntry:
    """One shot's entry in one section of the lock file, every field checked."""

    shot_id: str
    section: str
    #: The entry's top level: the picked take (the only one, for a shot of one take).
    picked: LockTake
    #: Every take recorded, take 1 first.
    takes: tuple[LockTake, ...]
    #: The picked take, when the entry names one.
    pick: int | None
    #: The entry as written, for readers of lock entries as documents; every field checked.
    document: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class DamagedEntry:
    """An entry that is not a record: which section, shot and field, and what is wrong."""

    section: str
    #: "" when the whole section is damaged.
    shot_id: str
    #: The field's path inside the entry ("bytes", "takes[1].duration"); "" for the entry.
    field: str
    problem: str

    def __str__(self) -> str:
        where = ".".join(part for part in (self.section, self.shot_id, self.field) if part)
        return f"{where}: {self.problem}"


@attrs.frozen(kw_only=True)
class BrokenApproval:
    """An approval the lock file records that cannot be read: its shot stays held all the same."""

    section: str
    shot_id: str
    #: The field's path inside the approval ("version"); "" for the whole value.
    field: str
    problem: str
    #: The value as written, carried on by every rewrite until the shot is approved again.
    raw: Any = attrs.field(eq=False, hash=False)

    def __str__(self) -> str:
        where = ".".join(p for p in (self.section, self.shot_id, "approved", self.field) if p)
        return f"{where}: {self.problem}"


#: An approval as the lock file records it: read, or held though it cannot be read.
Hold = Approval | BrokenApproval


@attrs.frozen(kw_only=True)
class Lock:
    """A lock file as read: its sections' checked entries, and the entries that are damaged."""

    path: Path
    #: By section, then shot id.
    sections: Mapping[str, Mapping[str, LockEntry]]
    damaged: tuple[DamagedEntry, ...] = ()
    #: By section, then shot id: every approval, read or not (`BrokenApproval`).
    approvals: Mapping[str, Mapping[str, Hold]] = attrs.Factory(dict)

    def entries(self, section: str) -> Mapping[str, LockEntry]:
        """Return *section*'s checked entries, by shot id."""
        return self.sections.get(section, {})

    def notes(self) -> list[str]:
        """Say, one line each, which entries are not taken as records and why."""
        lines = [
            f"{self.path.name}: {damaged}; the entry is ignored, the shot counts as not recorded"
            for damaged in self.damaged
        ]
        for section in SECTIONS:
            lines.extend(
                f"{self.path.name}: {hold}; the shot stays approved (nothing renders it) "
                "until `approve`, `unapprove` or `restore` records it anew"
                for hold in self.approvals.get(section, {}).values()
                if isinstance(hold, BrokenApproval)
            )
            for shot_id, entry in self.entries(section).items():
                if any(t.origin == UNKNOWN_ORIGIN and t.task_id for t in entry.takes):
                    lines.append(
                        f"{self.path.name}: {section}.{shot_id}: written by an older kling-pipe "
                        "without its origin, and no task of the bundled mock's here: of unknown "
                        "origin, never taken as a render"
                    )
        return lines


class _Damage(Exception):  # noqa: N818 - internal signal, never escapes this module
    """One field of an entry is wrong: where, and what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@attrs.frozen(kw_only=True)
class _Context:
    """What checking an entry needs: where paths lead, and the bundled mock's task ids."""

    base_dir: Path
    output_dir: Path
    #: The output folder resolved (symlinks followed): files must lead inside it.
    output_real: Path
    mock_tasks: Collection[str]


def parse_lock(
    document: Mapping[str, Any],
    *,
    path: Path,
    base_dir: Path,
    output_dir: Path,
    mock_tasks: Collection[str] = (),
) -> Lock:
    """Check a lock document (`read_lock`) entry by entry; return what it records.

    *base_dir* is the shot list's folder (an entry's ``file`` is relative to it) and
    *output_dir* its output folder, which every ``file`` must lead inside (symlinks
    followed). *mock_tasks* are the task ids the bundled mock's saved state knows: an entry
    that names no origin is the mock's when its task is one of them. Never raises: a wrong
    entry is a `DamagedEntry`.
    """
    context = _Context(
        base_dir=base_dir,
        output_dir=output_dir,
        output_real=output_dir.resolve(),
        mock_tasks=frozenset(mock_tasks),
    )
    sections: dict[str, dict[str, LockEntry]] = {}
    damaged: list[DamagedEntry] = []
    approvals: dict[str, dict[str, Hold]] = {}
    for section in SECTIONS:
        raw = document.get(section)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problem = f"must be an object of shot entries, not {_kind(raw)}"
            damaged.append(DamagedEntry(section=section, shot_id="", field="", problem=problem))
            continue
        entries = sections.setdefault(section, {})
        for shot_id, value in raw.items():
            if isinstance(value, Mapping) and value.get("approved") is not None:
                # Read on its own: a damaged entry never lifts an approval (see the module).
                approvals.setdefault(section, {})[str(shot_id)] = _parse_approval(
                    section, str(shot_id), value["approved"]
                )
            try:
                entries[str(shot_id)] = _parse_entry(section, str(shot_id), value, context)
            except _Damage as damage:
                damaged.append(
                    DamagedEntry(
                        section=section,
                        shot_id=str(shot_id),
                        field=damage.field,
                        problem=damage.problem,
                    )
                )
    return Lock(path=path, sections=sections, damaged=tuple(damaged), approvals=approvals)


def _parse_approval(section: str, shot_id: str, raw: object) -> Hold:
    """Read an entry's ``approved`` value; one that cannot be read still holds its shot."""
    try:
        return _approval_of(raw)
    except _Damage as damage:
        return BrokenApproval(
            section=section, shot_id=shot_id, field=damage.field, problem=damage.problem, raw=raw
        )


def _approval_of(raw: object) -> Approval:
    if not isinstance(raw, Mapping):
        raise _Damage("", _not("an object (version, take, fingerprint, sha256)", raw))
    version = _optional_int(raw, "version", "", minimum=1, what="a version number")
    take = _optional_int(raw, "take", "", minimum=1, what="a take number")
    fingerprint = _sha256(raw, "fingerprint", "")
    sha256 = _sha256(raw, "sha256", "")
    if version is None:
        raise _Damage("version", "missing")
    if take is None:
        raise _Damage("take", "missing")
    if fingerprint is None:
        raise _Damage("fingerprint", "missing")
    if sha256 is None:
        raise _Damage("sha256", "missing")
    return Approval(version=version, take=take, fingerprint=fingerprint, sha256=sha256)


def _parse_entry(section: str, shot_id: str, raw: object, context: _Context) -> LockEntry:
    if not isinstance(raw, Mapping):
        raise _Damage("", f"must be an object, not {_kind(raw)}")
    shared = {k: raw[k] for k in _SHOT_FIELDS if k in raw}
    pick = _optional_int(raw, "pick", "", minimum=1, what="a take number")
    picked = _parse_take(raw, "", section, context, take=pick or 1)
    items = raw.get("takes")
    if items is None:
        takes: tuple[LockTake, ...] = (picked,)
    else:
        if not isinstance(items, list):
            raise _Damage("takes", f"must be an array of takes, not {_kind(items)}")
        parsed = []
        for index, item in enumerate(items):
            where = f"takes[{index}]"
            if not isinstance(item, Mapping):
                raise _Damage(where, f"must be an object, not {_kind(item)}")
            number = _optional_int(item, "take", where, minimum=1, what="a take number")
            if number is None:
                raise _Damage(f"{where}.take", "missing; each take says which it is")
            parsed.append(_parse_take({**shared, **item}, where, section, context, take=number))
        numbers = [t.take for t in parsed]
        if len(set(numbers)) != len(numbers):
            raise _Damage("takes", "names one take more than once")
        takes = tuple(sorted(parsed, key=lambda t: t.take))
    return LockEntry(
        shot_id=shot_id,
        section=section,
        picked=picked,
        takes=takes,
        pick=pick,
        document=dict(raw),
    )


def _parse_take(
    raw: Mapping[str, Any], where: str, section: str, context: _Context, *, take: int
) -> LockTake:
    fingerprint = _optional_text(raw, "fingerprint", where)
    if fingerprint is None:
        raise _Damage(_join(where, "fingerprint"), "missing")
    if not _SHA256.fullmatch(fingerprint):
        raise _Damage(_join(where, "fingerprint"), _not("a 64-digit hex fingerprint", fingerprint))
    status = _optional_text(raw, "status", where)
    if status is not None and status not in _STATUSES:
        known = ", ".join(sorted(_STATUSES))
        raise _Damage(_join(where, "status"), f"{json.dumps(status)} is not one of {known}")
    task_id = _optional_text(raw, "task_id", where, what="a task id")
    if task_id is not None:
        try:
            parse_task_id(task_id, "task_id")  # the API's form: the one task-id parser
        except ProtocolError:
            raise _Damage(
                _join(where, "task_id"), _not("a task id (letters, digits, _ and -)", task_id)
            ) from None
    named = _optional_text(raw, "origin", where)
    if named == "":
        raise _Damage(_join(where, "origin"), "empty; an origin names the backend")
    return LockTake(
        take=take,
        fingerprint=fingerprint,
        status=status,
        origin=_origin(section, named, task_id, context),
        task_id=task_id,
        cost=_cost(raw, where),
        file=_file(raw, where, context),
        sha256=_sha256(raw, "sha256", where),
        size=_optional_int(raw, "bytes", where, minimum=0, what="a whole number of bytes"),
        submitted_at=_time(raw, "submitted_at", where),
        completed_at=_time(raw, "completed_at", where),
        error=_optional_text(raw, "error", where) or "",
        image_sha256=_image_hashes(raw, where),
        model=_optional_text(raw, "model", where),
        duration=_optional_int(raw, "duration", where, minimum=1, what="a number of seconds"),
    )


def _origin(section: str, named: str | None, task_id: str | None, context: _Context) -> str:
    """Whose render a take is: the mock's section is the mock's; else as named, or known."""
    if section == MOCK_SECTION:
        return MOCK_ORIGIN
    if named is not None:
        return named
    if task_id is not None and task_id in context.mock_tasks:
        return MOCK_ORIGIN
    return UNKNOWN_ORIGIN


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: object) -> str:
    """Name a JSON value's type as written, for 'must be X, not Y' messages."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int() | float():
            return f"a number ({value})"
        case str():
            shown = value if len(value) <= 40 else value[:37] + "..."
            return f"a string ({json.dumps(shown, ensure_ascii=False)})"
        case Mapping():
            return "an object"
        case list():
            return "an array"
    return f"a {type(value).__name__}"


def _not(what: str, value: object) -> str:
    return f"must be {what}, not {_kind(value)}"


def _optional_text(
    raw: Mapping[str, Any], key: str, where: str, *, what: str = "a string"
) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Damage(_join(where, key), _not(what, value))
    return value


def _optional_int(
    raw: Mapping[str, Any], key: str, where: str, *, minimum: int, what: str
) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not minimum <= value <= _LARGEST_INT
    ):
        raise _Damage(_join(where, key), _not(what, value))
    return value


def _cost(raw: Mapping[str, Any], where: str) -> Decimal:
    value = raw.get("cost")
    if value is None:
        return ZERO_USD
    what = 'an amount in USD written as a string ("0.420")'
    if not isinstance(value, str):
        raise _Damage(_join(where, "cost"), _not(what, value))
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _Damage(_join(where, "cost"), _not(what, value)) from None
    if not amount.is_finite() or amount < 0:
        raise _Damage(_join(where, "cost"), _not(what, value))
    return amount


def _sha256(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _optional_text(raw, key, where, what="a 64-digit hex sha256")
    if value is not None and not _SHA256.fullmatch(value):
        raise _Damage(_join(where, key), _not("a 64-digit hex sha256", value))
    return value


def _time(raw: Mapping[str, Any], key: str, where: str) -> datetime | None:
    what = "a time with its UTC offset (2026-01-02T03:04:05.000+00:00)"
    value = _optional_text(raw, key, where, what=what)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _Damage(_join(where, key), _not(what, value)) from None
    if when.tzinfo is None:
        raise _Damage(_join(where, key), _not(what, value))
    return when


def _file(raw: Mapping[str, Any], where: str, context: _Context) -> Path | None:
    """Return the take's file, proved to lead inside the output folder (symlinks followed)."""
    value = _optional_text(raw, "file", where, what="a file path")
    if value is None:
        return None
    if "\0" in value:
        raise _Damage(_join(where, "file"), "must be a file path, not text with a NUL byte")
    try:
        real = (context.base_dir / value).resolve()
    except (OSError, RuntimeError, ValueError):  # a loop of links; a NUL in the path
        real = None
    if real is None or real == context.output_real or not real.is_relative_to(context.output_real):
        raise _Damage(
            _join(where, "file"),
            f"{json.dumps(value, ensure_ascii=False)} leads outside the output folder "
            f"{context.output_dir}",
        )
    return Path(value)


def _image_hashes(raw: Mapping[str, Any], where: str) -> Mapping[str, str]:
    value = raw.get("image_sha256")
    if value is None:
        return {}
    key = _join(where, "image_sha256")
    if not isinstance(value, Mapping):
        raise _Damage(key, _not("an object of sha256 by frame", value))
    found = {}
    for field, digest in value.items():
        if field not in _IMAGE_FIELDS:
            raise _Damage(f"{key}.{field}", f"unknown frame; use {' or '.join(_IMAGE_FIELDS)}")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _Damage(f"{key}.{field}", _not("a 64-digit hex sha256", digest))
        found[str(field)] = digest
    return found


def read_approvals(lock: Lock | None, section: str) -> dict[str, Hold]:
    """Return every approval a lock's *section* records, by shot id (read or not)."""
    if lock is None:
        return {}
    return dict(lock.approvals.get(section, {}))


def pins(holds: Mapping[str, Hold]) -> dict[str, Approval]:
    """Return the approvals among *holds* that can be read: what pins a shot's fingerprint."""
    return {shot_id: h for shot_id, h in holds.items() if isinstance(h, Approval)}


def read_picks(lock: Lock | None, section: str) -> dict[str, tuple[int, str]]:
    """Return the picks a lock's *section* records: shot id -> (take, that take's fingerprint).

    The fingerprint lets the caller honour a pick only while it names the video it was made
    on (`kling_pipe._shotlist.fingerprint`). A damaged entry has no pick.
    """
    if lock is None:
        return {}
    return {
        shot_id: (entry.pick, entry.picked.fingerprint)
        for shot_id, entry in lock.entries(section).items()
        if entry.pick is not None
    }
