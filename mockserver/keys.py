"""Typed application and request keys."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from mockserver.faults import Drawn
from mockserver.state import MockState
from mockserver.tasks import Provenance

STATE: Final = web.AppKey("state", MockState)

#: The faults drawn for a request, read by handlers that honour them (submit, downloads).
DRAWN: Final = web.RequestKey("drawn", Drawn)
#: Set when the connection was closed instead of answered, so the journal shows no status.
DROPPED: Final = web.RequestKey("dropped", bool)
#: The prediction a request concerned, for the journal.
TASK_ID: Final = web.RequestKey("task_id", str)
#: Set when the client went away before the answer was ready (nobody got it).
CLIENT_GONE: Final = web.RequestKey("client_gone", bool)
#: Set when a ``gateway_error`` fault replaced the answer with a gateway's HTML page.
GATEWAY: Final = web.RequestKey("gateway", bool)
#: A submit's record of the tasks it created or provoked, settled when the request ends.
PROVENANCE: Final = web.RequestKey("provenance", Provenance)
