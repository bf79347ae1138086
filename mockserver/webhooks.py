"""Signed webhook callbacks, as WaveSpeed sends them, delivered only to loopback addresses.

The signature is ``v3,<hex>``: HMAC-SHA256 over ``"{webhook-id}.{timestamp}.{raw body}"``
keyed with the secret minus its ``whsec_`` prefix (used as text, not base64-decoded).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import attrs

from mockserver.media import LOOPBACK_HOSTS

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret


def new_secret() -> str:
    """Return a fresh webhook secret in WaveSpeed's format."""
    return SECRET_PREFIX + secrets.token_hex(24)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one delivery."""
    key = secret.removeprefix(SECRET_PREFIX).encode()
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return "v3," + hmac.new(key, message, hashlib.sha256).hexdigest()


def is_loopback(url: str) -> bool:
    """Say whether *url* targets this machine; the mock sends nothing anywhere else."""
    return urlsplit(url).hostname in LOOPBACK_HOSTS


@attrs.define(kw_only=True)
class Delivery:
    """The fate of one webhook event: attempts made and the last outcome."""

    task_id: str
    url: str
    webhook_id: str
    attempts: int = 0
    status: int | None = None
    outcome: str = "pending"

    def as_dict(self) -> dict[str, Any]:
        """Return the delivery as JSON-ready data."""
        return attrs.asdict(self)


async def deliver(  # noqa: PLR0913 - the delivery policy, spelled out by keyword
    session: aiohttp.ClientSession,
    delivery: Delivery,
    *,
    secret: str,
    body: bytes,
    attempts: int,
    retry_s: float,
) -> None:
    """POST *body* to the delivery's URL until a 2xx answer or *attempts* are spent.

    The same ``webhook-id`` is kept across attempts so that receivers can drop duplicates.
    """
    if not is_loopback(delivery.url):
        delivery.outcome = "skipped: the mock only calls loopback addresses"
        return
    for attempt in range(1, attempts + 1):
        delivery.attempts = attempt
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, delivery.webhook_id, timestamp, body),
        }
        try:
            async with session.post(delivery.url, data=body, headers=headers) as response:
                delivery.status = response.status
                if 200 <= response.status < 300:
                    delivery.outcome = "delivered"
                    return
                delivery.outcome = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.outcome = f"error: {type(exc).__name__}"
        if attempt < attempts:
            await asyncio.sleep(retry_s * attempt)
    delivery.outcome = f"gave up after {attempts} attempts ({delivery.outcome})"


def new_delivery(task_id: str, url: str) -> Delivery:
    """Start a delivery record with a fresh webhook id."""
    return Delivery(task_id=task_id, url=url, webhook_id=uuid.uuid4().hex)
