"""A shot's versions: every render it ever had, numbered, and the one name each lands at.

A version is a downloaded attempt whose file is ``versions/<id>.v<N>.mp4`` in its origin's
folder (`kling_pipe._records.layout`): the store's attempt already holds what made it (its
inputs and fingerprint, task id, cost, dates), so a version is a view of the records, not a
record of its own. Its number N is in its file name, counted per shot and folder in the
order renders were delivered, across takes and edits; a take is only which render unit
(``id``, ``id#k``) the attempt was for.

Two things here:

* `VersionSlots` hands out numbers and lands files under them, never over anything: a number
  is never given twice (it is taken from the records and from the folder as they are), and a
  file lands with a link that fails rather than replace one (`kling_pipe._files.rename_new`).
* `shot_versions` lists each shot's versions for people (`versions`, `status`, the contact
  sheet): which is current (``<id>.mp4`` is its copy), which is the picked take's render for
  the shot as it is now, which is approved, and what changed from the version before.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe import _files
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.assessment import Assessment
from kling_pipe._records.layout import OutputLayout, parse_version_name
from kling_pipe._records.store import Store
from kling_pipe._shotlist.fingerprint import changed_inputs, explain_change
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, split_unit_key, unit_key


class VersionSlots:
    """The next free version number of each shot in one folder, and landing files there.

    Seeded once from the records (every attempt's and every recorded file's name, whatever
    their origin: a local server's renders share the folder with WaveSpeed's) and from the
    folder itself, so a number is never given twice, even to a file the records forgot.
    Thread-safe: a run lands its takes from worker threads.
    """

    def __init__(self, layout: OutputLayout, taken: Mapping[str, int]) -> None:
        self.layout = layout
        self._taken = dict(taken)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: Store | None, layout: OutputLayout) -> VersionSlots:
        """Read the numbers taken in *layout*'s folder from *store* and the folder (blocking)."""
        names: list[str] = []
        if store is not None:
            names += [a.file for a in store.attempts() if a.file is not None]
            names += [f.path for f in store.files()]
        taken: dict[str, int] = {}
        for name in names:
            found = layout.version_of(name)
            if found is not None:
                taken[found[0]] = max(taken.get(found[0], 0), found[1])
        try:
            listed = [path.name for path in layout.versions.iterdir()]
        except OSError:
            listed = []
        for name in listed:
            found = parse_version_name(name)
            if found is not None:
                taken[found[0]] = max(taken.get(found[0], 0), found[1])
        return cls(layout, taken)

    def next_number(self, shot_id: str) -> int:
        """Take the shot's next number: one more than any it ever had here."""
        with self._lock:
            number = self._taken.get(shot_id, 0) + 1
            self._taken[shot_id] = number
            return number

    def land(
        self,
        source: Path,
        shot_id: str,
        *,
        copy: bool = False,
        claimed: Callable[[Path], None] | None = None,
    ) -> Path:
        """Put *source* at the shot's next version and return where (blocking).

        Moved (*copy* False: a download, a take of an older layout) or copied (an identical
        take's video); never over an existing file: a number whose name is taken meanwhile is
        skipped. *claimed* is told each name before anything is put there (to record it
        first).
        """
        self.layout.versions.mkdir(parents=True, exist_ok=True)
        while True:
            dest = self.layout.version(shot_id, self.next_number(shot_id))
            if dest.exists():
                continue
            if claimed is not None:
                claimed(dest)
            try:
                if copy:
                    return _files.place(source, dest, replace=False)
                return _files.rename_new(source, dest)
            except FileExistsError:
                continue


@attrs.frozen(kw_only=True)
class VersionView:
    """One version of one shot, for people (see `shot_versions`)."""

    shot_id: str
    #: N in ``versions/<id>.v<N>.mp4``.
    number: int
    #: The take it rendered.
    take: int
    #: The render unit it was made for: the shot's id for take 1, else ``id#k``.
    key: str
    #: The shot list's folder joined with the recorded path.
    file: Path
    #: Whether the file is there with the recorded size (not hashed: that is `restore`'s).
    present: bool
    task_id: str | None
    cost: Decimal
    #: When it was delivered (its task's end), else when its submit was sent.
    made_at: datetime
    fingerprint: str
    #: The inputs it was made from, as recorded (JSON).
    inputs: str
    #: ``<id>.mp4`` is a copy of it: the approved version, else the picked take's render.
    current: bool
    #: The picked take's render for the shot as it is now (what unapproving brings back).
    picked: bool
    approved: bool
    #: What changed from the version before ("first render", "prompt changed", "take 2").
    change: str
    attempt: Attempt = attrs.field(eq=False, repr=False)

    @property
    def prompt(self) -> str | None:
        """The prompt it was rendered from, as sent; None when the records do not say."""
        recorded = _inputs(self.inputs)
        prompt = None if recorded is None else recorded.get("prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def marks(self) -> tuple[str, ...]:
        """The words that say what this version is now: current, picked, approved."""
        flags = (("current", self.current), ("picked", self.picked), ("approved", self.approved))
        return tuple(word for word, on in flags if on)

    def as_json(self) -> dict[str, object]:
        """Return the version as `versions --json` prints it (money as a decimal string)."""
        return {
            "version": self.number,
            "take": self.take,
            "unit": self.key,
            "file": str(self.file),
            "present": self.present,
            "task_id": self.task_id,
            "cost": str(self.cost),
            "date": self.made_at.isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint,
            "inputs": _inputs(self.inputs),
            "current": self.current,
            "picked": self.picked,
            "approved": self.approved,
            "change": self.change,
        }


def recorded_versions(
    attempts: Iterable[Attempt], layout: OutputLayout, origin: str
) -> dict[str, list[tuple[int, Attempt]]]:
    """Return each shot's versions by *origin* in *layout*'s folder: (N, attempt), N ascending.

    Only downloaded attempts whose file is a version of their own shot count; an attempt of
    an older layout (its file elsewhere) is not a version until it is moved into
    ``versions/`` (`kling_pipe._outputs.migrate`).
    """
    found: dict[str, list[tuple[int, Attempt]]] = {}
    for attempt in attempts:
        if attempt.origin != origin or attempt.state != "downloaded" or attempt.file is None:
            continue
        named = layout.version_of(attempt.file)
        shot_id = split_unit_key(attempt.shot_id)[0]
        if named is None or named[0] != shot_id:
            continue
        found.setdefault(shot_id, []).append((named[1], attempt))
    for numbered in found.values():
        numbered.sort(key=lambda pair: (pair[0], pair[1].id))
    return found


def shot_versions(
    shotlist: ShotList, store: Store | None, assessment: Assessment
) -> dict[str, tuple[VersionView, ...]]:
    """Return each shot's versions (by the assessed origin), oldest first, marked (blocking).

    Shots are in file order; a shot never rendered has none. Reads the store and stats each
    version's file.
    """
    origin = assessment.origin
    layout = OutputLayout.of(shotlist, origin)
    attempts = [] if store is None else store.attempts()
    by_shot = recorded_versions(attempts, layout, origin)
    views: dict[str, tuple[VersionView, ...]] = {}
    for shot in shotlist.shots:
        numbered = by_shot.get(shot.id, [])
        current = _current_attempt(assessment, shot.id)
        picked = _picked_attempt(store, assessment, shot.id)
        approval = assessment.approvals.get(shot.id)
        made: list[VersionView] = []
        previous: Attempt | None = None
        for number, attempt in numbered:
            file = shotlist.base_dir / str(attempt.file)
            made.append(
                VersionView(
                    shot_id=shot.id,
                    number=number,
                    take=split_unit_key(attempt.shot_id)[1],
                    key=attempt.shot_id,
                    file=file,
                    present=_present(file, attempt.bytes),
                    task_id=attempt.task_id,
                    cost=attempt.cost if attempt.charged else ZERO_USD,
                    made_at=attempt.completed_at or attempt.sent_at,
                    fingerprint=attempt.fingerprint,
                    inputs=attempt.inputs,
                    current=current is not None and current.id == attempt.id,
                    picked=picked is not None and picked.id == attempt.id,
                    approved=approval is not None
                    and approval.version == number
                    and approval.sha256 == attempt.sha256,
                    change=describe_change(previous, attempt),
                    attempt=attempt,
                )
            )
            previous = attempt
        views[shot.id] = tuple(made)
    return views


def _current_attempt(assessment: Assessment, shot_id: str) -> Attempt | None:
    """Return the attempt ``<id>.mp4`` copies: the picked (or approved) take's, on disk."""
    resume = assessment.resume.get(unit_key(shot_id, assessment.pick(shot_id)))
    if resume is None or resume.kind != "cached" or resume.attempt is None:
        return None
    return resume.attempt if resume.attempt.id >= 0 else None


def _picked_attempt(store: Store | None, assessment: Assessment, shot_id: str) -> Attempt | None:
    """Return the picked take's render for the shot as it is now, whatever is approved."""
    if shot_id not in assessment.unpinned:
        return _current_attempt(assessment, shot_id)
    if store is None:
        return None
    key = unit_key(shot_id, assessment.pick(shot_id))
    found = store.latest(key, assessment.unpinned[shot_id], assessment.origin)
    return found if found is not None and found.state == "downloaded" else None


def _present(file: Path, size: int | None) -> bool:
    try:
        return file.is_file() and (size is None or file.stat().st_size == size)
    except OSError:
        return False


def describe_change(previous: Attempt | None, attempt: Attempt) -> str:
    """Say what changed from *previous* to *attempt*, by their recorded inputs (a few words)."""
    if previous is None:
        return "first render"
    before, after = _inputs(previous.inputs), _inputs(attempt.inputs)
    reasons: list[str] = []
    if before is None or after is None:
        if previous.fingerprint != attempt.fingerprint:
            reasons.append("inputs changed")
    elif changed_inputs(before, after):
        reasons.append(explain_change(before, after))
    take = split_unit_key(attempt.shot_id)[1]
    if take != split_unit_key(previous.shot_id)[1]:
        reasons.append(f"take {take}")
    if not reasons:
        return "same inputs, rendered again"
    return ", ".join(reasons)


def _inputs(recorded: str) -> dict[str, Any] | None:
    """Return recorded inputs as data; None when not recorded (an adopted lock entry)."""
    try:
        value = json.loads(recorded)
    except ValueError:
        return None
    if not isinstance(value, dict) or "recipe" not in value:
        return None
    return value


def inputs_changed(recorded: str, now: Mapping[str, Any]) -> str:
    """Name what changed between a version's recorded inputs and the shot's now ("prompt")."""
    before = _inputs(recorded)
    if before is None:
        return ""
    return ", ".join(changed_inputs(before, now))
