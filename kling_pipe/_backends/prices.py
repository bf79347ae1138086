"""Which price list a plan uses: the catalogue's, or where it is silent, the mock's own.

A render WaveSpeed states no price for is unpriced against WaveSpeed (and refused there,
`kling_pipe._decisions.plan.unpriced_problem`). Against the bundled mock or a local server
the money is the server's own, so such a render is priced from the mock's price list
(`mockserver.catalogue`, a stand-in price, never WaveSpeed's): a plan there always has a total.
"""

from __future__ import annotations

from decimal import Decimal

from kling_pipe._backends.origins import origin_kind
from kling_pipe._decisions.plan import PriceOf, catalogue_price
from kling_pipe._shotlist.specs import Shot


def mock_price(shot: Shot) -> Decimal | None:
    """Price a render as the bundled mock bills it where the catalogue states no price."""
    confirmed = catalogue_price(shot)
    if confirmed is not None:
        return confirmed
    from mockserver import catalogue  # noqa: PLC0415 - only a plan against the mock needs it

    if shot.model not in catalogue.MODELS:
        return None
    return catalogue.cost(shot.model, shot.duration)


def price_for(origin: str) -> PriceOf:
    """Return the price list a plan for *origin* uses (see the module)."""
    return catalogue_price if origin_kind(origin) == "wavespeed" else mock_price


def stand_in_priced(shots: tuple[Shot, ...], origin: str) -> list[str]:
    """Name the shots a plan for *origin* prices from the mock's list, not WaveSpeed's."""
    if origin_kind(origin) == "wavespeed":
        return []
    return [s.id for s in shots if catalogue_price(s) is None and mock_price(s) is not None]
