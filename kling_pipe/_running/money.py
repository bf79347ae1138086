"""Money asked of the server: quotes before a real run pays, the bill checked after.

The shell around two pure decisions: `kling_pipe._decisions.quotes` (which price a run
uses, or why it may not run) and `kling_pipe._decisions.bill` (what the records say was
spent against what WaveSpeed charged). Everything here talks to an `Account`, the backend's
money side; a backend without one (a caller's own) gets no quotes and an unchecked bill.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs

from kling_pipe._backends.account import Account, Charge
from kling_pipe._backends.base import Backend
from kling_pipe._backends.origins import origin_kind
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.bill import (
    Bill,
    Billed,
    reconcile_balance,
    reconcile_itemised,
)
from kling_pipe._decisions.plan import Plan
from kling_pipe._decisions.quotes import (
    PricedRequest,
    QuoteAnswer,
    QuoteCheck,
    catalogue_price,
    check_quotes,
    distinct_requests,
)
from kling_pipe._records.store import Store
from kling_pipe.exceptions import BackendError, NotFoundError, ProtocolError

__all__ = ["BillKeeper", "account_of", "ask_quotes", "check_bill", "quote_plan", "read_balance"]

_log = logging.getLogger(__name__)

#: Searched before the first recorded submit and after now: the server's clock may differ
#: from ours by this much without a charge falling outside the window.
_WINDOW_MARGIN = timedelta(hours=1)
#: Quotes in flight at once before a run: a handful, so a board of many distinct requests
#: neither waits for them in a row nor bursts into the API's rate limit.
_QUOTES_AT_ONCE = 4


def account_of(backend: Backend) -> Account | None:
    """Return *backend*'s money side, or None if it has none (a caller's own backend)."""
    return backend if isinstance(backend, Account) else None


async def ask_quotes(
    account: Account | None, requests: Iterable[PricedRequest]
) -> dict[PricedRequest, QuoteAnswer]:
    """Ask WaveSpeed the price of each request, a few at a time (a run has a few distinct).

    Together, not one after another: each quote is a round trip to the API before the first
    submit, and a board of several models and durations waited for them in a row. At most
    `_QUOTES_AT_ONCE` are in flight. A request no route prices is answered with the reason,
    one whose answer cannot be read (ProtocolError) is marked so: the decision
    (`check_quotes`) says what each means. The answers keep the requests' order.
    """
    ordered = list(requests)
    if account is None:
        return dict.fromkeys(ordered, QuoteAnswer(error="this backend gives no quotes"))
    gate = asyncio.Semaphore(_QUOTES_AT_ONCE)

    async def one(request: PricedRequest) -> QuoteAnswer:
        async with gate:
            try:
                quote = await account.quote(request.model, request.inputs())
            except ProtocolError as error:
                return QuoteAnswer(error=str(error), unreadable=True)
            except BackendError as error:
                return QuoteAnswer(error=str(error))
        return QuoteAnswer(usd=quote.usd, list_usd=quote.list_usd, source=quote.source)

    answers = await asyncio.gather(*(one(r) for r in ordered))
    return dict(zip(ordered, answers, strict=True))


async def quote_plan(
    p: Plan, backend: str | Backend, base_url: str | None, api_key: str | None, *, origin: str
) -> QuoteCheck | None:
    """Ask the server the price of each distinct request the plan pays for, and check them.

    None against the bundled mock (its money is simulated: the catalogue prices it) and
    when the plan pays for nothing. Connects for the quotes alone, sending no submit.
    """
    if origin_kind(origin) == "mock" or not (p.to_render or p.unpriced):
        return None
    from kling_pipe._backends.connect import connect  # noqa: PLC0415 - HTTP only when asked

    requests = distinct_requests(p)
    async with connect(backend, base_url, api_key, 0.0, None) as connected:
        answers = await ask_quotes(account_of(connected.backend), requests)
    return check_quotes(requests, catalogue_price, answers)


async def read_balance(account: Account | None) -> Decimal | None:
    """Return the balance, or None (logged) when it cannot be read: the bill says so later."""
    if account is None:
        return None
    try:
        return await account.balance()
    except BackendError as error:
        _log.warning("the balance could not be read: %s", error)
        return None


async def check_bill(
    account: Account | None,
    attempts: Sequence[Attempt],
    *,
    now: datetime,
    balance: tuple[Decimal, Decimal] | None = None,
) -> Bill:
    """Reconcile *attempts* with WaveSpeed's billing items, else with *balance* (before, after).

    The items are searched from an hour before the first attempt's submit to an hour after
    *now* (clocks differ). An account that does not answer the search (404) falls back to
    the balance; one whose answer is broken (ProtocolError) too, with the reason logged.
    """
    tasked = [a for a in attempts if a.task_id is not None or a.charged]
    if not tasked:
        return Bill(mode="itemised")
    if account is None:
        return Bill(mode="unchecked", reason="this backend does not answer about money")
    since = min(a.sent_at for a in tasked) - _WINDOW_MARGIN
    why = ""
    try:
        charges = await account.billings(since=since, until=now + _WINDOW_MARGIN)
    except NotFoundError:
        why = "WaveSpeed's billing search is not there for this account"
    except BackendError as error:
        why = f"the billing search failed: {error}"
        _log.warning("%s", why)
    else:
        return reconcile_itemised(tasked, _billed(charges))
    if balance is None:
        return Bill(mode="unchecked", reason=f"{why}, and no balance was recorded before and after")
    before, after = balance
    return reconcile_balance(tasked, before, after)


def _billed(charges: Iterable[Charge]) -> Mapping[str, Billed]:
    """Sum each task's charges and refunds."""
    totals: dict[str, Billed] = {}
    for charge in charges:
        known = totals.get(charge.task_id, Billed())
        if charge.kind == "deduct":
            known = Billed(charged=known.charged + charge.usd, refunded=known.refunded)
        else:
            known = Billed(charged=known.charged, refunded=known.refunded + charge.usd)
        totals[charge.task_id] = known
    return totals


@attrs.define
class BillKeeper:
    """One run's bill: the balance read before the first submit, the bill checked after.

    Only against a server other than the bundled mock (whose money is simulated) with a
    money side (`Account`); for any other, `finish` says None (no bill to check).
    """

    account: Account | None
    store: Store
    origin: str
    started: datetime
    before: Decimal | None = None
    reading: int | None = None

    @classmethod
    async def start(cls, backend: Backend, store: Store, origin: str) -> BillKeeper:
        """Read and record the balance as the run starts (nothing against the bundled mock)."""
        real = origin_kind(origin) != "mock"
        keeper = cls(
            account=account_of(backend) if real else None,
            store=store,
            origin=origin,
            started=datetime.now(UTC),
        )
        if not real:
            return keeper
        keeper.before = await read_balance(keeper.account)
        if keeper.before is not None:
            keeper.reading = await asyncio.to_thread(
                store.record_balance_before, origin, keeper.before
            )
        return keeper

    async def finish(self) -> Bill | None:
        """Read the balance again and check this run's attempts against what was charged."""
        if origin_kind(self.origin) == "mock":
            return None
        after = await read_balance(self.account) if self.before is not None else None
        if self.reading is not None and after is not None:
            await asyncio.to_thread(self.store.record_balance_after, self.reading, after)
        attempts = await asyncio.to_thread(self.store.attempts)
        ours = [a for a in attempts if a.origin == self.origin and a.sent_at >= self.started]
        balance = None if self.before is None or after is None else (self.before, after)
        return await check_bill(self.account, ours, now=datetime.now(UTC), balance=balance)
