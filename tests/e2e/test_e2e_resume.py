"""Re-running a storyboard: only what changed is paid for, and nothing paid for is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kling_pipe import _files
from kling_pipe._records.store import RunLock, StoreBusyError, state_dir_for
from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe.exceptions import ShotListError


@pytest.fixture
def demo(specs: Path) -> Path:
    return specs / "demo.toml"


async def run(path: Path, **kwargs):
    return await render(path, options=RunOptions(mock_processing_s=0.1, **kwargs))


def states(result) -> dict[str, str]:
    return {s.id: s.state for s in result.shots}


async def test_an_unchanged_storyboard_is_never_paid_for_twice(demo):
    first = await run(demo)
    again = await run(demo)
    assert set(states(first).values()) == {"done"}
    assert set(states(again).values()) == {"cached"}
    assert str(again.spent) == "0.000"


async def test_editing_one_prompt_rerenders_it_and_the_shots_chained_from_it(demo):
    await run(demo)
    text = demo.read_text().replace("rides the current to the sea", "drifts to the sea")
    demo.write_text(text)
    again = await run(demo)
    assert states(again) == {
        "puddle": "cached",
        "gutter": "cached",
        "street": "cached",
        "river": "done",
        "open-sea": "done",
        "dusk": "cached",
    }
    assert str(again.spent) == "1.428"


async def test_a_whitespace_only_edit_rerenders_nothing(demo):
    await run(demo)
    demo.write_text("# reformatted\n\n" + demo.read_text().replace(" = ", "  =  ") + "\n\n")
    assert set(states(await run(demo)).values()) == {"cached"}


async def test_a_deleted_output_is_fetched_again_from_its_task_not_rendered(demo):
    first = await run(demo)
    street = next(s for s in first.shots if s.id == "street")
    assert street.file is not None
    street.file.unlink()
    again = await run(demo)
    refetched = next(s for s in again.shots if s.id == "street")
    assert refetched.state == "done"
    assert refetched.task_ids == street.task_ids  # the same task: nothing submitted
    assert str(refetched.cost) == "0.000"
    assert _files.sha256_file(street.file) == street.sha256


async def test_the_lock_file_records_every_output_with_its_checksum(demo):
    await run(demo)
    lock = json.loads((demo.parent / "demo.toml.lock.json").read_text())
    # The bundled mock's renders are kept apart from real ones, and labelled so.
    assert lock["simulated_totals"] == {"cost": "3.108", "rendered": 6, "seconds": 37, "shots": 6}
    assert lock["totals"]["rendered"] == 0
    for entry in lock["simulated"].values():
        assert entry["origin"] == "mock"
        assert entry["status"] == "downloaded"
        assert _files.sha256_file(demo.parent / entry["file"]) == entry["sha256"]


async def test_locked_refuses_to_render_what_the_lock_does_not_cover(demo):
    await run(demo)
    demo.write_text(demo.read_text().replace("last drops fall", "first drops fall"))
    with pytest.raises(ShotListError) as info:
        await run(demo, locked=True)
    assert [p.path for p in info.value.problems] == ["shots (puddle)", "shots (gutter)"]
    # Unchanged, it passes: everything is covered.
    demo.write_text(demo.read_text().replace("first drops fall", "last drops fall"))
    assert set(states(await run(demo, locked=True)).values()) == {"cached"}


async def test_rerender_forces_a_shot_and_its_chain(demo):
    await run(demo)
    again = await run(demo, rerender=["puddle"])
    assert states(again)["puddle"] == "done"
    assert states(again)["gutter"] == "done"
    assert states(again)["street"] == "cached"


async def test_a_second_run_of_the_same_shot_list_is_refused(demo):
    with RunLock(state_dir_for(demo)), pytest.raises(StoreBusyError, match="pid"):
        await run(demo)
