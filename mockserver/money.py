"""WaveSpeed's account routes about money: the models list, price quotes, billing search.

Shapes as WaveSpeed's official CLI (``wavespeed-cli``, ``src/lib/api.ts``) reads them:

- ``GET /api/v3/models``: ``data`` is a list of models, each ``model_id``, ``name``, ``type``,
  ``base_price``, ``formula`` and ``api_schema.api_schemas[0].request_schema`` (a JSON
  Schema object: ``properties``, ``required``, ``x-order-properties``).
- ``POST /api/v3/model/price`` ``{model_id, inputs}``: ``{model_id, price, discounted_price,
  discount_rate, currency}``; ``POST /api/v3/model/pricing``, the older contract:
  ``{model_id, unit_price, currency}``.
- ``POST /api/v3/billings/search`` ``{page, page_size, billing_type?, start_time?,
  end_time?, model_uuid?}``: ``{page, has_more, items}``, each item ``uuid``,
  ``billing_type`` (``deduct`` or ``refund``), ``price`` (positive), ``created_at`` and
  ``prediction.uuid`` (the task id).

Every price is the server's own: the catalogue's times ``price_factor``, the same factor the
ledger charges with, so a quote never disagrees with the bill. ``quotes`` off makes both
price routes 404 and leaves the prices out of ``/models``; ``billings_search`` off makes
the search 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from aiohttp import web

from mockserver import catalogue
from mockserver.billing import EntryKind
from mockserver.state import MockState, iso_ms
from mockserver.validation import bad, int_field, json_object, time_field
from mockserver.wire import STATE, ApiError, envelope

#: What a billing item's ``billing_type`` says for each kind of ledger entry.
_BILLING_TYPES: Final = {EntryKind.CHARGE: "deduct", EntryKind.REFUND: "refund"}


#: How each kind of optional field reads in a JSON Schema.
_FIELD_TYPES: Final = {
    "text": "string",
    "number": "number",
    "boolean": "boolean",
    "choice": "string",
    "shots": "array",
}


def request_schema(model: str) -> dict[str, Any]:
    """Return *model*'s request schema as the models list shows it (a JSON Schema object)."""
    rules = catalogue.MODELS[model]
    durations = sorted(
        set(catalogue.durations(model, has_last_image=True))
        | set(catalogue.durations(model, has_last_image=False))
    )
    properties: dict[str, Any] = {
        "prompt": {"type": "string", "maxLength": catalogue.MAX_PROMPT_CHARS},
    }
    required = ["prompt"]
    if rules.takes_image:
        properties["image"] = {"type": "string"}
        required.append("image")
    if rules.end_frame is not None:
        properties[rules.end_frame] = {"type": "string"}
    for name, field in rules.fields.items():
        spec: dict[str, Any] = {"type": _FIELD_TYPES[field.kind]}
        if field.choices:
            spec["enum"] = list(field.choices)
            spec["default"] = field.choices[0]
        if field.low is not None:
            spec["minimum"] = field.low
        if field.high is not None:
            spec["maximum"] = field.high
        properties[name] = spec
    properties["duration"] = {
        "type": "integer",
        "enum": durations,
        "default": catalogue.DEFAULT_DURATION,
    }
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "x-order-properties": list(properties),
    }


def _price(value: Decimal) -> float:
    """Return a price as JSON carries it (a number: WaveSpeed answers floats)."""
    return float(value)


def model_entry(state: MockState, model: str) -> dict[str, Any]:
    """Return one item of ``GET /api/v3/models``."""
    kind = "image-to-video" if catalogue.MODELS[model].takes_image else "text-to-video"
    entry: dict[str, Any] = {
        "model_id": model,
        "name": model.rpartition("/")[0] or model,
        "type": kind,
        "api_schema": {
            "api_schemas": [
                {
                    "type": "model_run",
                    "method": "POST",
                    "api_path": f"/api/v3/{model}",
                    "request_schema": request_schema(model),
                }
            ]
        },
    }
    if state.config.quotes:
        entry["base_price"] = _price(state.price(model, catalogue.DEFAULT_DURATION))
        entry["formula"] = f"base_price * duration / {catalogue.DEFAULT_DURATION}"
    return entry


async def models(request: web.Request) -> web.Response:
    """List every model the mock serves, with its request schema and (unless off) its price."""
    state = request.app[STATE]
    return envelope([model_entry(state, model) for model in catalogue.MODELS])


def _quoted(request_body: dict[str, Any]) -> tuple[str, int]:
    """Read ``{model_id, inputs}``: the model and the duration it would be billed for."""
    model = request_body.get("model_id")
    if not isinstance(model, str) or not model:
        raise bad("model_id", "is required")
    if model not in catalogue.MODELS:
        raise ApiError(404, f"model not found: {model}")
    inputs = request_body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise bad("inputs", "must be an object")
    duration = inputs.get("duration", catalogue.DEFAULT_DURATION)
    allowed = set(catalogue.durations(model, has_last_image=True)) | set(
        catalogue.durations(model, has_last_image=False)
    )
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in allowed:
        raise bad("inputs.duration", f"not a duration {model} takes: {duration!r}")
    return model, duration


def _require_quotes(state: MockState, request: web.Request) -> None:
    if not state.config.quotes:
        raise ApiError(404, f"not found: {request.method} {request.path}")


async def price(request: web.Request) -> web.Response:
    """Quote one run (``/model/price``): price, discounted price (no discount here), currency."""
    state = request.app[STATE]
    _require_quotes(state, request)
    model, duration = _quoted(json_object(await request.read()))
    amount = _price(state.price(model, duration))
    return envelope(
        {
            "model_id": model,
            "price": amount,
            "discounted_price": amount,
            "discount_rate": 1,
            "currency": "USD",
        }
    )


async def pricing(request: web.Request) -> web.Response:
    """Quote one run the older way (``/model/pricing``): ``unit_price`` and currency."""
    state = request.app[STATE]
    _require_quotes(state, request)
    model, duration = _quoted(json_object(await request.read()))
    return envelope(
        {"model_id": model, "unit_price": _price(state.price(model, duration)), "currency": "USD"}
    )


async def billings_search(request: web.Request) -> web.Response:
    """List the ledger's charges and refunds, newest first, filtered and paged."""
    state = request.app[STATE]
    if not state.config.billings_search:
        raise ApiError(404, f"not found: {request.method} {request.path}")
    state.refresh()
    body = json_object(await request.read())
    page = int_field(body, "page", 1, 1, 1_000_000)
    page_size = int_field(body, "page_size", 20, 1, 100)
    billing_type = body.get("billing_type")
    if billing_type is not None and billing_type not in _BILLING_TYPES.values():
        raise bad("billing_type", "must be deduct or refund")
    model = body.get("model_uuid")
    if model is not None and not isinstance(model, str):
        raise bad("model_uuid", "must be a model id string")
    after, before = time_field(body, "start_time"), time_field(body, "end_time")
    chosen = []
    for entry in reversed(state.ledger.entries):
        task = state.book.get(entry.task_id)
        at = state.server_time(entry.at)
        kind = _BILLING_TYPES[entry.kind]
        if (
            (billing_type is None or kind == billing_type)
            and (model is None or (task is not None and task.model == model))
            and (after is None or at >= after)
            and (before is None or at <= before)
        ):
            chosen.append((entry, task, kind, at))
    start = (page - 1) * page_size
    shown = chosen[start : start + page_size]
    items = [
        {
            "uuid": f"bill-{entry.seq:08d}",
            "billing_type": kind,
            "price": _price(abs(entry.amount_usd)),
            "created_at": iso_ms(at),
            "prediction": {
                "uuid": entry.task_id,
                "model_uuid": task.model if task is not None else "",
                "status": task.status.value if task is not None else "",
            },
        }
        for entry, task, kind, at in shown
    ]
    return envelope({"page": page, "has_more": start + page_size < len(chosen), "items": items})


#: Fixed paths: listed before the submit route's ``{model:.+}``, which would match them too.
ROUTES: Final = [
    web.get("/api/v3/models", models, name="models"),
    web.post("/api/v3/model/price", price, name="price"),
    web.post("/api/v3/model/pricing", pricing, name="pricing"),
    web.post("/api/v3/billings/search", billings_search, name="billings_search"),
]
