"""The quote check: which price a run uses for each distinct request, or why it may not run."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import loads
from kling_pipe._backends.account import Quote
from kling_pipe._decisions.plan import plan
from kling_pipe._decisions.quotes import (
    PricedRequest,
    QuoteAnswer,
    check_quotes,
    distinct_requests,
    request_of,
)
from kling_pipe._running.money import ask_quotes
from kling_pipe.exceptions import ProtocolError
from tests.strategies import money, shot_ids

O1 = "kwaivgi/kling-video-o1-std/image-to-video"
T2V = "kwaivgi/kling-video-o1-std/text-to-video"
FIVE = PricedRequest(model=O1, duration=5)
TEN = PricedRequest(model=O1, duration=10)
TEXT = PricedRequest(model=T2V, duration=5, fields=(("aspect_ratio", "16:9"),))
CATALOGUE = {FIVE: Decimal("0.420"), TEN: Decimal("0.840"), TEXT: None}


def test_agreeing_quotes_price_the_run_and_raise_nothing() -> None:
    check = check_quotes(
        {FIVE: ["a", "b"], TEN: ["c"]},
        CATALOGUE.get,
        {
            FIVE: QuoteAnswer(usd=Decimal("0.42"), source="price"),
            TEN: QuoteAnswer(usd=Decimal("0.84"), source="pricing"),
        },
    )
    assert [line.verdict for line in check.lines] == ["agrees", "agrees"]
    assert check.problems() == []
    assert check.price_of(FIVE) == Decimal("0.42")


def test_a_different_quote_refuses_every_shot_of_that_request_showing_both_prices() -> None:
    check = check_quotes(
        {FIVE: ["a", "b"], TEN: ["c"]},
        CATALOGUE.get,
        {
            FIVE: QuoteAnswer(usd=Decimal("0.63"), source="price"),
            TEN: QuoteAnswer(usd=Decimal("0.84"), source="price"),
        },
    )
    problems = check.problems()
    assert [p.path for p in problems] == ["shots (a)", "shots (b)"]
    assert "0.63 USD" in problems[0].message
    assert "0.420 USD" in problems[0].message
    assert "/api/v3/model/price" in problems[0].message
    assert check.price_of(FIVE) is None
    assert check.price_of(TEN) == Decimal("0.84")


def test_an_unconfirmed_price_runs_on_the_quote_and_is_refused_without_one() -> None:
    quoted = check_quotes(
        {TEXT: ["t"]}, CATALOGUE.get, {TEXT: QuoteAnswer(usd=Decimal("0.5"), source="models")}
    )
    assert quoted.lines[0].verdict == "quote only"
    assert quoted.price_of(TEXT) == Decimal("0.5")
    assert quoted.problems() == []
    refused = check_quotes({TEXT: ["t"]}, CATALOGUE.get, {TEXT: QuoteAnswer(error="no route")})
    assert refused.lines[0].verdict == "unpriced"
    (problem,) = refused.problems()
    assert problem.path == "shots (t)"
    assert "no route" in problem.message


def test_no_quote_for_a_confirmed_price_uses_the_catalogue_with_a_warning() -> None:
    check = check_quotes({FIVE: ["a"]}, CATALOGUE.get, {})
    assert check.lines[0].verdict == "catalogue only"
    assert check.price_of(FIVE) == Decimal("0.420")
    assert check.problems() == []
    assert check.warnings() == [
        "no quote for kling-video-o1-std/image-to-video, 5 s (not asked); priced from the "
        "catalogue at 0.420 USD"
    ]


def test_a_request_sends_its_duration_and_price_fields_never_prompt_or_frames() -> None:
    request = PricedRequest(
        model=O1, duration=12, fields=(("cfg_scale", Decimal("0.5")), ("sound", True))
    )
    assert request.inputs() == {"duration": 12, "cfg_scale": 0.5, "sound": True}
    assert (
        request.describe() == "kling-video-o1-std/image-to-video, 12 s, cfg_scale=0.5, sound=true"
    )


@given(
    catalogue=st.none() | money,
    quoted=st.none() | money,
    shots=st.lists(shot_ids, min_size=1, max_size=4, unique=True),
)
def test_a_run_pays_only_a_price_both_sides_allow(
    catalogue: Decimal | None, quoted: Decimal | None, shots: list[str]
) -> None:
    """The rule: never a price that differs from a stated one; never no price at all."""
    answer = (
        QuoteAnswer(usd=quoted, source="price") if quoted is not None else QuoteAnswer(error="none")
    )
    check = check_quotes({FIVE: shots}, lambda _: catalogue, {FIVE: answer})
    used = check.price_of(FIVE)
    refused = bool(check.problems())
    assert refused == (used is None)
    if used is not None:
        assert used in {catalogue, quoted}
        assert quoted is None or used == quoted
        assert catalogue is None or used == catalogue
    else:
        assert len(check.problems()) == len(shots)
        assert (catalogue is None and quoted is None) or (
            catalogue is not None and quoted is not None and catalogue != quoted
        )


def test_distinct_requests_quote_each_model_duration_and_priced_field_once() -> None:
    """Prompts and texts never split a request; a model, a duration or `sound` does."""
    shotlist = loads(
        """version = 1
[storyboard]
name = "q"
[[shots]]
id = "a"
model = "kling-v3.0-std/text-to-video"
prompt = "one"
negative_prompt = "people"
[[shots]]
id = "b"
model = "kling-v3.0-std/text-to-video"
prompt = "two"
[[shots]]
id = "c"
model = "kling-v3.0-std/text-to-video"
prompt = "three"
sound = true
"""
    )
    requests = distinct_requests(plan(shotlist))
    v3 = "kwaivgi/kling-v3.0-std/text-to-video"
    assert requests == {
        PricedRequest(model=v3, duration=5): ["a", "b"],
        PricedRequest(model=v3, duration=5, fields=(("sound", True),)): ["c"],
    }
    assert request_of(shotlist.shots[2]).inputs() == {"duration": 5, "sound": True}


def test_a_quote_that_cannot_be_read_refuses_the_run_whatever_the_catalogue_says() -> None:
    broken = QuoteAnswer(error="model/price: price should not be negative", unreadable=True)
    check = check_quotes({FIVE: ["a"]}, CATALOGUE.get, {FIVE: broken})
    assert check.lines[0].verdict == "unreadable"
    assert check.price_of(FIVE) is None
    (problem,) = check.problems()
    assert "could not be read (model/price: price should not be negative)" in problem.message


class _SlowAccount:
    """Quotes that each wait until all four in flight have asked: serial asking would hang."""

    def __init__(self, together: int) -> None:
        self.in_flight = 0
        self.peak = 0
        self._together = together
        self._all_asked = asyncio.Event()

    async def quote(self, model: str, inputs: dict[str, object]) -> Quote:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.peak >= self._together:
            self._all_asked.set()
        await self._all_asked.wait()
        self.in_flight -= 1
        if inputs["duration"] == 7:
            raise ProtocolError("the quote's answer is not JSON")
        return Quote(
            model_id=model, usd=Decimal("0.084") * int(str(inputs["duration"])), source="price"
        )


async def test_quotes_are_asked_together_at_most_four_at_once_and_answered_in_order() -> None:
    """Each quote is a round trip before the first submit: a board of six distinct requests
    waits for about two of them, not six; the answers keep the requests' order."""
    requests = [PricedRequest(model="m", duration=d) for d in (3, 4, 5, 6, 7, 8)]
    account = _SlowAccount(together=4)
    answers = await asyncio.wait_for(ask_quotes(account, requests), timeout=30)  # type: ignore[arg-type]
    assert account.peak == 4
    assert list(answers) == requests
    assert answers[requests[0]].usd == Decimal("0.252")
    assert answers[requests[4]].unreadable
