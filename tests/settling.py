"""Settle options for tests against the mock on the real clock: a window of about a second.

A lost answer whose task exists is adopted as soon as its frames prove it; only a resend
waits for the whole window, so tests stay fast without weakening what they check.
"""

from __future__ import annotations

from datetime import timedelta

from kling_pipe._decisions.settle import SettleOptions

FAST_SETTLE = SettleOptions(
    act_window=timedelta(seconds=1),
    history_lag=timedelta(seconds=0.5),
    # A loopback mock's clock is read to its Date header's rounding: a second is ample.
    slack=timedelta(seconds=1),
    poll_s=0.1,
)
