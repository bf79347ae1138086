"""What the account side of WaveSpeed's API says about money, as checked values.

The models list (``GET /api/v3/models``: request schemas, base price and formula), a quote
for one request (``/api/v3/model/price``, else ``/model/pricing``, else the models list's
price), the balance and the itemised charges and refunds (``/api/v3/billings/search``).
`parsing` builds these values from the server's answers, so nothing here trusts a field.

`Account` is kept apart from `Backend`: a caller's own backend need not answer about money.
A run against a real API asks it when its backend has these methods, and says so when not.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, Literal, Protocol, runtime_checkable

import attrs

from kling_pipe._backends.base import TaskId

__all__ = [
    "BILLING_KINDS",
    "Account",
    "Charge",
    "FieldSchema",
    "Quote",
    "QuoteSource",
    "ServerModel",
]

#: Which endpoint a quote came from: the price route, the older pricing route, or the
#: models list's base price and formula.
QuoteSource = Literal["price", "pricing", "models"]
#: A billing item's kind: a charge (``deduct``) or money given back (``refund``).
BILLING_KINDS: Final = ("deduct", "refund")


@attrs.frozen(kw_only=True)
class Quote:
    """What WaveSpeed says one request of *model_id* costs, and which endpoint said it."""

    model_id: str
    #: What a run is charged: the discounted price where one is given, else the price.
    usd: Decimal
    source: QuoteSource
    #: The price before any discount (the one a catalogue states); None: the same as `usd`.
    list_usd: Decimal | None = None


@attrs.frozen(kw_only=True)
class FieldSchema:
    """One field of a model's request schema, as far as the models list states it."""

    name: str
    #: The JSON Schema ``type`` (``string``, ``integer``...), or None when not stated.
    type: str | None = None
    #: The allowed values, or None when the schema lists none.
    enum: tuple[str | int | float | bool, ...] | None = None
    #: The default, or None when not stated (a JSON ``null`` default reads as not stated).
    default: str | int | float | bool | None = None


@attrs.frozen(kw_only=True)
class ServerModel:
    """One model of ``GET /api/v3/models``: its request schema and its price, if shown."""

    model_id: str
    #: WaveSpeed's ``type`` (e.g. ``image-to-video``), or "" when not stated.
    kind: str = ""
    base_price: Decimal | None = None
    #: The price formula (a JSONata expression over the inputs), as the server wrote it.
    formula: str | None = None
    fields: tuple[FieldSchema, ...] = ()
    required: tuple[str, ...] = ()

    def field(self, name: str) -> FieldSchema | None:
        """Return the field called *name*, or None."""
        return next((f for f in self.fields if f.name == name), None)


@attrs.frozen(kw_only=True)
class Charge:
    """One item of the billing search: money taken for a task, or given back."""

    task_id: TaskId
    kind: Literal["deduct", "refund"]
    #: Always positive: the kind says which way the money went.
    usd: Decimal
    #: The model the task ran (the item's ``prediction.model_uuid``), or "" if not stated.
    model: str = ""
    created_at: datetime | None = None


@runtime_checkable
class Account(Protocol):
    """A backend that can answer about money (the WaveSpeed client, and so the mock)."""

    async def list_models(self) -> list[ServerModel]:
        """Return every model the server lists (``GET /api/v3/models``)."""
        ...

    async def quote(self, model: str, inputs: dict[str, object]) -> Quote:
        """Return the price of one request of *model* with *inputs*.

        Raises `QuoteUnavailableError` when no endpoint gives one.
        """
        ...

    async def balance(self) -> Decimal:
        """Return the account's balance in USD (``GET /api/v3/balance``)."""
        ...

    async def billings(self, *, since: datetime, until: datetime) -> list[Charge]:
        """Return every charge and refund from *since* to *until* (server's clock).

        Raises `NotFoundError` when the account does not answer the billing search.
        """
        ...
