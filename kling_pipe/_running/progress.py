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

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TextIO

from kling_pipe._decisions.results import FINAL_STATES, ShotResult
from kling_pipe._shotlist.rules import ZERO_USD

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.live import Live

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


#: States of a take that is being worked on: its row is never hidden.
_IN_FLIGHT: Final = frozenset({"uploading", "submitting", "processing", "downloading"})
#: Rows hidden first when the table is taller than the terminal, then the next group.
_HIDDEN_FIRST: Final = (
    frozenset({"done", "cached", "skipped", "cancelled"}),
    frozenset({"failed", "uncertain"}),
)
#: Lines the display takes besides the rows: the progress line, the table's three borders
#: and its header, and one for the cursor below it.
_TABLE_LINES: Final = 6


class LiveReporter:
    """A live table on a terminal: a row per take, elapsed time, progress and money.

    A line above the table says how far the run is (``12/22 done, 1 failed``), for how long,
    and the money committed.
    Rows come from the run's own takes (`run_started`) and from any take reported, so a row
    is always a take the run renders: a shot whose one take is its picked take 2 shows
    ``river#2``, not an empty ``river``. When the rows do not fit the terminal, finished
    ones are folded into one line (then failed ones, then queued ones from the bottom) so
    that every take in flight stays in view.

    The ``time`` column shows how long a shot has been in its current state (and detail)
    while it is in progress, and how long it took once it has ended.

    The display starts with the first report, not on entering the context: a question asked
    before the run starts (`paused`) is never drawn over.
    """

    def __init__(
        self,
        title: str,
        shot_ids: Iterable[str] = (),
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.console import Console  # noqa: PLC0415 - the display loads when it is shown

        self._title = title
        self._clock = clock
        #: Rows to show before any report (`shot_ids`); `run_started` replaces them.
        self._rows: dict[str, tuple[ShotResult | None, str]] = dict.fromkeys(shot_ids, (None, ""))
        #: When each shot entered the state and detail it shows.
        self._since: dict[str, float] = {}
        self._spent = ZERO_USD
        self._started = clock()
        self._console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._entered = False
        self._paused = False

    def __enter__(self) -> Self:
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        self._stop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Keep the table off the terminal meanwhile (a question is asked), then go on."""
        self._paused = True
        self._stop()
        try:
            yield
        finally:
            self._paused = False

    def run_started(self, results: Sequence[ShotResult]) -> None:
        """Show a row for each take of the run, in the plan's order, and count them."""
        with self._lock:
            rows: dict[str, tuple[ShotResult | None, str]] = {
                r.id: (r, self._rows.get(r.id, (None, ""))[1]) for r in results
            }
            for key, row in self._rows.items():  # a take reported before the run said so
                if key not in rows and row[0] is not None:
                    rows[key] = row
            self._rows = rows
        self._show()

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Update the shot's row (a row of its own for a take not shown yet)."""
        detail = one_line(detail)
        previous, previous_detail = self._rows.get(result.id, (None, ""))
        shown_before = None if previous is None else (previous.state, previous_detail)
        if shown_before != (result.state, detail) or result.id not in self._since:
            self._since[result.id] = self._clock()
        with self._lock:
            self._rows[result.id] = (result, detail)
        self._show()

    def spent_changed(self, spent: Decimal) -> None:
        """Update the money line."""
        self._spent = spent

    def _show(self) -> None:
        """Start the display at the first report, unless paused or outside the context."""
        if self._live is not None or self._paused or not self._entered:
            return
        from rich.live import Live  # noqa: PLC0415 - loaded with the console

        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=4,
            transient=False,
        )
        self._live.start(refresh=True)

    def _stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _render(self) -> Group:
        from rich.console import Group  # noqa: PLC0415 - loaded by __init__ already
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        now = self._clock()
        with self._lock:  # the refresh thread draws while the event loop adds rows
            rows = list(self._rows.items())
        # The progress line on a line of its own, never wrapped: the rows below fit the rest.
        heading = Text(
            f"{self._title}  {_progress(rows)}  {now - self._started:.0f} s  "
            f"committed {self._spent} USD",
            no_wrap=True,
            overflow="ellipsis",
        )
        table = Table()
        # One line per shot whatever the terminal's width: only the detail column may
        # shrink, and its text is then cut short (its start says what the shot waits for).
        for column in ("shot", "state", "time", "polls"):
            table.add_column(column, no_wrap=True)
        table.add_column("detail")
        shown, hidden = _fit(rows, self._console.size.height - _TABLE_LINES)
        for shot_id, (result, detail) in shown:
            state = _state(result)
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
        if hidden:
            told = ", ".join(f"{n} {state}" for state, n in hidden.items())
            table.add_row(Text("..."), "", "", "", Text(f"{told} not shown (terminal too short)"))
        return Group(heading, table)


Row = tuple[str, tuple[ShotResult | None, str]]


def _state(result: ShotResult | None) -> str:
    return "queued" if result is None else result.state


def _progress(rows: Sequence[Row]) -> str:
    """Say how far the run is: ``12/22 done``, then the failed and other endings if any."""
    states = Counter(_state(result) for _, (result, _) in rows)
    done = states["done"] + states["cached"]
    parts = [f"{done}/{len(rows)} done"]
    parts += [
        f"{states[s]} {s}" for s in ("failed", "uncertain", "skipped", "cancelled") if states[s]
    ]
    return ", ".join(parts)


def _fit(rows: Sequence[Row], room: int) -> tuple[list[Row], dict[str, int]]:
    """Return the rows to show in *room* lines, and how many of each state are left out.

    Takes in flight are always shown. Left out first: finished rows from the top, then
    failed ones from the top, then queued ones from the bottom; one line says what is out.
    """
    if len(rows) <= room:
        return list(rows), {}
    room = max(room - 1, 0)  # the line that says what is not shown
    keep = set(range(len(rows)))
    groups = [*_HIDDEN_FIRST, frozenset({"queued"})]
    for group in groups:
        candidates = [i for i, (_, (result, _)) in enumerate(rows) if _state(result) in group]
        if group == groups[-1]:
            candidates.reverse()  # the next to start stay in view
        for i in candidates:
            if len(keep) <= room:
                break
            keep.discard(i)
    hidden = Counter(_state(rows[i][1][0]) for i in range(len(rows)) if i not in keep)
    return [row for i, row in enumerate(rows) if i in keep], dict(hidden)
