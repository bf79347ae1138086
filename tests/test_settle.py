"""The settle step, pure: a lost answer's window and what each reading of the history means.

The last test is the model: a submit whose answer was lost, a server that acts late (or not
at all), a history that lags, a clock off by up to the slack, other clients' tasks, readings
at any pace: the step resends only when our task does not exist, and adopts only ours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import assume, given
from hypothesis import strategies as st

from kling_pipe._decisions import settle
from kling_pipe._decisions.settle import (
    Adopt,
    Reading,
    Resend,
    SettleOptions,
    Uncertain,
    Wait,
    settle_step,
    window,
)

OPTIONS = SettleOptions(
    act_window=timedelta(seconds=60), history_lag=timedelta(seconds=20), poll_s=5.0
)
SENT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def placed(offset_s: float = 0.0) -> settle.Window:
    return window(
        sent_at=SENT,
        gave_up_at=SENT + timedelta(seconds=10),
        offset_at_send=timedelta(seconds=offset_s),
        offset_now=timedelta(seconds=offset_s),
        options=OPTIONS,
    )


def after(win: settle.Window, seconds: float = 1.0) -> datetime:
    return win.closes + timedelta(seconds=seconds)


def step(win, reading, now=None, provable=True):
    return settle_step(
        win, reading, now=now or reading.started_at or SENT, provable=provable, options=OPTIONS
    )


def test_the_window_is_placed_on_the_servers_clock_as_known_at_send_time():
    win = placed(offset_s=150.0)
    assert win.start == SENT + timedelta(seconds=150) - OPTIONS.slack
    assert win.end == SENT + timedelta(seconds=10 + 150) + OPTIONS.act_window + OPTIONS.slack
    assert win.closes == win.end + OPTIONS.history_lag
    assert win.placed


def test_a_task_made_at_the_end_of_the_act_window_on_a_clock_read_slow_is_in_the_window():
    """Found by the model: the slack widens the window's end too, not only its start."""
    win = window(
        sent_at=SENT,
        gave_up_at=SENT,
        offset_at_send=timedelta(seconds=-1),  # our estimate, a second slow
        offset_now=timedelta(seconds=-1),
        options=OPTIONS,
    )
    created = SENT + OPTIONS.act_window  # on the server's true clock (offset 0)
    assert win.start <= created <= win.end


def test_an_intent_without_a_known_server_clock_is_not_placed_with_todays_offset():
    """A clock corrected between a kill and the resume must not move the window."""
    win = window(
        sent_at=SENT,
        gave_up_at=SENT,
        offset_at_send=None,
        offset_now=timedelta(0),
        options=OPTIONS,
    )
    # The machine's clock was 10 minutes slow at send time: the task is 10 minutes "later".
    created = SENT + timedelta(minutes=10)
    assert win.start <= created <= win.end
    assert not win.placed


def test_an_unplaced_window_never_concludes_no_task():
    win = window(
        sent_at=SENT, gave_up_at=SENT, offset_at_send=None, offset_now=None, options=OPTIONS
    )
    verdict = step(win, Reading(started_at=after(win), complete=True))
    assert isinstance(verdict, Uncertain)
    assert "clock" in verdict.why


def test_one_proved_candidate_is_adopted_once_the_window_closed():
    """Before, a teammate's like task may yet show up in the lagging history beside it."""
    win = placed()
    reading = Reading(started_at=SENT, complete=True, candidates={"t1": "match", "t2": "mismatch"})
    assert isinstance(step(win, reading), Wait)
    assert step(win, attrs.evolve(reading, started_at=after(win))) == Adopt("t1")
    incomplete = attrs.evolve(reading, started_at=after(win), complete=False)
    assert isinstance(step(win, incomplete), Uncertain)


def test_two_proved_candidates_are_not_adopted_but_left_uncertain():
    win = placed()
    reading = Reading(started_at=after(win), complete=True, candidates={"a": "match", "b": "match"})
    verdict = step(win, reading)
    assert isinstance(verdict, Uncertain)
    assert verdict.candidates == ("a", "b")


def test_nothing_is_concluded_before_the_window_closes():
    win = placed()
    verdict = step(win, Reading(started_at=win.closes - timedelta(seconds=1), complete=True))
    assert isinstance(verdict, Wait)
    assert 0 < verdict.seconds <= OPTIONS.poll_s


def test_a_complete_read_after_the_window_with_no_candidate_resends():
    win = placed()
    assert step(win, Reading(started_at=after(win), complete=True)) == Resend()


def test_a_read_that_did_not_cover_the_whole_window_never_concludes_no_task():
    """A busy account: the history of the window was longer than the read."""
    win = placed()
    verdict = step(win, Reading(started_at=after(win), complete=False))
    assert isinstance(verdict, Uncertain)
    assert "whole" in verdict.why


def test_a_read_on_an_unknown_server_clock_concludes_nothing():
    win = placed()
    verdict = step(win, Reading(started_at=None, complete=True), now=after(win))
    assert isinstance(verdict, Wait)


def test_a_failed_read_concludes_nothing_until_the_pending_limit():
    win = placed()
    failed = Reading(started_at=after(win), complete=False, error="HTTP 503")
    assert isinstance(step(win, failed), Wait)
    late = win.closes + OPTIONS.pending_limit
    verdict = step(win, failed, now=late)
    assert isinstance(verdict, Uncertain)
    assert "HTTP 503" in verdict.why


def test_a_running_candidate_or_a_like_submit_on_the_wire_holds_the_conclusion():
    win = placed()
    for state in ("pending", "wire"):
        reading = Reading(started_at=after(win), complete=True, candidates={"t": state})
        assert isinstance(step(win, reading), Wait), state


def test_a_like_submit_on_the_wire_keeps_a_proved_candidate_from_being_adopted():
    """Another run's submit on the wire may have made the task that shows our frames."""
    win = placed()
    reading = Reading(started_at=SENT, complete=True, candidates={"t": "wire"})
    assert not isinstance(step(win, reading), Adopt)


def test_an_unprovable_shot_with_a_finished_candidate_is_uncertain_at_once():
    """Nothing can change the verdict: no stall for the whole window."""
    win = placed()
    reading = Reading(started_at=SENT, complete=True, candidates={"t": "undecided"})
    verdict = step(win, reading, provable=False)
    assert isinstance(verdict, Uncertain)
    assert verdict.candidates == ("t",)


def test_an_unprovable_shot_waits_for_a_running_candidate_then_is_uncertain_at_once():
    """A text-to-video shot: a candidate still running may yet fail (then no task was paid
    and the shot is sent again), so it is waited for; once it has finished, unproved, no
    reading can change the verdict and the shot is uncertain without waiting for the window."""
    win = placed()
    for state in ("pending", "wire"):
        reading = Reading(started_at=SENT, complete=True, candidates={"t": state})
        assert isinstance(step(win, reading, provable=False), Wait), state
    finished = Reading(started_at=SENT, complete=True, candidates={"t": "undecided"})
    verdict = step(win, finished, provable=False)
    assert isinstance(verdict, Uncertain)
    assert verdict.candidates == ("t",)
    assert "cannot prove" in verdict.why


def test_an_unprovable_shot_with_no_candidate_waits_for_the_window_then_resends():
    win = placed()
    assert isinstance(step(win, Reading(started_at=SENT, complete=True), provable=False), Wait)
    verdict = step(win, Reading(started_at=after(win), complete=True), provable=False)
    assert verdict == Resend()


def test_a_provable_shot_with_a_candidate_that_stays_undecided_is_uncertain_at_once():
    """The candidate's video could not be compared: that verdict is final, so is the shot's."""
    win = placed()
    candidates = {"ours": "match", "t": "undecided", "u": "pending"}
    verdict = step(win, Reading(started_at=SENT, complete=True, candidates=candidates))
    assert isinstance(verdict, Uncertain)
    assert verdict.candidates == ("ours", "t", "u")
    assert "could not be compared" in verdict.why


def test_a_provable_shot_whose_candidates_still_run_waits():
    win = placed()
    reading = Reading(started_at=SENT, complete=True, candidates={"t": "pending"})
    assert isinstance(step(win, reading), Wait)


final_states = st.sampled_from(["match", "mismatch", "undecided", "gone"])


@given(
    candidates=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from(["match", "mismatch", "undecided", "pending", "wire"]),
        max_size=4,
    ),
    later=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), final_states),
    provable=st.booleans(),
    placed_=st.booleans(),
)
def test_an_early_uncertain_is_what_every_later_reading_would_conclude(
    candidates, later, provable, placed_
):
    """Ending early never changes a verdict: whatever the running candidates become, and
    whatever new ones appear, the reading after the window closes is uncertain too."""
    win = attrs.evolve(placed(), placed=placed_)
    early = step(
        win, Reading(started_at=SENT, complete=True, candidates=candidates), None, provable
    )
    assume(isinstance(early, Uncertain))
    settled = {
        t: later.get(t, "undecided")
        for t in {*candidates, *later}
        if candidates.get(t) not in ("match", "mismatch", "undecided")
    }
    # A finished candidate keeps its verdict; a running one ends in any state (or fails).
    finals = {t: s for t, s in candidates.items() if s in ("match", "mismatch", "undecided")}
    finals |= {t: s for t, s in settled.items() if s != "gone"}
    if not provable:
        finals = {t: "undecided" if s == "match" else s for t, s in finals.items()}
    closed = Reading(started_at=after(win), complete=True, candidates=finals)
    assert isinstance(step(win, closed, None, provable), Uncertain)


# The model.


@st.composite
def scenarios(draw):
    return {
        # Our submit created a task (when: seconds after we gave up), or nothing.
        "created_after_s": draw(st.one_of(st.none(), st.floats(-10.0, 60.0))),
        # The server's clock minus ours, and our estimate's error (within the slack).
        "offset_s": draw(st.sampled_from([0.0, -150.0, 150.0, 3600.0])),
        "estimate_error_s": draw(st.floats(-4.9, 4.9)),
        "lag_s": draw(st.floats(0.0, 20.0)),
        "provable": draw(st.booleans()),
        # Other clients' tasks: (created, seconds after the send; what the proof says).
        "foreign": draw(
            st.lists(
                st.tuples(st.floats(-30.0, 120.0), st.sampled_from(["mismatch", "undecided"])),
                max_size=4,
            )
        ),
        "pace_s": draw(st.floats(0.5, 30.0)),
        "complete": draw(st.lists(st.booleans(), min_size=1, max_size=5)),
    }


def visible(scenario, win, ours, shown_before):
    """The candidates a read of the history shows: created in the window, past the lag."""
    candidates = {}
    if ours is not None and ours <= shown_before and win.start <= ours <= win.end:
        candidates["ours"] = "match" if scenario["provable"] else "undecided"
    offset = timedelta(seconds=scenario["offset_s"])
    for i, (created_s, verdict) in enumerate(scenario["foreign"]):
        created = SENT + offset + timedelta(seconds=created_s)
        if created <= shown_before and win.start <= created <= win.end:
            candidates[f"f{i}"] = verdict
    return candidates


@given(scenario=scenarios())
def test_model_the_step_resends_only_when_no_task_exists_and_adopts_only_ours(scenario):
    offset = timedelta(seconds=scenario["offset_s"])
    estimate = offset + timedelta(seconds=scenario["estimate_error_s"])
    gave_up = SENT + timedelta(seconds=10)
    win = window(
        sent_at=SENT,
        gave_up_at=gave_up,
        offset_at_send=estimate,
        offset_now=estimate,
        options=OPTIONS,
    )
    ours = None
    if scenario["created_after_s"] is not None:
        # On the server's clock, between the request's arrival and the act window's end.
        ours = gave_up + offset + timedelta(seconds=scenario["created_after_s"])
    lag = timedelta(seconds=scenario["lag_s"])
    now = gave_up  # our clock
    completes = scenario["complete"]
    for n in range(10_000):
        candidates = visible(scenario, win, ours, now + offset - lag)
        complete = completes[n % len(completes)]
        if not complete:  # a read that stopped early may have missed any task, ours too
            candidates.pop("ours", None)
        reading = Reading(started_at=now + estimate, complete=complete, candidates=candidates)
        verdict = settle_step(
            win, reading, now=now + estimate, provable=scenario["provable"], options=OPTIONS
        )
        match verdict:
            case Wait(seconds=seconds):
                now += timedelta(seconds=max(seconds, scenario["pace_s"]))
            case Resend():
                assert ours is None, "resent a submit whose task exists"
                return
            case Adopt(task_id=task_id):
                assert task_id == "ours"
                return
            case Uncertain():
                return
    raise AssertionError("the step never settled")


def test_another_submit_is_placed_on_the_offset_its_run_read_not_the_readers():
    """A submit sent at 12:00 on a clock 10 minutes slow (offset +600 s then): its task is
    made at 12:10 server time; the reader's clock was corrected since (offset 0 now)."""
    made = SENT + timedelta(minutes=10, seconds=2)
    kwargs = {"sent_at": SENT, "offset_now": timedelta(0), "options": OPTIONS}
    assert settle.may_have_made(made, offset_at_send=timedelta(minutes=10), **kwargs)
    assert not settle.may_have_made(
        SENT + timedelta(seconds=2) - timedelta(minutes=10),
        offset_at_send=timedelta(minutes=10),
        **kwargs,
    )
    # Without the offset it read, the clock's doubt covers both.
    assert settle.may_have_made(made, offset_at_send=None, **kwargs)


@given(
    states=st.dictionaries(
        st.sampled_from([f"{i:032x}" for i in range(6)]),
        st.sampled_from(["match", "mismatch", "undecided", "pending", "wire"]),
        max_size=6,
    ),
    complete=st.booleans(),
    error=st.sampled_from(["", "HTTP 502"]),
    read_after_s=st.floats(min_value=-100, max_value=4000),
    now_after_s=st.floats(min_value=-100, max_value=8000),
    provable=st.booleans(),
)
def test_every_uncertain_verdict_names_every_candidate_that_could_be_the_task(  # noqa: PLR0913, PLR0917 - one draw each
    states, complete, error, read_after_s, now_after_s, provable
):
    """What the user reads names every task that is not proved someone else's."""
    win = placed()
    reading = Reading(
        started_at=after(win, read_after_s),
        complete=complete,
        error=error,
        candidates=states,
    )
    options = attrs.evolve(OPTIONS, pending_limit=timedelta(hours=1))
    verdict = settle_step(
        win, reading, now=after(win, now_after_s), provable=provable, options=options
    )
    if isinstance(verdict, Uncertain):
        open_ = {t for t, s in states.items() if s != "mismatch"}
        assert set(verdict.candidates) == open_
        for task in open_:
            assert task in verdict.why


def test_a_proved_candidate_waits_while_another_candidate_is_still_running():
    """A teammate's task with the same first frame, still processing, may prove alike too."""
    win = placed()
    reading = Reading(started_at=SENT, complete=True, candidates={"ours": "match", "t": "pending"})
    assert isinstance(step(win, reading), Wait)
    both = Reading(started_at=SENT, complete=True, candidates={"ours": "match", "t": "match"})
    assert isinstance(step(win, both), Wait)
    after_both = attrs.evolve(both, started_at=after(win))
    verdict = step(win, after_both)
    assert isinstance(verdict, Uncertain)
    assert verdict.candidates == ("ours", "t")
