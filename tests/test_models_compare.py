"""`kling-pipe models`: the catalogue's rows, and every difference from a server's list."""

from __future__ import annotations

from decimal import Decimal

from kling_pipe._backends.account import FieldSchema, ServerModel
from kling_pipe._running.models import catalogue_rows, compare_models
from kling_pipe._shotlist import catalogue

O1 = "kwaivgi/kling-video-o1-std/image-to-video"


def o1_as_listed(**changes: object) -> ServerModel:
    fields = (
        FieldSchema(name="prompt", type="string"),
        FieldSchema(name="image", type="string"),
        FieldSchema(name="last_image", type="string"),
        FieldSchema(name="duration", type="integer", enum=tuple(range(3, 11)), default=5),
    )
    values: dict[str, object] = {
        "model_id": O1,
        "base_price": Decimal("0.42"),
        "formula": "base_price * duration / 5",
        "fields": fields,
        "required": ("prompt", "image"),
    }
    values.update(changes)
    return ServerModel(**values)  # type: ignore[arg-type]


def o1_row():
    (row,) = [r for r in catalogue_rows() if r.model_id == O1]
    return row


def test_every_catalogue_model_is_a_row_with_its_sources() -> None:
    rows = catalogue_rows()
    assert [r.model_id for r in rows] == list(catalogue.CATALOGUE)
    assert all(r.source.startswith("model: https://wavespeed.ai/") for r in rows)
    assert o1_row().default_price == Decimal("0.420")


def test_a_server_that_agrees_has_no_difference() -> None:
    assert compare_models([o1_row()], [o1_as_listed()]) == []


def test_each_kind_of_difference_is_named() -> None:
    fields = (
        FieldSchema(name="prompt"),
        FieldSchema(name="image"),
        FieldSchema(name="end_image"),
        FieldSchema(name="duration", enum=(5, 10), default=10),
    )
    found = compare_models([o1_row()], [o1_as_listed(fields=fields, base_price=Decimal("0.5"))])
    assert found == [
        f"{O1}: field 'last_image' is in the catalogue, not in the server's schema",
        f"{O1}: field 'end_image' is in the server's schema, not in the catalogue",
        f"{O1}: durations 3, 4, 5, 6, 7, 8, 9, 10 in the catalogue, 5, 10 on the server",
        f"{O1}: default duration 5 in the catalogue, 10 on the server",
        f"{O1}: 0.420 USD for 5 s in the catalogue, 0.5 USD by the server's formula",
    ]


def test_a_missing_model_or_schema_is_named_and_an_unstated_price_is_not_compared() -> None:
    assert compare_models([o1_row()], []) == [f"{O1}: not in the server's models list"]
    bare = ServerModel(model_id=O1)
    assert compare_models([o1_row()], [bare]) == [
        f"{O1}: the server lists no request schema to compare"
    ]
    unread = o1_as_listed(formula="$max([base_price, 1])")
    assert compare_models([o1_row()], [unread]) == []  # its base price, 0.42, agrees
