"""A production's day, scripted: a 20-shot board from first render to an editor's timeline.

The console script as a user types it, against the bundled mock served on a real loopback
socket in a thread of this process (`ThreadedMockServer`), pointed at as a local server. Each
step checks what the user would look at (files, `status --json`, `versions --json`, the lock
file) and the money twice: what the mock charged (its ledger and task list) and what
kling-pipe says it spent. The steps run in order on one folder, as one day does; each is a
function of its own so that a failure names the step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import opentimelineio as otio
import pytest

from kling_pipe import _files
from kling_pipe._records.lockfile import lock_path_for, section_for
from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig
from mockserver.threaded import ThreadedMockServer
from tests.cli_support import kp

PRICE = Decimal("0.084")  # USD per second of video
FPS = 24  # an EDL counts in SMPTE timecode: a rate it knows
BUDGET = Decimal("20.00")
PREFIX = "35mm film, overcast morning. "

#: (id, first frame or "chain:<source>", prompt, duration, takes): 20 shots, 125 s of video.
SHOTS = (
    ("dawn", "puddle.png", "First light on a puddle by the quay", 5, 1),
    ("quay", "street.png", "The quay wakes, shutters go up", 5, 1),
    ("boats", "river.png", "Fishing boats nose out into the river", 5, 2),
    ("boats-out", "chain:boats", "The boats pass the harbour light", 5, 1),
    ("gulls", "dusk.png", "Gulls wheel over the masts", 5, 1),
    ("nets", "sea.jpg", "Nets are cast over a grey sea", 5, 1),
    ("market", "street.png", "The fish market fills with voices", 10, 1),
    ("fish", "puddle.png", "Silver fish slide across the ice", 5, 1),
    ("crowd", "chain:market", "The crowd thins at noon", 5, 1),
    ("noon", "river.png", "The river glitters at noon", 5, 1),
    ("ferry", "sea.jpg", "The ferry ploughs across the bay", 5, 3),
    ("wake", "chain:ferry", "Its wake spreads behind it", 5, 1),
    ("rain", "puddle.png", "Rain starts to fall on the puddle", 5, 1),
    ("gutter", "chain:rain", "The water runs into the gutter", 5, 1),
    ("lanes", "street.png", "Umbrellas fill the narrow lanes", 5, 1),
    ("dusk", "dusk.png", "The sky turns orange over the roofs", 10, 1),
    ("lamps", "street.png", "Street lamps come on one by one", 5, 1),
    ("tide", "sea.jpg", "The tide comes in over the slipway", 5, 1),
    ("night", "river.png", "Night falls on the harbour", 5, 1),
    ("last-boat", "chain:night", "The last boat comes home", 5, 1),
)
IDS = tuple(s[0] for s in SHOTS)
DURATION = {s[0]: s[3] for s in SHOTS}
TAKES = {s[0]: s[4] for s in SHOTS}
APPROVED = IDS[:10]  # dawn .. noon: boats (2 takes) and two chained shots among them


def board_text() -> str:
    """The shot list, as a user writes it: a budget, a shared prefix, chains and takes."""
    lines = [
        "version = 1",
        "",
        "[storyboard]",
        'name = "harbour-day"',
        "budget = 20.00",
        "",
        "[defaults]",
        f'prompt_prefix = "{PREFIX}"',
    ]
    for sid, image, prompt, duration, takes in SHOTS:
        lines += ["", "[[shots]]", f'id = "{sid}"', f'prompt = "{prompt}"']
        if image.startswith("chain:"):
            lines.append(f'image = {{ shot = "{image.removeprefix("chain:")}", frame = "last" }}')
        else:
            lines.append(f'image = "frames/{image}"')
        lines += [f"duration = {duration}"] if duration != 5 else []
        lines += [f"takes = {takes}"] if takes != 1 else []
    return "\n".join(lines) + "\n"


def cost(*shots: str) -> Decimal:
    """What rendering *shots* (every take) costs, computed as the plan does."""
    return sum((PRICE * DURATION[s] * TAKES[s] for s in shots), Decimal(0))


class Day:
    """The console script pointed at the threaded mock, and what the mock saw and charged."""

    def __init__(self, mock: ThreadedMockServer, board: Path) -> None:
        self.mock = mock
        self.board = board
        # A server on loopback stands in for WaveSpeed: its renders have a folder of their own.
        self.out = board.parent / "renders" / "harbour-day" / "local"
        self.backend = ("--backend", "wavespeed", "--base-url", mock.base_url)
        self.env = {"WAVESPEED_API_KEY": mock.api_key}

    def __call__(self, command: str, *args: str, code: int = 0) -> str:
        """Run `kling-pipe COMMAND FILE ARGS`; its stdout, or its stderr when it must fail."""
        extra = ("--yes",) if command == "run" else ()
        done = kp(
            command, self.board, *args, *self.backend, *extra, env=self.env, cwd=self.board.parent
        )
        assert done.returncode == code, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout if code == 0 else done.stderr

    def json(self, command: str, *args: str, code: int = 0) -> dict:
        done = kp(
            command, self.board, *args, "--json", *self.backend, env=self.env, cwd=self.board.parent
        )
        assert done.returncode == code, done.stderr
        return json.loads(done.stdout)

    def requests(self) -> int:
        return len(self.mock.journal())

    def own_tasks(self) -> list[dict]:
        """The tasks our own requests made (not a teammate's on the same account)."""
        return [t for t in self.mock.tasks() if t["created_by"] == "request"]

    def charged(self) -> Decimal:
        """What the account's ledger charged, less refunds, for our own tasks only."""
        ours = {t["id"] for t in self.own_tasks()}
        entries = self.mock.ledger()["entries"]
        return -sum((Decimal(e["amount_usd"]) for e in entries if e["task_id"] in ours), Decimal(0))

    def spent(self) -> Decimal:
        """What kling-pipe says this storyboard spent, across every run."""
        return Decimal(self.json("status")["spent"])

    def edit(self, old: str, new: str) -> None:
        text = self.board.read_text(encoding="utf-8")
        assert old in text
        self.board.write_text(text.replace(old, new), encoding="utf-8")

    def lock(self) -> dict:
        document = json.loads(lock_path_for(self.board).read_text(encoding="utf-8"))
        return document[section_for(self.mock.base_url)]

    def sha(self, shot: str) -> str:
        return _files.sha256_file(self.out / f"{shot}.mp4")

    def version(self, shot: str, n: int) -> Path:
        return self.out / "versions" / f"{shot}.v{n}.mp4"

    def versions(self, shot: str) -> list[dict]:
        return self.json("versions", shot)["versions"]

    def current(self, shot: str) -> int:
        (current,) = [v["version"] for v in self.versions(shot) if v["current"]]
        return current

    def statuses(self) -> dict[str, str]:
        return {s["id"]: s["status"] for s in self.json("status")["shots"]}


@pytest.fixture
def mock() -> Iterator[ThreadedMockServer]:
    config = MockConfig(processing=FixedTime(seconds=0.05), max_side_px=160, fps=FPS)
    with ThreadedMockServer(config) as server:
        yield server


def test_a_production_day_from_first_render_to_the_editors_timeline(
    tmp_path: Path, frames: Path, mock: ThreadedMockServer
) -> None:
    """The steps in order on one folder: each starts where the one before ended."""
    board = tmp_path / "harbour-day.toml"
    board.write_text(board_text(), encoding="utf-8")
    day = Day(mock, board)
    render_the_board(day)
    pick_take_2_and_the_shot_chained_from_it_follows(day)
    approved_shots_survive_a_new_prompt_prefix(day)
    a_subset_renders_only_what_it_names_and_the_source_it_needs(day)
    restore_goes_back_to_v1_for_free(day)
    adopt_the_uncertain_shots_own_task_without_paying(day)
    a_run_that_would_pass_the_budget_is_refused_before_any_submit(day)
    export_an_edl_with_one_reel_per_shot(day)


def render_the_board(day: Day) -> None:
    total_s = sum(DURATION[s] * TAKES[s] for s in IDS)
    assert total_s == 125
    planned = day.json("plan")
    assert Decimal(planned["total_cost"]) == PRICE * total_s == Decimal("10.500")

    summary = day.json("run", "-q", "--yes")
    assert summary["totals"]["spent"] == "10.500"
    assert {s["status"] for s in summary["shots"]} == {"done"}
    assert len(day.own_tasks()) == total_s // 5 - 2 == 23  # two 10-second shots
    assert day.charged() == day.spent() == Decimal("10.500")
    assert set(day.statuses().values()) == {"cached"}
    for sid in IDS:
        assert (day.out / f"{sid}.mp4").is_file()
        assert day.lock()[sid]["file"]
    # The sheet lists every shot, in order.
    sheet = (day.out / "index.html").read_text(encoding="utf-8")
    places = [sheet.find(f'id="shot-{sid}"') for sid in IDS]
    assert -1 not in places, [sid for sid, at in zip(IDS, places, strict=True) if at == -1]
    assert places == sorted(places)


def pick_take_2_and_the_shot_chained_from_it_follows(day: Day) -> None:
    requests = day.requests()
    picked = day("pick", "boats", "2")
    assert "boats: take 2 picked (was take 1)" in picked
    assert "stale now, chained from boats: boats-out (0.420 USD)" in picked
    assert day.requests() == requests  # a pick sends nothing
    (take2,) = [v for v in day.versions("boats") if v["take"] == 2]
    assert day.sha("boats") == _files.sha256_file(day.board.parent / take2["file"])
    assert take2["current"]
    # As the README says: the chained shot follows the picked take, so the next run renders it.
    assert day.statuses()["boats-out"] == "stale"
    assert day.json("plan")["total_cost"] == "0.420"
    tasks = len(day.own_tasks())
    summary = day.json("run", "-q", "--yes")
    assert summary["totals"]["spent"] == "0.420"
    assert len(day.own_tasks()) == tasks + 1
    assert day.charged() == day.spent() == Decimal("10.920")
    assert day.current("boats-out") == 2


def approved_shots_survive_a_new_prompt_prefix(day: Day) -> None:
    day("approve", *APPROVED)
    assert all("approved" in day.lock()[sid] for sid in APPROVED)
    held = {sid: (day.sha(sid), day.current(sid)) for sid in APPROVED}
    day.edit(PREFIX, "35mm film, golden hour. ")

    rest = [sid for sid in IDS if sid not in APPROVED]
    planned = day.json("plan")
    assert Decimal(planned["total_cost"]) == cost(*rest) == Decimal("5.460")
    assert {u["id"] for u in planned["shots"] if u["status"] == "approved"} == set(APPROVED)
    tasks = len(day.own_tasks())
    summary = day.json("run", "-q", "--yes")
    assert Decimal(summary["totals"]["spent"]) == cost(*rest)
    assert len(day.own_tasks()) == tasks + sum(TAKES[s] for s in rest) == tasks + 12
    assert {sid: (day.sha(sid), day.current(sid)) for sid in APPROVED} == held
    assert day.charged() == day.spent() == Decimal("16.380")


def a_subset_renders_only_what_it_names_and_the_source_it_needs(day: Day) -> None:
    day.edit("Rain starts to fall", "Heavy rain starts to fall")
    day.edit("The tide comes in", "The tide rushes in")
    planned = day("plan", "--only", "gutter")
    assert "gutter needs rain" in planned  # the chain source is named, and priced
    tasks = len(day.own_tasks())
    summary = day.json("run", "--only", "gutter", "-q", "--yes")
    states = {s["id"]: s["status"] for s in summary["shots"]}
    assert (states["rain"], states["gutter"]) == ("done", "done")
    assert states["tide"] == "excluded"  # edited too, but not asked for
    made = day.own_tasks()[tasks:]
    assert sorted(t["input"]["prompt"].split(". ", 1)[1] for t in made) == [
        "Heavy rain starts to fall on the puddle",
        "The water runs into the gutter",
    ]
    assert day.statuses()["tide"] == "stale"
    assert day.charged() == day.spent() == Decimal("17.220")


def restore_goes_back_to_v1_for_free(day: Day) -> None:
    assert [v["version"] for v in day.versions("lanes")] == [1, 2]
    v1_sha = _files.sha256_file(day.version("lanes", 1))
    requests = day.requests()
    restored = day("restore", "lanes", "1")
    assert "lanes: v1 restored" in restored
    assert day.requests() == requests  # zero requests to the mock
    assert day.sha("lanes") == v1_sha
    assert day.current("lanes") == 1
    assert day.lock()["lanes"]["approved"]["version"] == 1  # held: its prompt changed since
    assert day.charged() == day.spent() == Decimal("17.220")


def adopt_the_uncertain_shots_own_task_without_paying(day: Day) -> None:
    # The submit's answer is lost, and a teammate's task from the same first frame shows up
    # in the same window: the proof cannot tell them apart, so the shot is left uncertain.
    day.mock.set_faults(
        FaultConfig(
            seed=1,
            rules=(
                FaultRule(
                    kind="second_client", routes=["submit"], image="same", within_s=0.5, limit=1
                ),
                FaultRule(kind="drop_after", routes=["submit"], limit=1),
            ),
        )
    )
    day.edit("Street lamps come on", "Street lamps flicker on")
    tasks = len(day.own_tasks())
    window = ("--act-window", "3", "--history-lag", "0.5")
    summary = day.json("run", "--only", "lamps", *window, "-q", "--yes", code=1)
    (lamps,) = [s for s in summary["shots"] if s["id"] == "lamps"]
    assert lamps["status"] == "uncertain"
    day.mock.set_faults(FaultConfig())
    (ours,) = day.own_tasks()[tasks:]
    (theirs,) = [t for t in day.mock.tasks() if t["created_by"] == "second_client"]
    status = {s["id"]: s for s in day.json("status")["shots"]}["lamps"]
    assert status["status"] == "uncertain"
    assert ours["id"] in status["detail"]
    assert theirs["id"] in status["detail"]
    assert "`kling-pipe adopt FILE lamps TASK_ID`" in status["detail"]
    assert day.charged() == day.spent() == Decimal("17.640")  # paid once, counted once

    submits, balance = day.mock.stats()["submits"], day.mock.ledger()["balance_usd"]
    adopted = day("adopt", "lamps", ours["id"])
    assert f"adopted: task {ours['id']} is now lamps's; nothing was paid" in adopted
    assert day.mock.stats()["submits"] == submits
    assert day.mock.ledger()["balance_usd"] == balance
    assert day.statuses()["lamps"] == "cached"
    (current,) = [v for v in day.versions("lamps") if v["current"]]
    assert current["task_id"] == ours["id"]
    assert day.charged() == day.spent() == Decimal("17.640")


def a_run_that_would_pass_the_budget_is_refused_before_any_submit(day: Day) -> None:
    day.edit("golden hour", "blue hour")
    held = set(APPROVED) | {"lanes"}
    again = cost(*(sid for sid in IDS if sid not in held))
    assert again == Decimal("5.040")
    requests = day.requests()
    refused = day("run", code=2)
    assert (
        "storyboard.budget: 17.640 USD spent on this storyboard so far and 5.040 USD for 9 "
        "shots (11 takes) in this run make 22.680, more than its budget 20.00; raise budget or "
        "render fewer shots; nothing was submitted"
    ) in refused
    assert day.requests() == requests
    day("plan", code=2)
    # Back to the look the day settled on: only the edited tide is left, within the budget.
    day.edit("blue hour", "golden hour")
    assert day.json("plan")["total_cost"] == "0.420"
    day.json("run", "-q", "--yes")
    assert set(day.statuses().values()) <= {"cached", "approved"}
    status = day.json("status")
    assert Decimal(status["spent"]) == day.charged() == Decimal("18.060") <= BUDGET
    assert Decimal(status["budget"]["left"]) == BUDGET - Decimal("18.060")


def export_an_edl_with_one_reel_per_shot(day: Day) -> None:
    edl = day.board.parent / "harbour-day.edl"
    day("export", "-o", str(edl))
    timeline = otio.adapters.read_from_file(str(edl))
    clips = list(timeline.find_clips())
    assert [c.name for c in clips] == list(IDS)
    reels = [c.metadata["cmx_3600"]["reel"] for c in clips]
    assert len(set(reels)) == len(IDS)
    assert [c.duration().value for c in clips] == [DURATION[s] * FPS for s in IDS]
    assert {c.duration().rate for c in clips} == {FPS}
