"""Shots marked for re-render: ``<shot list>.kling-state/rerender.json``, per lock section.

A mark is a reviewer's "not good enough, render it again": a shot's id. The next full `run`
renders each marked shot again as if named by ``--rerender`` (the shots chained from it
follow), and clears the marks of the shots it rendered; a run with ``--only`` leaves
them for a later full run. `plan` prices them. They are kept beside the store, not in the lock
file: a mark is a request to this machine's next run, not a record of what was rendered.

Marks are kept per lock section (the bundled mock's, a local server's and WaveSpeed's renders
are marked apart) and read strictly, here only: a file that is not what kling-pipe writes is
one clear error naming it, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from kling_pipe import _files
from kling_pipe.exceptions import KlingPipeError

MARKS_FILE: Final = "rerender.json"


class MarksError(KlingPipeError):
    """The marks file is not one kling-pipe wrote (hand-edited, damaged)."""


def marks_path(state_dir: Path) -> Path:
    """Return where the marks of the shot list whose state folder is *state_dir* are kept."""
    return state_dir / MARKS_FILE


def read_all_marks(state_dir: Path) -> dict[str, tuple[str, ...]]:
    """Return every section's marks (none when there is no file); `MarksError` if damaged."""
    path = marks_path(state_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise MarksError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise MarksError(f"{path}: is not JSON; remove it to drop every mark") from None
    marks = document.get("marks") if isinstance(document, dict) else None
    if not isinstance(marks, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
        for names in marks.values()
    ):
        raise MarksError(
            f'{path}: "marks" is not a list of shot names per section; remove it to drop every mark'
        )
    return {str(section): tuple(names) for section, names in marks.items()}


def read_marks(state_dir: Path, section: str) -> tuple[str, ...]:
    """Return the shots marked for re-render in *section*, in the order marked."""
    return read_all_marks(state_dir).get(section, ())


def write_marks(state_dir: Path, section: str, names: Iterable[str]) -> None:
    """Record *names* as *section*'s marks (durably; the caller holds the run lock)."""
    marks = {**read_all_marks(state_dir), section: list(dict.fromkeys(names))}
    kept = {s: n for s, n in sorted(marks.items()) if n}
    path = marks_path(state_dir)
    if not kept:
        path.unlink(missing_ok=True)
        return
    document = {"version": 1, "marks": kept}
    state_dir.mkdir(parents=True, exist_ok=True)
    _files.write_bytes(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
