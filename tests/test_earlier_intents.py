"""What proves an earlier run's intent of inputs no take has any more: its recorded frames.

An intent records its frames as the fingerprint does (`fingerprint.shot_inputs`): a local
picture by content, a URL as written, a chain frame by the fingerprint of the source's take.
A later run must find each again to prove the intent's task, even after the user swapped the
picture out of the shot list (`ShotInputs.local_image_with` and the pictures the store
remembers) or edited the chained shot (`Walk._recorded_frame`, `fingerprint.recorded_chain`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import _files
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.pacing import DurationEstimator, PollPolicy
from kling_pipe._decisions.results import ShotResult
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import Store
from kling_pipe._running.delivery import Delivery
from kling_pipe._running.inputs import ShotInputs, relative_to_shotlist
from kling_pipe._running.submitting import SubmitProtocol
from kling_pipe._running.walk import FrameNotYetError, Walk
from kling_pipe._running.watching import TaskWatcher
from kling_pipe._shotlist.fingerprint import (
    fingerprint_units,
    recorded_chain,
    shot_inputs,
    take_fingerprint,
)
from kling_pipe._shotlist.specs import (
    ChainImage,
    LocalImage,
    Shot,
    ShotList,
    Storyboard,
    unit_key,
)
from tests.fakeaccount import MODEL, FakeAccount
from tests.imagefiles import write_image
from tests.videofiles import write_mp4

ORIGIN = "mock"


def intent(store: Store, *, inputs: str = "{}", pictures: dict[str, str] | None = None) -> int:
    return store.record_intent(
        shot_id="a",
        fingerprint="f1",
        inputs=inputs,
        model=MODEL,
        duration=5,
        cost=Decimal("0.420"),
        sent_at=datetime.now(UTC),
        origin=ORIGIN,
        pictures=pictures,
    )


# The store: where an intent's pictures were.


def test_an_intent_remembers_where_its_pictures_were(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        intent(store, pictures={"ab" * 32: "frames/boat.png"})
    with Store.open(tmp_path) as store:
        assert store.picture("ab" * 32) == "frames/boat.png"
        assert store.picture("cd" * 32) is None


def test_a_store_written_before_pictures_were_remembered_is_migrated(tmp_path: Path) -> None:
    """A store of an earlier version has no pictures table: opening it adds one, and its
    attempts are as they were (an intent of then has no picture remembered)."""
    with Store.open(tmp_path) as store:
        old = intent(store)
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("DROP TABLE pictures")
    with Store.open(tmp_path) as store:
        assert [a.id for a in store.attempts()] == [old]
        assert store.picture("ab" * 32) is None
        intent(store, pictures={"ab" * 32: "frames/boat.png"})
        assert store.picture("ab" * 32) == "frames/boat.png"


# ShotInputs: a picture swapped out of the shot list is found where the intent had it.


@pytest.fixture
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("v") / "clip.mp4")


@attrs.define
class Run:
    """The parts of a run `Walk.intent_subject` uses, built as `render` builds them."""

    shotlist: ShotList
    store: Store
    results: dict[str, ShotResult]
    inputs: ShotInputs
    walk: Walk
    delivery: Delivery


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as opened:
        yield opened


def a_run(shotlist: ShotList, store: Store, video: Path) -> Run:
    account = FakeAccount(video)
    units = fingerprint_units(shotlist, _files.sha256_file, {})
    results = {
        key: ShotResult(id=key, duration=shot.duration, state="queued", shot=shot.id)
        for shot in shotlist.shots
        for key in shot.unit_keys
    }
    delivery = Delivery(backend=account, store=store, shotlist=shotlist, origin=ORIGIN)

    def picked_video(shot_id: str) -> Path | None:
        return results[unit_key(shot_id, 1)].file

    inputs = ShotInputs(
        shotlist=shotlist,
        backend=account,
        store=store,
        base_url="http://127.0.0.1:1",
        origin=ORIGIN,
        output_dir=delivery.layout.folder,
        now=account.time.now,
        video_of=picked_video,
        frames=delivery.frames,
    )
    registry = Registry.in_memory()
    walk = Walk(
        shotlist=shotlist,
        backend=account,
        store=store,
        origin=ORIGIN,
        resume={},
        inputs=units.inputs,
        fingerprints=units.fingerprints,
        picks={},
        owner_prefix=str(shotlist.source),
        shot_inputs=inputs,
        delivery=delivery,
        watcher=TaskWatcher(
            account,
            timeout_s=60.0,
            policy=PollPolicy(),
            estimator=DurationEstimator(),
            clock=account.time.monotonic,
            sleep=account.time.sleep,
        ),
        protocol=SubmitProtocol(
            backend=account,
            store=store,
            registry=registry,
            origin=ORIGIN,
            options=SettleOptions(),
            prover=_NoProof(),
            turns=_NoTurns(),
            storyboard=str(shotlist.source),
            now=account.time.now,
            sleep=account.time.sleep,
        ),
        results=results,
        report=lambda _unit, _state, _detail: None,
        earlier=lambda _attempt: None,
        begun={},
    )
    return Run(
        shotlist=shotlist, store=store, results=results, inputs=inputs, walk=walk, delivery=delivery
    )


class _NoProof:
    """The proof is not asked for here: describing an intent proves nothing yet."""

    async def can_prove(self, _subject: object) -> bool:
        raise AssertionError("describing an intent asks for no proof")

    async def verdict(self, _candidate: object, _subject: object) -> str:
        raise AssertionError("describing an intent asks for no proof")

    async def indistinct(self, _one: object, _other: object) -> bool:
        raise AssertionError("describing an intent asks for no turn")


class _NoTurns:
    async def ask(self, _subject: object) -> float:
        raise AssertionError("describing an intent asks for no turn")

    def settled(self, _subject: object) -> None:
        raise AssertionError("describing an intent asks for no turn")


def picture(path: Path, n: int) -> Path:
    """A picture of its own: its size tells it from picture *m* != *n*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, width=64 + 8 * n, height=48)


def board(tmp_path: Path, *shots: Shot) -> ShotList:
    return ShotList(
        storyboard=Storyboard(name="b", model=MODEL), shots=shots, source=tmp_path / "b.toml"
    )


async def test_a_picture_swapped_out_is_found_where_the_intent_had_it(
    tmp_path: Path, store: Store, video: Path
) -> None:
    old = picture(tmp_path / "frames" / "old.png", 1)
    picture(tmp_path / "frames" / "new.png", 2)
    shotlist = board(
        tmp_path, Shot(id="a", prompt="a boat", image=LocalImage(path="frames/new.png"))
    )
    digest = _files.sha256_file(old)
    intent(store, pictures={digest: relative_to_shotlist(old, shotlist)})
    run = a_run(shotlist, store, video)
    assert await run.inputs.local_image_with(digest) == shotlist.base_dir / "frames/old.png"


async def test_a_remembered_picture_changed_or_removed_since_is_not_used(
    tmp_path: Path, store: Store, video: Path
) -> None:
    """The file is from outside: only the content the intent was sent with proves anything."""
    picture(tmp_path / "frames" / "x.png", 4)
    changed = picture(tmp_path / "frames" / "changed.png", 1)
    removed = picture(tmp_path / "frames" / "removed.png", 2)
    shotlist = board(tmp_path, Shot(id="a", prompt="a boat", image=LocalImage(path="frames/x.png")))
    was_changed, was_removed = _files.sha256_file(changed), _files.sha256_file(removed)
    intent(
        store,
        pictures={
            was_changed: relative_to_shotlist(changed, shotlist),
            was_removed: relative_to_shotlist(removed, shotlist),
        },
    )
    picture(changed, 3)
    removed.unlink()
    run = a_run(shotlist, store, video)
    assert await run.inputs.local_image_with(was_changed) is None
    assert await run.inputs.local_image_with(was_removed) is None


async def test_a_take_s_subject_names_its_local_pictures_to_remember(
    tmp_path: Path, store: Store, video: Path
) -> None:
    first = picture(tmp_path / "frames" / "first.png", 1)
    shotlist = board(
        tmp_path, Shot(id="a", prompt="a boat", image=LocalImage(path="frames/first.png"))
    )
    run = a_run(shotlist, store, video)
    (planned,) = _planned(shotlist)
    subject = await run.walk.subject(planned)
    assert subject.pictures == ((_files.sha256_file(first), "frames/first.png"),)


# Walk._recorded_frame: a chain frame recorded by an earlier run.


def chained(
    tmp_path: Path, prompt: str = "the boat sails on", source_prompt: str = "a boat"
) -> ShotList:
    picture(tmp_path / "frames" / "src.png", 1)
    return board(
        tmp_path,
        Shot(id="src", prompt=source_prompt, image=LocalImage(path="frames/src.png")),
        Shot(id="next", prompt=prompt, image=ChainImage(shot="src", frame="last")),
    )


def old_intent(store: Store, shotlist: ShotList) -> Attempt:
    """The intent an earlier run left for *shotlist*'s chained shot, as it was then."""
    units = fingerprint_units(shotlist, _files.sha256_file, {})
    attempt_id = store.record_intent(
        shot_id="next",
        fingerprint=units.fingerprints["next"],
        inputs=json.dumps(units.inputs["next"], sort_keys=True),
        model=MODEL,
        duration=5,
        cost=Decimal("0.420"),
        sent_at=datetime.now(UTC),
        origin=ORIGIN,
    )
    found = store.attempt(attempt_id)
    assert found is not None
    return found


async def test_an_edited_chained_shot_s_old_intent_is_described_with_the_source_s_frame(
    tmp_path: Path, store: Store, video: Path
) -> None:
    """Its key is the frame's sha256, as the edited take's: the submit turn keeps them apart."""
    attempt = old_intent(store, chained(tmp_path))
    edited = chained(tmp_path, prompt="the boat sails on, now at dusk")
    run = a_run(edited, store, video)
    run.results["src"].file = video
    try:
        subject = await run.walk.intent_subject(attempt, None)
        current = await run.walk.subject(_planned(edited)[1])
    finally:
        await run.delivery.frames.close()
    assert subject.first is not None
    assert subject.key[0] == _files.sha256_file(subject.first)
    assert subject.key == current.key
    assert subject.name == f"intent:{attempt.id}"
    assert subject.fingerprint != current.fingerprint


async def test_an_old_intent_whose_source_renders_in_this_run_waits_for_its_video(
    tmp_path: Path, store: Store, video: Path
) -> None:
    attempt = old_intent(store, chained(tmp_path))
    run = a_run(chained(tmp_path, prompt="the boat sails on, now at dusk"), store, video)
    with pytest.raises(FrameNotYetError) as waiting:
        await run.walk.intent_subject(attempt, None)
    assert waiting.value.source == "src"


async def test_an_old_intent_whose_source_was_edited_since_cannot_be_proved(
    tmp_path: Path, store: Store, video: Path
) -> None:
    """Its frame came from a video no shot renders any more: no picture, a key of its own."""
    attempt = old_intent(store, chained(tmp_path))
    run = a_run(chained(tmp_path, source_prompt="a ship"), store, video)
    run.results["src"].file = video
    subject = await run.walk.intent_subject(attempt, None)
    assert subject.first is None
    assert subject.key[0] == json.dumps(json.loads(attempt.inputs)["image"], sort_keys=True)


def _planned(shotlist: ShotList):  # type: ignore[no-untyped-def]
    from kling_pipe._decisions.plan import plan  # noqa: PLC0415

    units = fingerprint_units(shotlist, _files.sha256_file, {})
    return plan(
        shotlist, statuses={}, picks={}, retry_failed=0, fingerprints=units.fingerprints
    ).units


# fingerprint.recorded_chain: the source a recorded chain frame came from, if it still is.

fingerprints_st = st.text(alphabet="0123456789abcdef", min_size=4, max_size=4)


@given(
    source_fp=fingerprints_st,
    take=st.integers(1, 4),
    pick=st.integers(1, 4),
    which=st.sampled_from(["first", "last"]),
)
def test_a_recorded_chain_is_found_again_only_from_the_take_it_came_from(
    source_fp: str, take: int, pick: int, which: str
) -> None:
    """Recorded with take *take* picked, looked up with take *pick* picked now."""
    recorded = {"shot": take_fingerprint(source_fp, take), "frame": which}
    now = {unit_key("src", k): take_fingerprint(source_fp, k) for k in range(1, 5)}
    now["other"] = "ffff"
    found = recorded_chain(
        recorded, fingerprints=now, picks={"src": pick}, shot_ids=["other", "src"]
    )
    if take == pick:
        assert found == ChainImage(shot="src", frame=which)  # type: ignore[arg-type]
    else:
        assert found is None


def test_a_recorded_chain_matches_what_the_fingerprint_records() -> None:
    """`shot_inputs` writes what `recorded_chain` reads: one format, read back."""
    shot = Shot(id="next", prompt="p", image=ChainImage(shot="src", frame="first"))
    recorded = shot_inputs(
        shot, MODEL, image_hash=lambda _i: "", chain_fp={"src": "abcd"}, picks={"src": 2}
    )
    found = recorded_chain(
        recorded["image"],
        fingerprints={"src": "abcd", "src#2": take_fingerprint("abcd", 2)},
        picks={"src": 2},
        shot_ids=["src"],
    )
    assert found == ChainImage(shot="src", frame="first")


@pytest.mark.parametrize(
    "recorded",
    [{"shot": 3, "frame": "last"}, {"shot": "abcd", "frame": "middle"}, {"frame": "last"}],
)
def test_a_recorded_chain_of_no_known_form_is_no_chain(recorded: dict[str, object]) -> None:
    assert (
        recorded_chain(recorded, fingerprints={"src": "abcd"}, picks={}, shot_ids=["src"]) is None
    )
