"""How a run behaves (`RunOptions`, one field per `run` flag) and the clocks it reads (`Timing`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import attrs

from kling_pipe._backends.base import MOCK_FPS, MOCK_PROCESSING_S
from kling_pipe._decisions.pacing import PollPolicy
from kling_pipe._decisions.settle import SettleOptions

#: Takes in flight at once when neither the caller nor the storyboard says.
DEFAULT_CONCURRENCY = 4


@attrs.frozen(kw_only=True)
class RunOptions:
    """How a run behaves; the CLI flags map onto these one to one.

    `render` takes its options here and only here. A value left at None falls back to the
    storyboard's setting, then to the default.
    """

    #: Takes in flight at once (None: the storyboard's ``concurrency``, else 4).
    concurrency: int | None = None
    #: The most the run may spend, in USD (None: the storyboard's ``max_cost``, else no cap).
    #: One run's cap; the storyboard's ``budget`` caps every run together, from the records.
    max_cost: Decimal | None = None
    #: Submits per minute at most (an account tier's limit), or None for no limit.
    rate_per_min: int | None = None
    #: How many times a task that failed on the server is resubmitted.
    retry_failed: int = 0
    fail_fast: bool = False
    #: Longest wait for one task from submit to final status.
    task_timeout_s: float = 3600.0
    poll_policy: PollPolicy = attrs.Factory(PollPolicy)
    #: Expected seconds per task before any task of this run completes (None: probe).
    expected_task_s: float | None = None
    #: How a submit whose answer was lost is settled (`kling_pipe._decisions.settle`).
    settle: SettleOptions = attrs.Factory(SettleOptions)
    #: Make the contact sheet's thumbnails while the run waits (off with `run --no-report`).
    thumbnails: bool = True
    #: Shots (``id``) or single takes (``id#k``) to render again even if cached.
    rerender: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Render only these (ids, ``id#k``, globs on ids such as ``harbour-*``) and the chain
    #: sources they need; None renders every shot. `kling_pipe._decisions.selection`.
    only: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    #: Submit again the shots whose earlier submit was lost and could not be found.
    resubmit_uncertain: bool = False
    #: Refuse to render anything the lock file does not cover, and never send a submit.
    locked: bool = False
    #: Record every step beside the shot list (off: records live in memory, for scripts).
    keep_records: bool = True
    #: Write the contact sheet ``<output_dir>/index.html`` at the end.
    report: bool = True
    #: With the bundled mock: how long each task takes.
    mock_processing_s: float = MOCK_PROCESSING_S
    #: With the bundled mock: its renders' frames per second, and whether it writes each
    #: task's prompt on them (to see which prompt and take a video is, in an editor too).
    mock_fps: int = MOCK_FPS
    mock_caption: bool = False
    #: Take over SIGINT and SIGTERM for a clean stop (the command line does).
    handle_signals: bool = False


@attrs.frozen(kw_only=True)
class Timing:
    """Every clock the shell reads and the one way it waits, injectable so tests use fake time."""

    #: Seconds for measuring intervals (poll pacing, durations).
    monotonic: Callable[[], float] = time.monotonic
    #: Aware UTC wall-clock time (send times, upload ages); the server's clock is derived.
    now: Callable[[], datetime] = attrs.field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
