"""kling-pipe: render a TOML shot list into video shots with Kling Video O1 via WaveSpeed."""

from __future__ import annotations

from kling_pipe._version import __version__
from kling_pipe.backend import Backend, Download, Prediction, SubmitRequest
from kling_pipe.contact_sheet import write_contact_sheet
from kling_pipe.cut import CutResult, cut
from kling_pipe.exceptions import (
    BackendError,
    KlingPipeError,
    Problem,
    ShotListError,
    SubmitOutcomeUnknown,
)
from kling_pipe.loader import load, load_bytes, loads, structure, unstructure
from kling_pipe.plan import Plan, PlannedShot, plan
from kling_pipe.results import RunResult, ShotResult
from kling_pipe.run import NotConfirmedError, render, render_sync
from kling_pipe.scaffold import init_shot_list
from kling_pipe.scheduler import RunOptions
from kling_pipe.schema import shot_list_schema
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

__all__ = [
    "Backend",
    "BackendError",
    "ChainImage",
    "CutResult",
    "Defaults",
    "Download",
    "ImageRef",
    "KlingPipeError",
    "LocalImage",
    "NotConfirmedError",
    "Plan",
    "PlannedShot",
    "Prediction",
    "Problem",
    "RunOptions",
    "RunResult",
    "Shot",
    "ShotList",
    "ShotListError",
    "ShotResult",
    "Storyboard",
    "SubmitOutcomeUnknown",
    "SubmitRequest",
    "UrlImage",
    "__version__",
    "cut",
    "init_shot_list",
    "load",
    "load_bytes",
    "loads",
    "plan",
    "render",
    "render_sync",
    "shot_list_schema",
    "structure",
    "unstructure",
    "write_contact_sheet",
]
