"""Request validation with WaveSpeed's rules; every 400 message names the field."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from mockserver import catalogue
from mockserver.media import decode_data_uri
from mockserver.wire import ApiError


def bad(field: str, message: str) -> ApiError:
    """Return a 400 error about *field*."""
    return ApiError(400, f"{field}: {message}")


def _url(body: dict[str, Any], field: str, *, required: bool) -> None:
    value = body.get(field)
    if value is None:
        if required:
            raise bad(field, "is required")
        return
    if not isinstance(value, str) or not value.strip():
        raise bad(field, "must be a non-empty URL string")
    if value.startswith("data:"):
        try:
            decode_data_uri(value)
        except ValueError as exc:
            raise bad(field, str(exc)) from exc
    elif not value.startswith(("http://", "https://")):
        raise bad(field, "must be an http(s) URL or a data URI")


#: Fields every model's endpoint takes.
_COMMON: Final = ("prompt", "duration", "enable_sync_mode")


def _prompt(value: object, field: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise bad(field, "is required")
    if not isinstance(value, str):
        raise bad(field, "must be a string")
    if len(value) > catalogue.MAX_PROMPT_CHARS:
        raise bad(field, f"at most {catalogue.MAX_PROMPT_CHARS} characters, got {len(value)}")


def _field(name: str, rule: catalogue.FieldRule, value: object) -> None:
    """Check one of the model's own optional fields."""
    if rule.kind == "text" and not isinstance(value, str):
        raise bad(name, "must be a string")
    if rule.kind == "boolean" and not isinstance(value, bool):
        raise bad(name, "must be true or false")
    if rule.kind == "choice" and value not in rule.choices:
        raise bad(name, f"must be one of {', '.join(rule.choices)}, not {value!r}")
    if rule.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(name, "must be a number")
        if (rule.low is not None and value < rule.low) or (
            rule.high is not None and value > rule.high
        ):
            raise bad(name, f"must be from {rule.low} to {rule.high}")
    if rule.kind == "shots":
        _parts(name, value)


def _parts(name: str, value: object) -> None:
    """Check a multi-shot prompt: a non-empty array of {prompt, duration}."""
    if not isinstance(value, list) or not value:
        raise bad(name, "must be a non-empty array of {prompt, duration}")
    for n, part in enumerate(value):
        if not isinstance(part, dict) or set(part) != {"prompt", "duration"}:
            raise bad(f"{name}[{n}]", "must be an object of prompt and duration")
        _prompt(part["prompt"], f"{name}[{n}].prompt")
        seconds = part["duration"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise bad(f"{name}[{n}].duration", "must be a whole number of seconds")


def _prompts(rules: catalogue.Model, body: dict[str, Any]) -> None:
    """Check for a prompt, or a multi-shot prompt (not both, and then no end frame)."""
    if "multi_prompt" not in body:
        _prompt(body.get("prompt"), "prompt")
        return
    if body.get("prompt") is not None:
        raise bad("prompt", "give prompt or multi_prompt, not both")
    if rules.end_frame is not None and body.get(rules.end_frame) is not None:
        raise bad(rules.end_frame, "not with multi_prompt")


def validate_submit(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check a submit body for *model*; return the task's input (without transport options).

    Each model takes its own fields: one it does not take is refused (400, naming it), as
    WaveSpeed refuses a request its model's schema does not describe.
    """
    rules = catalogue.MODELS[model]
    task_input = {k: v for k, v in body.items() if k != "enable_sync_mode"}
    frames = ("image",) * rules.takes_image + ((rules.end_frame,) if rules.end_frame else ())
    known = (*_COMMON, *frames, *rules.fields)
    for name in body:
        if name not in known:
            raise bad(name, f"not a field of {model}; it takes {', '.join(known)}")
    _prompts(rules, body)
    if rules.takes_image:
        _url(body, "image", required=True)
    if rules.end_frame is not None:
        _url(body, rules.end_frame, required=False)
    for name, rule in rules.fields.items():
        if name in body:
            _field(name, rule, body[name])
    duration = body.get("duration", catalogue.DEFAULT_DURATION)
    if "multi_prompt" in body and "duration" not in body:
        duration = sum(p["duration"] for p in body["multi_prompt"])
    has_last = rules.end_frame is not None and body.get(rules.end_frame) is not None
    problem = catalogue.duration_problem(model, duration, has_last_image=has_last)
    if problem is not None:
        raise bad("duration", problem)
    sync = body.get("enable_sync_mode", False)
    if not isinstance(sync, bool):
        raise bad("enable_sync_mode", "must be true or false")
    task_input["duration"] = duration
    return task_input


def int_field(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    """Read an integer field within [low, high]."""
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(field, f"must be an integer from {low} to {high}")
    return value


def time_field(body: dict[str, Any], field: str) -> float | None:
    """Read an optional ISO 8601 time (``Z`` allowed) as epoch seconds."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(field, "must be an ISO 8601 time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise bad(field, f"{value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise bad(field, "needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return parsed.timestamp()


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a JSON request body that must be an object (an empty body counts as ``{}``)."""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: invalid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "body: must be a JSON object")
    return value
