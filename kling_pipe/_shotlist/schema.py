"""A JSON Schema (draft 2020-12) of the shot list, generated from the specs and the rule tables.

Editors that speak JSON Schema (Taplo, Even Better TOML) use it for completion, hover text
and inline errors while a storyboard is written. It is generated rather than written by hand
so it cannot drift from the code: the keys and their types come from the attrs specs
(`attrs.fields` and their annotations), the key lists from `validate`, and the numbers
(durations, prompt length, models) from `rules`. Generation fails loudly if a spec field and
the validator's key lists disagree.

The schema only says what it can say about one file on its own: whether a local image
exists, whether a chain names a shot of the file, unique ids and chain cycles are left to
`kling-pipe validate`. It never rejects a file the validator accepts.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs

from kling_pipe._shotlist import catalogue, rules, validate
from kling_pipe._shotlist.specs import (
    ChainImage,
    Defaults,
    LocalImage,
    PromptPart,
    Shot,
    ShotList,
    Storyboard,
    UrlImage,
)

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"

#: Spec fields that are not keys of the file: where it was read from, and what reading it
#: warned of, are not written in it.
_NOT_IN_FILE: Final = frozenset({(ShotList, "source"), (ShotList, "warnings")})

#: The key lists the validator enforces, per spec class: the schema's properties follow them.
_KEYS: Final[Mapping[type, Sequence[str]]] = {
    ShotList: validate.TOP_KEYS,
    Storyboard: validate.STORYBOARD_KEYS,
    Defaults: validate.DEFAULT_KEYS,
    Shot: validate.SHOT_KEYS,
    ChainImage: validate.CHAIN_KEYS,
    PromptPart: validate.PART_KEYS,
}

#: Every model a shot list may name: full ids and paths alone.
_MODEL_NAMES: Final = [name for e in catalogue.CATALOGUE.values() for name in (e.model_id, e.path)]
#: Every duration some model takes; which ones a shot may use depend on its model.
_ALL_DURATIONS: Final = sorted(
    {
        d
        for e in catalogue.CATALOGUE.values()
        for d in (*e.durations.allowed, *(e.durations.with_end_frame or ()))
    }
)
_CHOICES: Final = sorted(
    {c for e in catalogue.CATALOGUE.values() for f in e.fields for c in f.choices}
)

#: ``^...$`` around the validator's own id expression (it uses ``fullmatch``).
SHOT_ID_PATTERN: Final = f"^{validate.SHOT_ID_RE.pattern}$"
#: At least one character that is not white space: the validator's "not blank".
_NOT_BLANK: Final = r"\S"
#: End of string in both Python's and ECMA-262's regex dialects (``$`` differs between them).
_END: Final = r"(?![\s\S])"
#: What `validate` calls a URL: contains ``://`` or starts with ``http:``/``https:``.
_URL_LIKE: Final = r"(?![\s\S]*://)(?![Hh][Tt][Tt][Pp][Ss]?:)"
#: Leading spaces and control characters, which URL parsing strips before the scheme.
_URL_LEAD: Final = r"[\u0000-\u0020]*"

#: Constraints the validator checks in code, per key, beyond the key's type. Each mirrors one
#: check in `validate` (the tests hold them together with invalid examples both must refuse).
_CONSTRAINTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "version": {"const": 1},
    "name": {"pattern": rf"^(?!\.\.?{_END})[^/\\\u0000]*[^/\\\u0000\s][^/\\\u0000]*{_END}"},
    "output_dir": {"pattern": _NOT_BLANK},
    "concurrency": {"minimum": 1},
    "max_cost": {"minimum": 0},
    "budget": {"minimum": 0},
    "model": {"enum": _MODEL_NAMES},
    "aspect_ratio": {"enum": _CHOICES},
    "multi_prompt": {"minItems": 1},
    "shots": {"minItems": 1},
    "id": {"pattern": SHOT_ID_PATTERN},
    "prompt": {"pattern": _NOT_BLANK, "maxLength": rules.MAX_PROMPT_CHARS},
    "prompt_prefix": {"maxLength": rules.MAX_PROMPT_CHARS},
    "prompt_suffix": {"maxLength": rules.MAX_PROMPT_CHARS},
    # Either list may apply: which one is decided by last_image, below (`_duration_rules`).
    "duration": {"enum": _ALL_DURATIONS},
    # A chain can only name an existing shot, and every existing shot has a valid id.
    "shot": {"pattern": SHOT_ID_PATTERN},
    "frame": {"enum": list(validate.FRAMES)},
    "takes": {"minimum": rules.MIN_TAKES, "maximum": rules.MAX_TAKES},
}

#: A multi-shot prompt's part: its own rules (whole seconds, not one of a model's durations).
_PART: Final[Mapping[str, Mapping[str, Any]]] = {
    "prompt": {"pattern": _NOT_BLANK, "maxLength": rules.MAX_PROMPT_CHARS},
    "duration": {"minimum": 1},
}

_WITH = ", ".join(map(str, rules.DURATIONS_WITH_LAST_IMAGE))
_WITHOUT = " or ".join(map(str, rules.DURATIONS_WITHOUT_LAST_IMAGE))

#: Hover text, per key. A spec field without one fails generation, so none is forgotten.
_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "version": "The shot-list format version; 1 is the only one there is.",
    "storyboard": "Settings for the whole storyboard: its name, where renders go, the budget.",
    "defaults": (
        "Values every shot takes unless it sets its own: any shot key except id. A default "
        "duration must suit every shot that uses it."
    ),
    "shots": "The shots, in storyboard order: one [[shots]] table each.",
    "name": "Names the storyboard and its output folder (no /, \\, . or ..).",
    "output_dir": ('Where rendered shots go, relative to this file. Default "renders/<name>".'),
    "concurrency": "Shots in flight at once (at least 1); the --concurrency flag overrides it.",
    "max_cost": (
        "One run's cap in USD: `run` refuses a plan whose shots to render cost more. "
        f"Price: {rules.price_per_second(rules.DEFAULT_MODEL)} USD per second of video."
    ),
    "budget": (
        "The whole film's cap in USD: what every run of this storyboard together may spend, "
        "counted from its records. `run` refuses a plan that would pass it, and no retry "
        "takes the spend past it."
    ),
    "model": (
        "The Kling model on WaveSpeed: its full id (kwaivgi/...) or its path alone, such as "
        '"kling-v2.5-turbo-std/image-to-video". In [storyboard], [defaults] or on a shot. '
        "Default: kling-video-o1-std/image-to-video. Each model takes its own keys "
        "(README, section Models)."
    ),
    "negative_prompt": "What the video should not show (models that take it: see README).",
    "cfg_scale": "How closely the video follows the prompt, 0 to 1 (Kling v2.6 Pro, v3.0).",
    "guidance_scale": "How closely the video follows the prompt, 0 to 1 (Kling v2.1).",
    "sound": "Render synchronized sound too (Kling v2.6 Pro, v3.0); default false.",
    "aspect_ratio": "The frame's shape on a text-to-video model: 16:9 (default), 9:16 or 1:1.",
    "multi_prompt": (
        "A multi-shot prompt instead of prompt (Kling v3.0): parts, each "
        '{ prompt = "...", duration = N }; the shot lasts as long as its parts together.'
    ),
    "id": (
        "Unique in the file; 1-64 characters of a-z, 0-9, _ and -. Names the output file "
        "<output_dir>/<id>.mp4."
    ),
    "prompt": (
        "What happens in the shot. prompt_prefix + prompt + prompt_suffix may be at most "
        f"{rules.MAX_PROMPT_CHARS} characters."
    ),
    "image": (
        "The first frame: a PNG, JPEG or WebP file (path relative to this file), an http(s) "
        'URL, or a frame of another shot: { shot = "id", frame = "last" }.'
    ),
    "last_image": (
        f"Optional last frame, in the same forms as image. With it, duration may be {_WITH}."
    ),
    "duration": (
        f"Seconds of video, an integer. With last_image: {_WITH}. Without: {_WITHOUT}. "
        f"Default {rules.DEFAULT_DURATION}."
    ),
    "prompt_prefix": "Text put before the prompt; usually set once in [defaults].",
    "prompt_suffix": "Text put after the prompt; usually set once in [defaults].",
    "takes": (
        f"How many times the shot is rendered ({rules.MIN_TAKES} to {rules.MAX_TAKES}, default "
        f"{rules.DEFAULT_TAKES}); each take is paid for. `kling-pipe pick FILE SHOT TAKE` "
        "makes one of them <output_dir>/<id>.mp4."
    ),
    "shot": "The id of the shot whose rendered video gives the frame.",
    "frame": 'Which frame of that video: "first" or "last".',
}

_TITLES: Final[Mapping[type, str]] = {
    ShotList: "kling-pipe shot list",
    Storyboard: "[storyboard]",
    Defaults: "[defaults]",
    Shot: "[[shots]]",
    ChainImage: "Chain: a frame of another shot's video",
    PromptPart: "One part of a multi-shot prompt",
}

#: Spec classes written as plain strings in the file (the loader tells them apart by prefix).
_STRING_FORMS: Final[Mapping[type, Mapping[str, Any]]] = {
    LocalImage: {
        "title": "Image file",
        "description": "A PNG, JPEG or WebP file, relative to this file's folder.",
        "type": "string",
        "pattern": rf"^{_URL_LIKE}[\s\S]*\S",
    },
    UrlImage: {
        "title": "Image URL",
        "description": "An http:// or https:// URL that WaveSpeed fetches itself.",
        "type": "string",
        "pattern": f"^{_URL_LEAD}[Hh][Tt][Tt][Pp][Ss]?://[^/?#]",
    },
}

_SCALARS: Final[Mapping[type, Mapping[str, Any]]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    Decimal: {"type": "number"},
    bool: {"type": "boolean"},
}

_JSON_DEFAULTS: Final = (str, int)


def shot_list_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a shot-list file, as a JSON-ready dict."""
    defs: dict[str, Any] = {}
    root = _object_schema(ShotList, defs)
    return {
        "$schema": DRAFT,
        "title": root.pop("title"),
        "description": (
            "A storyboard for kling-pipe: shots rendered by Kling Video O1 through WaveSpeed. "
            "`kling-pipe validate` checks what a schema cannot (files, chains, unique ids)."
        ),
        **root,
        "allOf": [*_required_unless_defaulted(), *_duration_rules()],
        "$defs": defs,
    }


def schema_json() -> str:
    """Return the schema as the text `kling-pipe schema` prints and the docs commit."""
    return json.dumps(shot_list_schema(), indent=2, ensure_ascii=False) + "\n"


def _document_fields(cls: type) -> list[attrs.Attribute[Any]]:
    """Return *cls*'s fields that are keys of the file, in the validator's key order."""
    by_name = {f.name: f for f in attrs.fields(cls) if (cls, f.name) not in _NOT_IN_FILE}
    keys = list(_KEYS[cls])
    if set(by_name) != set(keys):
        raise RuntimeError(
            f"{cls.__name__}: spec fields {sorted(by_name)} differ from the keys the "
            f"validator knows {sorted(keys)}; update kling_pipe._shotlist.validate or the spec"
        )
    return [by_name[k] for k in keys]


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in _document_fields(cls):
        prop: dict[str, Any] = {"title": field.name, "description": _describe(field.name)}
        prop |= _type_schema(hints[field.name], defs)
        prop |= (
            _CONSTRAINTS.get(field.name, {}) if cls is not PromptPart else _PART.get(field.name, {})
        )
        if isinstance(field.default, _JSON_DEFAULTS) and field.default is not None:
            prop["default"] = field.default
        properties[field.name] = prop
        if field.default is attrs.NOTHING and field.name not in _defaultable(cls):
            required.append(field.name)
    schema: dict[str, Any] = {"title": _TITLES[cls], "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _defaultable(cls: type) -> frozenset[str]:
    """Keys a shot may leave to `[defaults]`: required only where no default is given."""
    return frozenset(f.name for f in attrs.fields(Defaults)) if cls is Shot else frozenset()


def _describe(key: str) -> str:
    try:
        return _DESCRIPTIONS[key]
    except KeyError:
        raise RuntimeError(f"no description for key {key!r}; add one to _DESCRIPTIONS") from None


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one annotation to a schema; optional (``X | None``) is "may be left out"."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _type_schema(members[0], defs)
        if set(members) == {LocalImage, UrlImage, ChainImage}:
            return _ref("ImageRef", defs, lambda: _image_schema(defs))
        return {"anyOf": [_type_schema(m, defs) for m in members]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        item, _ellipsis = typing.get_args(tp)
        return {"type": "array", "items": _type_schema(item, defs)}
    if tp in _STRING_FORMS:
        return dict(_STRING_FORMS[tp])
    if attrs.has(tp):
        return _ref(tp.__name__, defs, lambda: _object_schema(tp, defs))
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    raise RuntimeError(f"no JSON Schema for the annotation {tp!r}")


def _ref(
    name: str, defs: dict[str, Any], build: typing.Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    if name not in defs:
        defs[name] = {}  # placeholder first: a class may refer to itself
        defs[name] = build()
    return {"$ref": f"#/$defs/{name}"}


def _image_schema(defs: dict[str, Any]) -> dict[str, Any]:
    forms = [_type_schema(cls, defs) for cls in (LocalImage, UrlImage, ChainImage)]
    return {"title": "Image", "anyOf": forms}


def _shot_field(name: str) -> str:
    """Return *name* after checking it is a shot key, so a renamed field fails generation."""
    if name not in validate.SHOT_KEYS:
        raise RuntimeError(f"{name!r} is not a shot key")
    return name


def _defaults_has(key: str) -> dict[str, Any]:
    return {"required": ["defaults"], "properties": {"defaults": {"required": [key]}}}


def _required_unless_defaulted() -> list[dict[str, Any]]:
    """Require each of a shot's required keys on every shot unless `[defaults]` gives it."""
    return [
        {
            "if": _defaults_has(field.name),
            "else": {"properties": {"shots": {"items": {"required": [field.name]}}}},
        }
        for field in attrs.fields(Shot)
        if field.default is attrs.NOTHING and field.name in _defaultable(Shot)
    ]


def _duration_rules() -> list[dict[str, Any]]:
    """Durations and required keys of the default model, which a shot may take from `[defaults]`.

    Another model's keys and durations are its own, checked by `kling-pipe validate`: the
    rules below hold only where no model is named (not on the shot, in `[defaults]` or in
    `[storyboard]`). There, with a default last_image every shot has one, and every listed
    duration is allowed; without it, a shot with no last_image of its own takes the shorter
    list, and so does a default duration if any such shot leaves its duration to `[defaults]`.
    Every shot of the default model needs a first frame, and every shot a prompt (or, on a
    model that takes one, a multi-shot prompt), unless `[defaults]` gives it.
    """
    last, duration = _shot_field("last_image"), _shot_field("duration")
    model, image, prompt = _shot_field("model"), _shot_field("image"), _shot_field("prompt")
    without = list(rules.allowed_durations(has_last_image=False))
    with_last = list(rules.allowed_durations(has_last_image=True))
    shot_rule = {
        "if": {"required": [model]},
        "else": {
            "if": {"required": [last]},
            "then": {"properties": {duration: {"enum": with_last}}},
            "else": {"properties": {duration: {"enum": without}}},
        },
    }
    takes_default = {"not": {"anyOf": [{"required": [duration]}, {"required": [last]}]}}
    named_elsewhere = [
        _defaults_has(model),
        {"required": ["storyboard"], "properties": {"storyboard": {"required": [model]}}},
    ]
    return [
        {
            "if": {"anyOf": [_defaults_has(last), *named_elsewhere]},
            "else": {
                "properties": {"shots": {"items": shot_rule}},
                "if": {"required": ["shots"], "properties": {"shots": {"contains": takes_default}}},
                "then": {"properties": {"defaults": {"properties": {duration: {"enum": without}}}}},
            },
        },
        {
            "if": {"anyOf": [_defaults_has(image), *named_elsewhere]},
            "else": {
                "properties": {
                    "shots": {"items": {"if": {"required": [model]}, "else": {"required": [image]}}}
                }
            },
        },
        {
            "if": _defaults_has(prompt),
            "else": {
                "properties": {
                    "shots": {
                        "items": {
                            "if": {"required": [_shot_field("multi_prompt")]},
                            "else": {"required": [prompt]},
                        }
                    }
                }
            },
        },
    ]
