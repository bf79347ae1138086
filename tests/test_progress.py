"""Progress: a shot that waits says what it waits for, in plain lines and in the live table."""

from __future__ import annotations

import io
from decimal import Decimal

from rich.console import Console

from kling_pipe._decisions.results import ShotResult
from kling_pipe._running.progress import LineReporter, LiveReporter, describe_state


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shot(shot_id: str, state: str, **fields: object) -> ShotResult:
    return ShotResult(id=shot_id, duration=5, state=state, **fields)  # type: ignore[arg-type]


def test_a_state_with_a_detail_reads_state_colon_detail():
    assert describe_state("submitting", "waiting for the rate limit (12 s)") == (
        "submitting: waiting for the rate limit (12 s)"
    )
    assert describe_state("processing") == "processing"


def test_a_line_says_what_a_waiting_shot_waits_for():
    """Each kind of wait the scheduler reports comes out as one readable line."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, clock=clock)
    clock.now += 1.5
    reporter.shot_changed(shot("storm", "queued"), 'waiting for shot "opening"')
    reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (12 s)")
    reporter.shot_changed(
        shot("dusk", "submitting"),
        "settling a lost answer through the history (window closes in 40 s)",
    )
    reporter.shot_changed(shot("dusk", "processing"), "task abc123")
    assert stream.getvalue().splitlines() == [
        '[    1.5s] storm: queued: waiting for shot "opening"',
        "[    1.5s] sea: submitting: waiting for the rate limit (12 s)",
        "[    1.5s] dusk: submitting: settling a lost answer through the history "
        "(window closes in 40 s)",
        "[    1.5s] dusk: processing: task abc123",
    ]


def test_a_repeated_wait_is_one_line_not_one_per_report():
    """The scheduler may re-send a wait; the log shows it once, and the next change again."""
    stream = io.StringIO()
    reporter = LineReporter(stream, clock=FakeClock())
    for _ in range(3):
        reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (12 s)")
    reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (4 s)")
    reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (4 s)")
    reporter.shot_changed(shot("sea", "processing"))
    assert [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "sea: submitting: waiting for the rate limit (12 s)",
        "sea: submitting: waiting for the rate limit (4 s)",
        "sea: processing",
    ]


def test_a_multi_line_error_stays_on_one_line():
    stream = io.StringIO()
    LineReporter(stream, clock=FakeClock()).shot_changed(
        shot("sea", "failed"), "HTTP 500:\n  upstream\tbroke"
    )
    assert stream.getvalue().endswith("] sea: failed: HTTP 500: upstream broke\n")


def render(reporter: LiveReporter, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(reporter._render())  # what the live display draws
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def row(text: str, shot_id: str) -> str:
    return next(line for line in text.splitlines() if f" {shot_id} " in line)


def test_the_live_table_shows_each_wait_and_how_long_it_has_lasted():
    clock = FakeClock()
    reporter = LiveReporter("lighthouse", ["opening", "storm", "sea"], clock=clock)
    reporter.shot_changed(shot("opening", "processing", polls=2), "task abc123")
    reporter.shot_changed(shot("storm", "queued"), 'waiting for shot "opening"')
    reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (12 s)")
    clock.now += 7
    text = render(reporter)
    assert 'waiting for shot "opening"' in row(text, "storm")
    sea = row(text, "sea")
    assert "submitting" in sea
    assert "waiting for the rate limit (12 s)" in sea
    assert " 7 s " in sea
    assert "task abc123" in row(text, "opening")


def test_the_time_column_restarts_when_the_wait_changes():
    """How long in *this* state and detail: a wait that turns into another starts from 0 s."""
    clock = FakeClock()
    reporter = LiveReporter("b", ["sea"], clock=clock)
    reporter.shot_changed(shot("sea", "submitting"), "waiting for the rate limit (12 s)")
    clock.now += 12
    reporter.shot_changed(
        shot("sea", "submitting"),
        "settling a lost answer through the history (window closes in 40 s)",
    )
    clock.now += 3
    assert " 3 s " in row(render(reporter), "sea")


def test_a_detail_with_brackets_is_shown_as_written_not_as_markup():
    """Errors such as "[Errno 111]" or key paths like "shots[2]" must not vanish as markup."""
    reporter = LiveReporter("b", ["sea"], clock=FakeClock())
    reporter.shot_changed(shot("sea", "failed", seconds=1.0), "[Errno 111] refused [bold]x[/]")
    assert "[Errno 111] refused [bold]x[/]" in row(render(reporter), "sea")


def test_a_long_wait_keeps_its_row_on_one_line_on_a_narrow_terminal():
    reporter = LiveReporter("b", ["sea", "dusk"], clock=FakeClock())
    reporter.shot_changed(shot("sea", "submitting"), "settling a lost answer " * 10)
    text = render(reporter, width=70)
    lines = text.splitlines()
    sea = lines.index(row(text, "sea"))
    assert " dusk " in lines[sea + 1]
    assert "settling" in lines[sea]


def test_the_title_shows_the_money_committed():
    reporter = LiveReporter("lighthouse", ["sea"], clock=FakeClock())
    reporter.spent_changed(Decimal("0.420"))
    assert "committed 0.420 USD" in render(reporter)


def test_the_live_table_is_drawn_from_the_first_change_not_while_the_user_is_asked():
    """`run` asks before spending inside the reporter's block: nothing may draw over it."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with LiveReporter("b", ["sea"], console=console, clock=FakeClock()) as reporter:
        assert screen.getvalue() == ""  # the question would be asked here
        reporter.shot_changed(shot("sea", "submitting"))
        assert " sea " in screen.getvalue()
    assert "submitting" in screen.getvalue()


def test_a_live_table_never_entered_draws_nothing():
    screen = io.StringIO()
    reporter = LiveReporter("b", ["sea"], console=Console(file=screen, force_terminal=True))
    reporter.shot_changed(shot("sea", "done", seconds=1.0))
    reporter.spent_changed(Decimal("0.420"))
    assert screen.getvalue() == ""


class GoneReader(io.StringIO):
    """A stream whose reader went away after *lines* lines."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= text.count("\n")
        return super().write(text)


def test_a_closed_progress_stream_stops_the_lines_not_the_run():
    """`run ... 2>&1 | head -1`: reporting must never raise into the scheduler."""
    stream = GoneReader(lines=1)
    reporter = LineReporter(stream, clock=FakeClock())
    reporter.shot_changed(shot("sea", "uploading"))
    reporter.shot_changed(shot("sea", "submitting"))
    reporter.shot_changed(shot("sea", "processing"), "task abc")
    assert stream.getvalue() == "[    0.0s] sea: uploading\n"


def on_a_terminal(reporter: LiveReporter, height: int, width: int = 120) -> str:
    """What the live display draws on a terminal *height* lines tall."""
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    reporter._console = console  # the size the table fits comes from its console
    console.print(reporter._render())
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def long_board() -> LiveReporter:
    """22 takes: 12 done, 1 failed, 3 in flight at the bottom of the list, 6 queued."""
    ids = [f"shot-{n:02d}" for n in range(22)]
    reporter = LiveReporter("harbour", ids, clock=FakeClock())
    for sid in ids[:12]:
        reporter.shot_changed(shot(sid, "done", seconds=40.0))
    reporter.shot_changed(shot(ids[12], "failed", seconds=3.0), "HTTP 500")
    for sid in ids[13:19]:
        reporter.shot_changed(shot(sid, "queued"))
    for sid in ids[19:]:
        reporter.shot_changed(shot(sid, "processing", polls=4), "task abc")
    return reporter


def test_the_heading_says_how_many_takes_are_done_of_how_many():
    text = on_a_terminal(long_board(), height=60)
    assert "harbour  12/22 done, 1 failed" in text.splitlines()[0]
    assert all(f" shot-{n:02d} " in text for n in range(22))  # it fits: every row shown


def test_a_table_taller_than_the_terminal_keeps_every_take_in_flight_in_view():
    text = on_a_terminal(long_board(), height=16)
    lines = text.splitlines()
    assert len(lines) <= 16
    assert "12/22 done, 1 failed" in lines[0]
    for n in (19, 20, 21):  # the takes being rendered, last in the list
        assert " processing " in row(text, f"shot-{n:02d}")
    assert " shot-00 " not in text  # finished rows are the first to fold
    assert " shot-13 " in text  # the next to start stays in view
    folded = row(text, "...")
    assert "12 done" in folded
    assert "not shown (terminal too short)" in folded


def test_on_a_very_short_terminal_failed_and_last_queued_rows_fold_too():
    text = on_a_terminal(long_board(), height=11)
    folded = row(text, "...")
    assert "12 done, 1 failed" in folded
    assert "queued" in folded
    for n in (19, 20, 21):
        assert f" shot-{n:02d} " in text


def test_the_rows_are_the_takes_the_run_renders_not_the_shot_lists():
    """A shot whose one take is its kept pick, take 2, is the row ``river#2``."""
    reporter = LiveReporter("b", ["river"], clock=FakeClock())
    reporter.run_started([shot("dusk", "cached"), shot("river#2", "queued")])
    text = render(reporter)
    assert " river#2 " in text
    assert " river " not in text
    assert "1/2 done" in text
