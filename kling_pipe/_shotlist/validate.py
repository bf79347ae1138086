"""Check a parsed shot-list document against every rule, collecting all problems at once.

This pass works on the plain dict that TOML gives, so it can name the exact key path of
every problem (cattrs alone reports validator failures without the field or the message).
It is pure except for the image check, which is passed in: the loader gives one that decodes
each image file (once per file per pass), tests may give a fake. When it finds nothing wrong
it returns a normalized document, `[defaults]` merged into each shot, ready for the cattrs
converter.
"""

from __future__ import annotations

import difflib
import functools
import graphlib
import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from kling_pipe._shotlist import catalogue, rules
from kling_pipe._shotlist.catalogue import Field, ModelEntry, find_model, model_entry
from kling_pipe._shotlist.images import ImageMeasures
from kling_pipe._shotlist.specs import MODEL_FIELD_NAMES
from kling_pipe.exceptions import Problem

ImageCheck = Callable[[Path], "str | None"]
#: Reads a local image's size in pixels and in bytes (None when it cannot be read).
ImageMeasure = Callable[[Path], "ImageMeasures | None"]

TOP_KEYS: Final = ("version", "storyboard", "defaults", "shots")
STORYBOARD_KEYS: Final = ("name", "output_dir", "concurrency", "max_cost", "model", "budget")
SHOT_KEYS: Final = (
    "id",
    "prompt",
    "image",
    "last_image",
    "duration",
    "prompt_prefix",
    "prompt_suffix",
    "takes",
    "model",
    *MODEL_FIELD_NAMES,
)
#: Every shot key but its id and a multi-shot prompt (which is one shot's own story).
DEFAULT_KEYS: Final = tuple(k for k in SHOT_KEYS if k not in ("id", "multi_prompt"))
#: The keys a shot's fields are merged in, in the order their problems are told; duration and
#: model are not among them: their values depend on the model (`_check_duration`,
#: `_shot_model`).
_MERGED_KEYS: Final = tuple(
    k for k in (*DEFAULT_KEYS, "multi_prompt") if k not in ("duration", "model")
)
#: The keys every model takes (which frames, and the frame limits, are per model too).
_COMMON_KEYS: Final = ("id", "prompt", "duration", "prompt_prefix", "prompt_suffix", "takes")
PART_KEYS: Final = ("prompt", "duration")
CHAIN_KEYS: Final = ("shot", "frame")
FRAMES: Final = ("first", "last")
SHOT_ID_RE: Final = re.compile(r"[a-z0-9_-]{1,64}")
_TEXT_KEYS: Final = ("prompt", "prompt_prefix", "prompt_suffix")
_IMAGE_KEYS: Final = ("image", "last_image")
#: How every prompt written by `kling-pipe init` starts, until the user replaces it.
PLACEHOLDER: Final = "FILL IN:"
#: The problem reported for such a prompt (`init` looks for it to tell it from the others).
PLACEHOLDER_MESSAGE: Final = (
    "still the placeholder written by kling-pipe init; describe what happens in the shot"
)


#: `json.dumps(text, ensure_ascii=False)` without building an encoder at every call (a
#: shot's label quotes its id, so this runs once a shot).
_QUOTE: Final = json.JSONEncoder(ensure_ascii=False).encode


def quote(text: str) -> str:
    """Quote a user's string for a message, escaping what would garble the line."""
    return _QUOTE(text)


def describe(value: object) -> str:
    """Name a TOML value's type the way the user wrote it, for 'must be X, not Y' messages."""
    match value:
        case bool():
            return f"a boolean ({str(value).lower()})"
        case int():
            return f"an integer ({value})"
        case float() | Decimal():
            return f"a float ({value})"
        case str():
            return f"a string ({quote(value)})"
        case Mapping():
            return "a table"
        case list() | tuple():
            return "an array"
    return f"a {type(value).__name__}"


def suggest(key: str, known: Sequence[str]) -> str:
    """Say a key is unknown, suggesting the closest known one (`durration` → `duration`)."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return "unknown key; allowed keys are " + ", ".join(known)


@attrs.define
class _Report:
    """The problems found so far, and what checking files needs; one per validation pass."""

    base_dir: Path
    check_image: ImageCheck | None
    measure_image: ImageMeasure | None = None
    #: The storyboard's model, once known: some image rules are errors for one model only.
    model: str = rules.DEFAULT_MODEL
    problems: list[Problem] = attrs.Factory(list)
    #: What does not stop a render but may fail it on the server (printed, never refused).
    warnings: list[Problem] = attrs.Factory(list)
    #: Each image file's verdict, so a file used by several shots is read and decoded once.
    _images: dict[Path, str | None] = attrs.Factory(dict)
    #: Each local image path as written, joined to the shot list's folder.
    _files: dict[str, Path] = attrs.Factory(dict)
    #: How each checked image file is outside Kling's image limits, read and told once too.
    _limits: dict[Path, list[str]] = attrs.Factory(dict)
    #: Each model's key rules, worked out once per pass, not once per shot.
    _keys_by_model: dict[str, tuple[ModelEntry, _ModelKeys]] = attrs.Factory(dict)

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def check_frame_limits(self, key_path: str, file: Path) -> None:
        """Hold a frame that passed the image checks to Kling's size and shape limits.

        An error where the model's own WaveSpeed page states the limits, else a warning.
        """
        if self.measure_image is None:
            return
        found = self._limits.get(file)
        if found is None:
            measures = self.measure_image(file)
            found = self._limits[file] = (
                []
                if measures is None
                else rules.image_limit_problems(
                    measures.width, measures.height, measures.size_bytes
                )
            )
        info = catalogue.CATALOGUE.get(self.model)
        for wrong in found:
            if info is not None and info.states_image_limits:
                self.add(key_path, f'"{file}" is {wrong}')
            else:
                self.warnings.append(
                    Problem(
                        key_path,
                        f'"{file}" is {wrong}; WaveSpeed\'s page for {self.model} states no '
                        "limit, so the frame may be refused only once it is sent",
                    )
                )

    def model_keys(self, entry: ModelEntry) -> _ModelKeys:
        """Return what a shot's keys are held to on *entry*'s model (`_model_keys`)."""
        known = self._keys_by_model.get(entry.path)
        if known is None or known[0] is not entry:
            known = self._keys_by_model[entry.path] = (entry, _model_keys(entry))
        return known[1]

    def local_file(self, written: str) -> Path:
        """Return the file a local image path names (joined once per path written)."""
        file = self._files.get(written)
        if file is None:
            file = self._files[written] = self.base_dir / written
        return file

    def image_problem(self, path: Path) -> str | None:
        """Check the image file at *path* (once per pass); None when it is fine or unchecked."""
        if self.check_image is None:
            return None
        if path not in self._images:
            self._images[path] = self.check_image(path)
        return self._images[path]

    def unknown_keys(self, table: Mapping[str, Any], known: Sequence[str], prefix: str) -> None:
        if table.keys() <= _key_set(known):
            return
        for key in table:
            if key not in known:
                self.add(_join(prefix, key), suggest(key, known))


@functools.cache
def _key_set(known: Sequence[str]) -> frozenset[str]:
    """Return *known* as a set (cached: every table of a document is checked against one)."""
    return frozenset(known)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


@attrs.frozen
class Validated:
    """The outcome of a validation pass: every problem, and the normalized document."""

    problems: tuple[Problem, ...]
    #: Defaults merged into shots; meaningful only when `problems` is empty.
    document: dict[str, Any]
    #: What may fail on the server though no rule the model states forbids it.
    warnings: tuple[Problem, ...] = ()


def validate_document(
    doc: Mapping[str, Any],
    *,
    base_dir: Path,
    check_image: ImageCheck | None,
    measure_image: ImageMeasure | None = None,
) -> Validated:
    """Check *doc* (a parsed TOML shot list) and return all problems plus the normalized form.

    *check_image* is called with the resolved path of every local image; None skips file
    checks (for tools that validate a document away from its images). *measure_image* reads
    the size (pixels and bytes) of each image that passed them, for Kling's image limits;
    None skips them.
    """
    report = _Report(base_dir=base_dir, check_image=check_image, measure_image=measure_image)
    report.unknown_keys(doc, TOP_KEYS, "")
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        report.add("version", f"must be 1 (the only shot-list version there is), not {version!r}")

    storyboard = _check_storyboard(doc.get("storyboard"), report)
    report.model = storyboard.get("model", rules.DEFAULT_MODEL)
    defaults, bad_defaults = _check_defaults(doc.get("defaults", {}), report)
    shots = _check_shots(doc.get("shots"), defaults, bad_defaults, report)
    _check_chains(shots, report)

    normalized = {
        "version": 1,
        "storyboard": storyboard,
        "defaults": defaults,
        "shots": [s.fields for s in shots],
    }
    return Validated(
        tuple(sorted(report.problems, key=_shot_position)),
        normalized,
        tuple(sorted(report.warnings, key=_shot_position)),
    )


_SHOT_INDEX = re.compile(r"shots\[(\d+)\]")


def _shot_position(problem: Problem) -> int:
    """Sort key that keeps file-level problems first, then each shot's in file order."""
    match = _SHOT_INDEX.match(problem.path)
    return -1 if match is None else int(match[1])


def _check_storyboard(table: object, report: _Report) -> dict[str, Any]:
    if table is None:
        report.add("storyboard", "missing; a shot list needs [storyboard] with at least a name")
        return {}
    if not isinstance(table, Mapping):
        report.add("storyboard", f"must be a table ([storyboard]), not {describe(table)}")
        return {}
    report.unknown_keys(table, STORYBOARD_KEYS, "storyboard")
    if "name" not in table:
        report.add("storyboard.name", "required; it names the output folder")
    out: dict[str, Any] = {}
    for key, check in _STORYBOARD_CHECKS.items():
        if key in table:
            message, value = check(table[key])
            if message is None:
                out[key] = value
            else:
                report.add(f"storyboard.{key}", message)
    if "model" not in table:
        out["model"] = rules.DEFAULT_MODEL
    return out


Checked = tuple["str | None", object]


def _storyboard_name(name: object) -> Checked:
    if not isinstance(name, str):
        return f"must be a string, not {describe(name)}", None
    if not name.strip() or name in {".", ".."} or any(c in name for c in "/\\\0"):
        return f"{quote(name)} cannot name a folder; use letters, digits, spaces, - or _", None
    return None, name


def _storyboard_output_dir(output_dir: object) -> Checked:
    if not isinstance(output_dir, str):
        return f"must be a folder path, not {describe(output_dir)}", None
    # Outputs are written, renamed and removed (`gc`) in this folder: it must be a folder of
    # its own below the shot list's, never the shot list's folder itself or outside it.
    inside = '; give a sub-folder of the shot list\'s folder, such as "renders/NAME"'
    if not output_dir.strip():
        return f"empty{inside}", None
    text = output_dir.replace("\\", "/")
    if posixpath.isabs(text) or re.match(r"[A-Za-z]:(/|$)", text):
        return f"{quote(output_dir)} is an absolute path{inside}", None
    normal = posixpath.normpath(text)
    if normal == ".":
        return f"{quote(output_dir)} is the shot list's own folder{inside}", None
    if normal == ".." or normal.startswith("../"):
        return f"{quote(output_dir)} leads outside the shot list's folder{inside}", None
    return None, output_dir


def _storyboard_concurrency(concurrency: object) -> Checked:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        return f"must be an integer, not {describe(concurrency)}", None
    if concurrency < 1:
        return f"must be at least 1, not {concurrency}", None
    return None, concurrency


def _storyboard_amount(amount_given: object) -> Checked:
    """Check an amount in USD, zero or more: ``max_cost`` (one run), ``budget`` (the film)."""
    if isinstance(amount_given, bool) or not isinstance(amount_given, int | Decimal | float):
        return f"must be an amount in USD, not {describe(amount_given)}", None
    amount = (
        Decimal(str(amount_given)) if isinstance(amount_given, float) else Decimal(amount_given)
    )
    if not amount.is_finite() or amount < 0:
        return f"must be zero or a positive amount, not {amount_given}", None
    return None, amount


def _storyboard_model(model: object) -> Checked:
    """Check a model's name (full id or path alone); normalized to the full id."""
    if not isinstance(model, str):
        return f"must be a string, not {describe(model)}", None
    entry = find_model(model)
    if entry is None:
        return catalogue.unknown_model_message(model), None
    return None, entry.model_id


_STORYBOARD_CHECKS: Final[dict[str, Callable[[object], Checked]]] = {
    "name": _storyboard_name,
    "output_dir": _storyboard_output_dir,
    "concurrency": _storyboard_concurrency,
    "max_cost": _storyboard_amount,
    "model": _storyboard_model,
    "budget": _storyboard_amount,
}


def _check_defaults(table: object, report: _Report) -> tuple[dict[str, Any], frozenset[str]]:
    """Check `[defaults]` on its own; return its good values and the keys that were bad.

    Values that are wrong whatever the shot (a number as a prompt) are reported once here,
    not once per shot; rules that depend on the shot (duration against last_image) are
    checked per shot after merging.
    """
    if not isinstance(table, Mapping):
        report.add("defaults", f"must be a table ([defaults]), not {describe(table)}")
        return {}, frozenset()
    out: dict[str, Any] = {}
    bad: set[str] = set()
    for key, value in table.items():
        path = f"defaults.{key}"
        if key == "id":
            report.add(path, "cannot have a default; every shot needs its own unique id")
            continue
        if key not in DEFAULT_KEYS:
            report.add(path, suggest(key, DEFAULT_KEYS))
            continue
        before = len(report.problems)
        checked = _check_field(key, value, path, report)
        if len(report.problems) > before:
            bad.add(key)
        else:
            out[key] = checked
    return out, frozenset(bad)


@attrs.define
class _ShotDraft:
    """One shot as it is being checked: its merged fields and where each came from."""

    index: int
    label: str
    fields: dict[str, Any]
    id: str | None = None
    #: Chains by the key that holds them ("image" / "last_image") → source shot id.
    chains: dict[str, str] = attrs.Factory(dict)


def _check_shots(
    shots: object, defaults: Mapping[str, Any], bad_defaults: frozenset[str], report: _Report
) -> list[_ShotDraft]:
    if shots is None:
        report.add("shots", "missing; add at least one [[shots]] table")
        return []
    if not isinstance(shots, list) or not all(isinstance(s, Mapping) for s in shots):
        report.add("shots", "must be an array of tables, written as [[shots]] blocks")
        return []
    if not shots:
        report.add("shots", "empty; add at least one [[shots]] table")
        return []
    drafts: list[_ShotDraft] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(shots):
        draft = _check_shot(index, table, defaults, bad_defaults, report)
        if draft.id is not None:
            if draft.id in first_index:
                report.add(
                    f"{draft.label}.id",
                    f"duplicate id {quote(draft.id)}; "
                    f"shots[{first_index[draft.id]}] already uses it",
                )
            else:
                first_index[draft.id] = index
        drafts.append(draft)
    return drafts


def _check_shot(
    index: int,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    bad_defaults: frozenset[str],
    report: _Report,
) -> _ShotDraft:
    raw_id = table.get("id")
    label = f"shots[{index}]"
    if isinstance(raw_id, str):
        label += f" (id {quote(raw_id)})"
    draft = _ShotDraft(index=index, label=label, fields={})
    report.unknown_keys(table, SHOT_KEYS, label)
    _check_id(raw_id, draft, report)
    entry = _shot_model(draft, table, defaults, report)
    storyboard_model, report.model = report.model, entry.model_id
    try:
        _merge_fields(draft, table, defaults, report, entry=entry)
        _check_model_keys(draft, table, report, entry)
        _check_prompts(draft, table, defaults, report, entry)
        _check_final_prompt(draft, report, entry)
        _check_duration(draft, table, defaults, bad_defaults, report, entry=entry)
    finally:
        report.model = storyboard_model
    return draft


def _shot_model(
    draft: _ShotDraft, table: Mapping[str, Any], defaults: Mapping[str, Any], report: _Report
) -> ModelEntry:
    """Return the shot's model: its own, else `[defaults]`', else the storyboard's."""
    if "model" in table:
        message, value = _storyboard_model(table["model"])
        if message is not None:
            report.add(f"{draft.label}.model", message)
            return model_entry(report.model)  # checked against the storyboard's meanwhile
        model = str(value)
    else:
        model = defaults.get("model", report.model)
    draft.fields["model"] = model
    return model_entry(model)


def _takes_keys(entry: ModelEntry) -> tuple[str, ...]:
    """Return the shot keys a model takes, in the order a message lists them."""
    frames = ("image",) * entry.takes_image + ("last_image",) * (entry.end_frame_field is not None)
    return (*_COMMON_KEYS, *frames, "model", *entry.field_names)


#: What a shot's keys are held to on one model (`_model_keys`).
_ModelKeys = tuple[tuple[str, ...], tuple[str, ...], tuple[Field, ...]]


def _model_keys(entry: ModelEntry) -> _ModelKeys:
    """Return what a shot's keys are held to on *entry*'s model.

    The keys it takes (in a message's order), the frame and model-field keys it does not
    take (in the order they are checked), and its own fields (in `MODEL_FIELD_NAMES`' order).
    """
    takes = _takes_keys(entry)
    refused = tuple(k for k in (*_IMAGE_KEYS, *MODEL_FIELD_NAMES) if k not in takes)
    fields = tuple(f for f in map(entry.field, MODEL_FIELD_NAMES) if f is not None)
    return takes, refused, fields


def _check_model_keys(
    draft: _ShotDraft, table: Mapping[str, Any], report: _Report, entry: ModelEntry
) -> None:
    """Hold the shot's frames and model fields to what its model takes.

    A key the model does not take is named with the keys it does; one that came from
    `[defaults]` says so (the default suits other shots' models, not this one's).
    """
    takes, refused, fields = report.model_keys(entry)
    for key in refused:
        if key not in draft.fields:
            continue
        origin = "" if key in table else " (from [defaults])"
        if key == "image" and isinstance(draft.fields[key], Mapping):
            why = "a chain gives a first frame, which only an image-to-video model takes"
        elif key == "image":
            why = "it is a text-to-video model: it starts from the prompt alone"
        else:
            why = "it does not take this key"
        report.add(
            f"{draft.label}.{key}",
            f"{entry.path}{origin}: {why}; it takes " + ", ".join(takes),
        )
        draft.fields.pop(key)
        draft.chains.pop(key, None)
    image_path = f"{draft.label}.image"
    if (
        entry.takes_image
        and "image" not in draft.fields
        and "image" not in table
        and not any(p.path in (image_path, "defaults.image") for p in report.problems)
    ):
        report.add(image_path, "required" + _REQUIRED_HINT["image"])
    for field in fields:
        key = field.name
        if key in draft.fields:
            message = _field_value_error(field.kind, field.choices, field, draft.fields[key])
            if message is not None:
                report.add(f"{draft.label}.{key}", message)
                draft.fields.pop(key)


def _check_prompts(
    draft: _ShotDraft,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    report: _Report,
    entry: ModelEntry,
) -> None:
    """Check that a shot gives a prompt or a multi-shot prompt (on a model that takes one)."""
    parts = draft.fields.get("multi_prompt")
    if parts is not None:
        if "prompt" in table or "prompt" in defaults:
            origin = "" if "prompt" in table else " (from [defaults])"
            report.add(
                f"{draft.label}.prompt",
                f"given{origin} with multi_prompt; {entry.path} takes one or the other",
            )
        if "last_image" in draft.fields:
            report.add(
                f"{draft.label}.last_image",
                f"{entry.path} takes no end frame with multi_prompt",
            )
    elif "prompt" not in draft.fields and not any(
        p.path.startswith(f"{draft.label}.prompt") or p.path == "defaults.prompt"
        for p in report.problems
    ):
        report.add(f"{draft.label}.prompt", "required" + _REQUIRED_HINT["prompt"])


def _field_value_error(kind: str, choices: Sequence[str], field: Any, value: object) -> str | None:
    """Say why *value* is not one the model's field takes (its type was checked already)."""
    if kind == "choice" and value not in choices:
        return f"{describe(value)} is not allowed; use one of " + ", ".join(
            quote(c) for c in choices
        )
    if kind == "number" and isinstance(value, Decimal):
        low, high = field.minimum, field.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value} is outside {low} to {high}"
    return None


def _check_id(raw_id: object, draft: _ShotDraft, report: _Report) -> None:
    label = draft.label
    if raw_id is None:
        report.add(f"{label}.id", "required; 1-64 characters of a-z, 0-9, _ and -")
    elif not isinstance(raw_id, str):
        report.add(f"{label}.id", f"must be a string, not {describe(raw_id)}")
    elif not SHOT_ID_RE.fullmatch(raw_id):
        report.add(
            f"{label}.id",
            f"{quote(raw_id)} is not a valid id; use 1-64 characters of a-z, 0-9, _ and -",
        )
    else:
        draft.id = raw_id
        draft.fields["id"] = raw_id


def _merge_fields(
    draft: _ShotDraft,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    report: _Report,
    *,
    entry: ModelEntry,
) -> None:
    """Take each field from the shot, else from `[defaults]`, checking the shot's own."""
    # A key in neither the shot nor [defaults] is left out: prompt and image are required
    # per model (`_check_model_keys`); a bad default was reported under [defaults].
    for key in _MERGED_KEYS:
        if key in table:
            value = _check_field(key, table[key], f"{draft.label}.{key}", report)
        elif key in defaults:
            if key == "image" and not entry.takes_image:
                continue  # a default first frame is for the image-to-video shots
            value = defaults[key]
        else:
            continue
        if value is not _INVALID:
            draft.fields[key] = value
            if isinstance(value, Mapping) and key in _IMAGE_KEYS:
                draft.chains[key] = value["shot"]


_REQUIRED_HINT: Final = {
    "prompt": "; describe what happens in the shot",
    "image": ' (the first frame): a file path, an http(s) URL, or { shot = "id", frame = "last" }',
}

#: Marks a field that failed its check, so it is left out of the normalized shot.
_INVALID: Final = object()


def _check_final_prompt(draft: _ShotDraft, report: _Report, entry: ModelEntry) -> None:
    fields = draft.fields
    if not isinstance(fields.get("prompt"), str):
        return
    final = fields.get("prompt_prefix", "") + fields["prompt"] + fields.get("prompt_suffix", "")
    if len(final) > entry.max_prompt_chars:
        report.add(
            f"{draft.label}.prompt",
            f"{len(final)} characters with prompt_prefix and prompt_suffix; "
            f"the model takes at most {entry.max_prompt_chars}",
        )


def _check_duration(  # noqa: PLR0913 - the shot, its sources, and the model it renders on
    draft: _ShotDraft,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    bad_defaults: frozenset[str],
    report: _Report,
    *,
    entry: ModelEntry,
) -> None:
    parts = draft.fields.get("multi_prompt")
    if parts is not None:
        # A multi-shot prompt's length is the sum of its parts.
        total = sum(p["duration"] for p in parts)
        if "duration" in table and table["duration"] != total:
            report.add(
                f"{draft.label}.duration",
                f"{table['duration']!r} differs from the {total} s its multi_prompt parts add "
                "up to; leave duration out or make them agree",
            )
            return
        message = rules.duration_error(total, has_last_image=False, model=entry.model_id)
        if message is not None:
            report.add(f"{draft.label}.multi_prompt", f"its parts add up to {message}")
            return
        draft.fields["duration"] = total
        return
    if "duration" in table:
        value, origin = table["duration"], ""
    elif "duration" in defaults:
        value, origin = defaults["duration"], " (from [defaults])"
    elif "duration" in bad_defaults:
        return
    else:
        value, origin = entry.durations.default, " (the default)"
    has_last = entry.end_frame_field is not None and any(
        "last_image" in t for t in (table, defaults, bad_defaults)
    )
    message = rules.duration_error(value, has_last_image=has_last, model=entry.model_id)
    if message is not None:
        report.add(f"{draft.label}.duration", message + origin)
        draft.fields.pop("duration", None)
    else:
        draft.fields["duration"] = value


def _check_field(key: str, value: object, path: str, report: _Report) -> object:
    """Check one shot field's value on its own; return it normalized, or `_INVALID`."""
    if key in _TEXT_KEYS:
        if not isinstance(value, str):
            report.add(path, f"must be a string, not {describe(value)}")
            return _INVALID
        if key == "prompt" and not value.strip():
            report.add(path, "empty; describe what happens in the shot")
            return _INVALID
        if key == "prompt" and value.lstrip().startswith(PLACEHOLDER):
            # Valid text, but rendering it would pay for a video of the placeholder.
            report.add(path, PLACEHOLDER_MESSAGE)
        return value
    if key in _IMAGE_KEYS:
        return _check_image_ref(value, path, report)
    if key == "duration":
        # Only the type here: the allowed values depend on last_image, checked per shot.
        if isinstance(value, bool) or not isinstance(value, int):
            report.add(path, rules.duration_error(value, has_last_image=True) or "invalid")
            return _INVALID
        return value
    if key == "takes":
        message = rules.takes_error(value)
        if message is not None:
            report.add(path, message)
            return _INVALID
        return value
    return _check_model_field(key, value, path, report)


def _check_model_field(key: str, value: object, path: str, report: _Report) -> object:
    """Check a model field's type (its allowed values are the shot's model's to say)."""
    if key == "model":
        message, model = _storyboard_model(value)
        if message is not None:
            report.add(path, message)
            return _INVALID
        return model
    kind = _FIELD_KINDS[key]
    wrong: str | None = None
    if kind == "text" and not isinstance(value, str):
        wrong = f"must be a string, not {describe(value)}"
    elif kind == "boolean" and not isinstance(value, bool):
        wrong = f"must be true or false, not {describe(value)}"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            wrong = f"must be a number, not {describe(value)}"
        else:
            value = Decimal(str(value))
    elif kind == "shots":
        return _check_parts(value, path, report)
    if wrong is not None:
        report.add(path, wrong)
        return _INVALID
    return value


#: The type of each model field, as the shot list writes it.
_FIELD_KINDS: Final = {
    "negative_prompt": "text",
    "cfg_scale": "number",
    "guidance_scale": "number",
    "sound": "boolean",
    "aspect_ratio": "text",
    "multi_prompt": "shots",
}


def _check_parts(value: object, path: str, report: _Report) -> object:
    """Check a multi-shot prompt: an array of tables, each a prompt and whole seconds."""
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        report.add(
            path,
            'must be a non-empty array of tables such as { prompt = "...", duration = 5 }',
        )
        return _INVALID
    before = len(report.problems)
    for n, part in enumerate(value):
        where = f"{path}[{n}]"
        report.unknown_keys(part, PART_KEYS, where)
        text, seconds = part.get("prompt"), part.get("duration")
        if not isinstance(text, str) or not text.strip():
            report.add(f"{where}.prompt", "required: what happens in this part")
        elif len(text) > rules.MAX_PROMPT_CHARS:
            report.add(f"{where}.prompt", f"at most {rules.MAX_PROMPT_CHARS} characters")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            report.add(f"{where}.duration", "required: this part's whole seconds (1 or more)")
    if len(report.problems) > before:
        return _INVALID
    return [{"prompt": p["prompt"], "duration": p["duration"]} for p in value]


def _check_image_ref(value: object, path: str, report: _Report) -> object:
    if isinstance(value, Mapping):
        return _check_chain(value, path, report)
    if not isinstance(value, str):
        report.add(
            path,
            f"must be a file path, an http(s) URL or a chain table, not {describe(value)}",
        )
        return _INVALID
    if not value.strip():
        report.add(path, "empty; give a file path, an http(s) URL or a chain table")
        return _INVALID
    if "://" in value or value.lower().startswith(("http:", "https:")):
        if _PLAIN_URL.match(value):
            return value  # what urlsplit would find good, told without it
        try:
            parts = urlsplit(value)
        except ValueError as exc:  # a bracketed host left open, a host that NFKC changes
            report.add(path, f"{quote(value)} is not a valid URL ({exc})")
            return _INVALID
        if parts.scheme.lower() not in ("http", "https"):
            report.add(path, f"{quote(value)}: only http:// and https:// URLs can be fetched")
            return _INVALID
        if not parts.hostname:
            report.add(path, f"{quote(value)} is not a valid URL: it names no host")
            return _INVALID
        return value
    file = report.local_file(value)
    message = report.image_problem(file)
    if message is not None:
        report.add(path, message)
        return _INVALID
    report.check_frame_limits(path, file)
    return value


#: An http(s) URL whose host is plain (letters, digits, dots and hyphens, then maybe a port):
#: one `urlsplit` finds an http(s) scheme and a host in. Most frames are such URLs, and the
#: pattern tells them at a fraction of urlsplit's cost; anything else goes through urlsplit.
_PLAIN_URL: Final = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?::[0-9]*)?(?:[/?#]|\Z)")


def _check_chain(table: Mapping[str, Any], path: str, report: _Report) -> object:
    report.unknown_keys(table, CHAIN_KEYS, path)
    ok = True
    shot = table.get("shot")
    if not isinstance(shot, str) or not shot:
        what = "missing" if shot is None else f"must be a shot id, not {describe(shot)}"
        report.add(f"{path}.shot", f"{what}; a chain names the shot whose frame it uses")
        ok = False
    frame = table.get("frame")
    if frame not in FRAMES:
        what = "missing" if frame is None else f"{describe(frame)} is not allowed"
        report.add(f"{path}.frame", f'{what}; use "first" or "last"')
        ok = False
    if not ok or len(table) != len(CHAIN_KEYS):
        return _INVALID
    return {"shot": shot, "frame": frame}


def _check_chains(drafts: Sequence[_ShotDraft], report: _Report) -> None:
    """Every chain names an existing shot, and chains never loop back on themselves."""
    by_id = {d.id: d for d in drafts if d.id is not None}
    graph: dict[str, set[str]] = {}
    for draft in drafts:
        for key, source in draft.chains.items():
            path = f"{draft.label}.{key}"
            if source == draft.id:
                report.add(path, "a shot cannot chain from its own video")
            elif source not in by_id:
                close = difflib.get_close_matches(source, list(by_id), n=1, cutoff=0.6)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                report.add(path, f"chain refers to unknown shot {quote(source)}{hint}")
            elif draft.id is not None:
                graph.setdefault(draft.id, set()).add(source)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = list(exc.args[1])
        # The cycle is reported once, on the shot that comes first in the file.
        first = min(cycle[:-1], key=lambda shot_id: by_id[shot_id].index)
        draft = by_id[first]
        key = next(k for k, s in draft.chains.items() if s in cycle)
        report.add(
            f"{draft.label}.{key}",
            f"chains form a cycle: {_describe_cycle(first, graph, set(cycle))}",
        )


def _describe_cycle(first: str, graph: Mapping[str, set[str]], members: set[str]) -> str:
    """Spell a cycle out from *first*, following each shot to the shot it chains from."""
    steps = [first]
    current = first
    while True:
        current = min(graph[current] & members)
        steps.append(current)
        if current == first or len(steps) > len(members) + 1:
            break
    return " chains from ".join(quote(s) for s in steps)
