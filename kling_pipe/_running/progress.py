"""Progress for people, plain lines for machines.

On a terminal a live table (rich) shows a row per shot; without one (CI, a pipe) every state
change is one plain line, so logs stay greppable. Both implement `scheduler.Reporter`.

Both show the scheduler's detail beside the state, so that a shot that waits says what it
waits for: ``submitting: waiting for the rate limit (12 s)``, ``queued: waiting for shot
"storm"``. The table also shows how long each shot has been in its current state, since a
figure inside a detail is only true when it is sent.

rich loads with the first live table, not with this module: `render()` reports to nobody by
default (`QuietReporter`) and a library caller's process never pays for the display.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Self, TextIO

from kling_pipe._decisions.results import FINAL_STATES, ShotResult
from kling_pipe._shotlist.rules import ZERO_USD

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

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


def one_line(detail: str) -> str:
    """Return *detail* on one line: a server's multi-line error must not break a row or a log."""
    return " ".join(detail.split())


def describe_state(state: str, detail: str = "") -> str:
    """Return ``state: detail``, or the bare state when there is no detail."""
    detail = one_line(detail)
    return f"{state}: {detail}" if detail else state


class LineReporter:
    """One line per state change, prefixed with seconds since the run began.

    A change that repeats the shot's last state and detail word for word is not printed
    again, so a scheduler may re-send a wait without filling the log. Once the stream
    cannot be written (its reader went away: ``run ... 2>&1 | head``), lines stop and the
    run goes on: shots already paid for are not abandoned for want of an audience.
    """

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream: TextIO | None = stream
        self._clock = clock
        self._started = clock()
        self._last: dict[str, tuple[str, str]] = {}

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Print the shot's new state and what it is doing or waiting for."""
        shown = (result.state, one_line(detail))
        if self._stream is None or self._last.get(result.id) == shown:
            return
        self._last[result.id] = shown
        elapsed = self._clock() - self._started
        line = f"[{elapsed:7.1f}s] {result.id}: {describe_state(*shown)}"
        try:
            print(line, file=self._stream)
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None

    def spent_changed(self, spent: Decimal) -> None:
        """Money shows in the summary; a line per change would only add noise."""


class LiveReporter:
    """A live table on a terminal: a row per shot, elapsed time and money committed.

    The ``time`` column shows how long a shot has been in its current state (and detail)
    while it is in progress, and how long it took once it has ended.
    """

    def __init__(
        self,
        title: str,
        shot_ids: list[str],
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.console import Console  # noqa: PLC0415 - the display loads when it is shown
        from rich.live import Live  # noqa: PLC0415

        self._title = title
        self._clock = clock
        self._rows: dict[str, tuple[ShotResult | None, str]] = dict.fromkeys(shot_ids, (None, ""))
        #: When each shot entered the state and detail it shows.
        self._since: dict[str, float] = {}
        self._spent = ZERO_USD
        self._started = clock()
        self._entered = False
        self._live = Live(
            get_renderable=self._render,
            console=console or Console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )

    def __enter__(self) -> Self:
        # Drawn from the run's first change on, not from here: the spend question (`run
        # --backend wavespeed` asks on this terminal first) must not be drawn over, its
        # "[y/N]" not read as markup, and a plan refused draws no empty table.
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        if self._live.is_started:
            self._live.__exit__(exc_type, exc, tb)

    def _draw(self) -> None:
        """Start the live table, inside the ``with`` block only, on the first change."""
        if self._entered and not self._live.is_started:
            self._started = self._clock()
            self._live.start(refresh=True)

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Update the shot's row."""
        self._draw()
        detail = one_line(detail)
        previous, previous_detail = self._rows.get(result.id, (None, ""))
        shown_before = None if previous is None else (previous.state, previous_detail)
        if shown_before != (result.state, detail) or result.id not in self._since:
            self._since[result.id] = self._clock()
        self._rows[result.id] = (result, detail)

    def spent_changed(self, spent: Decimal) -> None:
        """Update the money line."""
        self._draw()
        self._spent = spent

    def _render(self) -> Table:
        from rich.table import Table  # noqa: PLC0415 - loaded by __init__ already
        from rich.text import Text  # noqa: PLC0415

        now = self._clock()
        table = Table(
            title=f"{self._title}  {now - self._started:.0f} s  committed {self._spent} USD",
            title_justify="left",
        )
        # One line per shot whatever the terminal's width: only the detail column may
        # shrink, and its text is then cut short (its start says what the shot waits for).
        for column in ("shot", "state", "time", "polls"):
            table.add_column(column, no_wrap=True)
        table.add_column("detail")
        for shot_id, (result, detail) in self._rows.items():
            state = "queued" if result is None else result.state
            since = self._since.get(shot_id)
            if result is not None and result.state in FINAL_STATES:
                took = f"{result.seconds:.1f} s"
            else:
                took = "" if since is None else f"{now - since:.0f} s"
            polls = "" if result is None or not result.polls else str(result.polls)
            # Text, not markup: a detail such as "[Errno 111]" or "shots[2]" is shown as is.
            table.add_row(
                Text(shot_id),
                Text(state, style=_STYLES.get(state, "")),
                took,
                polls,
                Text(detail, no_wrap=True, overflow="ellipsis"),
            )
        return table
