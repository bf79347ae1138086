"""Takes rendered, picked, resumed, cut and collected, against an account that is not ours.

`FakeAccount` (in fake time) stands in for WaveSpeed; here every task it makes renders a
video of its own shade, so a take can be told from another by its bytes and its frames.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from kling_pipe import _files
from kling_pipe import _files as durable
from kling_pipe._decisions.plan import plan
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._outputs.cut import cut
from kling_pipe._outputs.folders import collect_garbage, garbage
from kling_pipe._outputs.picks import PickError, format_pick, pick_take
from kling_pipe._records.assessment import (
    assess_shotlist,
    open_store,
    read_lock_of,
    takes_of,
)
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.status import format_status, status_as_json, status_lines
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from kling_pipe.exceptions import KlingPipeError
from tests.fakeaccount import FakeAccount, FakeProver
from tests.mp4clips import frame_shades, write_video

ORIGIN = FakeAccount.origin
SHADES = (40, 100, 160, 220, 70, 130, 190)


class ShadedAccount(FakeAccount):
    """A fake account whose n-th task renders a clip of the n-th shade (5 s, like the shots)."""

    clips: dict[str, Path]

    async def download(self, url: str, dest: Path):  # type: ignore[no-untyped-def]
        task_id = url.rsplit("/", 1)[1].removesuffix(".mp4")
        order = list(self.tasks).index(task_id)
        real = self.video
        self.video = self.clips[str(order % len(SHADES))]
        try:
            return await super().download(url, dest)
        finally:
            self.video = real


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        str(n): write_video(folder / f"{n}.mp4", 5, fps=4, shade=shade)
        for n, shade in enumerate(SHADES)
    }


@pytest.fixture
def account(clips) -> ShadedAccount:
    made = ShadedAccount(video=clips["0"], processing_s=5.0)
    made.clips = clips
    return made


def write_board(folder: Path, frames: Path, *, storm_takes: int = 2) -> Path:
    """storm (the takes), and aftermath chained from storm's last frame."""
    path = folder / "board.toml"
    path.write_text(
        f"""version = 1

[storyboard]
name = "b"

[[shots]]
id = "storm"
prompt = "The sky darkens over the lighthouse"
image = "{frames.name}/puddle.png"
takes = {storm_takes}

[[shots]]
id = "aftermath"
prompt = "Calm sea at dawn"
image = {{ shot = "storm", frame = "last" }}
""",
        encoding="utf-8",
    )
    return path


async def run(path: Path, account: FakeAccount, concurrency: int | None = None, **kwargs: object):
    timing = Timing(
        now=account.time.now, monotonic=account.time.monotonic, sleep=account.time.sleep
    )
    settle = SettleOptions()
    options = RunOptions(concurrency=concurrency, settle=settle, report=False, **kwargs)
    return await render(
        path, backend=account, timing=timing, prover=FakeProver(account), options=options
    )


def lock_of(path: Path) -> dict:
    return json.loads(lock_path_for(path).read_text(encoding="utf-8"))


def version_file(path: Path, key: str) -> Path:
    """Return the version of render unit *key* (``storm``, ``storm#2``) as the records name it.

    Takes of one shot are delivered concurrently, so which of them is v1 is the order they
    came home in: a test asks the records rather than guessing.
    """
    shotlist = load(path)
    store = open_store(shotlist, create=False)
    assert store is not None
    with store:
        found = [a for a in store.attempts() if a.shot_id == key and a.state == "downloaded"]
    assert found, key
    file = found[-1].file
    assert file is not None
    assert "/versions/" in file, file
    return shotlist.base_dir / file


def middle_shade(video: Path) -> int:
    shades = frame_shades(video)
    return shades[len(shades) // 2]


@pytest.fixture
def board(tmp_path: Path, frames: Path) -> Path:
    return write_board(tmp_path, frames)


# The "done when" scenario, step by step.


def test_takes_plan_to_the_exact_cost(board):
    p = plan(load(board))
    assert [(s.id, s.shot.takes, s.cost) for s in p.shots] == [
        ("storm", 2, Decimal("0.840")),
        ("aftermath", 1, Decimal("0.420")),
    ]
    assert p.total_cost == Decimal("1.260")


async def test_both_takes_are_rendered_and_only_them_and_both_stay_on_disk(board, account):
    result = await run(board, account)
    assert result.exit_code == 0, result.as_json()
    assert [(s.id, s.shot_id, s.take, s.picked, s.state) for s in result.shots] == [
        ("storm", "storm", 1, True, "done"),
        ("storm#2", "storm", 2, False, "done"),
        ("aftermath", "aftermath", 1, True, "done"),
    ]
    assert account.submits == 3
    assert result.spent == Decimal("1.260")
    out = board.parent / "renders" / "b"
    take1, take2 = version_file(board, "storm"), version_file(board, "storm#2")
    # Every render is a version of the shot; <id>.mp4 is a copy of the picked take's.
    assert {take1.name, take2.name} == {"storm.v1.mp4", "storm.v2.mp4"}
    assert result.shots[0].file == take1
    assert result.shots[1].file == take2
    assert _files.sha256_file(take1) != _files.sha256_file(take2)
    assert _files.sha256_file(out / "storm.mp4") == _files.sha256_file(take1)
    # Each take is its own task, record and lock entry.
    assert len({s.task_id for s in result.shots}) == 3
    entry = lock_of(board)["shots"]["storm"]
    assert entry["pick"] == 1
    assert [t["take"] for t in entry["takes"]] == [1, 2]
    assert [t["task_id"] for t in entry["takes"]] == [s.task_id for s in result.shots[:2]]
    assert [t["sha256"] for t in entry["takes"]] == [s.sha256 for s in result.shots[:2]]
    assert entry["task_id"] == result.shots[0].task_id  # the top describes the picked take
    assert lock_of(board)["totals"] == {
        "shots": 2,
        "rendered": 2,
        "seconds": 15,
        "cost": "1.260",
        "takes": 3,
    }
    json_totals = result.as_json()["totals"]
    assert (json_totals["shots"], json_totals["takes"], json_totals["done"]) == (2, 3, 3)


async def test_pick_places_take_2_records_it_and_the_chained_shot_alone_renders_again(
    board, account
):
    first = await run(board, account)
    shotlist = load(board)
    take2 = first.shots[1]
    old_aftermath = first.shots[2].task_id

    picked = pick_take(shotlist, "storm", 2, origin=ORIGIN)

    out = board.parent / "renders" / "b"
    assert picked.file == out / "storm.mp4"
    assert _files.sha256_file(out / "storm.mp4") == take2.sha256
    take1 = version_file(board, "storm")
    assert _files.sha256_file(take1) == first.shots[0].sha256
    assert [(s.id, s.cost) for s in picked.stale] == [("aftermath", Decimal("0.420"))]
    assert picked.to_spend == Decimal("0.420")
    entry = lock_of(board)["shots"]["storm"]
    assert (entry["pick"], entry["task_id"], entry["sha256"]) == (2, take2.task_id, take2.sha256)
    assert [t["file"] for t in entry["takes"]] == [
        f"renders/b/versions/{take1.name}",
        f"renders/b/versions/{version_file(board, 'storm#2').name}",
    ]
    text = format_pick(picked, "kling-pipe run board.toml")
    assert "stale now, chained from storm: aftermath (0.420 USD)" in text
    assert "`kling-pipe run board.toml` renders them again: 0.420 USD" in text

    # The next plan says the chained shot renders again, for its price.
    store = open_store(shotlist, create=False)
    assert store is not None
    with store:
        assessment = assess_shotlist(shotlist, store, origin=ORIGIN, lock=read_lock_of(shotlist))
    again = plan(shotlist, statuses=assessment.statuses, picks=assessment.picks)
    assert [(u.id, u.status, u.cost) for u in again.units] == [
        ("storm", "cached", Decimal("0.000")),
        ("storm#2", "cached", Decimal("0.000")),
        ("aftermath", "render", Decimal("0.420")),
    ]

    # And the run renders only that shot, from take 2's last frame; the pick survives it.
    submits = account.submits
    second = await run(board, account)
    assert second.exit_code == 0
    assert [s.state for s in second.shots] == ["cached", "cached", "done"]
    assert account.submits == submits + 1
    assert second.shots[2].task_id != old_aftermath
    assert lock_of(board)["shots"]["storm"]["pick"] == 2
    frame = out / "frames" / "storm.last.png"
    assert frame.is_file()
    assert _files.sha256_file(out / "storm.mp4") == take2.sha256


async def test_picking_take_1_again_brings_the_first_chained_render_back_for_free(board, account):
    first = await run(board, account)
    shotlist = load(board)
    pick_take(shotlist, "storm", 2, origin=ORIGIN)
    await run(board, account)
    submits = account.submits
    back = pick_take(shotlist, "storm", 1, origin=ORIGIN)
    assert back.stale == ()  # its old render is fetched again from its task: nothing to pay
    out = board.parent / "renders" / "b"
    assert _files.sha256_file(out / "storm.mp4") == first.shots[0].sha256
    third = await run(board, account)
    assert account.submits == submits
    assert third.shots[2].task_id == first.shots[2].task_id
    assert "pick" in lock_of(board)["shots"]["storm"]
    assert lock_of(board)["shots"]["storm"]["pick"] == 1


async def test_the_cut_uses_the_picked_take(board, account, tmp_path):
    await run(board, account)
    shotlist = load(board)
    folder = OutputLayout.of(shotlist, ORIGIN).folder
    before = cut(shotlist, tmp_path / "one.mp4", origin=ORIGIN)
    assert before.shots == ("storm", "aftermath")
    pick_take(shotlist, "storm", 2, origin=ORIGIN)
    await run(board, account)
    after = cut(shotlist, tmp_path / "two.mp4", origin=ORIGIN)
    assert after.shots == ("storm", "aftermath")
    film_shades = frame_shades(tmp_path / "two.mp4")
    assert folder / "versions" == version_file(board, "storm#2").parent
    take2_shade = middle_shade(version_file(board, "storm#2"))
    take1_shade = middle_shade(version_file(board, "storm"))
    assert take1_shade != take2_shade
    assert film_shades[len(film_shades) // 4] == take2_shade


# Raising and lowering takes.


async def test_raising_takes_renders_only_the_new_ones(tmp_path, frames, account):
    board = write_board(tmp_path, frames, storm_takes=1)
    first = await run(board, account)
    assert [s.id for s in first.shots] == ["storm", "aftermath"]
    assert lock_of(board)["shots"]["storm"].keys() >= {"task_id", "fingerprint"}
    assert "takes" not in lock_of(board)["shots"]["storm"]  # one take: the entry as ever
    write_board(tmp_path, frames, storm_takes=3)
    submits = account.submits
    second = await run(board, account)
    assert [(s.id, s.state) for s in second.shots] == [
        ("storm", "cached"),
        ("storm#2", "done"),
        ("storm#3", "done"),
        ("aftermath", "cached"),
    ]
    assert account.submits == submits + 2
    assert second.spent == Decimal("0.840")


async def test_lowering_takes_keeps_the_paid_ones_until_gc_is_told(board, account):
    first = await run(board, account)
    take2 = version_file(board, "storm#2")
    write_board(board.parent, board.parent / "frames", storm_takes=1)
    submits = account.submits
    second = await run(board, account)
    assert [s.state for s in second.shots] == ["cached", "cached"]
    assert account.submits == submits
    assert take2.is_file()
    shotlist = load(board)
    store = open_store(shotlist, create=True)  # to be written: gc forgets what it removes
    assert store is not None
    with store:
        assert garbage(shotlist, store) == []  # a version goes only by the user's word
        thumbs = [
            take2.parent.parent / "thumbs" / f"versions.{take2.stem}.{which}.jpg"
            for which in ("first", "last")
        ]
        assert garbage(shotlist, store, keep_last=0) == [*thumbs, take2]  # its thumbnails too
        assert collect_garbage(shotlist, store, dry_run=False, keep_last=0) == [*thumbs, take2]
    assert not take2.exists()
    assert (board.parent / "renders" / "b" / "storm.mp4").is_file()
    assert first.shots[0].file is not None
    assert first.shots[0].file.is_file()


async def test_gc_keeps_every_current_take_and_the_picked_file(board, account):
    await run(board, account)
    shotlist = load(board)
    pick_take(shotlist, "storm", 2, origin=ORIGIN)
    await run(board, account)
    store = open_store(shotlist, create=False)
    assert store is not None
    with store:
        found = garbage(shotlist, store)
    out = board.parent / "renders" / "b"
    # Every version is kept without --versions; the copies at <id>.mp4 always.
    for kept in ("storm.mp4", "aftermath.mp4"):
        assert out / kept not in found
    assert not [path for path in found if path.parent == out / "versions"]


# Pick: what it refuses.


async def test_pick_refuses_an_unknown_shot_a_missing_take_and_an_unrendered_one(board, account):
    shotlist = load(board)
    with pytest.raises(PickError, match=r'no shot "strom" in the shot list; did you mean "storm"'):
        pick_take(shotlist, "strom", 2, origin=ORIGIN)
    with pytest.raises(PickError, match=r'"storm" has 2 takes; take 3 does not exist'):
        pick_take(shotlist, "storm", 3, origin=ORIGIN)
    with pytest.raises(PickError, match=r'"aftermath" has 1 take, so there is nothing to pick'):
        pick_take(shotlist, "aftermath", 2, origin=ORIGIN)
    with pytest.raises(PickError, match=r'take 2 of shot "storm" is not rendered \(pending\)'):
        pick_take(shotlist, "storm", 2, origin=ORIGIN)
    # A refused pick writes nothing.
    assert not (board.parent / "renders").exists()
    assert not lock_path_for(board).exists()
    assert issubclass(PickError, KlingPipeError)


async def test_a_pick_of_a_take_whose_file_was_changed_is_refused(board, account):
    first = await run(board, account)
    assert first.shots[1].file is not None
    first.shots[1].file.write_bytes(b"edited")
    with pytest.raises(PickError, match=r"take 2 of shot \"storm\" is not rendered \(refetch\)"):
        pick_take(load(board), "storm", 2, origin=ORIGIN)


async def test_picking_the_picked_take_changes_nothing(board, account):
    await run(board, account)
    again = pick_take(load(board), "storm", 1, origin=ORIGIN)
    assert not again.changed
    assert again.stale == ()
    assert "was already the picked take" in format_pick(again, "kling-pipe run board.toml")


async def test_a_pick_lapses_when_the_shot_is_edited(board, account):
    await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    board.write_text(board.read_text().replace("darkens", "darkens fast"), encoding="utf-8")
    shotlist = load(board)
    assessment = assess_shotlist(shotlist, None, origin=ORIGIN, lock=read_lock_of(shotlist))
    assert assessment.pick("storm") == 1
    await run(board, account)
    assert lock_of(board)["shots"]["storm"]["pick"] == 1


# Status and the view others build on.


async def test_status_and_its_json_show_the_takes_and_the_pick(board, account):
    await run(board, account)
    shotlist = load(board)
    pick_take(shotlist, "storm", 2, origin=ORIGIN)
    store = open_store(shotlist, create=False)
    assert store is not None
    with store:
        assessment = assess_shotlist(shotlist, store, origin=ORIGIN, lock=read_lock_of(shotlist))
        spent = store.spent(ORIGIN)
    p = plan(shotlist, statuses=assessment.statuses, picks=assessment.picks)
    lines = status_lines(shotlist, assessment, p)
    text = format_status(shotlist, lines, spent=spent, plan=p)
    take1, take2 = version_file(board, "storm"), version_file(board, "storm#2")
    n1, n2 = (int(v.name.removesuffix(".mp4").rsplit(".v", 1)[1]) for v in (take1, take2))
    assert text.splitlines()[1:] == [
        "  storm      cached     take 2 of 2 picked: renders/b/storm.mp4",
        f"    take 1   cached     renders/b/versions/{take1.name}",
        f"    take 2   cached     renders/b/versions/{take2.name}  (picked)",
        "  aftermath  stale      image: take 2 of its source was picked; renders again for "
        "0.420 USD",
        "spent so far: 1.260 USD; still to spend: 0.420 USD",
    ]
    storm = status_as_json(lines[0])
    assert (storm["takes"], storm["pick"]) == (2, 2)
    assert [(t["take"], t["picked"]) for t in storm["take_status"]] == [(1, False), (2, True)]  # type: ignore[union-attr]
    views = takes_of(shotlist, assessment)
    assert [(v.key, v.picked, v.kind) for v in views["storm"]] == [
        ("storm", False, "cached"),
        ("storm#2", True, "cached"),
    ]
    out = board.parent / "renders" / "b"
    assert [v.file for v in views["storm"]] == [take1, take2]
    assert [v.version for v in views["storm"]] == [n1, n2]
    assert take1.parent == out / "versions"
    assert views["aftermath"][0].kind == "render"


async def test_the_picked_file_is_a_copy_never_a_link(board, account):
    await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    out = board.parent / "renders" / "b"
    placed, take2 = out / "storm.mp4", version_file(board, "storm#2")
    assert not placed.is_symlink()
    assert not placed.samefile(take2)
    assert placed.read_bytes() == take2.read_bytes()
    assert not list(out.rglob("*.part"))


async def test_a_graded_file_copied_over_the_picked_take_never_rewrites_the_paid_take(
    board, account, tmp_path
):
    first = await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    out = board.parent / "renders" / "b"
    graded = write_video(tmp_path / "graded.mp4", 5, fps=4, shade=250)
    with graded.open("rb") as src, (out / "storm.mp4").open("r+b") as dst:  # cp: same inode
        dst.truncate()
        dst.write(src.read())
    take2 = version_file(board, "storm#2")
    assert _files.sha256_file(take2) == first.shots[1].sha256
    again = await run(board, account)  # the graded file is the user's: kept, the pick placed
    assert [(s.id, s.state) for s in again.shots][:2] == [
        ("storm", "cached"),
        ("storm#2", "cached"),
    ]
    assert (out / "storm.yours-1.mp4").read_bytes() == graded.read_bytes()
    assert _files.sha256_file(out / "storm.mp4") == first.shots[1].sha256


async def test_a_fresh_checkout_with_the_lock_file_keeps_the_pick_and_pays_nothing(board, account):
    await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    await run(board, account)
    # A fresh checkout: the lock file and the videos, no state folder.
    state = board.parent / "board.toml.kling-state"
    for path in sorted(state.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    state.rmdir()
    submits = account.submits
    result = await run(board, account)
    assert [s.state for s in result.shots] == ["cached", "cached", "cached"]
    assert account.submits == submits
    assert lock_of(board)["shots"]["storm"]["pick"] == 2


async def test_rerender_of_one_take_renders_that_take_alone(board, account):
    await run(board, account)
    submits = account.submits
    again = await run(board, account, rerender=["storm#2"])
    assert [(s.id, s.state) for s in again.shots] == [
        ("storm", "cached"),
        ("storm#2", "done"),
        ("aftermath", "cached"),
    ]
    assert account.submits == submits + 1
    with pytest.raises(KlingPipeError, match=r"--rerender: no shot with id 'storm#3'"):
        await run(board, account, rerender=["storm#3"])


async def test_a_take_whose_video_fails_the_checks_is_set_aside_under_its_own_name(
    board, account, tmp_path
):
    account.clips = {**account.clips, "1": write_video(tmp_path / "short.mp4", 2, fps=4)}
    result = await run(board, account, concurrency=1)  # the second task is take 2's
    take2 = result.shots[1]
    assert take2.state == "failed"
    assert "kept aside" in take2.error
    aside = board.parent / "renders" / "b" / "rejected" / f"storm.take2.{take2.task_id}.mp4"
    assert aside.is_file()
    assert result.shots[2].state == "done"  # chained from the picked take 1, which is fine


async def test_a_pick_survives_lowering_takes_and_the_picked_take_is_never_garbage(board, account):
    """Explore 2 takes, pick take 2, set takes = 1: storm.mp4 stays take 2, gc keeps it."""
    first = await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    await run(board, account)  # aftermath follows take 2
    write_board(board.parent, board.parent / "frames", storm_takes=1)
    submits = account.submits
    again = await run(board, account)
    out = board.parent / "renders" / "b"
    take2 = version_file(board, "storm#2")
    assert [(s.id, s.state) for s in again.shots] == [
        ("storm#2", "cached"),
        ("aftermath", "cached"),
    ]
    assert account.submits == submits
    assert _files.sha256_file(out / "storm.mp4") == first.shots[1].sha256
    assert lock_of(board)["shots"]["storm"]["pick"] == 2
    shotlist = load(board)
    store = open_store(shotlist, create=False)
    assert store is not None
    with store:
        assessment = assess_shotlist(shotlist, store, origin=ORIGIN, lock=read_lock_of(shotlist))
        found = garbage(shotlist, store, keep_last=0)
    assert assessment.picks["storm"] == 2
    assert take2 not in found
    assert out / "storm.mp4" not in found
    assert version_file(board, "storm") in found  # the take no longer asked for
    p = plan(shotlist, statuses=assessment.statuses, picks=assessment.picks)
    assert p.total_cost == Decimal("0.000")
    lines = status_lines(shotlist, assessment, p)
    assert lines[0].detail == "take 2 picked, kept since takes went down to 1: renders/b/storm.mp4"


async def test_a_picked_take_that_cannot_be_placed_is_a_warning_and_the_next_run_places_it(
    board, account, monkeypatch
):
    await run(board, account)
    pick_take(load(board), "storm", 2, origin=ORIGIN)
    version_file(board, "storm#2").unlink()  # fetched again
    real_place = durable.place

    def full_disk(source: Path, dest: Path, *, replace: bool = True) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "place", full_disk)
    result = await run(board, account)
    take2 = result.shots[1]
    assert take2.state == "done"
    assert any("No space left on device" in w for w in take2.warnings)
    monkeypatch.setattr(durable, "place", real_place)
    await run(board, account)
    out = board.parent / "renders" / "b"
    assert _files.sha256_file(out / "storm.mp4") == take2.sha256
