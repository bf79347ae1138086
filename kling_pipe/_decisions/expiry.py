"""When WaveSpeed drops a task's output, and what that means: never a reason to pay silently.

WaveSpeed keeps predictions and their outputs 7 days ("Download outputs before they expire").
A task that finished but was never downloaded (a run killed while it rendered, a download
that kept failing) and is looked at after that may answer 404, or its output URL may fail:
its output has *expired*. It was paid for; its video is gone. Rendering it anew is a new
payment, so it is the user's call (``--rerender ID``, priced in `plan`), never the run's.

Within the 7 days a 404 or a failed download is not taken for expiry (a glitch must never
make anyone pay again for a task that exists): the next run looks again. A day before the
end, `status` warns about each task not yet downloaded.

Pure: the times come in (the records' send time, the caller's clock), nothing is read here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import attrs

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.resume import Resume

#: How long WaveSpeed keeps a task and its output (documented).
OUTPUT_KEPT: Final = timedelta(days=7)
#: How long before that `status` starts to warn.
WARN_WITHIN: Final = timedelta(days=1)


def expires_at(sent_at: datetime) -> datetime:
    """Return when the output of a task submitted at *sent_at* (our clock) is dropped."""
    return sent_at + OUTPUT_KEPT


def has_expired(sent_at: datetime, now: datetime) -> bool:
    """Whether a task submitted at *sent_at* is past the time WaveSpeed keeps outputs."""
    return now >= expires_at(sent_at)


def expired_message(unit: str, attempt: Attempt) -> str:
    """Say that the unit's output expired, and the way on (which costs money)."""
    return (
        f"output expired: task {attempt.task_id} finished but was never downloaded, and "
        f"WaveSpeed keeps outputs {OUTPUT_KEPT.days} days (submitted "
        f"{attempt.sent_at:%Y-%m-%d %H:%M} UTC); run with --rerender {unit} to render it "
        f"anew ({attempt.cost} USD again)"
    )


@attrs.frozen(kw_only=True)
class ExpiryWarning:
    """A task not downloaded yet whose output WaveSpeed drops soon (or has dropped)."""

    unit: str
    task_id: str
    expires_at: datetime
    #: Time left (negative: past it).
    left: timedelta

    def describe(self) -> str:
        """Say it for `status`: how long is left, and what to do."""
        if self.left <= timedelta(0):
            return (
                f"warning: {self.unit}: task {self.task_id} is not downloaded and was "
                f"submitted more than {OUTPUT_KEPT.days} days ago: WaveSpeed has probably "
                "dropped its output (the next run looks, and says so)"
            )
        hours = max(1, round(self.left.total_seconds() / 3600))
        return (
            f"warning: {self.unit}: task {self.task_id} is not downloaded yet and WaveSpeed "
            f"drops its output in about {hours} h ({self.expires_at:%Y-%m-%d %H:%M} UTC); "
            "run now to fetch it"
        )


def expiry_warnings(resumes: Iterable[Resume], now: datetime) -> list[ExpiryWarning]:
    """Return a warning for each task not yet downloaded within `WARN_WITHIN` of its end.

    Those are the units a run would poll or fetch again (`poll`, `refetch`): their task
    exists and their video is not on disk. Soonest first.
    """
    found = [
        ExpiryWarning(
            unit=r.shot_id,
            task_id=r.attempt.task_id,
            expires_at=expires_at(r.attempt.sent_at),
            left=expires_at(r.attempt.sent_at) - now,
        )
        for r in resumes
        if r.kind in ("poll", "refetch")
        and r.attempt is not None
        and r.attempt.task_id is not None
        and now >= expires_at(r.attempt.sent_at) - WARN_WITHIN
    ]
    return sorted(found, key=lambda w: w.expires_at)
