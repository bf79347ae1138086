"""The mock's own routes under ``/_mock``: introspection and control for tests.

They are not WaveSpeed's: they need no API key, meet no faults and stay out of the journal.

The JSON views of the mock's state (`journal_view`, `stats_view`, `ledger_view`) live here
too, for these routes and for `MockServer`'s methods.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import cattrs
from aiohttp import web

from mockserver.clock import ManualClock
from mockserver.faults import TASK_ERRORS, FaultConfig
from mockserver.validation import bad, json_object
from mockserver.wire import STATE, ApiError, envelope, origin

if TYPE_CHECKING:
    from mockserver.state import MockState


FAULTS: Final = cattrs.Converter(forbid_extra_keys=True)


def faults_document(config: FaultConfig) -> dict[str, Any]:
    """Return a fault config as JSON-ready data (routes sorted for stable output)."""
    document: dict[str, Any] = FAULTS.unstructure(config)
    for rule in document["rules"]:
        rule["routes"] = sorted(rule["routes"])
        rule["codes"] = list(rule["codes"])
    return document


def parse_faults(document: dict[str, Any]) -> FaultConfig:
    """Read a fault config; ApiError 400 naming the field when it is wrong."""
    try:
        return FAULTS.structure(document, FaultConfig)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            message = "; ".join(cattrs.transform_error(exc, path="faults"))
        else:
            message = str(exc)
        raise ApiError(400, message) from exc


async def get_journal(request: web.Request) -> web.Response:
    """List journal entries; ``?since=SEQ`` gives only newer ones."""
    try:
        since = int(request.query.get("since", "0"))
    except ValueError as exc:
        raise bad("since", "must be an integer") from exc
    return envelope(journal_view(request.app[STATE], since))


async def get_stats(request: web.Request) -> web.Response:
    """Answer counters, concurrency, injected faults and per-task times."""
    return envelope(stats_view(request.app[STATE]))


async def get_ledger(request: web.Request) -> web.Response:
    """Answer the balance and every charge and refund."""
    return envelope(ledger_view(request.app[STATE]))


async def reset(request: web.Request) -> web.Response:
    """Forget all tasks, uploads, outputs and counters; restore the configured faults."""
    request.app[STATE].reset()
    return envelope({"reset": True})


async def get_faults(request: web.Request) -> web.Response:
    """Answer the fault rules in force."""
    return envelope(faults_document(request.app[STATE].faults.config))


async def set_faults(request: web.Request) -> web.Response:
    """Replace the fault rules (``{"seed": N, "rules": [...]}``); random streams restart."""
    state = request.app[STATE]
    state.faults.configure(parse_faults(json_object(await request.read())))
    return envelope(faults_document(state.faults.config))


async def finish_task(request: web.Request) -> web.Response:
    """Complete a task now, or fail it with ``{"code": N, "error": "..."}`` on ``/fail``."""
    state = request.app[STATE]
    task_id = request.match_info["task_id"]
    code: int | None = None
    error = ""
    if request.match_info["outcome"] == "fail":
        body = json_object(await request.read())
        code = body.get("code", 5000)
        error = body.get("error", "")
        if code not in TASK_ERRORS:
            raise bad("code", f"must be a documented task code: {', '.join(map(str, TASK_ERRORS))}")
        if not isinstance(error, str):
            raise bad("error", "must be a string")
    try:
        task = state.finish(task_id, code=code, error=error)
    except KeyError as exc:
        raise ApiError(404, f"prediction not found: {task_id}") from exc
    except ValueError as exc:
        raise ApiError(409, str(exc)) from exc
    return envelope(state.prediction(task, origin(request)))


async def expire_output(request: web.Request) -> web.Response:
    """Make a completed task's output expire: its URL answers 404 from now on."""
    state = request.app[STATE]
    task_id = request.match_info["task_id"]
    try:
        task = state.expire_output(task_id)
    except KeyError as exc:
        raise ApiError(404, f"prediction not found: {task_id}") from exc
    except ValueError as exc:
        raise ApiError(409, str(exc)) from exc
    return envelope(state.prediction(task, origin(request)))


async def advance_clock(request: web.Request) -> web.Response:
    """Move a manual clock forward by ``{"seconds": S}``; 409 on the real clock."""
    state = request.app[STATE]
    if not isinstance(state.clock, ManualClock):
        raise ApiError(409, "clock: this mock runs on the real clock")
    seconds = json_object(await request.read()).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise bad("seconds", "must be a number of seconds, not negative")
    state.clock.advance(float(seconds))
    state.refresh()
    return envelope({"now": state.clock.now()})


async def get_tasks(request: web.Request) -> web.Response:
    """List every task with its input and origin: the request that made it, or a fault."""
    return envelope(request.app[STATE].describe_tasks())


async def get_options(request: web.Request) -> web.Response:
    """Answer the options that may change at run time (history lag, clock offset)."""
    return envelope(request.app[STATE].options())


async def set_options(request: web.Request) -> web.Response:
    """Change run-time options, e.g. ``{"history_lag_s": 30, "clock_offset_s": -120}``."""
    state = request.app[STATE]
    try:
        return envelope(state.set_options(**json_object(await request.read())))
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from exc


async def set_balance(request: web.Request) -> web.Response:
    """Set the balance (``{"balance_usd": "12.50"}``), e.g. to test insufficient funds."""
    state = request.app[STATE]
    value = json_object(await request.read()).get("balance_usd")
    try:
        amount = Decimal(str(value))
    except ArithmeticError as exc:
        raise bad("balance_usd", "must be a decimal number") from exc
    if not amount.is_finite() or amount < 0:
        raise bad("balance_usd", "must be a finite amount, not negative")
    state.ledger.balance_usd = amount
    return envelope(ledger_view(state))


ROUTES: Final = [
    web.get("/_mock/journal", get_journal),
    web.get("/_mock/stats", get_stats),
    web.get("/_mock/ledger", get_ledger),
    web.post("/_mock/reset", reset),
    web.get("/_mock/faults", get_faults),
    web.post("/_mock/faults", set_faults),
    web.get("/_mock/tasks", get_tasks),
    web.post("/_mock/tasks/{task_id}/{outcome:complete|fail}", finish_task),
    web.post("/_mock/tasks/{task_id}/expire", expire_output),
    web.get("/_mock/options", get_options),
    web.post("/_mock/options", set_options),
    web.post("/_mock/clock/advance", advance_clock),
    web.post("/_mock/balance", set_balance),
]


def journal_view(state: MockState, since: int = 0) -> list[dict[str, Any]]:
    """Return journal entries with a sequence number above *since*."""
    return [entry.as_dict() for entry in state.journal.entries(since)]


def stats_view(state: MockState) -> dict[str, Any]:
    """Return counters, concurrency, faults, renders and per-task times.

    Task times are the clock's epoch seconds; ``clock`` gives a matching monotonic reading
    so in-process callers can convert them.
    """
    state.refresh()
    counts = state.journal.counts
    renders = state.renderer.times
    return {
        "requests": counts.total(),
        "submits": counts["submit"],
        "polls": counts["poll"],
        "uploads": counts["upload"],
        "downloads": counts["download"],
        "tasks_created": len(state.book.tasks),
        "current_concurrent": state.book.running(),
        "peak_concurrent": state.book.peak_concurrent,
        "faults": dict(state.faults.injected),
        "pending_creations": state.pending_creations,
        "balance_usd": str(state.ledger.balance_usd),
        "renders": {
            "count": len(renders),
            "total_s": sum(renders),
            "max_s": max(renders, default=0.0),
        },
        "webhooks": [delivery.as_dict() for delivery in state.deliveries],
        "clock": {"wall": state.clock.now(), "monotonic": state.clock.monotonic()},
        "tasks": {
            task.id: {
                "model": task.model,
                "status": task.status.value,
                "processing_s": task.processing_s,
                "submitted_at": task.created_at,
                "started_at": task.started_at,
                "completed_at": task.ended_at,
                "polls": task.polls,
                "code": task.code,
            }
            for task in state.book.tasks.values()
        },
    }


def ledger_view(state: MockState) -> dict[str, Any]:
    """Return the balance and every charge and refund; amounts are exact decimal strings."""
    return {
        "balance_usd": str(state.ledger.balance_usd),
        "entries": [
            {
                "seq": e.seq,
                "at": e.at,
                "kind": e.kind.value,
                "task_id": e.task_id,
                "amount_usd": str(e.amount_usd),
                "balance_usd": str(e.balance_usd),
            }
            for e in state.ledger.entries
        ],
    }
