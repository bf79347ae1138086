"""Marks for re-render: the file read strictly, the doors (`mark`, `unmark`), and the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._backends.base import MOCK_ORIGIN
from kling_pipe._cli.main import main
from kling_pipe._outputs.rerender import mark_for_rerender, marked_shots, unmark
from kling_pipe._records.marks import MarksError, marks_path, read_marks, write_marks
from kling_pipe._records.store import RunLock, StoreBusyError, state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render_sync
from kling_pipe._shotlist.loader import load
from tests.strategies import shot_ids

SECTIONS = st.sampled_from(["simulated", "local", "shots"])


@given(marks=st.lists(st.tuples(SECTIONS, st.lists(shot_ids, max_size=5)), max_size=6))
def test_marks_read_back_as_written_per_section_in_order_once(tmp_path_factory, marks):
    folder = tmp_path_factory.mktemp("state")
    expected: dict[str, list[str]] = {}
    for section, names in marks:
        write_marks(folder, section, names)
        expected[section] = list(dict.fromkeys(names))
    for section in ("simulated", "local", "shots"):
        assert list(read_marks(folder, section)) == expected.get(section, [])
    if not any(expected.values()):
        assert not marks_path(folder).exists()  # no marks: no file


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"marks": {"simulated": "river"}}', '{"marks": {"shots": [3]}}']
)
def test_a_marks_file_kling_pipe_did_not_write_is_one_clear_error(tmp_path, text):
    marks_path(tmp_path).write_text(text)
    with pytest.raises(MarksError, match=r"rerender\.json: .*remove it to drop every mark"):
        read_marks(tmp_path, "simulated")


@pytest.fixture
def rendered(specs: Path) -> Path:
    source = specs / "takes.toml"
    assert render_sync(source, options=RunOptions(mock_processing_s=0.05)).exit_code == 0
    return source


def test_a_marked_shot_is_priced_then_rendered_again_by_the_next_full_run_only(rendered):
    shotlist = load(rendered, records_only=True)
    done = mark_for_rerender(shotlist, "sea", origin=MOCK_ORIGIN)
    assert (done.marked, done.was, str(done.cost), done.followers) == (True, False, "0.420", ())
    assert marked_shots(shotlist, MOCK_ORIGIN) == {"sea"}
    # --only leaves the mark for a full run.
    only = render_sync(rendered, options=RunOptions(mock_processing_s=0.05, only=["river"]))
    assert {s.id: s.state for s in only.shots}["river"] == "cached"
    assert marked_shots(shotlist, MOCK_ORIGIN) == {"sea"}
    full = render_sync(rendered, options=RunOptions(mock_processing_s=0.05))
    states = {s.id: s.state for s in full.shots}
    assert states["sea"] == "done"
    assert {k: v for k, v in states.items() if k != "sea"} == {
        "river": "cached",
        "river#2": "cached",
        "river#3": "cached",
    }
    assert marked_shots(shotlist, MOCK_ORIGIN) == frozenset()
    again = render_sync(rendered, options=RunOptions(mock_processing_s=0.05))
    assert {s.state for s in again.shots} == {"cached"}


def test_marking_a_chain_source_renders_it_and_what_follows_and_unmark_takes_it_back(rendered):
    shotlist = load(rendered, records_only=True)
    done = mark_for_rerender(shotlist, "river", origin=MOCK_ORIGIN)
    assert (done.takes, done.followers, str(done.cost)) == (3, ("sea",), "1.680")
    back = unmark(shotlist, "river", origin=MOCK_ORIGIN)
    assert (back.was, back.marked, str(back.to_spend)) == (True, False, "0.000")
    assert read_marks(state_dir_for(rendered), "simulated") == ()


def test_marking_is_refused_while_a_run_holds_the_shot_list(rendered):
    shotlist = load(rendered, records_only=True)
    with RunLock(state_dir_for(rendered)), pytest.raises(StoreBusyError):
        mark_for_rerender(shotlist, "sea", origin=MOCK_ORIGIN)
    assert marked_shots(shotlist, MOCK_ORIGIN) == frozenset()


def test_the_commands_mark_and_unmark_say_what_the_next_run_costs(rendered, capsys):
    assert main(["mark", str(rendered), "sea"]) == 0
    out = capsys.readouterr().out
    assert "sea: marked for re-render" in out
    assert "0.420 USD (simulated: the bundled mock)" in out
    assert main(["plan", str(rendered)]) == 0
    assert "0.420  render" in capsys.readouterr().out
    assert main(["mark", str(rendered), "nope"]) == 2
    assert 'no shot "nope"' in capsys.readouterr().err
    assert main(["unmark", str(rendered), "sea"]) == 0
    assert "no longer marked" in capsys.readouterr().out
    document = marks_path(state_dir_for(rendered))
    assert not document.exists() or json.loads(document.read_text())["marks"] == {}
