"""Takes end to end: rendered, picked and rendered again, over real loopback sockets.

Twice: as a user runs it, the console script against the bundled mock; and with the real
client against a server that is not ours (`tests.scripted_server`), a stand-in for WaveSpeed
whose every task renders a video of its own, so takes differ by their bytes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import attrs
import pytest
import stamina
from aiohttp import web

from kling_pipe import _files
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._cli.main import main
from kling_pipe._outputs import media
from kling_pipe._records.lockfile import lock_path_for, section_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from tests.cli_support import kp
from tests.e2e.conftest import FAST_RETRY
from tests.mp4clips import write_video
from tests.scripted_server import LoopbackResolver, ScriptedServer
from tests.settling import FAST_SETTLE

BASE = "http://localhost:8080"
KEY = "ws-takes-test-key-0123456789abcdef"
MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TASKS = [f"{n:032x}" for n in range(1, 9)]
CDN = "http://cdn.example.test"


def lock_of(path: Path) -> dict:
    return json.loads(lock_path_for(path).read_text(encoding="utf-8"))


def version_of(board: Path, shot: str, unit: str) -> Path:
    """Return the latest version a render unit (``river#2``) has, as `versions --json` says.

    Takes render concurrently: which of them became v1 is the order they came home in.
    """
    listed = kp("versions", board, shot, "--json")
    assert listed.returncode == 0, listed.stderr
    files = [v["file"] for v in json.loads(listed.stdout)["versions"] if v["unit"] == unit]
    assert files, unit
    return Path(files[-1])


# As a user runs it: the console script against the bundled mock.


def test_the_cli_renders_takes_picks_one_and_renders_only_the_chained_shot_again(specs):
    board = specs / "takes.toml"
    planned = json.loads(kp("plan", board, "--json").stdout)
    assert [(s["id"], s["takes"], s["cost"]) for s in planned["shots"]] == [
        ("river", 3, "1.260"),
        ("sea", 1, "0.420"),
    ]
    assert planned["total_cost"] == "1.680"

    first = kp("run", board, "--json", "-q", "--mock-processing", "0.1")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert [(s["id"], s["take"], s["status"]) for s in summary["shots"]] == [
        ("river", 1, "done"),
        ("river#2", 2, "done"),
        ("river#3", 3, "done"),
        ("sea", 1, "done"),
    ]
    assert (summary["totals"]["shots"], summary["totals"]["takes"]) == (2, 4)
    out = specs / "renders" / "takes" / "mock"
    for unit in ("river", "river#2", "river#3"):
        assert media.is_mp4(version_of(board, "river", unit))
    assert sorted(p.name for p in (out / "versions").glob("river.*")) == [
        "river.v1.mp4",
        "river.v2.mp4",
        "river.v3.mp4",
    ]
    sheet = (out / "index.html").read_text(encoding="utf-8")
    for take in (1, 2, 3):  # river's takes in one row, take 1 picked until a pick
        assert f'id="shot-river-take-{take}"' in sheet
    assert 'class="take ok picked" id="shot-river-take-1"' in sheet
    assert "kling-pipe pick takes.toml river 2" in sheet
    assert "kling-pipe pick takes.toml river 1" not in sheet
    assert 'id="shot-sea-take-' not in sheet  # a shot of one take looks as it always did

    picked = kp("pick", board, "river", "2")
    assert picked.returncode == 0, picked.stderr
    assert "stale now, chained from river: sea (0.420 USD)" in picked.stdout
    entry = lock_of(board)["simulated"]["river"]
    assert entry["pick"] == 2
    assert entry["sha256"] == _files.sha256_file(out / "river.mp4")
    take2 = version_of(board, "river", "river#2")
    assert entry["file"] == f"renders/takes/mock/versions/{take2.name}"

    status = json.loads(kp("status", board, "--json").stdout)
    river, sea = status["shots"]
    assert (river["pick"], [t["picked"] for t in river["take_status"]]) == (2, [False, True, False])
    assert sea["status"] == "stale"
    assert "take 2 of its source was picked" in sea["detail"]

    again = json.loads(kp("plan", board, "--json").stdout)
    assert [(s["id"], s["status"], s["cost"]) for s in again["shots"]] == [
        ("river", "cached", "0.000"),
        ("sea", "render", "0.420"),
    ]
    second = kp("run", board, "--json", "-q", "--mock-processing", "0.1")
    assert second.returncode == 0, second.stderr
    totals = json.loads(second.stdout)["totals"]
    assert (totals["done"], totals["cached"], totals["spent"]) == (1, 3, "0.420")
    assert lock_of(board)["simulated"]["river"]["pick"] == 2
    sheet = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="take ok picked" id="shot-river-take-2"' in sheet
    assert "kling-pipe pick takes.toml river 1" in sheet
    assert "kling-pipe pick takes.toml river 2" not in sheet
    report = kp("report", board)  # the sheet from the records alone agrees
    assert report.returncode == 0, report.stderr
    assert (out / "index.html").read_text(encoding="utf-8") == sheet


def test_explore_pick_then_lower_takes_keeps_the_pick_and_gc_never_offers_the_picked_take(
    specs,
):
    """The natural flow: 3 takes, pick take 2, set takes = 1. Nothing is paid or lost."""
    board = specs / "takes.toml"
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0
    assert kp("pick", board, "river", "2").returncode == 0
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0  # sea follows
    out = specs / "renders" / "takes" / "mock"
    take2_file = version_of(board, "river", "river#2")
    take3_file = version_of(board, "river", "river#3")
    take2 = _files.sha256_file(take2_file)
    board.write_text(board.read_text(encoding="utf-8").replace("takes = 3 ", "takes = 1 "))

    planned = json.loads(kp("plan", board, "--json").stdout)
    assert planned["total_cost"] == "0.000"
    assert [(s["id"], s["takes"], s["pick"]) for s in planned["shots"]] == [
        ("river", 1, 2),
        ("sea", 1, 1),
    ]
    assert "1 (take 2 picked)" in kp("plan", board).stdout
    river = json.loads(kp("status", board, "--json").stdout)["shots"][0]
    assert (river["status"], river["pick"]) == ("cached", 2)
    assert river["detail"].startswith("take 2 picked, kept since takes went down to 1")
    assert kp("gc", board, "--dry-run").stdout.count("versions/") == 0  # only by your word
    listed = kp("gc", board, "--dry-run", "--versions").stdout
    assert take2_file.name not in listed
    assert take3_file.name in listed

    again = kp("run", board, "--json", "-q", "--mock-processing", "0.1")
    assert again.returncode == 0, again.stderr
    totals = json.loads(again.stdout)["totals"]
    assert (totals["spent"], totals["cached"]) == ("0.000", 2)
    assert _files.sha256_file(out / "river.mp4") == take2
    assert lock_of(board)["simulated"]["river"]["pick"] == 2
    assert kp("gc", board, "--versions").returncode == 0
    assert not take3_file.exists()
    assert _files.sha256_file(take2_file) == take2
    assert _files.sha256_file(out / "river.mp4") == take2


def test_pick_never_overwrites_a_file_of_the_users_at_the_shots_name(specs):
    board = specs / "takes.toml"
    first = kp("run", board, "-q", "--mock-processing", "0.1")
    assert first.returncode == 0, first.stderr
    out = specs / "renders" / "takes" / "mock"
    mine = out / "graded.tmp"
    mine.write_bytes(b"the user's own graded cut, not a render")
    mine.replace(out / "river.mp4")  # a file of their own where take 1 was

    picked = kp("pick", board, "river", "2")
    assert picked.returncode == 2, picked.stdout
    assert "river.mp4: exists and is not a video kling-pipe placed there" in picked.stderr
    assert len(picked.stderr.strip().splitlines()) == 1
    assert (out / "river.mp4").read_bytes() == b"the user's own graded cut, not a render"
    assert lock_of(board)["simulated"]["river"].get("pick", 1) == 1


def test_run_rerender_never_overwrites_a_file_of_the_users_that_pick_refused(specs):
    board = specs / "takes.toml"
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0
    out = specs / "renders" / "takes" / "mock"
    (out / "river.mp4").write_bytes(b"the user's own cut, not a render")
    assert kp("pick", board, "river", "2").returncode == 2
    done = kp("run", board, "--rerender", "river#2", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    assert (out / "river.yours-1.mp4").read_bytes() == b"the user's own cut, not a render"
    assert "kept as river.yours-1.mp4" in done.stderr
    assert media.is_mp4(out / "river.mp4")


def test_pick_refusals_are_one_line_and_exit_2(specs):
    board = specs / "takes.toml"
    for args, said in (
        (("rivr", "2"), 'no shot "rivr" in the shot list; did you mean "river"?'),
        (("river", "4"), 'shot "river" has 3 takes; take 4 does not exist'),
        (("river", "2"), 'take 2 of shot "river" is not rendered (pending)'),
    ):
        done = kp("pick", board, *args)
        assert done.returncode == 2, done.stdout
        assert said in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr
    zero = kp("pick", board, "river", "0")
    assert zero.returncode == 2
    assert "takes are numbered from 1" in zero.stderr
    assert not (specs / "renders").exists()


# A server that is not ours: the real client, over sockets, against a scripted WaveSpeed.


class OtherServer:
    """WaveSpeed's routes, scripted: uploads, submits, results, outputs of a shade per task."""

    def __init__(self, scripted: ScriptedServer, clips: list[Path]) -> None:
        self.scripted = scripted
        self.submitted: list[dict[str, object]] = []
        self.outputs = {task: clip.read_bytes() for task, clip in zip(TASKS, clips, strict=False)}
        scripted.post(f"{BASE}/api/v3/{MODEL}", handler=self._submit, repeat=True)
        scripted.post(f"{BASE}/api/v3/media/uploads", handler=self._ticket, repeat=True)
        scripted.put("http://storage.example.test/put", status=200, repeat=True)
        for task in TASKS:
            result = self._prediction(task, "completed", [f"{CDN}/{task}.mp4"])
            scripted.get(f"{BASE}/api/v3/predictions/{task}/result", payload=result, repeat=True)
            scripted.get(f"{CDN}/{task}.mp4", body=self.outputs[task], repeat=True)

    @staticmethod
    def _prediction(task: str, status: str, outputs: list[str]) -> dict[str, object]:
        return {
            "code": 200,
            "message": "success",
            "data": {
                "id": task,
                "model": MODEL,
                "outputs": outputs,
                "urls": {"get": f"{BASE}/api/v3/predictions/{task}/result"},
                "has_nsfw_contents": [],
                "status": status,
                "created_at": "2026-03-01T11:59:58.000Z",
                "error": "",
                "timings": {"inference": 1000},
            },
        }

    def _date(self) -> dict[str, str]:
        return {"Date": format_datetime(NOW, usegmt=True)}

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        task = TASKS[len(self.submitted)]
        self.submitted.append(body)
        return web.json_response(self._prediction(task, "created", []), headers=self._date())

    async def _ticket(self, request: web.Request) -> web.Response:
        asked = await request.json()
        ticket = {
            "code": 200,
            "message": "success",
            "data": {
                "type": "image",
                "filename": asked["filename"],
                "size": asked["size"],
                "download_url": f"{CDN}/uploads/{asked['filename']}",
                "upload": {
                    "method": "PUT",
                    "url": "http://storage.example.test/put",
                    "headers": {},
                },
            },
        }
        return web.json_response(ticket, headers=self._date())

    def task_of(self, sha256: str) -> str:
        return next(
            t for t, data in self.outputs.items() if hashlib.sha256(data).hexdigest() == sha256
        )


@pytest.fixture
def no_backoff():
    with stamina.set_testing(True, attempts=4):
        yield


@pytest.fixture(scope="module")
def shaded(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shades")
    return [write_video(folder / f"{n}.mp4", 5, fps=4, shade=30 + 25 * n) for n in range(8)]


@pytest.fixture
async def other(aiohttp_server, shaded) -> OtherServer:
    scripted = ScriptedServer(NOW)
    scripted.port = (await aiohttp_server(scripted.app)).port  # type: ignore[attr-defined]
    return OtherServer(scripted, shaded)


@pytest.fixture
async def client(other: OtherServer, no_backoff):
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver(other.scripted.port))  # type: ignore[attr-defined]
    async with aiohttp.ClientSession(
        connector=connector, middlewares=(other.scripted.middleware,)
    ) as session:
        yield WaveSpeedClient(session, BASE, KEY, retry=FAST_RETRY)


def write_board(folder: Path, frames: Path) -> Path:
    path = folder / "lighthouse.toml"
    path.write_text(
        f"""version = 1

[storyboard]
name = "lighthouse"

[[shots]]
id = "storm"
prompt = "The sky darkens, rain sweeps across the lantern room"
image = "{frames.name}/dusk.png"
takes = 2

[[shots]]
id = "aftermath"
prompt = "Calm sea at dawn, the camera rises over the lighthouse"
image = {{ shot = "storm", frame = "last" }}
""",
        encoding="utf-8",
    )
    return path


def cli(*args: str | Path, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


async def test_done_when_takes_render_pick_and_rerender_against_a_server_not_ours(
    tmp_path, frames, other, client, capsys
):
    board = write_board(tmp_path, frames)
    real = ("--backend", "wavespeed", "--base-url", BASE)

    # Plans to the exact cost: 2 takes of storm and aftermath, 0.084 USD a second.
    code, out = cli("plan", board, "--json", *real, capsys=capsys)
    assert code == 0
    planned = json.loads(out)
    assert [(s["id"], s["takes"], s["cost"]) for s in planned["shots"]] == [
        ("storm", 2, "0.840"),
        ("aftermath", 1, "0.420"),
    ]
    assert planned["total_cost"] == "1.260"

    # Renders both takes, and only them (and the chained shot), keeping both on disk.
    options = RunOptions(settle=FAST_SETTLE, expected_task_s=0.05)
    first = await render(board, backend=client, options=attrs.evolve(options, report=False))
    assert first.exit_code == 0, first.as_json()
    assert len(other.submitted) == 3
    assert [s["prompt"] for s in other.submitted].count(
        "The sky darkens, rain sweeps across the lantern room"
    ) == 2
    out_dir = tmp_path / "renders" / "lighthouse" / "local"  # a local server's renders
    take1, take2 = first.shots[0].file, first.shots[1].file
    assert take1 is not None
    assert take2 is not None
    assert {take1.parent, take2.parent} == {out_dir / "versions"}
    assert _files.sha256_file(take1) != _files.sha256_file(take2)
    assert _files.sha256_file(out_dir / "storm.mp4") == _files.sha256_file(take1)
    take2_sha = _files.sha256_file(take2)

    # pick: <id>.mp4 becomes take 2, the pick is in the lock file, nothing is sent.
    calls = len(other.scripted.calls)
    code, out = cli("pick", board, "storm", "2", *real, capsys=capsys)
    assert code == 0
    assert "stale now, chained from storm: aftermath (0.420 USD)" in out
    assert f"`kling-pipe run {board} --backend wavespeed --base-url {BASE}` renders" in out
    assert len(other.scripted.calls) == calls
    assert _files.sha256_file(out_dir / "storm.mp4") == take2_sha
    assert _files.sha256_file(take1) != take2_sha
    entry = lock_of(board)[section_for(BASE)]["storm"]
    assert (entry["pick"], entry["sha256"], entry["task_id"]) == (
        2,
        take2_sha,
        other.task_of(take2_sha),
    )

    # The next plan renders the chained shot again, for its price...
    code, out = cli("plan", board, "--json", *real, capsys=capsys)
    assert [(s["id"], s["status"], s["cost"]) for s in json.loads(out)["shots"]] == [
        ("storm", "cached", "0.000"),
        ("aftermath", "render", "0.420"),
    ]
    # ...and the run renders only that shot.
    second = await render(board, backend=client, options=attrs.evolve(options, report=False))
    assert second.exit_code == 0
    assert [s.state for s in second.shots] == ["cached", "cached", "done"]
    assert len(other.submitted) == 4
    assert second.spent == Decimal("0.420")
    assert lock_of(board)[section_for(BASE)]["storm"]["pick"] == 2
