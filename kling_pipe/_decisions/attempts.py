"""An attempt at rendering one take, as the records keep it, and what its state means for money.

Pure values: the store (`kling_pipe._records.store`) reads and writes them, the decisions
(resume, the engine's ledger) read them. Whether an attempt cost money is decided here, once:
`CHARGED_STATES` is the one definition, and `Attempt.charged` the one way to ask.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

import attrs

AttemptState = Literal[
    "intent",  # about to submit: the task may or may not exist
    "submitted",  # the server gave a task id
    "completed",  # the task finished with an output
    "failed",  # the task finished without one (refunded by WaveSpeed)
    "downloaded",  # the output is on disk, checksummed
    "refused",  # the submit was refused: no task exists, nothing was charged
    "uncertain",  # the task may exist, the history could not tell: left alone
    "rejected",  # the task completed but its video failed the checks: kept aside, left alone
    "expired",  # the task finished, was never downloaded, and its output is gone: left alone
]
#: States whose task cost (or may have cost) money.
CHARGED_STATES: Final = frozenset(
    {"intent", "submitted", "completed", "downloaded", "uncertain", "rejected", "expired"}
)


@attrs.frozen(kw_only=True)
class Attempt:
    """One attempt at rendering one shot, as recorded."""

    id: int
    shot_id: str
    fingerprint: str
    inputs: str
    model: str
    duration: int
    cost: Decimal
    state: AttemptState
    task_id: str | None
    sent_at: datetime
    completed_at: datetime | None
    error: str
    code: int | None
    #: Relative to the shot list's folder.
    file: str | None
    sha256: str | None
    bytes: int | None
    polls: int
    #: The server's clock minus ours when the submit was sent, if it was known then.
    clock_offset: timedelta | None = None
    #: Which backend made it: ``mock`` for the bundled mock, else the API's base URL.
    origin: str = ""

    @property
    def charged(self) -> bool:
        """Whether this attempt cost money, or may have."""
        return self.state in CHARGED_STATES
