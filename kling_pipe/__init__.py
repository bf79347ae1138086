"""kling-pipe: render a TOML shot list into video shots with Kling models via WaveSpeed.

The public names below are imported on first use, each from its own module: `import
kling_pipe` loads none of the HTTP, video, database or display libraries, and a script
that only validates shot lists never pays for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kling_pipe._backends.base import Backend, Download, Prediction, SubmitRequest
    from kling_pipe._decisions.plan import Plan, PlannedShot, plan
    from kling_pipe._decisions.results import RunResult, ShotResult
    from kling_pipe._outputs.contact_sheet import write_contact_sheet
    from kling_pipe._outputs.cut import CutResult, cut
    from kling_pipe._outputs.export import ExportResult, export_timeline
    from kling_pipe._outputs.picks import PickResult, pick_take
    from kling_pipe._running.options import RunOptions
    from kling_pipe._running.run import NotConfirmedError, render, render_sync
    from kling_pipe._shotlist.catalogue import ModelEntry, find_model, model_entries, price_of
    from kling_pipe._shotlist.loader import load, load_bytes, loads, structure, unstructure
    from kling_pipe._shotlist.scaffold import init_shot_list
    from kling_pipe._shotlist.schema import shot_list_schema
    from kling_pipe._shotlist.specs import (
        ChainImage,
        Defaults,
        ImageRef,
        LocalImage,
        PromptPart,
        Shot,
        ShotList,
        Storyboard,
        UrlImage,
    )
    from kling_pipe._version import __version__
    from kling_pipe.exceptions import (
        BackendError,
        KlingPipeError,
        Problem,
        ShotListError,
        SubmitOutcomeUnknown,
    )

__all__ = [
    "Backend",
    "BackendError",
    "ChainImage",
    "CutResult",
    "Defaults",
    "Download",
    "ExportResult",
    "ImageRef",
    "KlingPipeError",
    "LocalImage",
    "ModelEntry",
    "NotConfirmedError",
    "PickResult",
    "Plan",
    "PlannedShot",
    "Prediction",
    "Problem",
    "PromptPart",
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
    "export_timeline",
    "find_model",
    "init_shot_list",
    "load",
    "load_bytes",
    "loads",
    "model_entries",
    "pick_take",
    "plan",
    "price_of",
    "render",
    "render_sync",
    "shot_list_schema",
    "structure",
    "unstructure",
    "write_contact_sheet",
]

#: Where each public name lives.
_HOMES = {
    "Backend": "_backends.base",
    "BackendError": "exceptions",
    "ChainImage": "_shotlist.specs",
    "CutResult": "_outputs.cut",
    "Defaults": "_shotlist.specs",
    "Download": "_backends.base",
    "ExportResult": "_outputs.export",
    "ImageRef": "_shotlist.specs",
    "KlingPipeError": "exceptions",
    "LocalImage": "_shotlist.specs",
    "ModelEntry": "_shotlist.catalogue",
    "NotConfirmedError": "_running.run",
    "PickResult": "_outputs.picks",
    "Plan": "_decisions.plan",
    "PlannedShot": "_decisions.plan",
    "Prediction": "_backends.base",
    "Problem": "exceptions",
    "PromptPart": "_shotlist.specs",
    "RunOptions": "_running.options",
    "RunResult": "_decisions.results",
    "Shot": "_shotlist.specs",
    "ShotList": "_shotlist.specs",
    "ShotListError": "exceptions",
    "ShotResult": "_decisions.results",
    "Storyboard": "_shotlist.specs",
    "SubmitOutcomeUnknown": "exceptions",
    "SubmitRequest": "_backends.base",
    "UrlImage": "_shotlist.specs",
    "__version__": "_version",
    "cut": "_outputs.cut",
    "export_timeline": "_outputs.export",
    "find_model": "_shotlist.catalogue",
    "init_shot_list": "_shotlist.scaffold",
    "load": "_shotlist.loader",
    "load_bytes": "_shotlist.loader",
    "loads": "_shotlist.loader",
    "model_entries": "_shotlist.catalogue",
    "pick_take": "_outputs.picks",
    "plan": "_decisions.plan",
    "price_of": "_shotlist.catalogue",
    "render": "_running.run",
    "render_sync": "_running.run",
    "shot_list_schema": "_shotlist.schema",
    "structure": "_shotlist.loader",
    "unstructure": "_shotlist.loader",
    "write_contact_sheet": "_outputs.contact_sheet",
}


def __getattr__(name: str) -> object:
    """Import a public name from its module the first time it is used."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names too, imported or not."""
    return sorted({*globals(), *__all__})
