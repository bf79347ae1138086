"""Request validation with WaveSpeed's rules; every 400 message names the field."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

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


def validate_submit(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check a submit body for *model*; return the task's input (without transport options)."""
    task_input = {k: v for k, v in body.items() if k != "enable_sync_mode"}
    prompt = body.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise bad("prompt", "is required")
    if not isinstance(prompt, str):
        raise bad("prompt", "must be a string")
    if len(prompt) > catalogue.MAX_PROMPT_CHARS:
        raise bad("prompt", f"at most {catalogue.MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    takes_image = catalogue.MODELS[model].takes_image
    if takes_image:
        _url(body, "image", required=True)
        _url(body, "last_image", required=False)
    else:
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in catalogue.ASPECT_RATIOS:
            allowed = ", ".join(catalogue.ASPECT_RATIOS)
            raise bad("aspect_ratio", f"must be one of {allowed}, not {ratio!r}")
    duration = body.get("duration", catalogue.DEFAULT_DURATION)
    has_last = takes_image and body.get("last_image") is not None
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
