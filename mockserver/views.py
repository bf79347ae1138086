"""JSON views of the mock's state for the admin routes and for `MockServer`'s methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mockserver.state import MockState


def journal(state: MockState, since: int = 0) -> list[dict[str, Any]]:
    """Return journal entries with a sequence number above *since*."""
    return [entry.as_dict() for entry in state.journal.entries(since)]


def stats(state: MockState) -> dict[str, Any]:
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


def ledger(state: MockState) -> dict[str, Any]:
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
