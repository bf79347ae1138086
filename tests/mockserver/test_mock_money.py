"""The mock's money routes: the models list, both price quotes, billing search, price_factor."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mockserver import MockServer, catalogue
from tests.mockserver.mock_support import I2V, T2V, Api, MakeMock, i2v


async def test_models_lists_every_catalogue_model_with_schema_and_price(api: Api) -> None:
    """GET /models: each model's id, request schema (fields, durations) and base price."""
    status, reply, _ = await api.call("GET", "/api/v3/models")
    assert status == 200
    listed = {m["model_id"]: m for m in reply["data"]}  # type: ignore[union-attr]
    assert set(listed) == set(catalogue.MODELS)
    i2v_entry = listed[I2V]
    schema = i2v_entry["api_schema"]["api_schemas"][0]["request_schema"]
    assert schema["required"] == ["prompt", "image"]
    assert schema["properties"]["duration"]["enum"] == list(range(3, 11))
    assert Decimal(str(i2v_entry["base_price"])) == catalogue.cost(I2V, 5)
    assert i2v_entry["formula"] == "base_price * duration / 5"
    t2v_schema = listed[T2V]["api_schema"]["api_schemas"][0]["request_schema"]
    assert t2v_schema["properties"]["aspect_ratio"]["enum"] == list(catalogue.ASPECT_RATIOS)
    assert "image" not in t2v_schema["properties"]


@pytest.mark.parametrize("duration", [5, 10, 7])
async def test_both_price_routes_quote_the_catalogue_price(api: Api, duration: int) -> None:
    """/model/price and the older /model/pricing quote what a run of those inputs costs."""
    body = {"model_id": I2V, "inputs": {"prompt": "x", "duration": duration}}
    status, reply, _ = await api.call("POST", "/api/v3/model/price", json=body)
    assert status == 200
    data = reply["data"]
    assert isinstance(data, dict)
    assert Decimal(str(data["price"])) == catalogue.cost(I2V, duration)
    assert data["discounted_price"] == data["price"]
    assert data["currency"] == "USD"
    status, reply, _ = await api.call("POST", "/api/v3/model/pricing", json=body)
    assert status == 200
    assert reply["data"] == {"model_id": I2V, "unit_price": data["price"], "currency": "USD"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"inputs": {}}, 400),
        ({"model_id": "nobody/none", "inputs": {}}, 404),
        ({"model_id": I2V, "inputs": []}, 400),
        ({"model_id": I2V, "inputs": {"duration": 11}}, 400),
        ({"model_id": I2V, "inputs": {"duration": True}}, 400),
    ],
)
async def test_a_bad_quote_request_is_refused(api: Api, body: object, status: int) -> None:
    """No model, an unknown one, inputs that are not an object or a duration it never takes."""
    answer, reply, _ = await api.call("POST", "/api/v3/model/price", json=body)
    assert answer == status
    assert reply["message"]


async def test_price_factor_changes_quotes_models_and_the_bill_alike(make_mock: MakeMock) -> None:
    """A price change on the server shows in its quotes, its /models and what it charges."""
    mock = await make_mock(price_factor=Decimal("1.5"))
    import aiohttp  # noqa: PLC0415 - a session of this test's own

    async with aiohttp.ClientSession() as session:
        api = Api(session, mock)
        body = {"model_id": I2V, "inputs": {"duration": 5}}
        _, reply, _ = await api.call("POST", "/api/v3/model/price", json=body)
        assert Decimal(str(reply["data"]["price"])) == Decimal("0.630")  # type: ignore[index]
        _, reply, _ = await api.call("GET", "/api/v3/models")
        prices = {m["model_id"]: m["base_price"] for m in reply["data"]}  # type: ignore[union-attr]
        assert Decimal(str(prices[I2V])) == Decimal("0.63")
        task_id = await api.submit(i2v(5))
        charged = [e for e in mock.state.ledger.entries if e.task_id == task_id]
        assert [e.amount_usd for e in charged] == [Decimal("-0.630")]


async def test_quotes_off_leaves_no_price_anywhere(api: Api, mock: MockServer) -> None:
    """quotes=False: both price routes are 404 and /models carries no price."""
    mock.set_options(quotes=False)
    for path in ("/api/v3/model/price", "/api/v3/model/pricing"):
        status, _, _ = await api.call("POST", path, json={"model_id": I2V, "inputs": {}})
        assert status == 404
    _, reply, _ = await api.call("GET", "/api/v3/models")
    for model in reply["data"]:  # type: ignore[union-attr]
        assert "base_price" not in model
        assert "formula" not in model


async def test_billings_search_itemises_charges_and_refunds_per_task(
    api: Api, mock: MockServer
) -> None:
    """Each charge is a deduct and each refund a refund, naming the task; newest first."""
    kept = await api.submit(i2v(5))
    failed = await api.submit(i2v(10))
    mock.fail(failed)
    status, reply, _ = await api.call("POST", "/api/v3/billings/search", json={"page_size": 100})
    assert status == 200
    data = reply["data"]
    assert isinstance(data, dict)
    assert data["has_more"] is False
    seen = [
        (i["billing_type"], i["prediction"]["uuid"], Decimal(str(i["price"])))
        for i in data["items"]
    ]
    assert seen == [
        ("refund", failed, Decimal("0.84")),
        ("deduct", failed, Decimal("0.84")),
        ("deduct", kept, Decimal("0.42")),
    ]
    assert all(i["prediction"]["model_uuid"] == I2V for i in data["items"])
    _, reply, _ = await api.call(
        "POST", "/api/v3/billings/search", json={"billing_type": "refund", "page_size": 1}
    )
    assert [i["prediction"]["uuid"] for i in reply["data"]["items"]] == [failed]  # type: ignore[index]


async def test_billings_search_pages_and_refuses_bad_filters(api: Api, mock: MockServer) -> None:
    """page/page_size page the items; an unknown billing_type is a 400; off, it is a 404."""
    for _ in range(3):
        await api.submit(i2v())
    _, reply, _ = await api.call(
        "POST", "/api/v3/billings/search", json={"page": 1, "page_size": 2}
    )
    assert reply["data"]["has_more"] is True  # type: ignore[index]
    _, reply, _ = await api.call(
        "POST", "/api/v3/billings/search", json={"page": 2, "page_size": 2}
    )
    assert len(reply["data"]["items"]) == 1  # type: ignore[index]
    assert reply["data"]["has_more"] is False  # type: ignore[index]
    status, _, _ = await api.call("POST", "/api/v3/billings/search", json={"billing_type": "x"})
    assert status == 400
    mock.set_options(billings_search=False)
    status, _, _ = await api.call("POST", "/api/v3/billings/search", json={})
    assert status == 404


@pytest.mark.parametrize(
    "changes",
    [{"price_factor": 0}, {"price_factor": "cheap"}, {"quotes": 1}, {"billings_search": "no"}],
)
async def test_bad_money_options_are_refused(mock: MockServer, changes: dict[str, object]) -> None:
    """A price factor must be a number above 0; the switches must be true or false."""
    with pytest.raises((TypeError, ValueError)):
        mock.set_options(**changes)
