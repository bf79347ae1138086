"""The rules every model shares, and the model rules in their older, O1-shaped spelling.

The models themselves (paths, fields, durations, prices, sources) are data in `catalogue`;
this module keeps what is not per model (takes, Kling's image limits, the one `ZERO_USD`)
and the names older code and tests use, each now reading the catalogue. Money is `Decimal`,
never float: a plan's total must be the exact sum of its shots.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Final

from kling_pipe._shotlist import catalogue
from kling_pipe._shotlist.catalogue import CATALOGUE, ModelEntry, price_of

#: No money: the one zero every total starts from (three places, as prices are written).
ZERO_USD: Final = Decimal("0.000")

IMAGE_TO_VIDEO: Final = catalogue.O1_STD_I2V.model_id
TEXT_TO_VIDEO: Final = catalogue.O1_STD_T2V.model_id
DEFAULT_MODEL: Final = catalogue.DEFAULT_MODEL

#: Durations (seconds) allowed when a last frame is given, and when it is not.
DURATIONS_WITH_LAST_IMAGE: Final = (3, 4, 5, 6, 7, 8, 9, 10)
DURATIONS_WITHOUT_LAST_IMAGE: Final = (5, 10)
DEFAULT_DURATION: Final = catalogue.O1_STD_I2V.durations.default

#: How many takes (renders of one shot, one of them picked) a shot may ask for.
MIN_TAKES: Final = 1
MAX_TAKES: Final = 8
DEFAULT_TAKES: Final = 1

#: Upstream Kling limits, which WaveSpeed passes on. Kling's own notes for image-to-video
#: (O1 included) state all four; WaveSpeed's Kling v2.6 Pro page states the three image
#: ones; WaveSpeed's O1 Standard page states none. A frame outside the image limits is
#: refused where the model's own page states them (`ModelInfo.states_image_limits`), and
#: warned of elsewhere (`image_limit_problems`).
MAX_PROMPT_CHARS: Final = 2500
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
MIN_IMAGE_SHORT_SIDE_PX: Final = 300
#: A frame's width over its height: from 1:2.5 (tall) to 2.5:1 (wide), both included.
MIN_IMAGE_ASPECT: Final = Fraction(2, 5)
MAX_IMAGE_ASPECT: Final = Fraction(5, 2)

#: Text-to-video's aspect ratios (the sibling endpoint the mock also serves).
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")


#: What older code called a model's info is its catalogue entry.
ModelInfo = ModelEntry

#: Models a shot list may name: every model of the catalogue.
SHOT_LIST_MODELS: Final = tuple(CATALOGUE)


def allowed_durations(*, has_last_image: bool, model: str = DEFAULT_MODEL) -> tuple[int, ...]:
    """Return the durations *model* accepts, which may depend on whether a last frame is set."""
    return CATALOGUE[model].durations.durations(has_end_frame=has_last_image)


def duration_error(
    value: object, *, has_last_image: bool, model: str = DEFAULT_MODEL
) -> str | None:
    """Explain why *value* is not an acceptable duration of *model*, or return None if it is.

    Bools are ints in Python, and TOML floats such as ``5.0`` compare equal to ints: both are
    rejected explicitly so that a typo never reaches the API as something it did not say.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return _not_a_whole_number(value, "seconds", 5)
    rule = CATALOGUE[model].durations
    allowed = rule.durations(has_end_frame=has_last_image)
    if value in allowed:
        return None
    if rule.with_end_frame is None:
        return f"{value} is not allowed; {_model_name(model)} takes {_spell(allowed)} seconds"
    if has_last_image:
        return f"{value} is not allowed; with last_image the duration is {_spell(allowed)} seconds"
    if value in rule.with_end_frame:
        return f"{value} needs last_image; without it only {_spell(allowed)} are allowed"
    return f"{value} is not allowed; without last_image only {_spell(allowed)} are allowed"


def _model_name(model: str) -> str:
    """Return the short name of a model for a message (its path without the publisher)."""
    return CATALOGUE[model].path


def _spell(durations: tuple[int, ...]) -> str:
    """Say a set of durations as a person would: "5 or 10", "3 to 15"."""
    if len(durations) > 2 and durations == tuple(range(durations[0], durations[-1] + 1)):
        return f"{durations[0]} to {durations[-1]}"
    return ", ".join(map(str, durations[:-1])) + f" or {durations[-1]}"


def takes_error(value: object) -> str | None:
    """Explain why *value* is not an acceptable number of takes, or return None if it is.

    Like durations, bools and floats are refused by type, not coerced: ``takes = 2.0`` or
    ``takes = true`` is a typo the user should see, since every take is paid for.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return _not_a_whole_number(value, "takes", 2)
    if MIN_TAKES <= value <= MAX_TAKES:
        return None
    return (
        f"{value} is not allowed; a shot has {MIN_TAKES} to {MAX_TAKES} takes "
        "(each take is a paid render)"
    )


def image_limit_problems(width: int | None, height: int | None, size_bytes: int) -> list[str]:
    """Say each way a frame is outside Kling's image limits: size, short side, aspect ratio.

    *width* and *height* are None when the file states no size; then only its bytes count.
    """
    found = []
    if size_bytes > MAX_IMAGE_BYTES:
        found.append(
            f"{size_bytes / (1024 * 1024):.1f} MB; WaveSpeed takes images of at most 10 MB"
        )
    if width is not None and height is not None:
        if min(width, height) < MIN_IMAGE_SHORT_SIDE_PX:
            found.append(
                f"{width}x{height} px; WaveSpeed needs at least {MIN_IMAGE_SHORT_SIDE_PX} px "
                "on the short side"
            )
        wrong = aspect_ratio_error(width, height)
        if wrong is not None:
            found.append(wrong)
    return found


def aspect_ratio_error(width: int, height: int) -> str | None:
    """Say how a *width* x *height* frame is outside Kling's aspect ratios, or return None."""
    if width <= 0 or height <= 0:
        return None  # no size to judge; the image checks say what is wrong with the file
    if MIN_IMAGE_ASPECT <= Fraction(width, height) <= MAX_IMAGE_ASPECT:
        return None
    shape = f"{_ratio(width / height)}:1" if width > height else f"1:{_ratio(height / width)}"
    return (
        f"{width}x{height} px, an aspect ratio of {shape}; Kling takes frames from 1:2.5 "
        "(tall) to 2.5:1 (wide)"
    )


def _ratio(value: float) -> str:
    """Show a ratio to 2 decimals, or more where that would show the limit itself (2.5)."""
    digits = 2
    while round(value, digits) == float(MAX_IMAGE_ASPECT) and digits < 6:
        digits += 1
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def price_per_second(model_id: str) -> Decimal | None:
    """Return the USD price of one second of *model_id* (None: not priced per second).

    KeyError if the model is unknown.
    """
    return CATALOGUE[model_id].price.usd_per_second


def shot_cost(
    model_id: str, duration_s: int, fields: Mapping[str, object] | None = None
) -> Decimal | None:
    """Return the exact USD cost of one render (one take), or None when it is unconfirmed."""
    return price_of(CATALOGUE[model_id], duration_s, fields)


def takes_cost(model_id: str, duration_s: int, takes: int) -> Decimal | None:
    """Return the exact USD cost of a shot rendered *takes* times (None when unconfirmed)."""
    one = shot_cost(model_id, duration_s)
    return None if one is None else one * takes


def unknown_model_message(model_id: str) -> str:
    """Say that *model_id* is unknown and list the ones a shot list may use."""
    return catalogue.unknown_model_message(model_id)


def _not_a_whole_number(value: object, unit: str, example: int) -> str:
    """Say what *value* is instead of a whole number of *unit* (a bool is refused by name)."""
    if isinstance(value, bool):
        return f"must be a whole number of {unit}, not a boolean ({str(value).lower()})"
    if isinstance(value, str):
        shown = f'a string ("{value}")'
    elif isinstance(value, float | Decimal):
        shown = f"a float ({value})"
    else:
        shown = f"a {type(value).__name__}"
    return f"must be a whole number of {unit} (an integer such as {example}), not {shown}"
