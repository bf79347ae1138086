"""What each shot needs, from what earlier runs recorded (the table in resume.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.resume import assess
from kling_pipe._shotlist.chains import dependants_closure
from kling_pipe._shotlist.specs import ChainImage, Shot, ShotList, Storyboard, UrlImage

A = Shot(id="a", prompt="p", image=UrlImage(url="https://x/a.png"))
B = Shot(id="b", prompt="p", image=ChainImage(shot="a", frame="last"))
C = Shot(id="c", prompt="p", image=UrlImage(url="https://x/c.png"))
BOARD = ShotList(storyboard=Storyboard(name="n"), shots=(A, B, C))
FPS = {"a": "fa", "b": "fb", "c": "fc"}
INPUTS = {sid: {"prompt": "p", "model": "m"} for sid in FPS}


def attempt(shot_id: str, state: str, *, fp: str | None = None, error: str = "") -> Attempt:
    return Attempt(
        id=1,
        shot_id=shot_id,
        fingerprint=fp or FPS[shot_id],
        inputs=json.dumps({"prompt": "old", "model": "m"}),
        model="m",
        duration=5,
        cost=Decimal("0.420"),
        state=state,
        task_id=None if state == "intent" else "t",  # type: ignore[arg-type]
        sent_at=datetime.now(UTC),
        completed_at=None,
        error=error,
        code=None,
        file="renders/x.mp4",
        sha256="s",
        bytes=1,
        polls=0,
    )


def decide(records: dict[str, Attempt], *, ok: bool = True, **kwargs):
    def latest(shot_id, fingerprint):
        found = records.get(shot_id)
        if found is None or (fingerprint is not None and found.fingerprint != fingerprint):
            return None
        return found

    result = assess(
        BOARD, fingerprints=FPS, inputs=INPUTS, latest=latest, output_ok=lambda _: ok, **kwargs
    )
    return {sid: (r.kind, r.reason) for sid, r in result.items()}


@pytest.mark.parametrize(
    ("state", "ok", "kind"),
    [
        ("downloaded", True, "cached"),
        ("downloaded", False, "refetch"),
        ("completed", True, "refetch"),
        ("submitted", True, "poll"),
        ("intent", True, "reconcile"),
        ("uncertain", True, "uncertain"),
        ("failed", True, "render"),
        ("refused", True, "render"),
    ],
)
def test_each_recorded_state_leads_to_its_action(state, ok, kind):
    assert decide({"c": attempt("c", state)}, ok=ok)["c"][0] == kind


def test_a_shot_never_attempted_is_new():
    assert decide({})["a"] == ("render", "new")


def test_a_shot_with_only_an_old_fingerprint_is_stale_and_says_why():
    assert decide({"c": attempt("c", "downloaded", fp="old")})["c"] == (
        "render",
        "stale: prompt changed",
    )


def test_uncertain_is_resubmitted_only_when_asked():
    records = {"c": attempt("c", "uncertain", error="ambiguous")}
    assert decide(records)["c"] == ("uncertain", "ambiguous")
    assert decide(records, resubmit_uncertain=True)["c"][0] == "render"


def test_an_expired_output_is_left_alone_even_with_resubmit_uncertain_and_rerendered_if_named():
    records = {"c": attempt("c", "expired", error="output expired: ...")}
    assert decide(records)["c"] == ("expired", "output expired: ...")
    assert decide(records, resubmit_uncertain=True)["c"][0] == "expired"
    assert decide(records, rerender={"c"})["c"] == ("render", "--rerender")


def test_rerender_forces_the_shot_and_those_chained_from_it():
    records = {sid: attempt(sid, "downloaded") for sid in FPS}
    assert decide(records, rerender={"a"}) == {
        "a": ("render", "--rerender"),
        "b": ("render", "chained from a shot re-rendered"),
        "c": ("cached", ""),
    }


def test_the_closure_of_dependants_is_transitive():
    d = Shot(id="d", prompt="p", image=ChainImage(shot="b", frame="first"))
    board = ShotList(storyboard=Storyboard(name="n"), shots=(A, B, C, d))
    assert dependants_closure(board, {"a"}) == {"a", "b", "d"}
