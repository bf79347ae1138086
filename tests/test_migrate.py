"""A folder written before versions, as the previous release left it, brought in losing nothing.

``tests/data/pre-versions.tar.xz`` is a storyboard rendered by the release before versions
against `FakeAccount`: its records (state folder and lock file) and its output folder, with
take 2 of ``storm`` picked (``storm.mp4`` a copy of ``takes/storm.take2.mp4``, take 1 moved to
``takes/storm.take1.mp4``) and the other shots' renders at ``<id>.mp4``.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from kling_pipe import _files
from kling_pipe._decisions.settle import SettleOptions
from kling_pipe._outputs.migrate import migrate_to_versions
from kling_pipe._outputs.versions import list_versions, restore_version
from kling_pipe._records.lockfile import lock_path_for
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from tests.fakeaccount import FakeAccount, FakeProver
from tests.mp4clips import write_video

ARCHIVE = Path(__file__).parent / "data" / "pre-versions.tar.xz"
ORIGIN = FakeAccount.origin


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """The old storyboard unpacked into *tmp_path*; returns its shot list."""
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(tmp_path, filter="data")
    board = tmp_path / "board.toml"
    # The folder was made elsewhere: its owner marker names the shot list where it was made.
    marker = tmp_path / "renders" / "old" / ".kling-pipe-owner.json"
    marker.write_text(json.dumps({"shot_list": str(board)}), encoding="utf-8")
    return board


def hashes(folder: Path) -> dict[str, str]:
    """Every video under *folder* by its sha256 (a render may have two names)."""
    return {_files.sha256_file(p): p.name for p in sorted(folder.rglob("*.mp4"))}


async def run_fake(board: Path, tmp_path: Path) -> tuple[FakeAccount, object]:
    account = FakeAccount(video=write_video(tmp_path / "fresh.mp4", 5, fps=4, shade=90))
    timing = Timing(
        now=account.time.now, monotonic=account.time.monotonic, sleep=account.time.sleep
    )
    result = await render(
        board,
        backend=account,
        timing=timing,
        prover=FakeProver(account),
        options=RunOptions(settle=SettleOptions(), report=False),
    )
    return account, result


async def test_the_first_run_makes_every_old_render_a_version_and_pays_nothing(old, tmp_path):
    out = old.parent / "renders" / "old"
    renders_before = set(hashes(out))
    picked = _files.sha256_file(out / "storm.mp4")
    account, result = await run_fake(old, tmp_path)
    assert account.submits == 0
    assert result.exit_code == 0  # type: ignore[attr-defined]
    # Every paid render is still on disk, now as a version; <id>.mp4 are where they were.
    versions = {_files.sha256_file(p) for p in (out / "versions").glob("*.mp4")}
    assert versions == renders_before
    assert not (out / "takes").exists()
    assert _files.sha256_file(out / "storm.mp4") == picked
    assert sorted(p.name for p in (out / "versions").glob("storm.*")) == [
        "storm.v1.mp4",
        "storm.v2.mp4",
    ]
    lock = json.loads(lock_path_for(old).read_text(encoding="utf-8"))
    entry = lock["local"]["storm"] if "local" in lock else lock["shots"]["storm"]
    assert entry["pick"] == 2  # the pick survives the move
    assert all("/versions/" in take["file"] for take in entry["takes"])


async def test_going_back_works_on_a_migrated_folder(old, tmp_path):
    await run_fake(old, tmp_path)
    shotlist = load(old)
    listed = list_versions(shotlist, "calm", origin=ORIGIN)
    assert [v.number for v in listed.versions] == [1]
    restored = restore_version(shotlist, "storm", 1, origin=ORIGIN)
    out = old.parent / "renders" / "old"
    assert _files.sha256_file(out / "storm.mp4") == restored.version.attempt.sha256


def test_migrating_twice_changes_nothing_the_second_time(old):
    shotlist = load(old)
    with Store.open(state_dir_for(old)) as store:
        first = migrate_to_versions(store, shotlist)
        assert first
        assert migrate_to_versions(store, shotlist) == []


def test_a_render_already_gone_is_left_to_its_record_and_the_rest_moves(old):
    out = old.parent / "renders" / "old"
    (out / "calm.mp4").unlink()
    shutil.rmtree(out / "thumbs")
    shotlist = load(old)
    with Store.open(state_dir_for(old)) as store:
        moved = migrate_to_versions(store, shotlist)
    assert "calm" not in {m.unit for m in moved}
    assert {m.unit for m in moved} >= {"storm", "storm#2", "aftermath"}
