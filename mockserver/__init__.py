"""A faithful, stateful, fault-injecting WaveSpeed v3 mock server with real MP4 outputs.

Names are imported on first use, so that loading the pytest plugin (``mockserver.plugin``)
in any test session stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mockserver.app import create_app
    from mockserver.clock import Clock, ManualClock, SystemClock
    from mockserver.config import (
        DEFAULT_API_KEY,
        AfterPolls,
        FixedTime,
        Manual,
        MockConfig,
        RandomTime,
    )
    from mockserver.faults import FaultConfig, FaultKind, FaultRule, RouteClass
    from mockserver.server import MockServer
    from mockserver.threaded import ThreadedMockServer

__all__ = [
    "DEFAULT_API_KEY",
    "AfterPolls",
    "Clock",
    "FaultConfig",
    "FaultKind",
    "FaultRule",
    "FixedTime",
    "Manual",
    "ManualClock",
    "MockConfig",
    "MockServer",
    "RandomTime",
    "RouteClass",
    "SystemClock",
    "ThreadedMockServer",
    "create_app",
]

_HOMES = {
    "create_app": "app",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "DEFAULT_API_KEY": "config",
    "AfterPolls": "config",
    "FixedTime": "config",
    "Manual": "config",
    "MockConfig": "config",
    "RandomTime": "config",
    "FaultConfig": "faults",
    "FaultKind": "faults",
    "FaultRule": "faults",
    "RouteClass": "faults",
    "MockServer": "server",
    "ThreadedMockServer": "threaded",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mockserver' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mockserver.{home}"), name)
