"""`kling-pipe init`: a starter shot list from a folder of keyframes, valid as written.

The quickest way from a folder of images to a storyboard is to have the file written for
you: one shot per image in name order (natural order, so ``shot2`` comes before
``shot10``), ids taken from the file names, placeholder prompts to replace. With
``bridge=True`` each image is also the previous shot's last frame, so the shots flow into
one another. The file is checked with the real loader before it is written, and never
written over an existing one. Its placeholder prompts are the one thing the loader refuses
in it: a shot list is not ready to render (or to pay for) until each is replaced.

Beside the shot list, ``shotlist.schema.json`` is written (unless a file of that name is
there already) and named in the first line's ``#:schema`` comment, so that editors with
Taplo / Even Better TOML offer completion and inline errors straight away.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs

from kling_pipe import _files as durable
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.images import check_image_file, other_image_format, sniff
from kling_pipe._shotlist.loader import load, loads
from kling_pipe._shotlist.schema import schema_json
from kling_pipe._shotlist.validate import PLACEHOLDER, PLACEHOLDER_MESSAGE
from kling_pipe.exceptions import KlingPipeError, Problem, ShotListError

__all__ = [
    "PLACEHOLDER",
    "SCHEMA_FILE_NAME",
    "OnSkip",
    "ShotListExistsError",
    "init_shot_list",
    "natural_key",
    "placeholders_left",
    "shot_id_from",
    "unique_ids",
]

#: File name of the schema written beside a new shot list, named by its ``#:schema`` line.
SCHEMA_FILE_NAME: Final = "shotlist.schema.json"
#: Names that look like images even when the content says otherwise: these are reported, not
#: skipped, because the user surely meant them as keyframes.
_IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".webp"})
_MAX_ID: Final = 64
_NOT_ID_CHARS: Final = re.compile(r"[^a-z0-9_-]+")
_DIGITS: Final = re.compile(r"(\d+)")
#: Enough of a file to recognise PNG, JPEG or WebP by content.
_SNIFF_BYTES: Final = 64


class ShotListExistsError(KlingPipeError):
    """`init` was asked to write a shot list where a file already is."""


@attrs.frozen
class _Frame:
    path: Path
    shot_id: str


#: Told of each entry of the folder that `init` leaves out: its path, and why.
OnSkip = Callable[[Path, str], None]


def init_shot_list(
    images_dir: Path,
    *,
    name: str,
    bridge: bool = False,
    out: Path | None = None,
    on_skip: OnSkip | None = None,
) -> Path:
    """Write a starter shot list for the images in *images_dir*; return its path.

    *out* defaults to ``<name>.toml`` beside *images_dir* (its parent folder), so the
    images are referred to as ``<folder>/<file>``. Only real PNG, JPEG and WebP files count
    (checked by content); every other entry of the folder (a TIFF, a text file, a
    sub-folder) is left out and *on_skip* is called with its path and why, in name order.
    Hidden entries (a name starting with ``.``, such as ``.DS_Store``) are left out
    silently. Raises `ShotListExistsError` if *out*
    exists, and `ShotListError` if the folder holds no image, if an image fails the
    checks WaveSpeed's limits impose (every failure listed), or if *name* cannot name a
    storyboard. The file it writes does not load until its placeholder prompts (starting
    with `PLACEHOLDER`) are replaced: `placeholders_left` counts them.
    """
    if not images_dir.is_dir():
        raise ShotListError(str(images_dir), [Problem("", "not a folder of images")])
    target = out if out is not None else images_dir.parent / f"{_file_stem(name)}.toml"
    if not target.parent.is_dir():
        raise KlingPipeError(f"{target}: the folder {target.parent} does not exist")
    if target.exists():
        raise ShotListExistsError(
            f"{target}: already exists; choose another file with -o, or move it away"
        )
    images = _keyframes(images_dir, on_skip or _ignore)
    ids = unique_ids(p.stem for p in images)
    frames = [_Frame(path, shot_id) for path, shot_id in zip(images, ids, strict=True)]
    text = _shot_list_text(frames_base=target.parent, frames=frames, name=name, bridge=bridge)
    # The loader is the judge: what is written must validate exactly as a user's file would,
    # but for the placeholders. The images were checked (decoded) just above.
    _placeholders(lambda: loads(text, source=target, check_image=None))
    _write_new(text.encode("utf-8"), target)
    schema_path = target.parent / SCHEMA_FILE_NAME
    if not schema_path.exists():
        durable.write_bytes(schema_path, schema_json().encode("utf-8"))
    return target


def placeholders_left(path: Path) -> int:
    """Return how many prompts of the shot list at *path* are still `init`'s placeholders.

    Raises `ShotListError` for any other problem; images are not checked (see `load`).
    """
    return _placeholders(lambda: load(path, check_image=None))


def _placeholders(load_it: Callable[[], object]) -> int:
    """Run *load_it*; count the placeholder problems, re-raising if there are any others."""
    try:
        load_it()
    except ShotListError as error:
        others = [p for p in error.problems if p.message != PLACEHOLDER_MESSAGE]
        if others:
            raise ShotListError(error.source, others) from None
        return len(error.problems)
    return 0


def _ignore(_path: Path, _why: str) -> None:
    """Say nothing of a file left out (`init_shot_list` without *on_skip*)."""


def _keyframes(images_dir: Path, on_skip: OnSkip) -> list[Path]:
    """Return the images of *images_dir* in natural name order, or raise listing the bad ones.

    Every other entry is named to *on_skip*, with why it is left out.
    """
    found: list[Path] = []
    problems: list[Problem] = []
    for path in sorted(images_dir.iterdir(), key=natural_key):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            on_skip(path, f"a folder; init takes only the images directly in {images_dir}")
            continue
        if not path.is_file():
            on_skip(path, "not a regular file")
            continue
        try:
            with path.open("rb") as fh:
                head = fh.read(_SNIFF_BYTES)
        except OSError as exc:
            problems.append(Problem("", f'cannot read "{path}": {exc.strerror or exc}'))
            continue
        if sniff(head) is None and path.suffix.lower() not in _IMAGE_SUFFIXES:
            on_skip(path, _why_not_a_keyframe(head))
            continue
        message = check_image_file(path)
        if message is None:
            found.append(path)
        else:
            problems.append(Problem("", message))
    if problems:
        raise ShotListError(str(images_dir), problems)
    if not found:
        problem = Problem("", "no PNG, JPEG or WebP images here (checked by content)")
        raise ShotListError(str(images_dir), [problem])
    return found


def _why_not_a_keyframe(head: bytes) -> str:
    """Say why a file whose first bytes are *head* is not a keyframe `init` can use."""
    other = other_image_format(head)
    if other is not None:
        return f"a {other} image; WaveSpeed takes PNG, JPEG or WebP (convert it to use it)"
    return "not a PNG, JPEG or WebP image (checked by content)"


def natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``shot2.png`` before ``shot10.png``, ignoring case."""
    parts = _DIGITS.split(path.name.casefold())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def shot_id_from(stem: str) -> str:
    """Turn a file name stem into a valid shot id: lower case, a-z 0-9 _ -, at most 64."""
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    text = _NOT_ID_CHARS.sub("-", ascii_text.lower()).strip("-")
    return text[:_MAX_ID].rstrip("-") or "shot"


def unique_ids(stems: Iterable[str]) -> list[str]:
    """Derive a valid id from each stem, numbering repeats (``a``, ``a-2``, ``a-3``)."""
    taken: set[str] = set()
    ids: list[str] = []
    for stem in stems:
        base = shot_id_from(stem)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            suffix = f"-{n}"
            candidate = base[: _MAX_ID - len(suffix)] + suffix
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _file_stem(name: str) -> str:
    return shot_id_from(name) if name.strip() else "storyboard"


def _toml_string(text: str) -> str:
    """Quote *text* as a TOML basic string (JSON escapes are TOML escapes, bar DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.absolute(), base.absolute())).as_posix()


def _shot_list_text(*, frames_base: Path, frames: Sequence[_Frame], name: str, bridge: bool) -> str:
    """Return the starter shot list's TOML for *frames*, paths relative to *frames_base*."""
    with_last = ", ".join(map(str, rules.DURATIONS_WITH_LAST_IMAGE))
    without = " or ".join(map(str, rules.DURATIONS_WITHOUT_LAST_IMAGE))
    lines = [
        f"#:schema ./{SCHEMA_FILE_NAME}",
        "# A starter shot list written by `kling-pipe init`. Replace every prompt that starts",
        f'# with "{PLACEHOLDER}", then check it with `kling-pipe validate` and render it with',
        "# `kling-pipe run` (offline against the bundled mock unless you pass --backend).",
        "version = 1",
        "",
        "[storyboard]",
        f"name = {_toml_string(name)}",
        "# Rendered shots go to renders/<name> beside this file; output_dir changes that.",
        "",
        "[defaults]",
        f"duration = {rules.DEFAULT_DURATION}   # seconds: {without}; with last_image {with_last}",
        '# prompt_prefix = "35mm film, soft light. "   # text shared by every prompt',
    ]
    for index, frame in enumerate(frames):
        image = _relative(frame.path, frames_base)
        lines += [
            "",
            "[[shots]]",
            f"id = {_toml_string(frame.shot_id)}",
            f"prompt = {_toml_string(f'{PLACEHOLDER} what happens in this shot, from {image}')}",
            f"image = {_toml_string(image)}",
        ]
        following = frames[index + 1] if index + 1 < len(frames) else None
        if bridge and following is not None:
            last = _relative(following.path, frames_base)
            lines += [
                f"last_image = {_toml_string(last)}   # the next shot's first frame",
                f"duration = {rules.DEFAULT_DURATION}",
            ]
    return "\n".join(lines) + "\n"


def _write_new(data: bytes, target: Path) -> None:
    """Write *target* durably, failing if it appeared meanwhile (never overwrite)."""
    try:
        durable.write_bytes(target, data, replace=False)
    except FileExistsError:
        raise ShotListExistsError(
            f"{target}: already exists; choose another file with -o, or move it away"
        ) from None
