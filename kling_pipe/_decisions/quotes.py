"""WaveSpeed's quotes against the catalogue's prices: which price a run uses, or why none.

Before a run against a real API pays for anything, WaveSpeed is asked what each distinct
request costs (`PricedRequest`: the model, the duration and the fields that may change the
price; never the prompt or the images). `check_quotes` compares each answer with the
catalogue's price and decides, in one place:

- the two agree: that price;
- they differ: the run is refused, showing both, for every shot of that request;
- the catalogue has no confirmed price: the quote alone prices it;
- no quote could be had: the catalogue's price, with a warning; no price at all (an
  unconfirmed model nobody will quote) refuses the run;
- a quote that could not be read (NaN, a negative or absurd price, another model's): the
  run is refused, whatever the catalogue says.

Pure: the quotes are asked for by the shell (`kling_pipe._running.quoting`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe._decisions.plan import Plan
from kling_pipe._shotlist import catalogue
from kling_pipe._shotlist.specs import Shot
from kling_pipe.exceptions import Problem

__all__ = [
    "Priced",
    "PricedRequest",
    "QuoteAnswer",
    "QuoteCheck",
    "Verdict",
    "catalogue_price",
    "check_quotes",
    "distinct_requests",
    "quoted_price",
    "request_of",
]

#: Fields of text, never part of a quote (they do not change a price).
_TEXT_FIELDS = frozenset({"negative_prompt", "multi_prompt"})

#: A scalar a price may depend on (``sound = true``, an aspect ratio).
FieldValue = str | bool | int | Decimal

#: How a request's price was settled; see the module.
Verdict = Literal["agrees", "differs", "quote only", "catalogue only", "unpriced", "unreadable"]


@attrs.frozen(order=True, kw_only=True)
class PricedRequest:
    """What a quote is asked for: one request's model, duration and price-bearing fields."""

    model: str
    duration: int
    #: Fields that may change the price, sorted by name (prompts and frames never do).
    fields: tuple[tuple[str, FieldValue], ...] = ()

    def inputs(self) -> dict[str, object]:
        """Return the ``inputs`` a quote sends: the duration and the price-bearing fields."""
        sent: dict[str, object] = {"duration": self.duration}
        for name, value in self.fields:
            sent[name] = float(value) if isinstance(value, Decimal) else value
        return sent

    def describe(self) -> str:
        """Name the request for people: ``<model>, 12 s, sound=true``."""
        extra = "".join(f", {name}={_shown(value)}" for name, value in self.fields)
        return f"{self.model.removeprefix('kwaivgi/')}, {self.duration} s{extra}"


def _shown(value: FieldValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@attrs.frozen(kw_only=True)
class QuoteAnswer:
    """What the server said when asked: a price and the route that gave it, or why not."""

    usd: Decimal | None = None
    #: The price before a discount, where the server gave one (what a catalogue states).
    list_usd: Decimal | None = None
    #: ``price``, ``pricing`` or ``models`` (see `kling_pipe._backends.account.QuoteSource`).
    source: str = ""
    #: Why there is no price (no route answered, the answer was broken).
    error: str = ""
    #: The server answered about the price, and the answer could not be read (a price that
    #: is NaN, negative or absurd, another model's quote): never a reason to pay anything.
    unreadable: bool = False


@attrs.frozen(kw_only=True)
class Priced:
    """One distinct request: its shots, both prices, and the verdict on them."""

    request: PricedRequest
    shots: tuple[str, ...]
    #: The catalogue's price, or None where nobody confirmed one.
    catalogue: Decimal | None
    answer: QuoteAnswer

    @property
    def quoted(self) -> Decimal | None:
        """WaveSpeed's price, or None when it gave none."""
        return self.answer.usd

    @property
    def verdict(self) -> Verdict:
        """Say how the two prices settle this request (see the module)."""
        if self.answer.unreadable:
            return "unreadable"
        if self.quoted is None:
            return "unpriced" if self.catalogue is None else "catalogue only"
        if self.catalogue is None:
            return "quote only"
        listed = self.answer.list_usd
        same = self.catalogue in (self.quoted, listed)
        return "agrees" if same else "differs"

    @property
    def price(self) -> Decimal | None:
        """The price a run uses for this request (a discount's where one is quoted)."""
        if self.verdict in ("differs", "unpriced", "unreadable"):
            return None
        if self.quoted is None or self.quoted == self.catalogue:
            return self.catalogue
        return _three_places(self.quoted)

    def problems(self) -> list[Problem]:
        """One problem per shot when the run may not pay for this request, else none."""
        what = self.request.describe()
        if self.verdict == "differs":
            text = (
                f"WaveSpeed quotes {_quoted_text(self.answer)} for {what}, the catalogue "
                f"says {self.catalogue} USD: the price changed, so nothing was submitted; "
                "nothing is paid for until kling-pipe's catalogue agrees (see "
                "`kling-pipe models`)"
            )
        elif self.verdict == "unpriced":
            text = (
                f"no confirmed price for {what}, and WaveSpeed gave no quote "
                f"({self.answer.error or 'no answer'}): kling-pipe does not spend an amount "
                "it cannot state beforehand; nothing was submitted"
            )
        elif self.verdict == "unreadable":
            text = (
                f"WaveSpeed's quote for {what} could not be read ({self.answer.error}): "
                "nothing is paid for on a price that makes no sense; nothing was submitted"
            )
        else:
            return []
        return [Problem(f"shots ({shot})", text) for shot in self.shots]

    def describe(self) -> str:
        """One line for the plan: both prices and what was made of them."""
        what = self.request.describe()
        catalogue = "unconfirmed" if self.catalogue is None else f"{self.catalogue} USD"
        quoted = (
            f"no quote ({self.answer.error})" if self.quoted is None else _quoted_text(self.answer)
        )
        return f"{what}: catalogue {catalogue}, WaveSpeed {quoted}: {self.verdict}"


def _three_places(amount: Decimal) -> Decimal:
    """Write *amount* with at least three places, as every price in a plan is (0.42: 0.420)."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -3:
        return amount.quantize(Decimal("0.001"))
    return amount


def _quoted_text(answer: QuoteAnswer) -> str:
    """Say the quoted price, and the price before its discount where there is one."""
    listed = answer.list_usd
    discount = f", {listed} USD before a discount" if listed not in (None, answer.usd) else ""
    return f"{answer.usd} USD{discount} ({_route(answer)})"


def _route(answer: QuoteAnswer) -> str:
    return {
        "price": "/api/v3/model/price",
        "pricing": "/api/v3/model/pricing",
        "models": "the models list's price",
    }.get(answer.source, answer.source or "a quote")


@attrs.frozen(kw_only=True)
class QuoteCheck:
    """Every distinct request of a run, priced; what may not be paid for is in `problems`."""

    lines: tuple[Priced, ...] = ()

    def problems(self) -> list[Problem]:
        """Every shot the run may not pay for, with both prices (or why there is none)."""
        return [p for line in self.lines for p in line.problems()]

    def warnings(self) -> list[str]:
        """Say which requests are priced from the catalogue alone (WaveSpeed gave no quote)."""
        return [
            f"no quote for {line.request.describe()} ({line.answer.error}); priced from the "
            f"catalogue at {line.catalogue} USD"
            for line in self.lines
            if line.verdict == "catalogue only"
        ]

    def price_of(self, request: PricedRequest) -> Decimal | None:
        """Return the price a run uses for *request*; None if not quoted or it may not run."""
        line = next((li for li in self.lines if li.request == request), None)
        return None if line is None else line.price


def check_quotes(
    requests: Mapping[PricedRequest, Sequence[str]],
    catalogue: Callable[[PricedRequest], Decimal | None],
    answers: Mapping[PricedRequest, QuoteAnswer],
) -> QuoteCheck:
    """Settle each distinct request's price from the catalogue and WaveSpeed's answer.

    *requests* maps each request to the shots that make it; a request with no answer counts
    as one WaveSpeed did not answer. Lines come in the requests' order.
    """
    return QuoteCheck(
        lines=tuple(
            Priced(
                request=request,
                shots=tuple(shots),
                catalogue=catalogue(request),
                answer=answers.get(request, QuoteAnswer(error="not asked")),
            )
            for request, shots in requests.items()
        )
    )


def request_of(shot: Shot) -> PricedRequest:
    """Return the priced request one render of *shot* makes: its model, duration, fields.

    The fields are the scalar ones the shot sets (``sound``, ``cfg_scale``, an aspect ratio):
    any may change the price, so each distinct set is quoted. Texts (a negative prompt, a
    multi-shot prompt) are never sent for a quote.
    """
    fields = tuple(
        sorted(
            (name, value)
            for name, value in shot.model_fields.items()
            if isinstance(value, str | bool | int | Decimal) and name not in _TEXT_FIELDS
        )
    )
    return PricedRequest(model=shot.model, duration=shot.duration, fields=fields)


def distinct_requests(p: Plan) -> dict[PricedRequest, list[str]]:
    """Each distinct request the plan pays for, with the shots that make it, in plan order.

    A shot no confirmed rule prices counts too: the plan prices it at 0 (`Plan.unpriced`),
    and its quote is what it will cost.
    """
    unpriced = {u.shot.id for u in p.unpriced}
    found: dict[PricedRequest, list[str]] = {}
    for planned in p.shots:
        if planned.cost > 0 or planned.id in unpriced:
            found.setdefault(request_of(planned.shot), []).append(planned.id)
    return found


def catalogue_price(request: PricedRequest) -> Decimal | None:
    """Return the catalogue's price of one render of *request* (None: unconfirmed)."""
    entry = catalogue.find_model(request.model)
    if entry is None:
        return None
    return catalogue.price_of(entry, request.duration, dict(request.fields))


def quoted_price(
    check: QuoteCheck, otherwise: Callable[[Shot], Decimal | None]
) -> Callable[[Shot], Decimal | None]:
    """Return a plan's *price*: the quote's price where one was settled, else *otherwise*'s.

    The budget then counts what the run actually pays.
    """

    def price(shot: Shot) -> Decimal | None:
        settled = check.price_of(request_of(shot))
        return settled if settled is not None else otherwise(shot)

    return price
