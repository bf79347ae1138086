"""The mock's configuration: how tasks progress, the account tier, faults and where state lives."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs

from mockserver import catalogue
from mockserver.faults import FaultConfig

#: The API key the mock accepts unless told otherwise (documented in docs/mock.md).
DEFAULT_API_KEY: Final = "mock-key"
#: The port `kling-pipe mock` listens on by default; in-process servers take a free port.
DEFAULT_PORT: Final = 8089
#: Frames per second of the output videos unless told otherwise, and the most they may have.
DEFAULT_FPS: Final = 24
MAX_FPS: Final = 60


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name}: must be positive, not {value}")


def _not_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: must not be negative, not {value}")


def _frame_rate(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FPS:
        raise ValueError(f"{attribute.name}: a whole number of frames a second, 1 to {MAX_FPS}")


@attrs.frozen(kw_only=True)
class FixedTime:
    """Every task processes for exactly *seconds* once it starts."""

    seconds: float = attrs.field(default=2.0, validator=_not_negative)


@attrs.frozen(kw_only=True)
class RandomTime:
    """Processing times drawn uniformly from mean ± jitter, reproducibly from *seed*."""

    mean_s: float = attrs.field(validator=_not_negative)
    jitter_s: float = attrs.field(default=0.0, validator=_not_negative)
    seed: int = 0


@attrs.frozen(kw_only=True)
class AfterPolls:
    """A task completes on its *polls*-th result request (counted from submission)."""

    polls: int = attrs.field(default=3, validator=_positive)


@attrs.frozen(kw_only=True)
class Manual:
    """Tasks stay processing until a test completes or fails them."""


Processing = FixedTime | RandomTime | AfterPolls | Manual


@attrs.frozen(kw_only=True)
class MockConfig:
    """Everything that shapes one mock server; the defaults suit a local run."""

    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    api_key: str = DEFAULT_API_KEY
    processing: Processing = FixedTime()
    #: Tasks processing at once; further tasks wait in ``created`` (WaveSpeed's tier quota).
    concurrency_limit: int = attrs.field(default=100, validator=_positive)
    #: Accepted submits per rolling minute before 429; None: no limit.
    submits_per_minute: int | None = None
    balance_usd: Decimal = attrs.field(default=Decimal(1000), converter=Decimal)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    #: Where tasks, uploads, the ledger and outputs persist; None: a temp folder, removed.
    state_dir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    #: How long ``enable_sync_mode`` holds a request before answering 5004.
    sync_timeout_s: float = attrs.field(default=60.0, validator=_positive)
    #: Webhook delivery attempts per event, and the pause between them.
    webhook_attempts: int = attrs.field(default=3, validator=_positive)
    webhook_retry_s: float = attrs.field(default=0.2, validator=_not_negative)
    #: Fixed webhook secret (``whsec_...``); None: a random one, kept in the state folder.
    webhook_secret: str | None = None
    #: Largest request body; uploads themselves are capped at the documented 10 MB.
    max_body_bytes: int = attrs.field(default=catalogue.MAX_IMAGE_BYTES + 1024 * 1024)
    #: Most recent requests kept in the journal (statistics count every request).
    journal_limit: int = attrs.field(default=100_000, validator=_positive)
    #: Output videos: frames per second (24, a rate an editor's timecode counts in) and the
    #: longest side in pixels.
    fps: int = attrs.field(default=DEFAULT_FPS, validator=_frame_rate)
    max_side_px: int = attrs.field(default=640, validator=_positive)
    #: Write each task's prompt (and its take, ``#2``) on its video's frames.
    caption: bool = False
    #: One video per image, last image and duration, whatever the prompt and take: what a
    #: benchmark needs so that the mock's video encoder does not share the client's cores.
    share_renders: bool = False
    #: Placeholders (an image URL the mock cannot fetch) without their checkerboard: lighter
    #: videos, as the mock made before the checkerboard, so that a benchmark's figures stay
    #: comparable with the ones its goals were set from.
    flat_placeholders: bool = False
    #: A task shows in the history only this many (mock-clock) seconds after its creation.
    history_lag_s: float = attrs.field(default=0.0, validator=_not_negative)
    #: The server's clock is the mock clock plus this (may be negative): ``created_at``,
    #: the history's ``created_after``/``created_before`` and every ``Date`` header use it.
    clock_offset_s: float = 0.0
    #: The server's prices are the catalogue's times this, in its quotes, its ``/models``
    #: and what it bills: 1 agrees with the catalogue; anything else is a price change the
    #: client must catch before it pays.
    price_factor: Decimal = attrs.field(default=Decimal(1), converter=Decimal)
    #: Whether the price routes (``/model/price``, ``/model/pricing``) answer and ``/models``
    #: carries prices: off, no quote can be had.
    quotes: bool = True
    #: Whether ``/billings/search`` answers: off, it is 404, as on an account without it.
    billings_search: bool = True


#: The config fields that may change while the mock runs (``POST /_mock/options``).
RUNTIME_OPTIONS: Final = (
    "history_lag_s",
    "clock_offset_s",
    "price_factor",
    "quotes",
    "billings_search",
)
