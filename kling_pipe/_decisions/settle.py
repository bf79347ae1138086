"""Settling a submit whose answer was lost: its window on the server's clock, and each verdict.

Pure: the shell (`kling_pipe._running.submitting`) reads the history and proves candidates;
what those reads mean is decided here, by `settle_step`, from the window, the latest reading
and the clock. The argument for why no sequence of readings pays twice is in
docs/submit-protocol.md; the rules, in the order `settle_step` applies them:

1. **Adopt** nothing before the window closed: a teammate's task with the same first frame
   may still appear in the lagging history beside ours, and the proof cannot tell the two
   apart (adopting the wrong one would give the shot another's video and leave our paid
   task unknown).
2. **Uncertain early** when nothing can change that verdict, without waiting for the window:
   a finished, unclaimed task sits in it that the proof could not decide (the shot cannot be
   proved at all: a text-to-video shot has no first frame to compare, an image-to-video
   shot's frame may be a URL that could not be fetched; or its video could not be compared).
   A candidate still running is waited for: it may yet fail, which would leave no task, and
   nothing else can change the verdict. A finished candidate's verdict never changes, so
   no later reading can leave one proved task alone, nor show "no task": waiting would only
   stall the shot. The candidates still running are named with the finished ones.

Every uncertain verdict names its candidates, in its `why` and in `candidates`: the user is
told which tasks to look at.
3. **Conclude** only on a reading that *started* after the window closed (its end plus the
   history's lag), on a known server clock, that covered the whole window (every page) and
   left no candidate running nor any other run's like submit on the wire: **adopt** the one
   candidate proved to be the shot's (its video shows the shot's frames) when it is the only
   one that could be; uncertain when several could (two proved, or one proved beside one
   undecided); **resend** when none can be ours and the window was placed on the
   clock as it was when the intent was written; otherwise uncertain, since a window placed on
   a clock learned later may miss the task (the machine's clock may have been corrected).
4. **Give up** (uncertain, naming what is left) once the window closed `pending_limit` ago.
5. Otherwise **wait** and read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

import attrs

#: The defaults of the act window and the history lag, also shown by the command line.
ACT_WINDOW = timedelta(minutes=5)
HISTORY_LAG = timedelta(minutes=2)

#: What a reading says of one task in the window.
#: match / mismatch / undecided: the proof's verdict on a finished task; pending: still
#: running (its verdict will come); wire: another submit on this machine with the shot's first
#: frame, on the wire or left uncertain, may have made this very task (`may_have_made`).
CandidateState = Literal["match", "mismatch", "undecided", "pending", "wire"]


@attrs.frozen(kw_only=True)
class SettleOptions:
    """How long a lost answer is given before the history can say the task does not exist.

    The defaults are generous: a lost answer is rare and it delays only its own shot (others
    keep being submitted). Its task, proved, is adopted once the window closed.
    """

    #: The longest the API may take to create a task after the request reached it (we count
    #: from the moment we gave up on the answer): a server that acts late, several times
    #: over our own answer time-out.
    act_window: timedelta = ACT_WINDOW
    #: The client's answer time-out: a request recorded by a run that was killed ended by
    #: its send time plus this (`kling_pipe._backends.wavespeed.client.Timeouts.api_total_s`).
    answer_timeout: timedelta = timedelta(seconds=60)
    #: How long a new task may take to appear in the history after its creation.
    history_lag: timedelta = HISTORY_LAG
    #: Error allowed in our estimate of the server's clock (``Date`` has whole seconds).
    slack: timedelta = timedelta(seconds=5)
    #: How far our clock may have been off when an intent was written without a known server
    #: clock (an intent of an older version, a server that sends no ``Date``): its window is
    #: widened by this on both sides, and it never concludes "no task".
    clock_doubt: timedelta = timedelta(hours=1)
    #: Pause between two readings of the history while settling.
    poll_s: float = 5.0
    #: How long after the window closed a candidate may stay pending before the shot is
    #: left uncertain rather than waited for.
    pending_limit: timedelta = timedelta(hours=1)
    #: Submits sent again after the history showed that the lost one created nothing.
    max_resends: int = 6


@attrs.frozen(kw_only=True)
class Window:
    """Where, on the server's clock, the lost submit's task can have been created."""

    start: datetime
    end: datetime
    #: When the history can no longer show a task of the window for the first time.
    closes: datetime
    #: Whether the window was placed with the server's clock as known when the intent was
    #: written. Only such a window can show that no task exists.
    placed: bool


def window(
    *,
    sent_at: datetime,
    gave_up_at: datetime,
    offset_at_send: timedelta | None,
    offset_now: timedelta | None,
    options: SettleOptions,
) -> Window:
    """Place the window of a submit sent at *sent_at* and given up at *gave_up_at* (our clock).

    With the server's clock offset known at send time the task was created within
    ``[sent_at - slack, max(sent_at, gave_up_at) + act_window + slack]`` on that clock. Without it,
    today's offset says nothing of yesterday's clock: the window is widened by the clock's
    doubt on both sides and is not `placed`. The slack (our estimate of the server's clock is
    good to a second or so) widens both ends: a task made at the very end of the act window,
    on a clock we read a little slow, is still inside.
    """
    latest = max(sent_at, gave_up_at)
    if offset_at_send is not None:
        start = sent_at + offset_at_send - options.slack
        end = latest + offset_at_send + options.act_window + options.slack
        placed = True
    else:
        offset = offset_now if offset_now is not None else timedelta(0)
        start = sent_at + offset - options.clock_doubt - options.slack
        end = latest + offset + options.clock_doubt + options.act_window + options.slack
        placed = False
    return Window(start=start, end=end, closes=end + options.history_lag, placed=placed)


def may_have_made(  # noqa: PLR0913 - a submit's whole placing, keyword-only
    created_at: datetime,
    *,
    sent_at: datetime,
    offset_at_send: timedelta | None,
    offset_now: timedelta | None,
    options: SettleOptions,
    gave_up_at: datetime | None = None,
) -> bool:
    """Say whether another submit may have made a task created at *created_at* (server clock).

    The submit is one on the wire, or left uncertain, sent at *sent_at* on its run's clock.
    Its window is placed as its own run would place it (`window`), on the offset that run
    read with its send time, never on the reader's (a clock corrected in between would move
    it); its answer may have come as late as the answer time-out, unless its run said when
    it gave up (*gave_up_at*, its clock). Without that offset the window carries the clock's
    doubt.
    """
    win = window(
        sent_at=sent_at,
        gave_up_at=gave_up_at or sent_at + options.answer_timeout,
        offset_at_send=offset_at_send,
        offset_now=offset_now,
        options=options,
    )
    return win.start <= created_at <= win.end


@attrs.frozen(kw_only=True)
class Reading:
    """What one read of the history found about a window."""

    #: The server's clock when the read started; None while the server's clock is unknown.
    started_at: datetime | None
    #: Whether every page of the window was read (a busy account may have thousands).
    complete: bool
    #: Why the read failed ("" when it did not).
    error: str = ""
    #: Each task of the window that could be the shot's (the model's, not failed, owned by no
    #: kling-pipe record on this machine), and what is known of it.
    candidates: Mapping[str, CandidateState] = attrs.Factory(dict)


@attrs.frozen
class Adopt:
    """The task is proved to be the shot's: claim it, record it, poll it."""

    task_id: str


@attrs.frozen
class Resend:
    """No task can be the shot's: record the intent refused and send the submit again."""


@attrs.frozen(kw_only=True)
class Uncertain:
    """The history cannot tell: leave the shot uncertain, naming the tasks that could be it."""

    why: str
    candidates: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Wait:
    """Read the history again after `seconds`; `closes_in_s` is shown to the user."""

    seconds: float
    closes_in_s: float


Verdict = Adopt | Resend | Uncertain | Wait


def settle_step(
    win: Window,
    reading: Reading,
    *,
    now: datetime,
    provable: bool,
    options: SettleOptions,
) -> Verdict:
    """Decide what a reading of the history means (see the module docstring's rules).

    *now* is the server's clock (ours plus the latest offset); *provable* says whether the
    shot's frames can be compared with a candidate's video at all.
    """
    states = reading.candidates
    matches = tuple(sorted(t for t, s in states.items() if s == "match"))
    undecided = tuple(sorted(t for t, s in states.items() if s == "undecided" or t in matches))
    waiting = tuple(sorted(t for t, s in states.items() if s in ("pending", "wire")))
    every = tuple(sorted({*undecided, *waiting}))
    unproved = tuple(sorted(t for t, s in states.items() if s == "undecided"))
    if unproved:
        # Nothing can change the verdict now: a finished candidate stays what the proof said
        # of it, so with one that could not be proved no reading can leave a single proved
        # task, nor show that no task exists. (Two proved ones still wait: either may yet be
        # claimed by the submit on this machine that made it.)
        cannot = (
            "which kling-pipe cannot prove (it cannot compare the shot's first frame)"
            if not provable
            else "which kling-pipe could not prove (its video could not be compared)"
        )
        return Uncertain(
            why="its answer was lost and the history shows "
            f"{_tasks(every)} that could be it, {cannot}",
            candidates=every,
        )
    closed_read = reading.started_at is not None and reading.started_at >= win.closes
    if closed_read and not reading.error and not reading.complete:
        return Uncertain(
            why="its answer was lost and the history of its window is longer than "
            "kling-pipe could read whole, so it cannot show that no task exists"
            + (f"; it shows {_tasks(every)} that could be it" if every else ""),
            candidates=every,
        )
    if closed_read and not reading.error and not waiting:
        if len(matches) == 1 and len(undecided) == 1:
            return Adopt(matches[0])
        if undecided:
            return Uncertain(
                why=f"its answer was lost and {_tasks(undecided)} in the history could be it "
                "but could not be proved",
                candidates=undecided,
            )
        if not win.placed:
            return Uncertain(
                why="its answer was lost and the server's clock when it was sent is unknown, "
                "so the history cannot show that no task exists (none was found)",
            )
        return Resend()
    if now >= win.closes + options.pending_limit:
        why = reading.error or (
            "a candidate is still running, or another submit on this machine may have made it"
            if waiting
            else "the history never settled it"
        )
        return Uncertain(
            why=f"its answer was lost and the history could not settle it ({why})"
            + (f"; {_tasks(every)} could be it" if every else ""),
            candidates=every,
        )
    left = max(0.0, (win.closes - now).total_seconds())
    return Wait(seconds=min(options.poll_s, left) if left else options.poll_s, closes_in_s=left)


def _tasks(ids: tuple[str, ...]) -> str:
    return f"{len(ids)} task{'s' * (len(ids) != 1)} ({', '.join(ids)})"
