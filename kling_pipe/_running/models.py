"""The catalogue as `kling-pipe models` lists it, and compared with the server's own list.

`catalogue_rows` turns the catalogue into what a person reads: each model's path, fields,
durations, price and where each fact came from. `compare_models` holds it against
``GET /api/v3/models`` (the server's request schemas and prices) and names every
difference: a model the server does not list, a field one side has and the other not, a
duration one allows and the other not, a default run priced differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import attrs

from kling_pipe._backends.account import ServerModel
from kling_pipe._backends.wavespeed.parsing import price_from_formula
from kling_pipe._shotlist import catalogue

__all__ = ["CatalogueRow", "catalogue_rows", "compare_models"]

#: Fields every Kling request has, which the catalogue does not list per model.
_COMMON_FIELDS = ("prompt", "duration")


@attrs.frozen(kw_only=True)
class CatalogueRow:
    """One model of the catalogue, as `kling-pipe models` shows it."""

    model_id: str
    #: Request fields beyond prompt and duration.
    fields: tuple[str, ...]
    durations: tuple[int, ...]
    default_duration: int
    #: The price of its default request (None: unconfirmed).
    default_price: Decimal | None
    #: The price rule in words.
    price: str
    #: Where the facts came from.
    source: str

    def lines(self) -> list[str]:
        """Describe the model in a few lines."""
        durations = ", ".join(map(str, self.durations))
        return [
            self.model_id,
            f"  fields: {', '.join((*_COMMON_FIELDS, *self.fields))}",
            f"  durations: {durations} s (default {self.default_duration})",
            f"  price: {self.price}",
            *(f"  source: {part}" for part in self.source.split("; ")),
        ]

    def as_json(self) -> dict[str, object]:
        """Return the row as data (money as a decimal string)."""
        return {
            "model_id": self.model_id,
            "fields": [*_COMMON_FIELDS, *self.fields],
            "durations": list(self.durations),
            "default_duration": self.default_duration,
            "default_price": None if self.default_price is None else str(self.default_price),
            "price": self.price,
            "source": self.source,
        }


def catalogue_rows() -> list[CatalogueRow]:
    """Return every catalogue model as a row, in the catalogue's order."""
    return [_row(entry) for entry in catalogue.CATALOGUE.values()]


def _row(entry: catalogue.ModelEntry) -> CatalogueRow:
    fields = [*(("image",) if entry.takes_image else ())]
    if entry.end_frame_field is not None:
        fields.append(entry.end_frame_field)
    fields.extend(entry.field_names)
    rule = entry.durations
    durations = tuple(sorted({*rule.allowed, *(rule.with_end_frame or ())}))
    sources = [f"model: {entry.source}", f"durations: {rule.source}"]
    sources.append(f"price: {entry.price.source}")
    sources.extend(f"{f.name}: {f.source}" for f in entry.fields)
    return CatalogueRow(
        model_id=entry.model_id,
        fields=tuple(fields),
        durations=durations,
        default_duration=rule.default,
        default_price=catalogue.price_of(entry, rule.default, {}),
        price=_price_words(entry.price),
        source="; ".join(sources),
    )


def _price_words(rule: catalogue.PriceRule) -> str:
    """Say a price rule in words."""
    if rule.usd_per_second is not None:
        minimum = (
            f", at least {rule.min_billed_seconds} s billed" if rule.min_billed_seconds else ""
        )
        return f"{rule.usd_per_second} USD per second of video{minimum}"
    if rule.usd_per_default_run is not None:
        return f"{rule.usd_per_default_run} USD for the default request (any other: unconfirmed)"
    return "unconfirmed (a real run is priced by WaveSpeed's quote, or refused)"


def compare_models(rows: Sequence[CatalogueRow], listed: Sequence[ServerModel]) -> list[str]:
    """Name every difference between the catalogue and the server's models list.

    A server model outside the catalogue is no difference (WaveSpeed serves hundreds); a
    price the server does not state is none either (it is said as such, not compared).
    """
    by_id = {m.model_id: m for m in listed}
    found: list[str] = []
    for row in rows:
        server = by_id.get(row.model_id)
        if server is None:
            found.append(f"{row.model_id}: not in the server's models list")
            continue
        found.extend(_field_differences(row, server))
        found.extend(_duration_differences(row, server))
        found.extend(_price_differences(row, server))
    return found


def _field_differences(row: CatalogueRow, server: ServerModel) -> list[str]:
    if not server.fields:
        return [f"{row.model_id}: the server lists no request schema to compare"]
    ours = {*_COMMON_FIELDS, *row.fields}
    theirs = {f.name for f in server.fields}
    found = [
        f"{row.model_id}: field {name!r} is in the catalogue, not in the server's schema"
        for name in sorted(ours - theirs)
    ]
    found.extend(
        f"{row.model_id}: field {name!r} is in the server's schema, not in the catalogue"
        for name in sorted(theirs - ours)
    )
    return found


def _duration_differences(row: CatalogueRow, server: ServerModel) -> list[str]:
    duration = server.field("duration")
    if duration is None or duration.enum is None:
        return []
    theirs = {v for v in duration.enum if isinstance(v, int) and not isinstance(v, bool)}
    found = []
    if theirs != set(row.durations):
        found.append(
            f"{row.model_id}: durations {_ints(row.durations)} in the catalogue, "
            f"{_ints(theirs)} on the server"
        )
    if duration.default is not None and duration.default != row.default_duration:
        found.append(
            f"{row.model_id}: default duration {row.default_duration} in the catalogue, "
            f"{duration.default} on the server"
        )
    return found


def _price_differences(row: CatalogueRow, server: ServerModel) -> list[str]:
    if server.base_price is None:
        return []
    theirs = price_from_formula(server, {"duration": row.default_duration})
    shown = "formula" if theirs is not None else "base price"
    if theirs is None:
        theirs = server.base_price
    if row.default_price is None:
        return [
            (
                f"{row.model_id}: the catalogue has no confirmed price; the server's {shown} "
                f"says {theirs} USD for {row.default_duration} s"
            )
        ]
    if theirs != row.default_price:
        return [
            (
                f"{row.model_id}: {row.default_price} USD for {row.default_duration} s in the "
                f"catalogue, {theirs} USD by the server's {shown}"
            )
        ]
    return []


def _ints(values: Sequence[int] | set[int]) -> str:
    return ", ".join(map(str, sorted(values))) or "none"
