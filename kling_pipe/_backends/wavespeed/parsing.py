"""Reading the API's answers: strict on what identifies a task, tolerant of the rest.

Every defect in an answer becomes a `ProtocolError` that names the field, never a KeyError:
a server that is not WaveSpeed (or a WaveSpeed that changed) fails loudly and legibly.

This is the border. A task id leaves it only as a `TaskId` (`parse_task_id`), and every free
text kept from an answer (status, model, error) only after the client's `Scrubber`: on one
line, bounded, the API key masked. Messages about a defect quote a server's text only
scrubbed and cut, in that order; values of other kinds are described, never quoted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar

from kling_pipe._backends.base import Prediction, parse_task_id
from kling_pipe._backends.wavespeed.scrub import Scrubber
from kling_pipe.exceptions import (
    ApiError,
    AuthError,
    BadRequestError,
    NotFoundError,
    ProtocolError,
)

__all__ = [
    "ERRORS_BY_STATUS",
    "MAX_ERROR_CHARS",
    "NOT_JSON",
    "field",
    "format_time",
    "is_envelope",
    "json_or_none",
    "prediction_from_json",
    "server_offset",
]

T = TypeVar("T")

#: How much of a failed task's error text is kept: enough for any real explanation, and no
#: hostile server can fill the records with megabytes of it.
MAX_ERROR_CHARS: Final = 1000
#: How much of a status or a model id is kept (real ones are a few dozen characters).
_MAX_NAME_CHARS: Final = 200
#: How much of a bad value a defect's message quotes.
_MAX_QUOTED_CHARS: Final = 60


def _described(value: object) -> str:
    """Say what a value of the wrong kind is, without quoting text that may carry a secret."""
    if value is None or isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return type(value).__name__


def field(obj: Mapping[str, Any], name: str, kind: type[T], where: str) -> T:
    """Return ``obj[name]`` if it has type *kind*, else raise ProtocolError naming the field."""
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        got = "missing" if name not in obj else _described(value)
        raise ProtocolError(f"{where}: field {name!r} should be {kind.__name__}, got {got}")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    """Return an optional integer field (floats are rounded: some servers send ``1234.0``)."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where}: field {name!r} should be a number, got {_described(value)}")
    return round(value)


def _parse_time(text: str, where: str, scrub: Scrubber) -> datetime:
    """Parse an ISO 8601 time with its zone (``Z`` or an offset), or raise ProtocolError.

    A time without a zone is refused, never guessed: read as UTC when the server meant its
    local time, a task would move hours out of the window a lost submit is looked up in.
    """
    when = _iso_time(text)
    if when is None:
        shown = scrub.brief(text, _MAX_QUOTED_CHARS)
        raise ProtocolError(f"{where}: created_at {shown!r} is not an ISO 8601 time")
    if when.tzinfo is None or when.utcoffset() is None:
        shown = scrub.brief(text, _MAX_QUOTED_CHARS)
        raise ProtocolError(f"{where}: created_at {shown!r} has no time zone")
    return when


def _iso_time(text: str) -> datetime | None:
    """Parse *text*, or None: the ValueError quotes the raw text, so it must not be chained."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def prediction_from_json(obj: object, *, scrub: Scrubber) -> Prediction:
    """Build a Prediction from the API's prediction object (``data``), or raise ProtocolError.

    Strict on what identifies a task (id, model, status, created_at), tolerant of optional
    fields being absent or null, and never a KeyError: every defect names the field. The id
    must be a task id (`parse_task_id`) and must not hold the API key; status, model and
    error are kept only as *scrub* leaves them, and an output URL holding the key is refused
    (a URL cannot be masked and still work).
    """
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"prediction should be an object, got {type(obj).__name__}")
    where = "prediction"
    task_id = parse_task_id(field(obj, "id", str, where), f"{where}: field 'id'")
    if scrub.finds_key(task_id):
        raise ProtocolError(f"{where}: field 'id' holds the API key")
    where = f"prediction {task_id!r}"
    status = field(obj, "status", str, where)
    outputs = obj.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(u, str) for u in outputs):
        raise ProtocolError(f"{where}: field 'outputs' should be a list of URLs")
    if any(scrub.finds_key(url) for url in outputs):
        raise ProtocolError(f"{where}: field 'outputs' holds a URL carrying the API key")
    nsfw = obj.get("has_nsfw_contents") or []
    if not isinstance(nsfw, list) or not all(isinstance(b, bool) for b in nsfw):
        raise ProtocolError(f"{where}: field 'has_nsfw_contents' should be a list of booleans")
    error = obj.get("error") or ""
    if not isinstance(error, str):
        raise ProtocolError(f"{where}: field 'error' should be a string")
    timings = obj.get("timings") or {}
    if not isinstance(timings, Mapping):
        raise ProtocolError(f"{where}: field 'timings' should be an object")
    return Prediction(
        id=task_id,
        model=scrub.brief(field(obj, "model", str, where), _MAX_NAME_CHARS),
        status=scrub.brief(status, _MAX_NAME_CHARS),
        outputs=tuple(outputs),
        error=scrub.brief(error, MAX_ERROR_CHARS),
        code=_optional_int(obj, "code", where),
        created_at=_parse_time(field(obj, "created_at", str, where), where, scrub),
        inference_ms=_optional_int(timings, "inference", where),
        has_nsfw_contents=tuple(nsfw),
    )


def format_time(when: datetime) -> str:
    """Format an aware datetime as the API's UTC ISO 8601 with milliseconds and ``Z``."""
    if when.tzinfo is None:
        msg = "history filters need a timezone-aware datetime (e.g. datetime.now(UTC))"
        raise ValueError(msg)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: What `json_or_none` returns for a body that cannot be read (None would be JSON's ``null``).
NOT_JSON: Final = object()


def json_or_none(raw: bytes) -> Any:
    """Decode a server's JSON, or return `NOT_JSON` if it cannot be read.

    The one place a server's JSON is decoded. Nesting deeper than Python's recursion limit
    (a hostile server's ``[[[[...]]]]``, 100 KB is enough) is unreadable like any other
    defect, never a crash. The decoder's exception is dropped: it holds the raw body, key
    and all.
    """
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return NOT_JSON


def is_envelope(raw: bytes) -> bool:
    """Whether *raw* is WaveSpeed's own error answer ``{"code": int, "message": str}``."""
    value = json_or_none(raw)
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("code"), int)
        and isinstance(value.get("message"), str)
    )


def server_offset(date_header: str | None, received_at: datetime) -> timedelta | None:
    """Estimate the server's clock minus ours from an HTTP ``Date`` header, or None.

    ``Date`` has whole seconds and is written while the answer is made, so the server's time
    at *received_at* lies in ``[date, date + 1 s + the answer's flight)``: the middle of the
    second is the best single estimate, good to about half a second plus the round trip.
    """
    if not date_header:
        return None
    try:
        when = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when + timedelta(milliseconds=500) - received_at


ERRORS_BY_STATUS: Final[dict[int, type[ApiError]]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
}
