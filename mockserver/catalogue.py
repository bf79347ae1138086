"""The mock's own copy of WaveSpeed's rules: the models it serves, their durations and prices.

Written from the API's published facts, not imported from kling_pipe: the mock stands in
for WaveSpeed, so a client bug in kling_pipe's rules must meet a server that disagrees.
A test checks that the two tables agree on every model, duration and price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import attrs

IMAGE_TO_VIDEO: Final = "kwaivgi/kling-video-o1-std/image-to-video"
TEXT_TO_VIDEO: Final = "kwaivgi/kling-video-o1-std/text-to-video"

#: Seconds of video when a submit names no duration.
DEFAULT_DURATION: Final = 5
#: Image-to-video with a ``last_image``: any whole number of seconds from 3 to 10.
DURATIONS_WITH_LAST_IMAGE: Final = tuple(range(3, 11))
#: Image-to-video without one, and text-to-video: 5 or 10 seconds only.
DURATIONS_WITHOUT_LAST_IMAGE: Final = (5, 10)
#: Text-to-video's aspect ratios; the first is the default.
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")

#: Upstream Kling limits, which WaveSpeed passes on.
MAX_PROMPT_CHARS: Final = 2500
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024


@attrs.frozen(kw_only=True)
class Model:
    """One model the mock serves."""

    usd_per_second: Decimal
    takes_image: bool


#: Kling Video O1 Standard: USD 0.084 per second of output.
MODELS: Final[dict[str, Model]] = {
    IMAGE_TO_VIDEO: Model(usd_per_second=Decimal("0.084"), takes_image=True),
    TEXT_TO_VIDEO: Model(usd_per_second=Decimal("0.084"), takes_image=False),
}


def durations(model: str, *, has_last_image: bool) -> tuple[int, ...]:
    """Return the durations *model* accepts (a last frame only counts for image-to-video)."""
    if MODELS[model].takes_image and has_last_image:
        return DURATIONS_WITH_LAST_IMAGE
    return DURATIONS_WITHOUT_LAST_IMAGE


def duration_problem(model: str, value: object, *, has_last_image: bool) -> str | None:
    """Say why *value* is not a duration *model* accepts, or return None if it is one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number of seconds, not {value!r}"
    allowed = durations(model, has_last_image=has_last_image)
    if value in allowed:
        return None
    if allowed == DURATIONS_WITH_LAST_IMAGE:
        return f"{value} is not allowed; with last_image the duration is 3 to 10 seconds"
    if value in DURATIONS_WITH_LAST_IMAGE:
        return f"{value} needs last_image; without it only 5 or 10 are allowed"
    return f"{value} is not allowed; without last_image only 5 or 10 are allowed"


def cost(model: str, duration_s: int) -> Decimal:
    """Return what a task of *duration_s* seconds of *model* costs, in USD."""
    return MODELS[model].usd_per_second * duration_s
