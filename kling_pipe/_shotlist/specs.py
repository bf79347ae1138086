"""The shot list as immutable values: what the user asked for, after validation.

These classes hold no I/O and know nothing of TOML or cattrs (only `loader` does), so the
planner, the scheduler and the tests can build them directly. An instance is valid by
construction when it comes from `kling_pipe.load`; built by hand, it is checked when planned.

A shot with ``takes = N`` is rendered N times (generative video is a draw; the user keeps the
best). Each take is a *render unit* of its own, named by its *unit key*: the shot's id for
take 1, so that a shot of one take is recorded exactly as before takes existed, and
``<id>#<k>`` for take k ≥ 2 (``#`` is never part of a shot id, so the key cannot collide).
Records, the scheduler and the engine work on unit keys; `unit_key` and `split_unit_key`
are the only places that spell the rule out.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import attrs

from kling_pipe._shotlist.rules import DEFAULT_DURATION, DEFAULT_MODEL, DEFAULT_TAKES
from kling_pipe.exceptions import Problem

Frame = Literal["first", "last"]

#: The model fields a shot may set, each taken only by the models whose entry lists it.
MODEL_FIELD_NAMES = (
    "negative_prompt",
    "cfg_scale",
    "guidance_scale",
    "sound",
    "aspect_ratio",
    "multi_prompt",
)

#: Between a shot's id and its take number in a unit key (never part of a shot id).
TAKE_SEPARATOR = "#"


def unit_key(shot_id: str, take: int) -> str:
    """Name take *take* (1-based) of *shot_id*: the shot's id for take 1, else ``id#take``."""
    return shot_id if take == 1 else f"{shot_id}{TAKE_SEPARATOR}{take}"


def split_unit_key(key: str) -> tuple[str, int]:
    """Return the (shot id, take) a unit key names (ValueError for a malformed take)."""
    shot_id, sep, take = key.partition(TAKE_SEPARATOR)
    if not sep:
        return shot_id, 1
    number = int(take)
    if number < 2 or str(number) != take:  # take 1 is spelled as the plain id, nothing else
        raise ValueError(f"not a unit key: {key!r}")
    return shot_id, number


@attrs.frozen(kw_only=True)
class LocalImage:
    """An image file next to the shot list, uploaded before the shot is submitted."""

    #: The path as written in the shot list: relative to the shot list's folder, or absolute.
    #: `ShotList.resolve` turns it into a real path, so this value stays what the user wrote.
    path: str


@attrs.frozen(kw_only=True)
class UrlImage:
    """An image already on the web; WaveSpeed fetches it itself, so it is passed through."""

    url: str


@attrs.frozen(kw_only=True)
class ChainImage:
    """The first or last frame of another shot's rendered video: a continuity link."""

    shot: str
    frame: Frame


ImageRef = LocalImage | UrlImage | ChainImage


@attrs.frozen(kw_only=True)
class PromptPart:
    """One part of a multi-shot prompt (``multi_prompt``): what happens, and for how long."""

    prompt: str
    duration: int


@attrs.frozen(kw_only=True)
class Shot:
    """One shot to render, with `[defaults]` already merged in."""

    id: str
    #: Empty only when the shot gives `multi_prompt` instead.
    prompt: str = ""
    #: The first frame; None on a text-to-video model.
    image: ImageRef | None = None
    last_image: ImageRef | None = None
    duration: int = DEFAULT_DURATION
    prompt_prefix: str = ""
    prompt_suffix: str = ""
    #: How many times the shot is rendered; the user picks one (`kling-pipe pick`).
    takes: int = DEFAULT_TAKES
    #: The full WaveSpeed model id (the shot's, else `[defaults]`', else the storyboard's).
    model: str = DEFAULT_MODEL
    #: The model's own optional fields (see `catalogue`); None: left out of the request.
    negative_prompt: str | None = None
    cfg_scale: Decimal | None = None
    guidance_scale: Decimal | None = None
    sound: bool | None = None
    aspect_ratio: str | None = None
    multi_prompt: tuple[PromptPart, ...] | None = None

    @property
    def model_fields(self) -> dict[str, object]:
        """The model's optional fields this shot sets, by name (what reaches the request)."""
        found: dict[str, object] = {}
        for name in MODEL_FIELD_NAMES:
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found

    @property
    def request_fields(self) -> dict[str, object]:
        """The model fields as the request sends them, as JSON values.

        Each part of a multi-shot prompt is wrapped in the prefix and suffix, as a prompt is.
        """
        sent: dict[str, object] = {}
        for name, value in self.model_fields.items():
            if isinstance(value, tuple):
                sent[name] = [
                    {
                        "prompt": f"{self.prompt_prefix}{p.prompt}{self.prompt_suffix}",
                        "duration": p.duration,
                    }
                    for p in value
                ]
            elif isinstance(value, Decimal):
                sent[name] = float(value)
            else:
                sent[name] = value
        return sent

    @property
    def unit_keys(self) -> tuple[str, ...]:
        """The unit key of each of the shot's takes, take 1 first."""
        return tuple(unit_key(self.id, k) for k in range(1, self.takes + 1))

    @property
    def final_prompt(self) -> str:
        """The text sent to the model: the prefix, the shot's own prompt, then the suffix."""
        return f"{self.prompt_prefix}{self.prompt}{self.prompt_suffix}"

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """The shot's frames in order: first, then last if there is one."""
        return tuple(i for i in (self.image, self.last_image) if i is not None)

    @property
    def chained_from(self) -> tuple[str, ...]:
        """Ids of the shots whose videos this shot needs before it can start (each once)."""
        # Spelled out rather than filtered from `images`: chain order asks it of every shot.
        first, last = self.image, self.last_image
        if not isinstance(first, ChainImage):
            return (last.shot,) if isinstance(last, ChainImage) else ()
        if isinstance(last, ChainImage) and last.shot != first.shot:
            return (first.shot, last.shot)
        return (first.shot,)


@attrs.frozen(kw_only=True)
class Storyboard:
    """Settings for the whole shot list."""

    name: str
    #: As written (relative to the shot list's folder); None means ``renders/<name>``.
    output_dir: str | None = None
    concurrency: int | None = None
    #: One run's cap (USD): a plan that costs more is refused.
    max_cost: Decimal | None = None
    model: str = DEFAULT_MODEL
    #: The whole film's cap (USD): what every run together may spend, from the records.
    budget: Decimal | None = None


@attrs.frozen(kw_only=True)
class Defaults:
    """Values every shot takes unless it sets its own (any shot field except `id`)."""

    prompt: str | None = None
    image: ImageRef | None = None
    last_image: ImageRef | None = None
    duration: int | None = None
    prompt_prefix: str | None = None
    prompt_suffix: str | None = None
    takes: int | None = None
    model: str | None = None
    negative_prompt: str | None = None
    cfg_scale: Decimal | None = None
    guidance_scale: Decimal | None = None
    sound: bool | None = None
    aspect_ratio: str | None = None


@attrs.frozen(kw_only=True)
class ShotList:
    """A whole storyboard: its settings and its shots in file order."""

    storyboard: Storyboard
    shots: tuple[Shot, ...]
    defaults: Defaults = Defaults()
    version: int = 1
    #: The file it was read from; relative paths inside it resolve against its folder.
    source: Path = attrs.field(default=Path("shotlist.toml"), eq=False, repr=False)
    #: What `kling_pipe.load` found that may fail on the server but breaks no rule the model
    #: states (a frame outside Kling's image limits): printed by validate, plan and run.
    warnings: tuple[Problem, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the shot list are resolved against."""
        return self.source.parent

    @property
    def output_path(self) -> Path:
        """Where rendered shots are written."""
        written = self.storyboard.output_dir or f"renders/{self.storyboard.name}"
        return self.base_dir / written

    def resolve(self, image: LocalImage) -> Path:
        """Return the file a local image names, relative paths taken from the shot list's folder."""
        return self.base_dir / image.path

    def shot(self, shot_id: str) -> Shot:
        """Return the shot with *shot_id* (KeyError if there is none)."""
        for s in self.shots:
            if s.id == shot_id:
                return s
        raise KeyError(shot_id)
