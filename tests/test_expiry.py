"""When WaveSpeed drops an output never downloaded: the 7 days, and the day-before warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.attempts import Attempt, AttemptState
from kling_pipe._decisions.expiry import (
    OUTPUT_KEPT,
    expired_message,
    expiry_warnings,
    has_expired,
)
from kling_pipe._decisions.resume import Resume, ResumeKind

SENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def attempt(state: AttemptState = "completed", *, sent_at: datetime = SENT) -> Attempt:
    return Attempt(
        id=1,
        shot_id="gutter",
        fingerprint="f",
        inputs="{}",
        model="m",
        duration=5,
        cost=Decimal("0.420"),
        state=state,
        task_id="0123456789abcdef0123456789abcdef",
        sent_at=sent_at,
        completed_at=None,
        error="",
        code=None,
        file=None,
        sha256=None,
        bytes=None,
        polls=0,
    )


def resume(kind: ResumeKind, unit: str = "gutter", *, sent_at: datetime = SENT) -> Resume:
    return Resume(shot_id=unit, kind=kind, fingerprint="f", attempt=attempt(sent_at=sent_at))


def test_an_output_expires_seven_days_after_its_submit():
    assert not has_expired(SENT, SENT + OUTPUT_KEPT - timedelta(seconds=1))
    assert has_expired(SENT, SENT + OUTPUT_KEPT)


@given(age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_expired_exactly_when_older_than_what_wavespeed_keeps(age):
    assert has_expired(SENT, SENT + age) == (age >= timedelta(days=7))


def test_the_message_says_what_happened_and_that_rendering_anew_costs_money():
    assert expired_message("gutter", attempt()) == (
        "output expired: task 0123456789abcdef0123456789abcdef finished but was never "
        "downloaded, and WaveSpeed keeps outputs 7 days (submitted 2026-03-01 12:00 UTC); "
        "run with --rerender gutter to render it anew (0.420 USD again)"
    )


def test_status_warns_about_a_task_not_downloaded_within_a_day_of_expiry():
    now = SENT + timedelta(days=6, hours=12)
    (warning,) = expiry_warnings([resume("refetch")], now)
    assert warning.left == timedelta(hours=12)
    assert warning.describe() == (
        "warning: gutter: task 0123456789abcdef0123456789abcdef is not downloaded yet and "
        "WaveSpeed drops its output in about 12 h (2026-03-08 12:00 UTC); run now to fetch it"
    )


def test_no_warning_earlier_than_a_day_before():
    assert expiry_warnings([resume("poll")], SENT + timedelta(days=5, hours=23)) == []


def test_a_task_past_the_seven_days_is_said_to_have_probably_expired():
    (warning,) = expiry_warnings([resume("poll")], SENT + timedelta(days=8))
    assert "has probably dropped its output (the next run looks, and says so)" in (
        warning.describe()
    )


def test_only_tasks_a_run_would_still_fetch_are_warned_about_soonest_first():
    now = SENT + timedelta(days=6, hours=23)
    resumes = [
        resume("cached", "a"),
        resume("uncertain", "b"),
        resume("expired", "c"),
        resume("poll", "late", sent_at=SENT + timedelta(hours=1)),
        resume("refetch", "soon"),
    ]
    assert [w.unit for w in expiry_warnings(resumes, now)] == ["soon", "late"]
