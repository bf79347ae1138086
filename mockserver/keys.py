"""Typed application and request keys."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from mockserver.faults import Drawn
from mockserver.state import MockState

STATE: Final = web.AppKey("state", MockState)

#: The faults drawn for a request, read by handlers that honour them (submit, downloads).
DRAWN: Final = web.RequestKey("drawn", Drawn)
#: Set when the connection was closed instead of answered, so the journal shows no status.
DROPPED: Final = web.RequestKey("dropped", bool)
#: The prediction a request concerned, for the journal.
TASK_ID: Final = web.RequestKey("task_id", str)
