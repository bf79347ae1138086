"""Progress for people, plain lines for machines.

On a terminal a live table (rich) shows a row per shot; without one (CI, a pipe) every state
change is one plain line, so logs stay greppable. Both implement `scheduler.Reporter`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from kling_pipe.results import FINAL_STATES, ShotResult

_STYLES = {
    "queued": "dim",
    "uploading": "cyan",
    "submitting": "cyan",
    "processing": "yellow",
    "downloading": "blue",
    "done": "green",
    "cached": "green",
    "failed": "bold red",
    "uncertain": "bold magenta",
    "skipped": "dim red",
    "cancelled": "dim red",
}


class QuietReporter:
    """Reports nothing as it happens (`-q`); the summary still tells the outcome."""

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Ignore the change."""

    def spent_changed(self, spent: Decimal) -> None:
        """Ignore the change."""


class LineReporter:
    """One line per state change, prefixed with seconds since the run began."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = time.monotonic()

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Print the shot's new state."""
        elapsed = time.monotonic() - self._started
        extra = f" ({detail})" if detail else ""
        print(f"[{elapsed:7.1f}s] {result.id}: {result.state}{extra}", file=self._stream)
        self._stream.flush()

    def spent_changed(self, spent: Decimal) -> None:
        """Money shows in the summary; a line per change would only add noise."""


class LiveReporter:
    """A live table on a terminal: a row per shot, elapsed time and money committed."""

    def __init__(self, title: str, shot_ids: list[str], console: Console | None = None) -> None:
        self._title = title
        self._rows: dict[str, tuple[ShotResult | None, str]] = dict.fromkeys(shot_ids, (None, ""))
        self._since: dict[str, float] = {}
        self._spent = Decimal("0.000")
        self._started = time.monotonic()
        self._live = Live(
            get_renderable=self._render,
            console=console or Console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Update the shot's row."""
        self._rows[result.id] = (result, detail)
        self._since.setdefault(result.id, time.monotonic())

    def spent_changed(self, spent: Decimal) -> None:
        """Update the money line."""
        self._spent = spent

    def _render(self) -> Table:
        elapsed = time.monotonic() - self._started
        table = Table(
            title=f"{self._title}  {elapsed:.0f} s  committed {self._spent} USD",
            title_justify="left",
        )
        for column in ("shot", "state", "time", "polls", "detail"):
            table.add_column(column)
        now = time.monotonic()
        for shot_id, (result, detail) in self._rows.items():
            state = "queued" if result is None else result.state
            since = self._since.get(shot_id)
            if result is not None and result.state in FINAL_STATES:
                took = f"{result.seconds:.1f} s"
            else:
                took = "" if since is None else f"{now - since:.0f} s"
            polls = "" if result is None or not result.polls else str(result.polls)
            table.add_row(shot_id, f"[{_STYLES[state]}]{state}[/]", took, polls, detail)
        return table
