"""Whether a task the user names is adopted, from its status, model and proof (the table)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._decisions.adoption import judge

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
FRAMES = "frames/puddle.png first"


def verdict_of(**facts: object):
    given_facts = {
        "status": "completed",
        "model": MODEL,
        "wanted_model": MODEL,
        "proved": "match",
        "provable": True,
        "frames": FRAMES,
        "force": False,
    }
    given_facts.update(facts)
    return judge(**given_facts)  # type: ignore[arg-type]


def test_a_match_is_adopted_saying_what_its_video_shows():
    judged = verdict_of()
    assert (judged.verdict, judged.adopt) == ("match", True)
    assert judged.why == "its video shows frames/puddle.png first"


def test_a_mismatch_is_refused_even_forced():
    judged = verdict_of(proved="mismatch", force=True)
    assert (judged.verdict, judged.adopt) == ("mismatch", False)
    assert judged.refusal == "a task that is not the shot's is never adopted, not even with --force"


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        ({"proved": "undecided"}, "its video could not be fetched, or is too unlike"),
        ({"proved": None, "provable": False}, "the shot's own frames (frames/puddle.png first)"),
        ({"proved": None, "status": "processing"}, "it is processing: its video, the proof, is"),
    ],
)
def test_an_undecided_proof_is_adopted_only_with_force(facts, why):
    refused = verdict_of(**facts)
    assert (refused.verdict, refused.adopt) == ("undecided", False)
    assert refused.why.startswith(why)
    assert refused.refusal.endswith("then adopt it with --force")
    assert verdict_of(**facts, force=True).adopt


def test_a_task_of_another_model_is_never_the_shots():
    judged = verdict_of(model="kwaivgi/kling-v2.6-pro/image-to-video", force=True)
    assert (judged.verdict, judged.adopt) == ("mismatch", False)


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout", "deleted"])
def test_a_task_with_no_video_is_never_adopted(status):
    assert not verdict_of(status=status, proved=None, force=True).adopt


@given(
    status=st.sampled_from(["created", "processing", "completed", "failed", "deleted"]),
    proved=st.sampled_from([None, "match", "mismatch", "undecided"]),
    provable=st.booleans(),
    force=st.booleans(),
    same_model=st.booleans(),
)
def test_never_a_mismatch_and_never_unforced_unless_it_matches(
    status, proved, provable, force, same_model
):
    judged = verdict_of(
        status=status,
        proved=proved,
        provable=provable,
        force=force,
        model=MODEL if same_model else "other",
    )
    if judged.adopt:
        assert judged.verdict != "mismatch"
        assert proved != "mismatch"
        assert same_model
        assert status not in ("failed", "deleted")
        assert force or judged.verdict == "match"
