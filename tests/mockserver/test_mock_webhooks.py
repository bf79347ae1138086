"""Webhook callbacks: signed as WaveSpeed documents, retried a bounded number of times."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

from aiohttp import web

from mockserver import ManualClock
from mockserver.webhooks import sign
from tests.mockserver.mock_support import Api, MakeMock, i2v, until


class Receiver:
    """A loopback webhook endpoint that answers the statuses it is given, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.arrived.set()
        return web.Response(status=status)


async def _receiver(aiohttp_server, statuses: list[int] | None = None):  # type: ignore[no-untyped-def]
    receiver = Receiver(statuses)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    return receiver, str(server.make_url("/hook"))


async def test_webhook_posts_the_bare_prediction_signed_with_the_secret(
    api: Api, clock: ManualClock, aiohttp_server
) -> None:
    """The callback body is the prediction (no envelope); v3 HMAC verifies with the secret."""
    receiver, url = await _receiver(aiohttp_server)
    task_id = await api.submit(i2v(), query=f"?webhook={url}")
    clock.advance(10)
    async with asyncio.timeout(5):
        await receiver.arrived.wait()
    ((headers, body),) = receiver.calls
    prediction = json.loads(body)
    assert (prediction["id"], prediction["status"]) == (task_id, "completed")
    assert "code" not in prediction or prediction["code"] != 200
    _, reply, _ = await api.call("GET", "/api/v3/webhook/secret")
    key = str(reply["data"]["secret"]).removeprefix("whsec_").encode()  # type: ignore[index]
    message = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v3," + hmac.new(key, message, hashlib.sha256).hexdigest()
    assert headers["webhook-signature"] == expected
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300


async def test_webhook_is_retried_until_accepted_with_the_same_id(
    make_mock: MakeMock, api: Api, clock: ManualClock, aiohttp_server
) -> None:
    """Two 500s then 200: three attempts, one webhook-id, recorded as delivered."""
    quick = await make_mock(webhook_retry_s=0.01)
    receiver, url = await _receiver(aiohttp_server, [500, 503])
    await Api(api.session, quick).submit(i2v(), query=f"?webhook={url}")
    clock.advance(10)
    await until(lambda: quick.stats()["webhooks"][0]["outcome"] == "delivered")
    assert len({headers["webhook-id"] for headers, _ in receiver.calls}) == 1
    (delivery,) = quick.stats()["webhooks"]
    assert (delivery["attempts"], delivery["outcome"]) == (3, "delivered")


async def test_webhook_gives_up_after_its_attempts(
    make_mock: MakeMock, api: Api, clock: ManualClock, aiohttp_server
) -> None:
    """A receiver that always fails gets webhook_attempts tries, no more."""
    quick = await make_mock(webhook_retry_s=0.01, webhook_attempts=2)
    receiver, url = await _receiver(aiohttp_server, [500] * 5)
    await Api(api.session, quick).submit(i2v(), query=f"?webhook={url}")
    clock.advance(10)
    await until(lambda: quick.stats()["webhooks"][0]["outcome"].startswith("gave up"))
    assert len(receiver.calls) == 2


async def test_webhooks_to_other_hosts_are_never_sent(api: Api, mock, clock: ManualClock) -> None:
    """The mock only calls loopback: another host is recorded as skipped."""
    await api.submit(i2v(), query="?webhook=https://example.com/hook")
    clock.advance(10)
    await until(lambda: mock.stats()["webhooks"][0]["outcome"] != "pending")
    (delivery,) = mock.stats()["webhooks"]
    assert delivery["attempts"] == 0
    assert delivery["outcome"].startswith("skipped")


def test_sign_matches_the_documented_construction() -> None:
    """sign() is HMAC-SHA256 over id.timestamp.body keyed with the secret minus whsec_."""
    body = b'{"id":"x"}'
    digest = hmac.new(b"abc", b"msg_1.1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_abc", "msg_1", 1_700_000_000, body) == f"v3,{digest}"
