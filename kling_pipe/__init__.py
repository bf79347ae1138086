"""kling-pipe: render a TOML shot list into video shots with Kling Video O1 via WaveSpeed.

The public names below are imported on first use, each from its own module: `import
kling_pipe` loads none of the HTTP, video, database or display libraries, and a script
that only validates shot lists never pays for them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

#: Where each public name lives.
_HOMES = {
    "Backend": "backend",
    "BackendError": "exceptions",
    "ChainImage": "specs",
    "CutResult": "cut",
    "Defaults": "specs",
    "Download": "backend",
    "ImageRef": "specs",
    "KlingPipeError": "exceptions",
    "LocalImage": "specs",
    "NotConfirmedError": "run",
    "Plan": "plan",
    "PlannedShot": "plan",
    "Prediction": "backend",
    "Problem": "exceptions",
    "RunOptions": "scheduler",
    "RunResult": "results",
    "Shot": "specs",
    "ShotList": "specs",
    "ShotListError": "exceptions",
    "ShotResult": "results",
    "Storyboard": "specs",
    "SubmitOutcomeUnknown": "exceptions",
    "SubmitRequest": "backend",
    "UrlImage": "specs",
    "__version__": "_version",
    "cut": "cut",
    "init_shot_list": "scaffold",
    "load": "loader",
    "load_bytes": "loader",
    "loads": "loader",
    "plan": "plan",
    "render": "run",
    "render_sync": "run",
    "shot_list_schema": "schema",
    "structure": "loader",
    "unstructure": "loader",
    "write_contact_sheet": "contact_sheet",
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


class _Package(types.ModuleType):
    """The package, which keeps the functions `plan` and `cut` over their modules' names.

    Importing the submodule ``kling_pipe.plan`` binds it as the package's attribute
    ``plan``; the public name is the function of the same name, so that is bound instead.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
