"""A production's life end to end: versions kept, gone back to for free, shots approved.

The console script as a user runs it, against the bundled mock on a real loopback socket in a
thread of this process (`ThreadedMockServer`), so the test can read every request the
commands made (the mock's journal): going back to a version and everything an approval holds
must cost nothing and send nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kling_pipe import _files
from kling_pipe._records.lockfile import lock_path_for, section_for
from mockserver import FixedTime, MockConfig
from mockserver.threaded import ThreadedMockServer
from tests.cli_support import kp

BOARD = """version = 1

[storyboard]
name = "harbour"

[defaults]
duration = 5
prompt_prefix = "Film grain, 35 mm. "

[[shots]]
id = "quay"
prompt = "Fishing boats rock at the quay at dawn"
image = "frames/puddle.png"

[[shots]]
id = "gulls"
prompt = "Gulls lift off the harbour wall"
image = { shot = "quay", frame = "last" }

[[shots]]
id = "nets"
prompt = "Nets dry in the morning wind"
image = "frames/river.png"
"""


@pytest.fixture
def mock():
    config = MockConfig(processing=FixedTime(seconds=0.1), max_side_px=160, fps=2)
    with ThreadedMockServer(config) as server:
        yield server


class Cli:
    """The console script pointed at the threaded mock as a local server."""

    def __init__(self, mock: ThreadedMockServer, board: Path) -> None:
        self.mock = mock
        self.board = board
        self.backend = ("--backend", "wavespeed", "--base-url", mock.base_url)
        self.env = {"WAVESPEED_API_KEY": mock.api_key}

    def __call__(self, command: str, *args: str, code: int = 0) -> str:
        extra = ("--yes",) if command == "run" else ()
        done = kp(command, self.board, *args, *self.backend, *extra, env=self.env)
        assert done.returncode == code, (done.stdout, done.stderr)
        return done.stdout if code == 0 else done.stderr

    def requests(self) -> int:
        return len(self.mock.journal())

    def submits(self) -> int:
        return len(self.mock.tasks())

    def edit(self, old: str, new: str) -> None:
        text = self.board.read_text(encoding="utf-8")
        assert old in text
        self.board.write_text(text.replace(old, new), encoding="utf-8")

    def lock(self) -> dict:
        document = json.loads(lock_path_for(self.board).read_text(encoding="utf-8"))
        return document[section_for(self.mock.base_url)]

    def plan(self) -> dict:
        return json.loads(self("plan", "--json"))


def test_versions_going_back_for_free_and_approvals_over_a_productions_life(tmp_path, frames, mock):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    cli = Cli(mock, board)
    out = tmp_path / "renders" / "harbour" / "local"  # a loopback server's renders
    v1_sha = render_edit_and_go_back(cli, out)
    approve_and_change_what_every_shot_inherits(cli, out, v1_sha)


def render_edit_and_go_back(cli: Cli, out: Path) -> str:
    """Render, edit quay's prompt, render again, list the versions, go back to v1: its sha."""
    # Render, edit a prompt, render again: a second version appears beside the first.
    cli("run", "-q")
    v1 = out / "versions" / "quay.v1.mp4"
    v1_sha = _files.sha256_file(v1)
    cli.edit("rock at the quay", "sway at the quay")
    cli("run", "-q")
    v2 = out / "versions" / "quay.v2.mp4"
    assert _files.sha256_file(out / "quay.mp4") == _files.sha256_file(v2)
    assert v1.is_file()  # the first render is still on disk

    listed = cli("versions", "quay")
    assert "quay: 2 versions" in listed
    rows = [line for line in listed.splitlines() if line.lstrip().startswith("v")]
    assert "first render" in rows[0]
    assert "prompt changed" in rows[1]
    assert "[current, picked]" in rows[1]
    as_json = json.loads(cli("versions", "quay", "--json"))["versions"]
    assert [(v["version"], v["current"]) for v in as_json] == [(1, False), (2, True)]
    assert all(v["task_id"] and v["cost"] != "0" for v in as_json)
    # What made each version: the prompt as sent, and every input, from the records.
    assert (
        as_json[0]["inputs"]["prompt"]
        == "Film grain, 35 mm. Fishing boats rock at the quay at dawn"
    )
    assert as_json[1]["inputs"]["prompt"].endswith("sway at the quay at dawn")
    assert "prompt: Film grain, 35 mm. Fishing boats sway at the quay at dawn" in listed

    # Going back to v1 sends nothing: the bytes on disk are what is restored, checked.
    before = cli.requests()
    restored = cli("restore", "quay", "1")
    assert cli.requests() == before
    assert "quay: v1 restored" in restored
    assert "(prompt)" in restored  # held, since the shot's prompt changed since v1
    assert _files.sha256_file(out / "quay.mp4") == v1_sha
    assert cli.lock()["quay"]["approved"]["version"] == 1
    # The chained shot's render from v1 is on disk: the plan after going back costs nothing.
    assert cli.plan()["total_cost"] == "0.000"
    return v1_sha


def approve_and_change_what_every_shot_inherits(cli: Cli, out: Path, v1_sha: str) -> None:
    """Approve the rest of the board, change prompt_prefix: nothing renders; then unapprove."""
    # Approve the board; a change to what every shot inherits then renders nothing.
    cli("approve", "gulls", "nets")
    approvals = {sid: entry.get("approved") for sid, entry in cli.lock().items()}
    assert all(approvals.values()), approvals
    cli.edit("Film grain, 35 mm. ", "Film grain, 16 mm, warm. ")
    planned = cli.plan()
    assert planned["total_cost"] == "0.000"
    assert {s["status"] for s in planned["shots"]} == {"approved"}
    assert {s["note"] for s in planned["shots"]} == {"inputs changed: prompt"}
    status = cli("status")
    assert "approved (inputs changed: prompt)" in status
    submits = cli.submits()
    cli("run", "-q")
    assert cli.submits() == submits  # nothing submitted
    assert _files.sha256_file(out / "quay.mp4") == v1_sha

    # Unapproving makes the shot stale again (and its chain follows it); gulls stays held.
    unapproved = cli("unapprove", "quay")
    assert "no longer approved (held v1)" in unapproved
    assert "inputs changed: prompt" in unapproved
    shots = {s["id"]: s for s in cli.plan()["shots"]}
    assert (shots["quay"]["status"], shots["quay"]["cost"]) == ("render", "0.420")
    assert shots["gulls"]["status"] == shots["nets"]["status"] == "approved"
    assert "approved" not in cli.lock()["quay"]
    assert "approved" in cli.lock()["gulls"]


def test_approving_a_shot_with_no_current_render_is_refused_and_changes_nothing(
    tmp_path, frames, mock
):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    cli = Cli(mock, board)
    refused = cli("approve", "quay", code=2)
    assert "no current render to approve" in refused
    assert '"quay"' in refused
    assert "Traceback" not in refused
    assert not lock_path_for(board).exists()
    assert 'no shot "quai"' in cli("approve", "quai", code=2)
    assert "has no version 3" in cli("restore", "quay", "3", code=2)


def test_rerender_lifts_an_approval_once_the_new_render_is_home(tmp_path, frames, mock):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    cli = Cli(mock, board)
    cli("run", "-q")
    cli("approve", "nets")
    cli.edit("Nets dry", "Nets flap")
    assert {s["id"]: s["cost"] for s in cli.plan()["shots"]}["nets"] == "0.000"
    submits = cli.submits()
    cli("run", "-q", "--rerender", "nets")
    assert cli.submits() == submits + 1
    assert "approved" not in cli.lock()["nets"]
    (row,) = [line for line in cli("versions", "nets").splitlines() if "  v2  " in line]
    assert "prompt changed" in row


def test_a_folder_written_before_versions_keeps_working_and_loses_nothing(tmp_path, frames):
    """Renders at <id>.mp4 and takes/ from the previous layout become versions, unchanged."""
    board = tmp_path / "old.toml"
    board.write_text(
        'version = 1\n[storyboard]\nname = "old"\n'
        '[[shots]]\nid = "calm"\nprompt = "A calm sea"\nimage = "frames/puddle.png"\n',
        encoding="utf-8",
    )
    assert kp("run", board, "-q", "--mock-processing", "0.1").returncode == 0
    out = tmp_path / "renders" / "old" / "mock"
    # Put it back as the previous layout wrote it: the render at <id>.mp4, records naming it.
    version = out / "versions" / "calm.v1.mp4"
    sha = _files.sha256_file(version)
    version.rename(out / "calm.mp4.tmp")
    (out / "calm.mp4.tmp").replace(out / "calm.mp4")
    lock = lock_path_for(board)
    lock.write_text(
        lock.read_text(encoding="utf-8").replace("mock/versions/calm.v1.mp4", "mock/calm.mp4"),
        encoding="utf-8",
    )
    state = board.with_name("old.toml.kling-state")
    for path in sorted(state.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()

    again = kp("run", board, "--json", "-q", "--mock-processing", "0.1")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["totals"]["spent"] == "0.000"
    assert _files.sha256_file(version) == sha
    assert _files.sha256_file(out / "calm.mp4") == sha
    listed = json.loads(kp("versions", board, "calm", "--json").stdout)["versions"]
    assert [(v["version"], v["current"]) for v in listed] == [(1, True)]


# With the bundled mock in the command's own process: what is refused, and what is kept.


def mock_run(board: Path) -> dict:
    done = kp("run", board, "--json", "-q", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["totals"]


def test_a_version_whose_bytes_changed_is_never_restored(tmp_path, frames):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    mock_run(board)
    board.write_text(BOARD.replace("Nets dry", "Nets flap"), encoding="utf-8")
    mock_run(board)
    out = tmp_path / "renders" / "harbour" / "mock"
    current = _files.sha256_file(out / "nets.mp4")
    with (out / "versions" / "nets.v1.mp4").open("ab") as video:
        video.write(b"edited")
    refused = kp("restore", board, "nets", "1")
    assert refused.returncode == 2
    assert 'version 1 of shot "nets" is not on disk as it was rendered' in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _files.sha256_file(out / "nets.mp4") == current
    assert "approved" not in kp("status", board).stdout


def test_gc_removes_versions_only_when_told_and_never_the_current_one(tmp_path, frames):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    mock_run(board)
    for word in ("flap", "sway"):
        text = board.read_text(encoding="utf-8").replace("Nets dry", f"Nets {word}")
        board.write_text(text.replace("Nets flap", f"Nets {word}"), encoding="utf-8")
        mock_run(board)
    versions = tmp_path / "renders" / "harbour" / "mock" / "versions"
    assert sorted(p.name for p in versions.glob("nets.*")) == [
        "nets.v1.mp4",
        "nets.v2.mp4",
        "nets.v3.mp4",
    ]
    assert kp("gc", board).returncode == 0
    assert len(list(versions.glob("nets.*"))) == 3  # plain gc keeps every version
    kept = kp("gc", board, "--keep-last", "2")
    assert kept.returncode == 0, kept.stderr
    assert sorted(p.name for p in versions.glob("nets.*")) == ["nets.v2.mp4", "nets.v3.mp4"]
    assert kp("gc", board, "--versions").returncode == 0
    assert sorted(p.name for p in versions.glob("nets.*")) == ["nets.v3.mp4"]  # the current


def test_an_approval_damaged_by_hand_keeps_its_shot_held_and_says_so(tmp_path, frames):
    board = tmp_path / "harbour.toml"
    board.write_text(BOARD, encoding="utf-8")
    mock_run(board)
    assert kp("approve", board, "nets").returncode == 0
    lock = lock_path_for(board)
    document = json.loads(lock.read_text(encoding="utf-8"))
    document["simulated"]["nets"]["approved"]["version"] = "two"  # a bad merge
    lock.write_text(json.dumps(document), encoding="utf-8")
    board.write_text(BOARD.replace("Nets dry", "Nets flap"), encoding="utf-8")
    planned = json.loads(kp("plan", board, "--json").stdout)
    assert {s["id"]: s["status"] for s in planned["shots"]}["nets"] == "approved"
    assert planned["total_cost"] == "0.000"
    status = kp("status", board)
    assert status.returncode == 0
    assert "simulated.nets.approved.version" in status.stdout + status.stderr
    assert mock_run(board)["spent"] == "0.000"
    unapproved = kp("unapprove", board, "nets")
    assert unapproved.returncode == 0, unapproved.stderr
    section = json.loads(lock.read_text(encoding="utf-8"))["simulated"]
    assert "approved" not in section.get("nets", {})
    shots = {s["id"]: s for s in json.loads(kp("plan", board, "--json").stdout)["shots"]}
    assert (shots["nets"]["status"], shots["nets"]["cost"]) == ("render", "0.420")
