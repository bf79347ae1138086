"""The mock's own copy of WaveSpeed's rules: the Kling models, fields, durations, prices.

Written from the API's published facts, not imported from kling_pipe: the mock stands in
for WaveSpeed, so a client bug in kling_pipe's catalogue must meet a server that disagrees.
A test checks that the two tables agree on every model path, field, duration and price.

Where WaveSpeed's price of a model is not confirmed the mock still has to bill something:
its price there is a stand-in of its own (`Model.stand_in_price`), never a claim about
WaveSpeed. Where only the price of a default run is known (0.21 for a 5 s v2.6 Standard
text-to-video), the mock bills that run's price per second over any duration.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Final, Literal

import attrs

PUBLISHER: Final = "kwaivgi/"
IMAGE_TO_VIDEO: Final = "kwaivgi/kling-video-o1-std/image-to-video"
TEXT_TO_VIDEO: Final = "kwaivgi/kling-video-o1-std/text-to-video"

#: Seconds of video when a submit names no duration.
DEFAULT_DURATION: Final = 5
#: O1 image-to-video with a ``last_image``: any whole number of seconds from 3 to 10.
DURATIONS_WITH_LAST_IMAGE: Final = tuple(range(3, 11))
#: Most models, and O1 without a last frame: 5 or 10 seconds only.
DURATIONS_WITHOUT_LAST_IMAGE: Final = (5, 10)
#: Kling v3.0: 3 to 15 seconds.
DURATIONS_V3: Final = tuple(range(3, 16))
#: Text-to-video's aspect ratios; the first is the default.
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")

#: Upstream Kling limits, which WaveSpeed passes on.
MAX_PROMPT_CHARS: Final = 2500
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024

Kind = Literal["text", "number", "boolean", "choice", "shots"]


@attrs.frozen(kw_only=True)
class FieldRule:
    """One optional field a model's endpoint takes."""

    kind: Kind
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


_NEGATIVE = FieldRule(kind="text")
_CFG = FieldRule(kind="number", low=0.0, high=1.0)
_SOUND = FieldRule(kind="boolean")
_ASPECT = FieldRule(kind="choice", choices=ASPECT_RATIOS)
_MULTI = FieldRule(kind="shots")


@attrs.frozen(kw_only=True)
class Model:
    """One model the mock serves."""

    usd_per_second: Decimal
    takes_image: bool
    #: The end frame's field name (``last_image``/``end_image``), None when it takes none.
    end_frame: str | None = None
    fields: dict[str, FieldRule] = attrs.field(factory=dict)
    durations: tuple[int, ...] = DURATIONS_WITHOUT_LAST_IMAGE
    #: Durations with an end frame, where they differ (O1).
    durations_with_end: tuple[int, ...] | None = None
    #: Seconds billed at least (v2.5 turbo: 5).
    min_billed_seconds: int = 0
    #: True where WaveSpeed states no price: `usd_per_second` is the mock's own.
    stand_in_price: bool = False
    #: The price WaveSpeed shows for the model's default run, where that is all it shows.
    default_run_usd: Decimal | None = None


#: Kling on WaveSpeed, by model id.
MODELS: Final[dict[str, Model]] = {
    IMAGE_TO_VIDEO: Model(
        usd_per_second=Decimal("0.084"),
        takes_image=True,
        end_frame="last_image",
        durations_with_end=DURATIONS_WITH_LAST_IMAGE,
    ),
    TEXT_TO_VIDEO: Model(
        usd_per_second=Decimal("0.084"),
        takes_image=False,
        fields={"aspect_ratio": _ASPECT},
        stand_in_price=True,
    ),
    PUBLISHER + "kling-v2.1-i2v-standard": Model(
        usd_per_second=Decimal("0.05"),
        takes_image=True,
        fields={"negative_prompt": _NEGATIVE, "guidance_scale": _CFG},
        stand_in_price=True,
    ),
    PUBLISHER + "kling-v2.5-turbo-std/image-to-video": Model(
        usd_per_second=Decimal("0.07"), takes_image=True, min_billed_seconds=5
    ),
    PUBLISHER + "kling-v2.6-std/text-to-video": Model(
        usd_per_second=Decimal("0.042"), takes_image=False, default_run_usd=Decimal("0.21")
    ),
    PUBLISHER + "kling-v2.6-std/image-to-video": Model(
        usd_per_second=Decimal("0.042"),
        takes_image=True,
        fields={"negative_prompt": _NEGATIVE},
        stand_in_price=True,
    ),
    PUBLISHER + "kling-v2.6-pro/image-to-video": Model(
        usd_per_second=Decimal("0.07"),
        takes_image=True,
        end_frame="last_image",
        fields={"negative_prompt": _NEGATIVE, "cfg_scale": _CFG, "sound": _SOUND},
        stand_in_price=True,
    ),
    PUBLISHER + "kling-v3.0-std/text-to-video": Model(
        usd_per_second=Decimal("0.084"),
        takes_image=False,
        fields={
            "negative_prompt": _NEGATIVE,
            "aspect_ratio": _ASPECT,
            "cfg_scale": _CFG,
            "sound": _SOUND,
            "multi_prompt": _MULTI,
        },
        durations=DURATIONS_V3,
        default_run_usd=Decimal("0.42"),
    ),
    PUBLISHER + "kling-v3.0-std/image-to-video": Model(
        usd_per_second=Decimal("0.084"),
        takes_image=True,
        end_frame="end_image",
        fields={
            "negative_prompt": _NEGATIVE,
            "cfg_scale": _CFG,
            "sound": _SOUND,
            "multi_prompt": _MULTI,
        },
        durations=DURATIONS_V3,
        stand_in_price=True,
    ),
}


def durations(model: str, *, has_last_image: bool) -> tuple[int, ...]:
    """Return the durations *model* accepts (an end frame counts only where it changes them)."""
    rules = MODELS[model]
    if has_last_image and rules.durations_with_end is not None:
        return rules.durations_with_end
    return rules.durations


def duration_problem(model: str, value: object, *, has_last_image: bool) -> str | None:
    """Say why *value* is not a duration *model* accepts, or return None if it is one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number of seconds, not {value!r}"
    allowed = durations(model, has_last_image=has_last_image)
    if value in allowed:
        return None
    spelled = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
    with_end = MODELS[model].durations_with_end
    if with_end is not None and has_last_image:
        return (
            f"{value} is not allowed; with last_image the duration is "
            f"{with_end[0]} to {with_end[-1]} seconds"
        )
    if with_end is not None and value in with_end:
        return f"{value} needs last_image; without it only {spelled} are allowed"
    return f"{value} is not allowed; this model takes {spelled} seconds"


def billed_seconds(model: str, duration_s: int) -> int:
    """Return the seconds billed for a task of *duration_s*: rounded up, at least the minimum."""
    return max(math.ceil(duration_s), MODELS[model].min_billed_seconds)


def cost(model: str, duration_s: int) -> Decimal:
    """Return what a task of *duration_s* seconds of *model* costs, in USD."""
    return MODELS[model].usd_per_second * billed_seconds(model, duration_s)
