"""The Kling family on WaveSpeed as data: one frozen entry per model, each fact with its source.

Every model is its own endpoint (``POST /api/v3/kwaivgi/<path>``) with its own fields,
durations and price; validation, the fingerprint, the request, the plan and the JSON Schema
all read them from here, so a model is added by adding an entry, not by editing code. Pure
facts, no I/O. Money is `Decimal`.

Only what WaveSpeed's pages state is written as a fact; every entry says where each came
from (`source`). A fact nobody confirmed is left out or marked so: a price is then None
(`price_of` says "unknown", the plan shows "price unconfirmed", and a real run refuses the
model), a duration rule taken over from a sibling model says "assumed" in its source.

Prices come in two forms. Per second of output (``usd_per_second``), with an optional
minimum billed duration (WaveSpeed bills v2.5 turbo at least 5 s, seconds rounded up). Or,
where a model's page shows only the price of its default request ("per run, default
inputs", usually 5 s), that one price (``usd_per_default_run``): it prices exactly that
request, and any other request of the model is unconfirmed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, Literal

import attrs

#: Every Kling model id on WaveSpeed starts with the publisher's name.
PUBLISHER: Final = "kwaivgi/"

#: The kinds of value a model field takes, as the shot list writes them.
FieldKind = Literal["text", "number", "boolean", "choice", "shots"]

#: The sources, spelled once.
_API_DOCS: Final = "https://wavespeed.ai/docs/docs-api/kwaivgi/kwaivgi-"
_MODEL_PAGE: Final = "https://wavespeed.ai/models/kwaivgi/"


def _docs(path: str) -> str:
    """WaveSpeed's API docs page of a model path (``kling-v3.0-std/text-to-video``)."""
    return _API_DOCS + path.replace("/", "-")


@attrs.frozen(kw_only=True)
class Field:
    """One optional request field a model takes beyond prompt, frames and duration.

    The shot-list key is the field's own name on the wire (``cfg_scale`` on one model,
    ``guidance_scale`` on another), so what a user writes is what WaveSpeed documents.
    """

    name: str
    kind: FieldKind
    #: For ``choice``: the allowed values, the default first.
    choices: tuple[str, ...] = ()
    #: For ``number``: the closed range, when the page states one.
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    #: The server's default when the field is left out (None: no default stated).
    default: str | bool | Decimal | None = None
    source: str


@attrs.frozen(kw_only=True)
class DurationRule:
    """Which whole numbers of seconds a model renders."""

    allowed: tuple[int, ...]
    #: With an end frame, where that changes them (O1: 3 to 10 instead of 5 or 10).
    with_end_frame: tuple[int, ...] | None = None
    default: int = 5
    source: str

    def durations(self, *, has_end_frame: bool) -> tuple[int, ...]:
        """Return the durations allowed, with or without an end frame."""
        if has_end_frame and self.with_end_frame is not None:
            return self.with_end_frame
        return self.allowed


@attrs.frozen(kw_only=True)
class PriceRule:
    """What a render costs, as WaveSpeed states it (see the module); both None: unconfirmed."""

    usd_per_second: Decimal | None = None
    #: The price of the model's default request, where only that is stated.
    usd_per_default_run: Decimal | None = None
    #: Seconds billed at least, whatever the duration (0: no minimum stated).
    min_billed_seconds: int = 0
    source: str

    @property
    def confirmed(self) -> bool:
        """Whether any price of this model is known at all."""
        return self.usd_per_second is not None or self.usd_per_default_run is not None


@attrs.frozen(kw_only=True)
class ModelEntry:
    """One Kling model on WaveSpeed."""

    #: The path after ``/api/v3/kwaivgi/``: the short name a shot list may use.
    path: str
    #: The name people know it by.
    title: str
    #: Image-to-video (a first frame, required) or text-to-video (none).
    takes_image: bool
    #: The wire name of the end frame (``last_image`` or ``end_image``), None if it takes none.
    #: The shot list always writes ``last_image``; the request uses this name.
    end_frame_field: str | None
    #: Optional fields beyond prompt, image, the end frame and duration.
    fields: tuple[Field, ...] = ()
    durations: DurationRule
    price: PriceRule
    #: Whether the model's own page states Kling's image limits (10 MB, 300 px, 1:2.5 to
    #: 2.5:1): a frame outside them is then an error, else a warning.
    states_image_limits: bool = False
    max_prompt_chars: int = 2500
    #: The model's page: where what it takes was read.
    source: str

    @property
    def model_id(self) -> str:
        """The full WaveSpeed model id, as records and requests name it."""
        return PUBLISHER + self.path

    @property
    def field_names(self) -> tuple[str, ...]:
        """The optional fields' names, in the catalogue's order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field | None:
        """Return the field called *name*, or None if the model does not take it."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def takes_multi_prompt(self) -> bool:
        """Whether a shot may give ``multi_prompt`` (a multi-shot prompt) instead of prompt."""
        return self.field("multi_prompt") is not None


_CFG = Field(
    name="cfg_scale",
    kind="number",
    minimum=Decimal(0),
    maximum=Decimal(1),
    default=Decimal("0.5"),
    source="WaveSpeed's model page states the default 0.5; the range 0..1 is Kling's "
    "(guidance_scale on v2.1 states it)",
)
_NEGATIVE = Field(name="negative_prompt", kind="text", source="the model page's parameters")
_SOUND = Field(name="sound", kind="boolean", default=False, source="the model page's parameters")
_ASPECT = Field(
    name="aspect_ratio",
    kind="choice",
    choices=("16:9", "9:16", "1:1"),
    default="16:9",
    source="the model page's parameters",
)
_MULTI_PROMPT = Field(
    name="multi_prompt",
    kind="shots",
    source="the model page: prompt or multi_prompt (not both), each part a prompt and a "
    "duration; not with the end frame",
)

_FIVE_OR_TEN: Final = (5, 10)
_THREE_TO_FIFTEEN: Final = tuple(range(3, 16))

O1_STD_I2V: Final = ModelEntry(
    path="kling-video-o1-std/image-to-video",
    title="Kling Video O1 Standard, image to video",
    takes_image=True,
    end_frame_field="last_image",
    durations=DurationRule(
        allowed=_FIVE_OR_TEN,
        with_end_frame=tuple(range(3, 11)),
        source=_docs("kling-video-o1-std/image-to-video"),
    ),
    price=PriceRule(
        usd_per_second=Decimal("0.084"), source=_MODEL_PAGE + "kling-video-o1-std/image-to-video"
    ),
    states_image_limits=False,  # the O1 Standard page states no image limit
    source=_docs("kling-video-o1-std/image-to-video"),
)
O1_STD_T2V: Final = ModelEntry(
    path="kling-video-o1-std/text-to-video",
    title="Kling Video O1 Standard, text to video",
    takes_image=False,
    end_frame_field=None,
    fields=(_ASPECT,),
    durations=DurationRule(
        allowed=_FIVE_OR_TEN, source="assumed: 5 or 10 as O1 image-to-video without last_image"
    ),
    price=PriceRule(source="unconfirmed: no WaveSpeed page read states it"),
    source=_docs("kling-video-o1-std/text-to-video"),
)
V21_I2V_STD: Final = ModelEntry(
    path="kling-v2.1-i2v-standard",
    title="Kling v2.1 Standard, image to video",
    takes_image=True,
    end_frame_field=None,
    fields=(
        _NEGATIVE,
        Field(
            name="guidance_scale",
            kind="number",
            minimum=Decimal(0),
            maximum=Decimal(1),
            default=Decimal("0.5"),
            source=_docs("kling-v2.1-i2v-standard"),
        ),
    ),
    durations=DurationRule(allowed=_FIVE_OR_TEN, source=_docs("kling-v2.1-i2v-standard")),
    price=PriceRule(source="unconfirmed: no WaveSpeed page read states it"),
    source=_docs("kling-v2.1-i2v-standard"),
)
V25_TURBO_STD_I2V: Final = ModelEntry(
    path="kling-v2.5-turbo-std/image-to-video",
    title="Kling v2.5 Turbo Standard, image to video",
    takes_image=True,
    end_frame_field=None,
    durations=DurationRule(
        allowed=_FIVE_OR_TEN, source=_docs("kling-v2.5-turbo-std/image-to-video")
    ),
    price=PriceRule(
        usd_per_second=Decimal("0.07"),
        min_billed_seconds=5,
        source=_MODEL_PAGE + "kling-v2.5-turbo-std/image-to-video: 0.35 for 5 s, 0.70 for "
        "10 s, minimum charge 5 s, billed seconds rounded up",
    ),
    source=_docs("kling-v2.5-turbo-std/image-to-video"),
)
V26_STD_T2V: Final = ModelEntry(
    path="kling-v2.6-std/text-to-video",
    title="Kling v2.6 Standard, text to video",
    takes_image=False,
    end_frame_field=None,
    durations=DurationRule(allowed=_FIVE_OR_TEN, source=_docs("kling-v2.6-std/text-to-video")),
    price=PriceRule(
        usd_per_default_run=Decimal("0.21"),
        source=_MODEL_PAGE + "kling-v2.6-std/text-to-video: 0.21 per run (default inputs)",
    ),
    source=_docs("kling-v2.6-std/text-to-video"),
)
V26_STD_I2V: Final = ModelEntry(
    path="kling-v2.6-std/image-to-video",
    title="Kling v2.6 Standard, image to video",
    takes_image=True,
    end_frame_field=None,
    fields=(_NEGATIVE,),
    durations=DurationRule(allowed=_FIVE_OR_TEN, source=_docs("kling-v2.6-std/image-to-video")),
    price=PriceRule(source="unconfirmed: no WaveSpeed page read states it"),
    source=_docs("kling-v2.6-std/image-to-video"),
)
V26_PRO_I2V: Final = ModelEntry(
    path="kling-v2.6-pro/image-to-video",
    title="Kling v2.6 Pro, image to video",
    takes_image=True,
    # One version of the page says end_image; the API docs page says last_image.
    end_frame_field="last_image",
    fields=(_NEGATIVE, _CFG, _SOUND),  # voice_list too, which shot lists do not write
    durations=DurationRule(
        allowed=_FIVE_OR_TEN, source="assumed: 5 or 10 as every v2 model; the page states none"
    ),
    price=PriceRule(source="unconfirmed: no WaveSpeed page read states it"),
    states_image_limits=True,  # at most 10 MB, at least 300 px, 1:2.5 to 2.5:1
    source=_docs("kling-v2.6-pro/image-to-video"),
)
V30_STD_T2V: Final = ModelEntry(
    path="kling-v3.0-std/text-to-video",
    title="Kling v3.0 Standard, text to video",
    takes_image=False,
    end_frame_field=None,
    fields=(_NEGATIVE, _ASPECT, _CFG, _SOUND, _MULTI_PROMPT),
    durations=DurationRule(allowed=_THREE_TO_FIFTEEN, source=_docs("kling-v3.0-std/text-to-video")),
    price=PriceRule(
        usd_per_default_run=Decimal("0.42"),
        source=_MODEL_PAGE + "kling-v3.0-std/text-to-video: 0.42 per run (default inputs)",
    ),
    source=_docs("kling-v3.0-std/text-to-video"),
)
V30_STD_I2V: Final = ModelEntry(
    path="kling-v3.0-std/image-to-video",
    title="Kling v3.0 Standard, image to video",
    takes_image=True,
    end_frame_field="end_image",
    fields=(_NEGATIVE, _CFG, _SOUND, _MULTI_PROMPT),
    durations=DurationRule(
        allowed=_THREE_TO_FIFTEEN,
        source=_docs("kling-v3.0-std/image-to-video") + " (3 to 15; an older version said 5 or 10)",
    ),
    price=PriceRule(source="unconfirmed: no WaveSpeed page read states it"),
    source=_docs("kling-v3.0-std/image-to-video"),
)

#: Every model, by full id; the first is the default (what a shot list without `model` means).
CATALOGUE: Final[Mapping[str, ModelEntry]] = {
    e.model_id: e
    for e in (
        O1_STD_I2V,
        O1_STD_T2V,
        V21_I2V_STD,
        V25_TURBO_STD_I2V,
        V26_STD_T2V,
        V26_STD_I2V,
        V26_PRO_I2V,
        V30_STD_T2V,
        V30_STD_I2V,
    )
}
DEFAULT_MODEL: Final = O1_STD_I2V.model_id


def find_model(name: str) -> ModelEntry | None:
    """Return the model a shot list names, by full id or by its path alone, or None.

    ``"kling-v2.5-turbo-std/image-to-video"`` and
    ``"kwaivgi/kling-v2.5-turbo-std/image-to-video"`` are the same model; records and
    fingerprints always use the full id, so both spellings render (and cache) alike.
    """
    return CATALOGUE.get(name) or CATALOGUE.get(PUBLISHER + name)


def model_entry(model_id: str) -> ModelEntry:
    """Return the entry of a full model id (KeyError if there is none)."""
    return CATALOGUE[model_id]


def model_entries() -> tuple[ModelEntry, ...]:
    """Return every model of the catalogue, the default first."""
    return tuple(CATALOGUE.values())


def billed_seconds(entry: ModelEntry, duration_s: int | Decimal) -> int:
    """Return the seconds WaveSpeed bills for *duration_s*: rounded up, at least the minimum."""
    return max(math.ceil(duration_s), entry.price.min_billed_seconds)


def price_of(
    entry: ModelEntry, duration_s: int, fields: Mapping[str, object] | None = None
) -> Decimal | None:
    """Return the exact USD price of one render, or None when no confirmed rule prices it.

    *fields* are the optional fields the request sets (by name); a per-default-run price
    holds only for a request that sets none of them away from its default.
    """
    rule = entry.price
    if rule.usd_per_second is not None:
        return rule.usd_per_second * billed_seconds(entry, duration_s)
    if rule.usd_per_default_run is None or duration_s != entry.durations.default:
        return None
    for name, value in (fields or {}).items():
        known = entry.field(name)
        if known is None or known.default is None or value != known.default:
            return None
    return rule.usd_per_default_run


def unknown_model_message(name: str) -> str:
    """Say that *name* is no model of the catalogue, and list the ones a shot list may use."""
    known = ", ".join(f'"{e.path}"' for e in CATALOGUE.values())
    return f'unknown model "{name}"; known models (with or without "{PUBLISHER}"): {known}'
