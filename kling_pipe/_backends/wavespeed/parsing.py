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
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar

from kling_pipe._backends.account import BILLING_KINDS, Charge, FieldSchema, Quote, ServerModel
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
    "MAX_BALANCE_USD",
    "MAX_ERROR_CHARS",
    "MAX_RUN_USD",
    "NOT_JSON",
    "balance_from_json",
    "billing_page_from_json",
    "charge_from_json",
    "field",
    "format_time",
    "is_envelope",
    "json_or_none",
    "models_from_json",
    "prediction_from_json",
    "price_from_formula",
    "price_quote_from_json",
    "pricing_quote_from_json",
    "server_model_from_json",
    "server_offset",
    "usd",
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


# ---------------------------------------------------------------------- money answers
#
# Shapes as WaveSpeed's official CLI reads them (WaveSpeedAI/wavespeed-cli, src/lib/api.ts:
# `LiveModel`, `ModelPrice`, `BillingItem`); the public docs show none of them in full. A
# price is a JSON number: a string, a bool, NaN, an infinity, a negative or an absurd amount
# is a defect, never read as some price. Fields the CLI does not read are not relied on.

#: The most one run may be quoted or billed: far above any Kling price (a few USD), so a
#: price beyond it is a broken or hostile answer, not a price.
MAX_RUN_USD: Final = Decimal(1000)
#: The largest balance read as one (a top-up tier's worth many times over).
MAX_BALANCE_USD: Final = Decimal(10) ** 9
#: Places a price keeps: JSON floats come with binary noise (``0.8400000000000001``).
_USD_PLACES: Final = Decimal("0.000001")
#: The formulas read without a JSONata engine: ``base_price``, ``base_price * duration``
#: and ``base_price * duration / N``. Any other is left unread (the quote falls through).
_FORMULA: Final = re.compile(
    r"\s*base_price\s*(?:\*\s*duration\s*(?:/\s*(?P<per>[1-9][0-9]{0,2})\s*)?)?"
)


def usd(
    value: object, where: str, *, limit: Decimal = MAX_RUN_USD, signed: bool = False
) -> Decimal:
    """Read a USD amount: a finite JSON number, not negative (unless *signed*), within *limit*."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where} should be a number of USD, got {_described(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{where} should be a number of USD, got {value!r}")
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if amount < 0 and not signed:
        raise ProtocolError(f"{where} should not be negative, got {amount}")
    if abs(amount) > limit:
        raise ProtocolError(f"{where} is beyond any price ({amount} USD)")
    exponent = amount.as_tuple().exponent
    return amount.quantize(_USD_PLACES) if isinstance(exponent, int) and exponent < -6 else amount


def _envelope_model(obj: Mapping[str, Any], model: str, where: str, scrub: Scrubber) -> None:
    """Refuse a quote that names another model than the one asked about."""
    named = obj.get("model_id")
    if named is not None and named != model:
        shown = scrub.brief(str(named), _MAX_QUOTED_CHARS)
        raise ProtocolError(f"{where}: the quote is for {shown!r}, not {model}")
    currency = obj.get("currency")
    if currency is not None and currency != "USD":
        shown = scrub.brief(str(currency), _MAX_QUOTED_CHARS)
        raise ProtocolError(f"{where}: the quote is in {shown!r}, not USD")


def price_quote_from_json(obj: Mapping[str, Any], model: str, *, scrub: Scrubber) -> Quote:
    """Read ``/model/price``: ``price`` (the list price) and ``discounted_price``, if given.

    Which of the two WaveSpeed charges is not stated anywhere public; a discount can only
    lower what is paid, so the discounted price is what a run is priced (and its bill
    checked) at, while the list price is what a catalogue is compared with.
    """
    where = "model/price"
    _envelope_model(obj, model, where, scrub)
    listed = usd(obj.get("price"), f"{where}: price")
    if obj.get("discounted_price") is None:
        return Quote(model_id=model, usd=listed, source="price")
    charged = usd(obj.get("discounted_price"), f"{where}: discounted_price")
    if charged > listed:
        raise ProtocolError(f"{where}: discounted_price {charged} is above the price {listed}")
    return Quote(model_id=model, usd=charged, source="price", list_usd=listed)


def pricing_quote_from_json(obj: Mapping[str, Any], model: str, *, scrub: Scrubber) -> Quote:
    """Read the older ``/model/pricing``: ``unit_price`` for one run of the inputs."""
    where = "model/pricing"
    _envelope_model(obj, model, where, scrub)
    return Quote(
        model_id=model, usd=usd(obj.get("unit_price"), f"{where}: unit_price"), source="pricing"
    )


def price_from_formula(model: ServerModel, inputs: Mapping[str, object]) -> Decimal | None:
    """Price one request from a listed model's base price and formula, or None if unread.

    Only the plain formulas `_FORMULA` matches are read (no JSONata engine here): any other
    says nothing rather than a guess. A formula over ``duration`` needs a whole duration.
    """
    if model.base_price is None or model.formula is None:
        return None
    match = _FORMULA.fullmatch(model.formula)
    if match is None:
        return None
    if "duration" not in model.formula:
        return model.base_price
    duration = inputs.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        return None
    per = int(match["per"]) if match["per"] else 1
    return model.base_price * duration / per


def _schema_value(value: object) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) else None


def _fields_of(
    schema: Mapping[str, Any], where: str
) -> tuple[tuple[FieldSchema, ...], tuple[str, ...]]:
    properties = schema.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, Mapping):
        raise ProtocolError(f"{where}: 'properties' should be an object")
    fields = []
    for name, spec in properties.items():
        if not isinstance(spec, Mapping):
            raise ProtocolError(
                f"{where}: property {name[:_MAX_QUOTED_CHARS]!r} should be an object"
            )
        kind = spec.get("type")
        enum = spec.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise ProtocolError(f"{where}: {name[:_MAX_QUOTED_CHARS]!r}.enum should be a list")
        fields.append(
            FieldSchema(
                name=name[:_MAX_NAME_CHARS],
                type=kind[:_MAX_NAME_CHARS] if isinstance(kind, str) else None,
                enum=None
                if enum is None
                else tuple(v for v in map(_schema_value, enum) if v is not None),
                default=_schema_value(spec.get("default")),
            )
        )
    required = schema.get("required")
    if required is None:
        required = []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ProtocolError(f"{where}: 'required' should be a list of field names")
    return tuple(fields), tuple(r[:_MAX_NAME_CHARS] for r in required)


def server_model_from_json(obj: object, *, scrub: Scrubber) -> ServerModel:
    """Read one model of ``GET /api/v3/models``; its request schema from ``api_schemas[0]``.

    The CLI notes that the live answer nests the schema as
    ``api_schema.api_schemas[0].request_schema``; a model without one lists no fields.
    """
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"models: an item should be an object, got {type(obj).__name__}")
    model_id = scrub.brief(field(obj, "model_id", str, "models: an item"), _MAX_NAME_CHARS)
    where = f"models: {model_id}"
    base = obj.get("base_price")
    formula = obj.get("formula")
    kind = obj.get("type")
    fields: tuple[FieldSchema, ...] = ()
    required: tuple[str, ...] = ()
    api_schema = obj.get("api_schema")
    schemas = api_schema.get("api_schemas") if isinstance(api_schema, Mapping) else None
    if isinstance(schemas, list) and schemas and isinstance(schemas[0], Mapping):
        request = schemas[0].get("request_schema")
        if isinstance(request, Mapping):
            fields, required = _fields_of(request, f"{where}: request_schema")
    return ServerModel(
        model_id=model_id,
        kind=scrub.brief(kind, _MAX_NAME_CHARS) if isinstance(kind, str) else "",
        base_price=None if base is None else usd(base, f"{where}: base_price"),
        formula=scrub.brief(formula, _MAX_NAME_CHARS) if isinstance(formula, str) else None,
        fields=fields,
        required=required,
    )


def models_from_json(data: object, *, scrub: Scrubber) -> list[ServerModel]:
    """Read ``GET /api/v3/models``'s ``data``: a list of models (each read strictly)."""
    if not isinstance(data, list):
        raise ProtocolError(f"models: 'data' should be a list, got {type(data).__name__}")
    return [server_model_from_json(item, scrub=scrub) for item in data]


def balance_from_json(obj: Mapping[str, Any]) -> Decimal:
    """Read ``GET /api/v3/balance``: ``balance`` in USD (an account may owe: it may be negative)."""
    return usd(obj.get("balance"), "balance: balance", limit=MAX_BALANCE_USD, signed=True)


def charge_from_json(obj: object, *, scrub: Scrubber) -> Charge | None:
    """Read one billing item; None for one that is no task's (a top-up, say: no prediction).

    ``billing_type`` must be ``deduct`` or ``refund`` and ``price`` a price; the task id is
    ``prediction.uuid``, read as any task id.
    """
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"billings: an item should be an object, got {type(obj).__name__}")
    prediction = obj.get("prediction")
    if prediction is None:
        return None
    if not isinstance(prediction, Mapping):
        raise ProtocolError("billings: an item's 'prediction' should be an object")
    task_id = parse_task_id(prediction.get("uuid"), "billings: an item's prediction.uuid")
    where = f"billings: task {task_id}"
    kind = obj.get("billing_type")
    if kind not in BILLING_KINDS:
        shown = scrub.brief(str(kind), _MAX_QUOTED_CHARS)
        raise ProtocolError(f"{where}: billing_type should be deduct or refund, got {shown!r}")
    model = prediction.get("model_uuid")
    created = obj.get("created_at")
    return Charge(
        task_id=task_id,
        kind="deduct" if kind == "deduct" else "refund",
        usd=usd(obj.get("price"), f"{where}: price"),
        model=scrub.brief(model, _MAX_NAME_CHARS) if isinstance(model, str) else "",
        created_at=_iso_time(created) if isinstance(created, str) else None,
    )


def billing_page_from_json(obj: Mapping[str, Any], *, scrub: Scrubber) -> tuple[list[Charge], bool]:
    """Read one page of ``billings/search``: its task charges, and whether more pages follow."""
    items = obj.get("items")
    if not isinstance(items, list):
        got = "missing" if "items" not in obj else type(items).__name__
        raise ProtocolError(f"billings: field 'items' should be a list, got {got}")
    more = obj.get("has_more", False)
    if not isinstance(more, bool):
        raise ProtocolError("billings: field 'has_more' should be true or false")
    charges = [c for c in (charge_from_json(i, scrub=scrub) for i in items) if c is not None]
    return charges, more
