"""The client's money calls: models, quotes (and their fallbacks), balance, billing search.

Answers come two ways, both through the real client: canned at WaveSpeed's own https URL
with aioresponses (the maintained fork, aioresponses-ng: the original cannot build a
response under aiohttp 3.14), for the matrix of hostile answers; and from the scripted
loopback server (`tests.scripted_server`), which records what was sent, for the fallbacks.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import aiohttp
import pytest
import stamina
from aioresponses import aioresponses
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._backends.account import Account, ServerModel
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.parsing import (
    MAX_RUN_USD,
    price_from_formula,
    usd,
)
from kling_pipe.exceptions import (
    BadRequestError,
    NotFoundError,
    ProtocolError,
    QuoteUnavailableError,
)
from tests.scripted_server import LoopbackResolver, ScriptedServer
from tests.test_wavespeed import BASE, MODEL, NOW, TASK, envelope

KEY = "ws-SECRET-MONEY-9Tq4Wz-KEY"
PRICE = f"{BASE}/api/v3/model/price"
PRICING = f"{BASE}/api/v3/model/pricing"
MODELS = f"{BASE}/api/v3/models"
BALANCE = f"{BASE}/api/v3/balance"
BILLINGS = f"{BASE}/api/v3/billings/search"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def no_sleep():
    with stamina.set_testing(True, attempts=2):
        yield


@pytest.fixture
async def mocked(aiohttp_server) -> ScriptedServer:
    scripted = ScriptedServer(NOW)
    scripted.port = (await aiohttp_server(scripted.app)).port
    return scripted


@pytest.fixture
async def client(mocked: ScriptedServer):
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver(mocked.port))
    async with aiohttp.ClientSession(connector=connector, middlewares=(mocked.middleware,)) as s:
        yield WaveSpeedClient(s, BASE, KEY, rng=lambda: 0.0, clock=lambda: NOW)


def model_item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "model_id": MODEL,
        "name": "Kling O1",
        "type": "image-to-video",
        "base_price": 0.42,
        "formula": "base_price * duration / 5",
        "api_schema": {
            "api_schemas": [
                {
                    "request_schema": {
                        "type": "object",
                        "properties": {
                            "prompt": {"type": "string"},
                            "duration": {"type": "integer", "enum": [5, 10], "default": 5},
                        },
                        "required": ["prompt"],
                    }
                }
            ]
        },
    }
    item.update(changes)
    return item


def test_the_client_keeps_the_account_protocol(client: WaveSpeedClient) -> None:
    assert isinstance(client, Account)


# -------------------------------------------------------------------------- quotes


async def test_quote_reads_the_discounted_price_of_the_price_route(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    """/model/price answers first: the discounted price is what a run is checked against."""
    mocked.post(
        PRICE,
        payload=envelope(
            {"model_id": MODEL, "price": 0.84, "discounted_price": 0.84, "currency": "USD"}
        ),
    )
    quote = await client.quote(MODEL, {"duration": 10})
    assert (quote.usd, quote.list_usd, quote.source) == (
        Decimal("0.84"),
        Decimal("0.84"),
        "price",
    )
    assert mocked.calls_to("POST", PRICE)[0].json == {
        "model_id": MODEL,
        "inputs": {"duration": 10},
    }
    assert mocked.calls_to("POST", PRICING) == []


async def test_quote_falls_back_to_pricing_then_to_the_models_formula(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    """A missing route (404) is skipped; the models list's formula prices the inputs last."""
    mocked.post(PRICE, status=404, payload={"code": 404, "message": "not found"}, repeat=True)
    mocked.post(PRICING, payload=envelope({"model_id": MODEL, "unit_price": 0.42}))
    assert (await client.quote(MODEL, {"duration": 5})).source == "pricing"
    mocked.post(PRICING, status=404, payload={"code": 404, "message": "not found"}, repeat=True)
    mocked.get(MODELS, payload=envelope([model_item()]), repeat=True)
    quote = await client.quote(MODEL, {"duration": 10})
    assert (quote.usd, quote.source) == (Decimal("0.84"), "models")


@pytest.mark.parametrize(
    "item",
    [
        model_item(base_price=None),
        model_item(formula="$max([base_price, 0.35]) * duration"),
        model_item(model_id="someone/else"),
    ],
    ids=["no price", "formula not read", "not listed"],
)
async def test_no_route_and_no_readable_price_is_no_quote(
    client: WaveSpeedClient, mocked: ScriptedServer, item: dict[str, object]
) -> None:
    """Nothing answers with a price we can read: QuoteUnavailableError, never a guess."""
    for route in (PRICE, PRICING):
        mocked.post(route, status=404, payload={"code": 404, "message": "not found"})
    mocked.get(MODELS, payload=envelope([item]))
    with pytest.raises(QuoteUnavailableError, match="no quote for"):
        await client.quote(MODEL, {"duration": 5})


async def test_a_400_about_the_inputs_is_not_a_reason_to_fall_back(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    mocked.post(PRICE, status=400, payload={"code": 400, "message": "duration: bad"})
    with pytest.raises(BadRequestError, match="duration: bad"):
        await client.quote(MODEL, {"duration": 7})
    assert mocked.calls_to("POST", PRICING) == []


HOSTILE_PRICES = [
    {"price": "0.42"},
    {"price": True},
    {"price": -0.42},
    {"price": 1e12},
    {"price": None},
    {},
    {"discounted_price": [0.42], "price": 0.42},
    {"price": 0.42, "model_id": "kwaivgi/another"},
    {"price": 0.42, "currency": "EUR"},
    {"price": 0.42, "discounted_price": 0.5},
]


@pytest.mark.parametrize("data", HOSTILE_PRICES)
async def test_a_hostile_price_answer_is_refused_naming_the_field(
    client: WaveSpeedClient, mocked: ScriptedServer, data: dict[str, object]
) -> None:
    """Wrong types, negative or absurd amounts, another model or currency: ProtocolError."""
    mocked.post(PRICE, payload=envelope(data))
    with pytest.raises(ProtocolError, match="model/price"):
        await client.quote(MODEL, {"duration": 5})


async def test_nan_and_html_answers_are_refused(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    """JSON's NaN (Python's decoder takes it) and an HTML page are no price."""
    mocked.post(PRICE, body=b'{"code": 200, "message": "ok", "data": {"price": NaN}}')
    with pytest.raises(ProtocolError, match=r"nan"):
        await client.quote(MODEL, {"duration": 5})
    mocked.post(PRICE, body=b"<html><body>pricing</body></html>")
    with pytest.raises(ProtocolError, match="not JSON"):
        await client.quote(MODEL, {"duration": 5})


# -------------------------------------------------------------------------- models


async def test_models_are_read_with_their_schema_and_price(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    mocked.get(MODELS, payload=envelope([model_item(), {"model_id": "bare/model"}]))
    first, bare = await client.list_models()
    assert first.base_price == Decimal("0.42")
    assert first.required == ("prompt",)
    duration = first.field("duration")
    assert duration is not None
    assert (duration.type, duration.enum, duration.default) == ("integer", (5, 10), 5)
    assert bare == ServerModel(model_id="bare/model")


@pytest.mark.parametrize(
    "data",
    [
        {"models": []},
        [{"name": "no id"}],
        [model_item(base_price=-1)],
        [model_item(api_schema={"api_schemas": [{"request_schema": {"properties": []}}]})],
        [model_item(api_schema={"api_schemas": [{"request_schema": {"required": "prompt"}}]})],
        ["text"],
    ],
)
async def test_a_broken_models_list_is_refused(
    client: WaveSpeedClient, mocked: ScriptedServer, data: object
) -> None:
    mocked.get(MODELS, payload=envelope(data))
    with pytest.raises(ProtocolError, match="models"):
        await client.list_models()


# -------------------------------------------------------------------------- balance, bills


async def test_balance_is_read_as_decimal_and_a_bad_one_refused(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    mocked.get(BALANCE, payload=envelope({"balance": 12.34}))
    assert await client.balance() == Decimal("12.34")
    mocked.get(BALANCE, payload=envelope({"balance": "12.34"}))
    with pytest.raises(ProtocolError, match="balance"):
        await client.balance()


def billing(task: str, kind: str, price: object, **changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "uuid": "b1",
        "billing_type": kind,
        "price": price,
        "created_at": "2025-06-01T12:00:00.000Z",
        "prediction": {"uuid": task, "model_uuid": MODEL, "status": "completed"},
    }
    item.update(changes)
    return item


async def test_billings_are_read_to_the_last_page(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    """Pages follow while has_more; an item of no task (a top-up) is no task's charge."""
    mocked.post(
        BILLINGS,
        payload=envelope({"page": 1, "has_more": True, "items": [billing(TASK, "deduct", 0.42)]}),
    )
    mocked.post(
        BILLINGS,
        payload=envelope(
            {
                "page": 2,
                "has_more": False,
                "items": [
                    billing(OTHER, "refund", 0.84),
                    {"uuid": "t", "billing_type": "deduct", "price": 5},
                ],
            }
        ),
    )
    since = NOW - timedelta(hours=1)
    charges = await client.billings(since=since, until=NOW)
    assert [(c.task_id, c.kind, c.usd) for c in charges] == [
        (TASK, "deduct", Decimal("0.42")),
        (OTHER, "refund", Decimal("0.84")),
    ]
    sent = [c.json for c in mocked.calls_to("POST", BILLINGS)]
    assert [s["page"] for s in sent] == [1, 2]
    assert sent[0]["start_time"] == "2025-06-01T11:00:00.000Z"


@pytest.mark.parametrize(
    "item",
    [
        billing("../etc", "deduct", 0.42),
        billing(TASK, "gift", 0.42),
        billing(TASK, "deduct", -0.42),
        billing(TASK, "deduct", "0.42"),
        billing(TASK, "deduct", 0.42, prediction=["x"]),
    ],
    ids=["hostile id", "unknown kind", "negative", "string", "prediction not object"],
)
async def test_a_hostile_billing_item_is_refused(
    client: WaveSpeedClient, mocked: ScriptedServer, item: dict[str, object]
) -> None:
    mocked.post(BILLINGS, payload=envelope({"page": 1, "has_more": False, "items": [item]}))
    with pytest.raises(ProtocolError, match="billings"):
        await client.billings(since=NOW - timedelta(hours=1), until=NOW)


async def test_an_account_without_billing_search_says_not_found(
    client: WaveSpeedClient, mocked: ScriptedServer
) -> None:
    mocked.post(BILLINGS, status=404, payload={"code": 404, "message": "not found"})
    with pytest.raises(NotFoundError):
        await client.billings(since=NOW - timedelta(hours=1), until=NOW)


# -------------------------------------------------------------------------- pure rules


@given(st.floats(min_value=0, max_value=float(MAX_RUN_USD), allow_nan=False))
def test_every_finite_price_in_range_reads_as_the_decimal_it_prints_as(value: float) -> None:
    """A float reads as the decimal it prints as, to a millionth of a dollar."""
    assert abs(usd(value, "p") - Decimal(repr(value))) <= Decimal("0.0000005")


@given(st.one_of(st.just(math.nan), st.just(math.inf), st.floats(max_value=-1e-9), st.booleans()))
def test_no_nan_infinity_negative_or_bool_is_a_price(value: object) -> None:
    with pytest.raises(ProtocolError):
        usd(value, "p")


@given(st.integers(min_value=1, max_value=15), st.sampled_from([1, 5, 10]))
def test_the_plain_formula_prices_per_second(duration: int, per: int) -> None:
    listed = ServerModel(
        model_id=MODEL, base_price=Decimal("0.42"), formula=f"base_price * duration / {per}"
    )
    assert price_from_formula(listed, {"duration": duration}) == Decimal("0.42") * duration / per
    assert price_from_formula(listed, {}) is None


# -------------------------------------------------------------------------- at WaveSpeed's URL

WAVESPEED = "https://api.wavespeed.ai"


@pytest.fixture
async def real_client():
    async with aiohttp.ClientSession() as s:
        yield WaveSpeedClient(s, WAVESPEED, KEY, rng=lambda: 0.0, clock=lambda: NOW)


HOSTILE_ANSWERS = [
    ("GET", "/api/v3/balance", {"balance": float("nan")}, "balance"),
    ("GET", "/api/v3/balance", {"balance": -1e12}, "balance"),
    ("GET", "/api/v3/balance", {}, "balance"),
    ("POST", "/api/v3/model/price", {"price": float("inf")}, "model/price"),
    ("POST", "/api/v3/model/price", {"price": 0.42, "discounted_price": "free"}, "model/price"),
    ("POST", "/api/v3/model/price", {"price": 5000}, "model/price"),
    ("GET", "/api/v3/models", {"data": "not a list"}, "models"),
    ("POST", "/api/v3/billings/search", {"items": None}, "billings"),
    ("POST", "/api/v3/billings/search", {"items": [], "has_more": "yes"}, "billings"),
]


async def _call(client: WaveSpeedClient, path: str) -> object:
    if path.endswith("balance"):
        return await client.balance()
    if path.endswith("price"):
        return await client.quote(MODEL, {"duration": 5})
    if path.endswith("models"):
        return await client.list_models()
    return await client.billings(since=NOW - timedelta(hours=1), until=NOW)


@pytest.mark.parametrize(("method", "path", "data", "named"), HOSTILE_ANSWERS)
async def test_hostile_money_answers_at_wavespeeds_url_are_refused(
    real_client: WaveSpeedClient, method: str, path: str, data: dict[str, object], named: str
) -> None:
    """NaN, infinities, absurd or negative amounts, wrong types: a ProtocolError naming it."""
    with aioresponses() as canned:
        canned.add(WAVESPEED + path, method, payload=envelope(data))
        with pytest.raises(ProtocolError, match=named):
            await _call(real_client, path)


@pytest.mark.parametrize("path", ["/api/v3/balance", "/api/v3/models"])
async def test_an_html_page_instead_of_money_is_refused(
    real_client: WaveSpeedClient, path: str
) -> None:
    with aioresponses() as canned:
        canned.get(WAVESPEED + path, body="<html><h1>Maintenance</h1></html>", status=200)
        with pytest.raises(ProtocolError, match="not JSON"):
            await _call(real_client, path)


async def test_a_quote_at_wavespeeds_url_falls_back_and_never_leaks_the_key(
    real_client: WaveSpeedClient,
) -> None:
    """/model/price missing, /model/pricing echoing the key in its error: masked."""
    with aioresponses() as canned:
        canned.post(
            f"{WAVESPEED}/api/v3/model/price",
            status=404,
            payload={"code": 404, "message": "not found"},
        )
        canned.post(
            f"{WAVESPEED}/api/v3/model/pricing",
            status=400,
            payload={"code": 400, "message": f"bad inputs for key {KEY}"},
        )
        with pytest.raises(BadRequestError) as refused:
            await real_client.quote(MODEL, {"duration": 5})
    assert KEY not in str(refused.value)
    assert "bad inputs" in str(refused.value)
