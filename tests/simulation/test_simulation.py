"""Seeded schedules of faults, kills, clock skew, history lag and a second client, end to end.

Each schedule (see `sim_support.draw_schedule`) renders one or two storyboards of local
pictures against the bundled mock over loopback sockets with the real client, kills the
runs at drawn backend calls and resumes them, then checks the submit protocol's invariants
against the mock's own record of who created which task and what was charged. A failing
schedule prints its seed and everything drawn from it; rerun it alone with
``pytest tests/simulation -m slow -k 'seed_1234'`` (or set ``SIM_FIRST_SEED`` / ``SIM_SCHEDULES``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.simulation.sim_support import (
    POOL_NAMES,
    BoardPlan,
    Schedule,
    ShotPlan,
    draw_schedule,
    run_schedule,
)

#: The fast subset, part of the default test command.
FAST_SEEDS = tuple(range(1, 9))
#: The large sample (`pytest -m slow tests/simulation`): SIM_SCHEDULES seeds from SIM_FIRST_SEED.
SLOW_FIRST = int(os.environ.get("SIM_FIRST_SEED", "1000"))
SLOW_SEEDS = tuple(range(SLOW_FIRST, SLOW_FIRST + int(os.environ.get("SIM_SCHEDULES", "160"))))


async def simulate(seed: int, pool: Path, folder: Path) -> None:
    schedule = draw_schedule(seed, POOL_NAMES)
    print(schedule.describe())
    await run_schedule(schedule, folder, pool)


@pytest.mark.parametrize("seed", FAST_SEEDS, ids=lambda s: f"seed_{s}")
async def test_schedule(seed: int, sim_pool: Path, tmp_path: Path) -> None:
    await simulate(seed, sim_pool, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS, ids=lambda s: f"seed_{s}")
async def test_schedule_large(seed: int, sim_pool: Path, tmp_path: Path) -> None:
    await simulate(seed, sim_pool, tmp_path)


# A bug this simulation found (fixed): a resumed run concluded "never created" from a history
# read made before it had learned the server's clock. One shot, its run killed right after the
# submit acted (calls: 1 upload, 2 submit), the history lagging 0.45 s behind creation (below
# the settle options' 0.6 s): the resumed run must adopt the task the killed one made, whether
# the server's clock is ahead, even or behind.


def killed_after_submit(clock_offset_s: float) -> Schedule:
    board = BoardPlan(
        name="b0",
        shots=(ShotPlan(id="b0s0", image="syn00.png"),),
        concurrency=1,
        max_cost=None,
        retry_failed=0,
        kills=((2, "after"),),
    )
    return Schedule(
        seed=0,
        boards=(board,),
        together=False,
        fault_seed=0,
        rules=(),
        history_lag_s=0.45,
        clock_offset_s=clock_offset_s,
        processing_s=0.1,
    )


@pytest.mark.parametrize("clock_offset_s", [0.0, 150.0, -150.0])
async def test_a_resumed_run_adopts_the_task_its_killed_run_made_whatever_the_server_clock(
    clock_offset_s: float, sim_pool: Path, tmp_path: Path
) -> None:
    schedule = killed_after_submit(clock_offset_s)
    (run,) = await run_schedule(schedule, tmp_path, sim_pool)
    assert run.result is not None
    assert [s.state for s in run.result.shots] == ["done"]
