"""A production's life, end to end: subsets, the film's budget, expiry, adopting a task.

The real client and scheduler against the mock over loopback sockets: the bundled mock
(`render`'s default, started in-process) or a `MockServer` the test drives.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from kling_pipe._backends.base import SubmitRequest
from kling_pipe._decisions.plan import format_plan
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._running.adopting import AdoptRefusedError, adopt_task
from kling_pipe._running.options import RunOptions, Timing
from kling_pipe._running.run import render
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import LocalImage, Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import ShotListError
from mockserver import FaultConfig, FaultRule, FixedTime, Manual, MockConfig
from tests.e2e.e2e_support import HARBOUR, board, url_shots
from tests.settling import FAST_SETTLE

FAST = RunOptions(settle=FAST_SETTLE, report=False)


# --only: test one shot before paying for thirty.


async def test_only_pays_for_the_named_shot_and_the_source_it_needs_and_nothing_else(
    specs, start_mock, client_for
):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.1)))
    result = await render(
        specs / "demo.toml", backend=client_for(mock), options=attrs.evolve(FAST, only=("gutter",))
    )
    assert result.exit_code == 0, result.as_json()
    states = {s.id: s.state for s in result.shots}
    assert states == {
        "puddle": "done",
        "gutter": "done",
        "street": "excluded",
        "river": "excluded",
        "open-sea": "excluded",
        "dusk": "excluded",
    }
    assert len(mock.tasks()) == 2  # two tasks made, two paid for
    assert Decimal(mock.ledger()["balance_usd"]) == Decimal(1000) - Decimal("0.840")
    assert result.spent == Decimal("0.840")
    assert {s.error for s in result.shots if s.state == "excluded"} == {"not in --only"}


async def test_the_full_run_after_a_subset_pays_only_for_the_rest(specs, start_mock, client_for):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.1)))
    backend = client_for(mock)
    await render(specs / "demo.toml", backend=backend, options=attrs.evolve(FAST, only=("dusk",)))
    result = await render(specs / "demo.toml", backend=backend, options=FAST)
    assert result.exit_code == 0
    assert [s.state for s in result.shots].count("cached") == 1
    assert len(mock.tasks()) == 6  # every shot once: dusk was not paid for twice


async def test_only_naming_nothing_is_refused_before_anything_is_sent(specs):
    with pytest.raises(Exception, match="--only: 'storrm' names no shot"):
        await render(specs / "demo.toml", options=attrs.evolve(FAST, only=("storrm",)))
    assert not state_dir_for(specs / "demo.toml").exists()


async def test_only_a_glob_whose_chain_source_went_stale_brings_the_source_along(
    specs, start_mock, client_for
):
    """The glob names the chain, not its source; the source was edited since it was rendered."""
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05)))
    backend = client_for(mock)
    path = specs / "harbour.toml"
    path.write_text(HARBOUR.format(dock="a paper boat at the dock"))
    assert (await render(path, backend=backend, options=FAST)).exit_code == 0
    path.write_text(HARBOUR.format(dock="a paper boat at the dock at night"))
    result = await render(path, backend=backend, options=attrs.evolve(FAST, only=("harbour-*",)))
    assert result.exit_code == 0, result.as_json()
    assert {s.id: s.state for s in result.shots} == {
        "dock": "done",  # stale, and harbour-a cannot start without its new last frame
        "harbour-a": "done",
        "harbour-b": "done",
        "storm": "cached",
    }
    assert result.spent == Decimal("1.260")
    assert len(mock.tasks()) == 4 + 3


# The film's budget: what every run together may spend.


def ten_second_shots(folder: Path, prompt: str, **storyboard: Decimal) -> ShotList:
    """Five 10-second shots: 4.200 USD a run. An edited prompt makes every one new."""
    return ShotList(
        storyboard=Storyboard(name="film", **storyboard),
        shots=tuple(
            Shot(
                id=f"s{i}",
                prompt=f"{prompt} {i}",
                image=UrlImage(url=f"https://x.test/{i}.png"),
                duration=10,
            )
            for i in range(5)
        ),
        source=folder / "film.toml",
    )


async def three_edits(folder: Path, **storyboard: Decimal) -> list[object]:
    """Render the film three times, editing every prompt in between; return each outcome."""
    outcomes: list[object] = []
    for take in ("dawn", "noon", "dusk"):
        shotlist = ten_second_shots(folder, take, **storyboard)
        try:
            outcomes.append(
                await render(shotlist, options=attrs.evolve(FAST, mock_processing_s=0.05))
            )
        except ShotListError as refused:
            outcomes.append(refused)
    return outcomes


def spent(folder: Path) -> Decimal:
    with Store.open(state_dir_for(folder / "film.toml")) as store:
        return store.spent()


async def test_max_cost_stays_one_runs_cap_so_three_runs_under_it_spend_three_times_it(
    tmp_path,
):
    """What the budget is for: max_cost is one run's cap, so three runs spent three times."""
    outcomes = await three_edits(tmp_path, max_cost=Decimal(6))
    assert not any(isinstance(o, ShotListError) for o in outcomes)
    assert spent(tmp_path) == Decimal("12.600")


async def test_regression_a_film_budget_refuses_the_third_run_naming_spent_this_run_and_budget(
    tmp_path,
):
    outcomes = await three_edits(tmp_path, max_cost=Decimal(6), budget=Decimal(12))
    assert [type(o).__name__ for o in outcomes] == ["RunResult", "RunResult", "ShotListError"]
    refused = outcomes[2]
    assert isinstance(refused, ShotListError)
    assert [str(p) for p in refused.problems] == [
        "storyboard.budget: 8.400 USD spent on this storyboard so far and 4.200 USD for 5 shots "
        "in this run make 12.600, more than its budget 12; raise budget or render fewer "
        "shots; nothing was submitted"
    ]
    assert spent(tmp_path) == Decimal("8.400")  # the third run sent nothing


async def test_a_fresh_checkout_counts_what_its_lock_file_says_was_spent(tmp_path):
    shotlist = ten_second_shots(tmp_path, "dawn", budget=Decimal(5))
    await render(shotlist, options=attrs.evolve(FAST, mock_processing_s=0.05))
    shutil.rmtree(state_dir_for(shotlist.source))  # a fresh checkout: the lock file, no state
    with pytest.raises(ShotListError, match=r"4\.200 USD spent on this storyboard so far"):
        await render(ten_second_shots(tmp_path, "noon", budget=Decimal(5)), options=FAST)


async def test_a_second_storyboard_beside_it_keeps_its_own_budget(tmp_path):
    """Two films in one folder, the same shots: each budget counts its own film's spend only."""
    film = ten_second_shots(tmp_path, "dawn", budget=Decimal(5))
    other = attrs.evolve(
        film,
        storyboard=Storyboard(name="other", budget=Decimal(5)),
        source=tmp_path / "other.toml",
    )
    fast = attrs.evolve(FAST, mock_processing_s=0.05)
    assert (await render(film, options=fast)).spent == Decimal("4.200")
    assert (await render(other, options=fast)).spent == Decimal("4.200")  # not refused: 0 spent
    noon = ten_second_shots(tmp_path, "noon").shots
    for board_ in (film, other):
        with pytest.raises(ShotListError) as refused:
            await render(attrs.evolve(board_, shots=noon), options=fast)
        assert str(refused.value) == (  # 4.200 each, never the two films' 8.400
            f"{board_.source}: storyboard.budget: 4.200 USD spent on this storyboard so far and "
            "4.200 USD for 5 shots in this run make 8.400, more than its budget 5; raise budget "
            "or render fewer shots; nothing was submitted"
        )


async def test_a_rerender_that_would_pass_the_budget_is_refused(specs):
    demo = specs / "demo.toml"
    demo.write_text(demo.read_text().replace("max_cost = 5.00", "max_cost = 5.00\nbudget = 3.50"))
    shotlist = load(demo)
    assert shotlist.storyboard.budget == Decimal("3.50")
    result = await render(shotlist, options=attrs.evolve(FAST, only=("dusk",)))
    assert result.spent == Decimal("0.420")
    over = r"0\.420 USD spent .* make 3\.528, more than its budget 3\.50"
    with pytest.raises(ShotListError, match=over):
        await render(load(demo), options=attrs.evolve(FAST, rerender=("dusk",)))


# Expiry: WaveSpeed keeps outputs 7 days; a task never downloaded is then gone.


def days_later(days: float) -> Timing:
    """Our clock, *days* ahead: what a run started that much later reads."""
    return Timing(now=lambda: datetime.now(UTC) + timedelta(days=days))


async def left_undownloaded(tmp_path: Path, start_mock, client_for):
    """One shot rendered on the mock whose download kept failing: paid, never downloaded."""
    mock = await start_mock(
        MockConfig(
            processing=FixedTime(seconds=0.05),
            faults=FaultConfig(rules=(FaultRule(kind="truncated_download", routes=["download"]),)),
        )
    )
    shotlist = board(tmp_path, *url_shots(1))
    first = await render(shotlist, backend=client_for(mock), options=FAST)
    assert [s.state for s in first.shots] == ["failed"]
    mock.set_faults(FaultConfig())
    (task,) = mock.tasks()
    return mock, shotlist, task["id"]


def submits(mock) -> int:
    return int(mock.stats()["submits"])


@pytest.mark.parametrize("gone", ["task deleted: /result 404s", "output URL 404s"])
async def test_a_task_never_downloaded_found_after_seven_days_is_output_expired(
    tmp_path, start_mock, client_for, gone
):
    mock, shotlist, task = await left_undownloaded(tmp_path, start_mock, client_for)
    if gone.startswith("task deleted"):
        mock.state.delete([task])
    else:
        mock.expire(task)
    backend = client_for(mock)
    later = await render(shotlist, backend=backend, options=FAST, timing=days_later(8))
    (shot,) = later.shots
    assert shot.state == "expired", shot.error
    assert shot.error.startswith(f"output expired: task {task} finished but was never downloaded")
    assert "--rerender s000 to render it anew (0.420 USD again)" in shot.error
    assert later.exit_code == 1
    # It stays so, and nothing is paid again without the user's word.
    again = await render(shotlist, backend=backend, options=FAST)
    assert [s.state for s in again.shots] == ["expired"]
    assert submits(mock) == 1
    # A fresh checkout (the lock file, no state folder) knows it too.
    shutil.rmtree(state_dir_for(shotlist.source))
    fresh = await render(shotlist, backend=backend, options=FAST)
    assert [s.state for s in fresh.shots] == ["expired"]
    assert submits(mock) == 1


async def test_regression_an_expired_output_is_rendered_anew_only_with_rerender_priced_in_plan(
    tmp_path, start_mock, client_for
):
    mock, shotlist, task = await left_undownloaded(tmp_path, start_mock, client_for)
    mock.expire(task)
    backend = client_for(mock)
    await render(shotlist, backend=backend, options=FAST, timing=days_later(8))
    assert submits(mock) == 1
    rerender = attrs.evolve(FAST, rerender=("s000",))
    result = await render(shotlist, backend=backend, options=rerender)
    assert [s.state for s in result.shots] == ["done"]
    assert submits(mock) == 2


async def test_within_seven_days_a_missing_task_is_looked_at_again_never_taken_for_expired(
    tmp_path, start_mock, client_for
):
    """A 404 may be a glitch: before the 7 days, the task is left to the next run to fetch."""
    mock, shotlist, task = await left_undownloaded(tmp_path, start_mock, client_for)
    mock.expire(task)
    backend = client_for(mock)
    soon = await render(shotlist, backend=backend, options=FAST, timing=days_later(6))
    assert [s.state for s in soon.shots] == ["failed"]
    with Store.open(state_dir_for(shotlist.source)) as store:
        (attempt,) = store.attempts()
    assert attempt.state == "completed"
    assert submits(mock) == 1


def test_the_plan_names_an_expired_output_and_prices_rendering_it_anew(tmp_path):
    from kling_pipe._decisions.plan import plan  # noqa: PLC0415 - the one pure helper here
    from kling_pipe._records.assessment import assess_shotlist  # noqa: PLC0415

    shotlist = board(tmp_path, *url_shots(1))
    with Store.open(state_dir_for(shotlist.source)) as store:
        assessment = assess_shotlist(shotlist, store, origin="mock")
        attempt = store.adopt(
            shot_id="s000",
            fingerprint=assessment.fingerprints["s000"],
            inputs=assessment.inputs["s000"],
            model=shotlist.storyboard.model,
            duration=5,
            cost=Decimal("0.420"),
            task_id="a" * 32,
            sent_at=datetime.now(UTC) - timedelta(days=9),
            origin="mock",
            state="completed",
        )
        store.record_expired(attempt, "output expired: ...")
        assessment = assess_shotlist(shotlist, store, origin="mock")
    p = plan(shotlist, statuses=assessment.statuses)
    assert [u.status for u in p.units] == ["expired"]
    assert p.total_cost == 0
    text = format_plan(p)
    assert (
        "s000: output expired (finished, never downloaded; WaveSpeed keeps outputs 7 days); "
        "--rerender s000 renders it anew: +0.420"
    ) in text


# Adopting a task the user checked: proved, claimed, recorded, never paid.

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"


def puddle_board(folder: Path, frames: Path) -> ShotList:
    """One shot from the puddle picture: what a task made from it proves to be."""
    return ShotList(
        storyboard=Storyboard(name="film"),
        shots=(
            Shot(
                id="boat", prompt="a paper boat", image=LocalImage(path=str(frames / "puddle.png"))
            ),
        ),
        source=folder / "film.toml",
    )


async def task_from(backend, picture: Path, *, wait: bool = True) -> str:
    """Make a task on the mock the way someone else would (the web playground, say)."""
    url = await backend.upload_image(picture)
    task = await backend.submit(SubmitRequest(model=MODEL, prompt="p", image_url=url, duration=5))
    while wait and not (await backend.get_prediction(task.id)).is_final:  # noqa: ASYNC110 - the server's state, not an event
        await asyncio.sleep(0.02)
    return task.id


def left_uncertain(shotlist: ShotList, candidates: str, origin: str) -> int:
    """Record what a lost answer that could not be settled leaves: an uncertain attempt."""
    from kling_pipe._records.assessment import assess_shotlist  # noqa: PLC0415

    with Store.open(state_dir_for(shotlist.source)) as store:
        assessment = assess_shotlist(shotlist, store, origin="x")
        attempt = store.record_intent(
            shot_id="boat",
            fingerprint=assessment.fingerprints["boat"],
            inputs="{}",
            model=MODEL,
            duration=5,
            cost=Decimal("0.420"),
            sent_at=datetime.now(UTC),
            origin=origin,
        )
        store.record_uncertain(attempt, f"several tasks match: {candidates}")
        return attempt


@pytest.fixture
async def account(start_mock, client_for):
    mock = await start_mock(MockConfig(processing=FixedTime(seconds=0.05)))
    return mock, client_for(mock)


async def test_regression_an_uncertain_shot_adopts_the_task_its_frames_prove_without_paying(
    tmp_path, frames, account
):
    """Before, --resubmit-uncertain (paying again) was the only way on."""
    mock, backend = account
    shotlist = puddle_board(tmp_path, frames)
    task = await task_from(backend, frames / "puddle.png")
    attempt = left_uncertain(shotlist, task, backend.origin)
    paid = submits(mock)
    result = await adopt_task(shotlist, "boat", task, backend=backend)
    assert result.judgement.verdict == "match"
    assert result.line == (
        f"boat: task {task} (completed): match: its video shows {frames / 'puddle.png'} first"
    )
    assert result.next == "downloaded"
    film = tmp_path / "renders" / "film" / "local"  # a loopback server's renders
    assert result.file == film / "versions" / "boat.v1.mp4"  # a render, kept as a version
    assert (film / "boat.mp4").read_bytes() == result.file.read_bytes()  # and the shot's video
    with Store.open(state_dir_for(shotlist.source)) as store:
        recorded = store.attempt(attempt)
        assert recorded is not None
        assert (recorded.state, recorded.task_id) == ("downloaded", task)
        assert len(store.attempts()) == 1  # the uncertain attempt is the task's: counted once
    with Registry.open() as registry:
        assert registry.owner(task) == f"{shotlist.source.resolve()}#boat"
    # The next run has nothing to do, and nobody paid for anything.
    after = await render(shotlist, backend=backend, options=FAST)
    assert [s.state for s in after.shots] == ["cached"]
    assert submits(mock) == paid


async def test_a_task_whose_frames_are_another_shots_is_never_adopted_even_forced(
    tmp_path, frames, account
):
    _, backend = account
    shotlist = puddle_board(tmp_path, frames)
    task = await task_from(backend, frames / "river.png")
    with pytest.raises(AdoptRefusedError) as refused:
        await adopt_task(shotlist, "boat", task, backend=backend, force=True)
    assert refused.value.line.startswith(f"boat: task {task} (completed): mismatch: its video ")
    assert str(refused.value) == (
        f"task {task} not adopted: a task that is not the shot's is never adopted, not even "
        "with --force"
    )
    with Store.open(state_dir_for(shotlist.source)) as store:
        assert store.attempts() == []
    with Registry.open() as registry:
        assert registry.owner(task) is None


async def test_a_task_still_rendering_is_adopted_only_with_force_then_polled_by_the_next_run(
    tmp_path, frames, start_mock, client_for
):
    mock = await start_mock(MockConfig(processing=Manual()))
    backend = client_for(mock)
    shotlist = puddle_board(tmp_path, frames)
    task = await task_from(backend, frames / "puddle.png", wait=False)
    with pytest.raises(AdoptRefusedError, match="look at the task yourself, then adopt it with"):
        await adopt_task(shotlist, "boat", task, backend=backend)
    result = await adopt_task(shotlist, "boat", task, backend=backend, force=True)
    assert (result.judgement.verdict, result.next) == ("undecided", "poll")
    assert "its video, the proof, is not there yet" in result.judgement.why
    mock.complete(task)
    after = await render(shotlist, backend=backend, options=FAST)
    assert [(s.state, s.task_id) for s in after.shots] == [("done", task)]
    assert submits(mock) == 1  # the one task the "playground" made


async def test_a_task_another_shot_list_owns_is_refused_in_one_line(tmp_path, frames, account):
    _, backend = account
    shotlist = puddle_board(tmp_path, frames)
    task = await task_from(backend, frames / "puddle.png")
    with Registry.open() as registry:
        registry.claim(task, owner="/elsewhere/other.toml#storm", origin=backend.origin)
    with pytest.raises(AdoptRefusedError) as refused:
        await adopt_task(shotlist, "boat", task, backend=backend)
    assert str(refused.value) == (
        f"task {task} belongs to /elsewhere/other.toml#storm (another shot or shot list); "
        "not adopted"
    )
    with Store.open(state_dir_for(shotlist.source)) as store:
        assert store.attempts() == []


async def test_a_take_that_has_its_video_refuses_another_task(tmp_path, frames, account):
    _, backend = account
    shotlist = puddle_board(tmp_path, frames)
    await render(shotlist, backend=backend, options=FAST)
    task = await task_from(backend, frames / "puddle.png")
    with pytest.raises(AdoptRefusedError, match="boat has its task: its video is on disk"):
        await adopt_task(shotlist, "boat", task, backend=backend)


async def test_a_task_id_not_of_the_apis_form_is_refused_before_anything(tmp_path, frames):
    with pytest.raises(Exception, match="TASK_ID is not a task id"):
        await adopt_task(puddle_board(tmp_path, frames), "boat", "../../etc/passwd")
    assert not state_dir_for(tmp_path / "film.toml").exists()
