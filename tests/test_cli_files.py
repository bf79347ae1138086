"""The promises about the user's folder and the records between runs, kept at the command line.

Each test is named for the promise it protects: a paid video is never overwritten, `plan`
agrees with `run` about money, a file from outside (the lock file, the owner marker, the run
lock) is checked before use and a hostile one is one line and exit 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

import kling_pipe
from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._records.assessment import assess_shotlist
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._shotlist.loader import load
from mockserver import FixedTime, MockConfig, ThreadedMockServer
from tests.cli_support import kp

ONE_SHOT = (
    'version = 1\n[storyboard]\nname = "film"\n'
    '[[shots]]\nid = "a"\nprompt = "a boat"\nimage = "frames/puddle.png"\n'
)
FAST = MockConfig(processing=FixedTime(seconds=0.1))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_as_wavespeed(shotlist: Path, base_url: str) -> None:
    """Render *shotlist* through the Python API against *base_url*, recorded as WaveSpeed's."""

    async def render() -> None:
        async with aiohttp.ClientSession() as session:
            client = WaveSpeedClient(
                session=session, base_url=base_url, api_key="mock-key", origin=DEFAULT_BASE_URL
            )
            result = await kling_pipe.render(shotlist, backend=client, options=RunOptions())
            assert [s.state for s in result.shots] == ["done"]

    asyncio.run(render())


def test_a_local_server_run_never_overwrites_a_paid_wavespeed_video(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    paid_video = shotlist.parent / "renders" / "film" / "a.mp4"
    with ThreadedMockServer(FAST) as paid, ThreadedMockServer(FAST) as local:
        render_as_wavespeed(shotlist, paid.base_url)
        paid_bytes = sha(paid_video)
        done = kp(
            "run", shotlist, "--backend", "wavespeed", "--base-url", local.base_url, "--yes",
            env={"WAVESPEED_API_KEY": "mock-key"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sha(paid_video) == paid_bytes
    assert (shotlist.parent / "renders" / "film" / "local" / "a.mp4").is_file()
    status = kp("status", shotlist, "--backend", "wavespeed")
    assert status.returncode == 0, status.stderr
    assert "a  cached" in status.stdout


def leave_an_unsettled_intent(shotlist: Path, shot_id: str) -> None:
    """Record what a run killed between sending a submit and hearing back leaves: an intent."""
    board = load(shotlist)
    assessment = assess_shotlist(board, None, origin=MOCK_ORIGIN)
    store = Store.open(state_dir_for(shotlist))
    try:
        store.record_intent(
            shot_id=shot_id,
            fingerprint=assessment.fingerprints[shot_id],
            inputs=json.dumps(assessment.inputs[shot_id]),
            model=board.storyboard.model,
            duration=5,
            cost=Decimal("0.420"),
            sent_at=datetime.now(UTC),
            origin=MOCK_ORIGIN,
        )
    finally:
        store.close()


def test_plan_prices_a_renamed_shots_unsettled_submit_as_run_does(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    leave_an_unsettled_intent(shotlist, "a")
    shotlist.write_text(
        ONE_SHOT.replace('name = "film"', 'name = "film"\nmax_cost = 0.1').replace(
            'id = "a"', 'id = "a2"'
        )
    )
    plan = kp("plan", shotlist)
    run = kp("run", shotlist, "--yes")
    assert run.returncode == 2, run.stderr
    assert "the plan costs 0.420 USD" in run.stderr
    assert plan.returncode == 2, plan.stdout
    assert "a2  5 s       frames/puddle.png  0.420  reconcile" in plan.stdout
    assert "the plan costs 0.420 USD" in plan.stderr


TWINS = (
    'version = 1\n[storyboard]\nname = "film"\nmax_cost = 0.5\n'
    '[[shots]]\nid = "a"\nprompt = "a boat"\nimage = "frames/puddle.png"\n'
    '[[shots]]\nid = "b"\nprompt = "a boat"\nimage = "frames/puddle.png"\n'
)


def test_validate_plan_and_status_price_identical_shots_once_as_run_does(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(TWINS)
    validate = kp("validate", shotlist)
    assert validate.returncode == 0, validate.stderr
    assert "(2 shots, 10 s, 0.420 USD)" in validate.stdout
    plan = kp("plan", shotlist)
    assert plan.returncode == 0, plan.stderr
    assert "b   5 s       frames/puddle.png  0.000  copy" in plan.stdout
    status = kp("status", shotlist)
    assert "0.420 USD to go" in status.stdout
    run = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_run_never_writes_through_a_run_pid_that_leads_to_another_file(
    tmp_path: Path, frames: Path, write_toml: Callable[..., Path], link: str
) -> None:
    shotlist = write_toml(ONE_SHOT)
    precious = tmp_path / "outside" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("precious data outside the project\n")
    state = state_dir_for(shotlist)
    state.mkdir()
    if link == "symbolic":
        (state / "run.pid").symlink_to(precious)
    else:
        (state / "run.pid").hardlink_to(precious)
    done = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"kling-pipe: {state / 'run.pid'}: is not a plain file (a symbolic link, a hard link, "
        "a folder or a device); kling-pipe will not write through it: remove it and run again"
    ]
    assert precious.read_text() == "precious data outside the project\n"


def test_a_copied_project_is_its_own_while_the_original_is_kept(
    tmp_path: Path, frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT.replace('"a boat"\n', '"a boat"\ntakes = 2\n'))
    first = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert first.returncode == 0, first.stderr
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy, symlinks=True)
    again = kp("run", copy / shotlist.name, "--yes", "-q", "--mock-processing", "0.1")
    assert again.returncode == 0, again.stderr
    assert "belongs to" not in again.stderr
    pick = kp("pick", copy / shotlist.name, "a", "2")
    assert pick.returncode == 0, pick.stderr
    original = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert original.returncode == 0, original.stderr


SHARED = 'version = 1\n[storyboard]\nname = "{name}"\noutput_dir = "renders/shared"\n'


@pytest.mark.parametrize(("command", "output"), [("cut", "b.mp4"), ("export", "b.otio")])
def test_cut_and_export_never_take_another_shot_lists_videos_for_their_own(
    tmp_path: Path, frames: Path, write_toml: Callable[..., Path], command: str, output: str
) -> None:
    shot = '[[shots]]\nid = "one"\nprompt = "{prompt}"\nimage = "frames/puddle.png"\n'
    a = write_toml(SHARED.format(name="a") + shot.format(prompt="a boat"), "a.toml")
    b = write_toml(SHARED.format(name="b") + shot.format(prompt="a ship"), "b.toml")
    assert kp("run", a, "--yes", "-q", "--mock-processing", "0.1").returncode == 0
    done = kp(command, b, "-o", tmp_path / output)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"kling-pipe: {tmp_path / 'renders' / 'shared'}: this output folder belongs to {a}, "
        f"and {b} has no renders there; give one of them its own storyboard.output_dir"
    ]
    assert not (tmp_path / output).exists()


def rendered(shotlist: Path) -> Path:
    """Render *shotlist* on the bundled mock and return its lock file."""
    done = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    return shotlist.with_name(f"{shotlist.name}.lock.json")


def test_a_lock_file_of_a_newer_version_is_refused_and_never_rewritten(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    lock = rendered(shotlist)
    document = json.loads(lock.read_text())
    document["lock_version"] = 2
    document["future_field"] = {"keep": "me"}
    lock.write_text(json.dumps(document))
    before = lock.read_bytes()
    shotlist.write_text(ONE_SHOT.replace("a boat", "a big boat"))
    for command in ("status", "plan", "run"):
        done = kp(command, shotlist, "--yes") if command == "run" else kp(command, shotlist)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.splitlines() == [
            f"kling-pipe: {lock}: lock_version: 2 was written by a newer kling-pipe; this one "
            "reads lock_version 1: upgrade kling-pipe (the lock file is left as it is)"
        ]
    assert lock.read_bytes() == before


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("file", "renders/film/mock/a\0.mp4", "must be a file path, not text with a NUL byte"),
        ("bytes", 10**30, "must be a whole number of bytes, not a number"),
    ],
    ids=["file-with-a-nul", "bytes-beyond-any-file"],
)
def test_a_hostile_lock_field_is_one_line_naming_the_key_not_a_traceback(
    frames: Path, write_toml: Callable[..., Path], field: str, value: object, problem: str
) -> None:
    shotlist = write_toml(ONE_SHOT)
    lock = rendered(shotlist)
    for database in state_dir_for(shotlist).glob("state.sqlite*"):
        database.unlink()  # a fresh checkout: the lock file is all there is
    document = json.loads(lock.read_text())
    document["simulated"]["a"][field] = value
    lock.write_text(json.dumps(document))
    for command in ("status", "plan", "run"):
        done = kp(command, shotlist, "--yes", "-q") if command == "run" else kp(command, shotlist)
        assert done.returncode == 0, (command, done.stderr)
        assert "Traceback" not in done.stderr
    assert f"simulated.a.{field}: {problem}" in done.stderr


@pytest.mark.parametrize("command", ["status", "plan", "run", "report"])
def test_a_lock_file_nested_too_deep_is_one_line_not_a_traceback(
    frames: Path, write_toml: Callable[..., Path], command: str
) -> None:
    shotlist = write_toml(ONE_SHOT)
    lock = shotlist.with_name(f"{shotlist.name}.lock.json")
    lock.write_text('{"simulated": ' + "[" * 100_000 + "]" * 100_000 + "}")
    done = kp(command, shotlist, "--yes") if command == "run" else kp(command, shotlist)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"kling-pipe: {lock}: cannot read the lock file: nested too deep"
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"shot_list": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps({"shot_list": "/" + "a" * 5000 + ".toml"}),
        json.dumps({"shot_list": "/tmp/a\0.toml"}),
        json.dumps({"shot_list": "film.toml"}),
    ],
    ids=["nested-too-deep", "path-too-long", "path-with-a-nul", "relative-path"],
)
def test_a_hostile_owner_marker_is_no_marker(
    frames: Path, write_toml: Callable[..., Path], text: str
) -> None:
    shotlist = write_toml(ONE_SHOT)
    marker = shotlist.parent / "renders" / "film" / ".kling-pipe-owner.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(text)
    done = kp("run", shotlist, "--yes", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    assert json.loads(marker.read_text()) == {"shot_list": str(shotlist.resolve())}


def test_pick_after_takes_is_lowered_below_a_kept_pick_picks_back_without_a_traceback(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT.replace('"a boat"\n', '"a boat"\ntakes = 3\n'))
    rendered(shotlist)
    assert kp("pick", shotlist, "a", "3").returncode == 0
    shotlist.write_text(ONE_SHOT)  # takes = 1 again: take 3 is kept, as the pick
    done = kp("pick", shotlist, "a", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("a: take 1 picked (was take 3)")
    status = kp("status", shotlist)
    assert "a  cached" in status.stdout, status.stdout


def stat_tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under *folder*, itself included: size, mtime (ns) and inode."""
    paths = [folder, *sorted(folder.rglob("*"))]
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_ino) for p in paths}


@pytest.mark.parametrize(
    "command",
    [
        ("plan",),
        ("status",),
        ("status", "--json"),
        ("gc", "--dry-run"),
        ("plan", "--backend", "wavespeed"),
        ("run", "--max-cost", "0", "--rerender", "a"),
    ],
    ids=["plan", "status", "status-json", "gc-dry-run", "plan-wavespeed", "run-over-budget"],
)
def test_read_only_commands_write_nothing_not_even_the_state_folders_time(
    frames: Path, write_toml: Callable[..., Path], command: tuple[str, ...]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    rendered(shotlist)
    before = stat_tree(shotlist.parent)
    done = kp(command[0], shotlist, *command[1:])
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    assert stat_tree(shotlist.parent) == before


def test_status_reads_a_store_of_an_older_schema_without_changing_it(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    rendered(shotlist)
    database = state_dir_for(shotlist) / "state.sqlite"
    with contextlib.closing(sqlite3.connect(database)) as db:  # as a version before origins
        db.execute("ALTER TABLE attempts DROP COLUMN origin")
        db.execute("ALTER TABLE attempts DROP COLUMN clock_offset_ms")
        db.commit()
    before = stat_tree(shotlist.parent)
    status = kp("status", shotlist)
    assert status.returncode == 0, status.stderr
    assert "a  cached" in status.stdout  # the mock's task, known from its saved state
    assert stat_tree(shotlist.parent) == before


def test_status_never_calls_cached_a_picked_video_that_cut_refuses(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(
        ONE_SHOT.replace('"a boat"\n', '"a boat"\ntakes = 2\n')
        + '[[shots]]\nid = "b"\nprompt = "a ship"\nimage = "frames/dusk.png"\n'
    )
    rendered(shotlist)
    assert kp("pick", shotlist, "a", "2").returncode == 0
    folder = shotlist.parent / "renders" / "film" / "mock"
    graded = (folder / "b.mp4").read_bytes() + bytes(16)  # the user's own video in its place
    (folder / "a.mp4").write_bytes(graded)
    cut = kp("cut", shotlist, "-o", shotlist.parent / "film.mp4")
    assert cut.returncode == 2
    status = kp("status", shotlist)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1] == (
        "  a  stale      renders/film/mock/a.mp4: not the file the lock file records; `run` "
        "places take 2 there again at no cost (a file of yours there is set aside)"
    )
    rendered(shotlist)
    assert (folder / "a.yours-1.mp4").read_bytes() == graded
    assert "  a  cached" in kp("status", shotlist).stdout


def test_status_calls_a_file_that_is_not_a_video_over_a_render_stale_as_cut_does(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT)
    rendered(shotlist)
    folder = shotlist.parent / "renders" / "film" / "mock"
    (folder / "a.mp4").write_text("notes for the grade, saved over the render by mistake\n")
    cut = kp("cut", shotlist, "-o", shotlist.parent / "film.mp4")
    assert cut.returncode == 2
    assert '"a" (not the file the lock file records)' in cut.stderr, cut.stderr
    status = kp("status", shotlist)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].startswith(
        "  a  stale      renders/film/mock/a.mp4: not the file the lock file records"
    ), status.stdout
    rendered(shotlist)  # the render is placed again at no cost, the notes set aside
    assert (folder / "a.yours-1.mp4").read_text().startswith("notes for the grade")
    assert "  a  cached" in kp("status", shotlist).stdout


def test_cut_after_takes_is_lowered_below_a_kept_pick_joins_the_pick(
    frames: Path, write_toml: Callable[..., Path]
) -> None:
    shotlist = write_toml(ONE_SHOT.replace('"a boat"\n', '"a boat"\ntakes = 2\n'))
    rendered(shotlist)
    assert kp("pick", shotlist, "a", "2").returncode == 0
    shotlist.write_text(ONE_SHOT)  # takes = 1 again: take 2 is kept, as the pick
    done = kp("cut", shotlist, "-o", shotlist.parent / "film.mp4")
    assert done.returncode == 0, done.stderr
    assert "a  cached" in kp("status", shotlist).stdout
