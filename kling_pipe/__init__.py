"""kling-pipe: render a TOML shot list into video shots with Kling Video O1 via WaveSpeed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from kling_pipe.exceptions import KlingPipeError, Problem, ShotListError
from kling_pipe.loader import load, load_bytes, loads, structure, unstructure
from kling_pipe.plan import Plan, PlannedShot, plan
from kling_pipe.specs import (
    ChainImage,
    Defaults,
    ImageRef,
    LocalImage,
    Shot,
    ShotList,
    Storyboard,
    UrlImage,
)

try:
    __version__ = version("kling-pipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ChainImage",
    "Defaults",
    "ImageRef",
    "KlingPipeError",
    "LocalImage",
    "Plan",
    "PlannedShot",
    "Problem",
    "Shot",
    "ShotList",
    "ShotListError",
    "Storyboard",
    "UrlImage",
    "__version__",
    "load",
    "load_bytes",
    "loads",
    "plan",
    "structure",
    "unstructure",
]
