"""The pure rules of approvals and versions: what is held, what is stale, what changed.

An approval pins a shot to one version (`Approval`): its fingerprint is that version's
whatever its inputs are now, chains follow it, and nothing of a frozen shot pays unless
``--rerender`` names it. These are decisions on plain values, so they are tested here without
a store, a folder or a backend.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import attrs
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.plan import plan
from kling_pipe._decisions.resume import assess, forced_units
from kling_pipe._records.versions import describe_change
from kling_pipe._shotlist.fingerprint import (
    Approval,
    changed_inputs,
    fingerprint_units,
)
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ChainImage, LocalImage, Shot, ShotList, Storyboard

STATES = ("downloaded", "completed", "submitted", "intent", "uncertain", "failed", "refused")


def fake_hash(path: Path) -> str:
    return hashlib.sha256(path.name.encode()).hexdigest()


def board(*shots: Shot) -> ShotList:
    return ShotList(storyboard=Storyboard(name="b"), shots=shots)


SOURCE = Shot(id="a", prompt="boats at the quay", image=LocalImage(path="frames/a.png"))
CHAINED = Shot(id="b", prompt="gulls", image=ChainImage(shot="a", frame="last"))


def approve(shotlist: ShotList, shot_id: str, version: int = 1) -> Approval:
    """Approve *shot_id* as it is in *shotlist* (its take 1's fingerprint now)."""
    units = fingerprint_units(shotlist, fake_hash)
    return Approval(
        version=version, take=1, fingerprint=units.fingerprints[shot_id], sha256="0" * 64
    )


# Fingerprints: an approved shot is pinned, and so are the shots chained from it.


def test_an_approved_shot_keeps_its_fingerprint_when_its_prompt_changes_and_says_so():
    before = board(SOURCE, CHAINED)
    approval = approve(before, "a")
    edited = board(attrs.evolve(SOURCE, prompt="boats sway at the quay"), CHAINED)
    units = fingerprint_units(edited, fake_hash, approvals={"a": approval})
    free = fingerprint_units(edited, fake_hash)
    assert units.fingerprints["a"] == approval.fingerprint
    assert units.unpinned["a"] == free.fingerprints["a"] != approval.fingerprint
    assert units.inputs_changed("a")
    # The chained shot follows the approved render, not the edited shot.
    assert units.fingerprints["b"] == fingerprint_units(before, fake_hash).fingerprints["b"]
    assert free.fingerprints["b"] != units.fingerprints["b"]


def test_an_approved_shot_whose_inputs_did_not_change_says_nothing_changed():
    shotlist = board(SOURCE, CHAINED)
    units = fingerprint_units(shotlist, fake_hash, approvals={"a": approve(shotlist, "a")})
    assert not units.inputs_changed("a")
    assert not units.inputs_changed("b")  # not approved: nothing to say


@given(
    prefix=st.text(max_size=20),
    prompt=st.text(min_size=1, max_size=40),
    duration=st.sampled_from([5, 10]),
)
def test_no_edit_of_an_approved_shot_changes_its_fingerprint_or_its_chains(
    prefix, prompt, duration
):
    before = board(SOURCE, CHAINED)
    approval = approve(before, "a")
    pinned = fingerprint_units(before, fake_hash, approvals={"a": approval}).fingerprints
    edited = attrs.evolve(SOURCE, prompt=prompt, prompt_prefix=prefix, duration=duration)
    after = fingerprint_units(board(edited, CHAINED), fake_hash, approvals={"a": approval})
    assert after.fingerprints["a"] == pinned["a"]
    assert after.fingerprints["b"] == pinned["b"]
    assert after.inputs_changed("a") == (
        (prefix, prompt, duration) != ("", SOURCE.prompt, SOURCE.duration)
    )


def test_the_approved_take_is_the_shots_pick():
    shotlist = board(attrs.evolve(SOURCE, takes=3), CHAINED)
    units = fingerprint_units(shotlist, fake_hash)
    approval = Approval(version=4, take=2, fingerprint=units.fingerprints["a#2"], sha256="1" * 64)
    held = fingerprint_units(shotlist, fake_hash, picks={"a": (3, None)}, approvals={"a": approval})
    assert held.picks["a"] == 2


# Which inputs changed, in words.


def test_changed_inputs_are_named_in_the_order_people_read_them():
    old = {"model": "m", "prompt": "p", "duration": 5, "image": {"sha256": "x"}}
    assert changed_inputs(old, {**old, "prompt": "q"}) == ["prompt"]
    assert changed_inputs(old, {**old, "image": {"sha256": "y"}, "prompt": "q"}) == [
        "prompt",
        "image",
    ]
    assert changed_inputs(old, dict(old)) == []


def recorded(shot_id: str, inputs: dict[str, object], number: int = 1) -> Attempt:
    return Attempt(
        id=number,
        shot_id=shot_id,
        fingerprint=f"f{number}",
        inputs=json.dumps({"recipe": 1, **inputs}),
        model="m",
        duration=5,
        cost=Decimal("0.420"),
        state="downloaded",
        task_id="t",
        sent_at=datetime(2026, 3, 1, tzinfo=UTC),
        completed_at=None,
        error="",
        code=None,
        file=f"renders/b/versions/a.v{number}.mp4",
        sha256="s",
        bytes=1,
        polls=0,
    )


def test_what_changed_between_two_versions_is_said_in_a_few_words():
    first = recorded("a", {"prompt": "p", "model": "m"})
    assert describe_change(None, first) == "first render"
    edited = recorded("a", {"prompt": "q", "model": "m"}, 2)
    assert "prompt changed" in describe_change(first, edited)
    again = recorded("a", {"prompt": "q", "model": "m"}, 3)
    assert describe_change(edited, again) == "same inputs, rendered again"
    take2 = recorded("a#2", {"prompt": "q", "model": "m"}, 4)
    assert describe_change(again, take2) == "take 2"


# Resume: nothing of a frozen shot pays, unless --rerender names it.


def attempt_in(state: str, fingerprint: str) -> Attempt:
    return attrs.evolve(recorded("a", {"prompt": "p"}), state=state, fingerprint=fingerprint)


@given(
    state=st.sampled_from((None, *STATES)),
    ok=st.booleans(),
    stale=st.booleans(),
    forced=st.booleans(),
)
def test_a_frozen_shot_never_renders_nor_resends_unless_named(state, ok, stale, forced):
    shotlist = board(SOURCE, CHAINED)
    fps = {"a": "fa", "b": "fb"}
    record = None if state is None else attempt_in(state, "old" if stale else "fa")

    def latest(shot_id: str, fingerprint: str | None) -> Attempt | None:
        if shot_id != "a" or record is None:
            return None
        return record if fingerprint is None or record.fingerprint == fingerprint else None

    decided = assess(
        shotlist,
        fingerprints=fps,
        inputs={"a": {}, "b": {}},
        latest=latest,
        output_ok=lambda _attempt: ok,
        rerender=["a"] if forced else [],
        frozen={"a"},
    )
    kind = decided["a"].kind
    if forced:
        assert kind == "render"
    else:
        assert kind not in ("render", "reconcile")
        unfrozen = assess(
            shotlist,
            fingerprints=fps,
            inputs={"a": {}, "b": {}},
            latest=latest,
            output_ok=lambda _attempt: ok,
        )["a"].kind
        # Only what would pay is held; what is paid for already still comes home.
        assert kind == ("approved" if unfrozen in ("render", "reconcile") else unfrozen)


def test_rerendering_a_source_does_not_pull_an_approved_chained_shot_along():
    shotlist = board(SOURCE, CHAINED)
    assert forced_units(shotlist, ["a"]) == {"a", "b"}
    assert forced_units(shotlist, ["a"], frozen={"b"}) == {"a"}
    assert forced_units(shotlist, ["b"], frozen={"b"}) == {"b"}


# Plan: a board of approved shots costs nothing, whatever changed.


@given(count=st.integers(min_value=1, max_value=20))
def test_a_board_of_approved_shots_plans_to_zero(count):
    shots = tuple(
        Shot(id=f"s{n}", prompt="p", image=LocalImage(path=f"frames/{n}.png")) for n in range(count)
    )
    shotlist = board(*shots)
    notes = {s.id: "inputs changed: prompt" for s in shots}
    p = plan(shotlist, statuses=dict.fromkeys(notes, "approved"), notes=notes)
    assert p.total_cost == ZERO_USD
    assert {s.status for s in p.shots} == {"approved"}
    assert {s.note for s in p.shots} == {"inputs changed: prompt"}
