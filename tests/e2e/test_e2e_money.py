"""Prices WaveSpeed quotes and the bill, end to end against the mock on a real socket.

The mock stands in for WaveSpeed: the run goes to it through the real client at its own
loopback URL (a local server's origin, not the bundled mock's), so every real-API path is
taken: the quotes before any submit, the balance before and after, the billing search.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from kling_pipe._running.options import RunOptions
from kling_pipe._running.run import render
from kling_pipe._shotlist import catalogue
from kling_pipe.exceptions import ShotListError
from mockserver import FixedTime, MockConfig, MockServer
from mockserver import catalogue as mock_catalogue
from mockserver.threaded import ThreadedMockServer
from tests.cli_support import kp
from tests.settling import FAST_SETTLE

OPTIONS = RunOptions(settle=FAST_SETTLE, report=False)
BOARD = """version = 1
[storyboard]
name = "money"

[[shots]]
id = "puddle"
prompt = "A paper boat on a puddle"
image = "frames/puddle.png"

[[shots]]
id = "dusk"
prompt = "The sun sets behind the boat"
image = "frames/dusk.png"
duration = 10

[[shots]]
id = "again"
prompt = "The boat again"
image = "frames/puddle.png"
"""


@pytest.fixture
def board(tmp_path: Path, frames: Path) -> Path:
    path = tmp_path / "money.toml"
    path.write_text(BOARD, encoding="utf-8")
    return path


async def started(start_mock, **changes: object) -> MockServer:
    config = MockConfig(processing=FixedTime(seconds=0.1), max_side_px=160, fps=2)
    return await start_mock(attrs.evolve(config, **changes))


def submits(mock: MockServer) -> int:
    return mock.stats()["submits"]


async def test_a_price_the_server_changed_stops_the_run_before_any_submit(board, start_mock):
    """price_factor: WaveSpeed quotes more than the catalogue says; nothing is sent."""
    mock = await started(start_mock, price_factor=Decimal("1.5"))
    with pytest.raises(ShotListError) as refused:
        await render(
            board,
            backend="wavespeed",
            base_url=mock.base_url,
            api_key=mock.api_key,
            options=OPTIONS,
        )
    lines = refused.value.lines()
    assert [line.split(": ", 1)[1].split(":")[0] for line in lines] == [
        "shots (puddle)",
        "shots (again)",
        "shots (dusk)",
    ]
    assert "WaveSpeed quotes 0.63 USD" in lines[0]
    assert "the catalogue says 0.420 USD" in lines[0]
    assert "WaveSpeed quotes 1.26 USD" in lines[2]
    assert submits(mock) == 0
    assert [e["path"] for e in mock.journal() if "/model/price" in e["path"]] == [
        "/api/v3/model/price",
        "/api/v3/model/price",
    ]  # one quote per distinct request: 5 s (two shots) and 10 s


async def test_a_real_run_reconciles_its_bill_per_task_to_the_cent(board, start_mock):
    mock = await started(start_mock)
    result = await render(
        board,
        backend="wavespeed",
        base_url=mock.base_url,
        api_key=mock.api_key,
        options=OPTIONS,
    )
    assert [s.state for s in result.shots] == ["done", "done", "done"]
    bill = result.bill
    assert bill is not None
    assert bill.mode == "itemised"
    assert bill.reconciles
    assert bill.recorded == bill.charged == Decimal("1.68")
    assert result.as_json()["bill"]["reconciles"] is True


async def test_without_billing_search_the_bill_falls_back_to_the_balance_with_a_warning(
    board, start_mock
):
    mock = await started(start_mock, billings_search=False)
    result = await render(
        board,
        backend="wavespeed",
        base_url=mock.base_url,
        api_key=mock.api_key,
        options=OPTIONS,
    )
    bill = result.bill
    assert bill is not None
    assert bill.mode == "balance"
    assert (bill.balance_before, bill.balance_after) == (Decimal(1000), Decimal("998.32"))
    assert bill.reconciles
    assert any("other client" in w for w in bill.warnings())
    from kling_pipe._decisions.results import format_summary  # noqa: PLC0415

    assert "by the balance" in format_summary(result)


async def test_a_run_without_quotes_on_a_confirmed_price_goes_on_the_catalogue(
    board, start_mock, caplog
):
    """No price route and no price in /models: the catalogue's (confirmed) price, warned."""
    mock = await started(start_mock, quotes=False)
    result = await render(
        board,
        backend="wavespeed",
        base_url=mock.base_url,
        api_key=mock.api_key,
        options=OPTIONS,
    )
    assert [s.state for s in result.shots] == ["done", "done", "done"]
    assert "priced from the catalogue at 0.420 USD" in caplog.text


async def test_the_bundled_mock_asks_no_quote_and_keeps_no_bill(board):
    result = await render(
        board, backend="mock", options=attrs.evolve(OPTIONS, mock_processing_s=0.1)
    )
    assert result.bill is None


# -------------------------------------------------------------------------- the commands


def threaded(**changes: object) -> ThreadedMockServer:
    config = MockConfig(processing=FixedTime(seconds=0.1), max_side_px=160, fps=2)
    return ThreadedMockServer(attrs.evolve(config, **changes))


def test_bill_shows_each_task_and_names_a_charge_the_records_do_not_know(board):
    """`kling-pipe bill`: per task, reconciled (exit 0); an extra charge is named (exit 1)."""
    with threaded() as server:
        real = ("--backend", "wavespeed", "--base-url", server.base_url)
        env = {"WAVESPEED_API_KEY": server.api_key}
        done = kp("run", board, *real, "--yes", env=env)
        assert done.returncode == 0, done.stderr
        assert "bill: recorded 1.680 USD, WaveSpeed charged 1.680 USD per task: reconciles" in (
            done.stdout
        )
        checked = kp("bill", board, *real, env=env)
        assert checked.returncode == 0, checked.stderr
        header, *rows = checked.stdout.splitlines()[:4]
        assert header.split() == [
            "shot",
            "task",
            "id",
            "model",
            "recorded",
            "charged",
            "refunded",
            "difference",
        ]
        assert sorted(row.split()[0] for row in rows) == ["again", "dusk", "puddle"]
        task = next(row.split()[1] for row in rows if row.startswith("puddle"))

        def overcharge(mock: MockServer) -> None:
            mock.state.ledger.charge(task, Decimal("0.10"), mock.state.clock.now())

        server.call(overcharge)
        differs = kp("bill", board, *real, "--json", env=env)
    assert differs.returncode == 1, differs.stderr
    document = json.loads(differs.stdout)
    assert document["reconciles"] is False
    assert document["difference"] == "0.100"
    (puddle,) = [t for t in document["tasks"] if t["shot"] == "puddle"]
    assert puddle["difference"] == "0.100"


def test_bill_of_the_bundled_mock_is_bad_input(board):
    refused = kp("bill", board)
    assert refused.returncode == 2
    assert "simulated" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bill_of_a_missing_file_says_first_that_it_is_missing(tmp_path):
    """The file is the first thing wrong: the mock's simulated money comes after it."""
    refused = kp("bill", tmp_path / "gone.toml")
    assert refused.returncode == 2
    assert "file not found" in refused.stderr
    assert "simulated" not in refused.stderr


def test_models_lists_the_catalogue_and_names_each_difference_from_the_servers_list():
    """Offline: the catalogue with sources. Against the mock: a model it does not serve, a
    price it states where the catalogue has none, and (price_factor) a changed price."""
    listed = kp("models")
    assert listed.returncode == 0, listed.stderr
    assert "kwaivgi/kling-video-o1-std/image-to-video" in listed.stdout
    assert "price: 0.084 USD per second of video" in listed.stdout
    assert "price: 0.07 USD per second of video, at least 5 s billed" in listed.stdout
    assert "source: model: https://wavespeed.ai/" in listed.stdout
    with threaded() as server:
        env = {"WAVESPEED_API_KEY": server.api_key}
        real = ("--backend", "wavespeed", "--base-url", server.base_url)
        plain = kp("models", *real, "--json", env=env)
        server.set_options(price_factor=2)
        dearer = kp("models", *real, "--json", env=env)
    assert plain.returncode == 1
    assert json.loads(plain.stdout)["differences"] == expected_differences(Decimal(1))
    assert dearer.returncode == 1
    assert json.loads(dearer.stdout)["differences"] == expected_differences(Decimal(2))


def expected_differences(factor: Decimal) -> list[str]:
    """What `models` should name against the mock: its prices (times *factor*) where the
    catalogue has none or another, and every model it does not serve."""
    found = []
    for model, entry in catalogue.CATALOGUE.items():
        if model not in mock_catalogue.MODELS:
            found.append(f"{model}: not in the server's models list")
            continue
        ours = catalogue.price_of(entry, 5)
        theirs = mock_catalogue.cost(model, 5) * factor
        shown = f"{theirs:f}".rstrip("0").rstrip(".")
        if ours is None:
            found.append(
                f"{model}: the catalogue has no confirmed price; the server's formula says "
                f"{shown} USD for 5 s"
            )
        elif ours != theirs:
            found.append(
                f"{model}: {ours} USD for 5 s in the catalogue, {shown} USD by the server's formula"
            )
    return found


def test_plan_against_the_server_shows_its_quotes_and_refuses_a_changed_price(board):
    with threaded() as server:
        env = {"WAVESPEED_API_KEY": server.api_key}
        real = ("--backend", "wavespeed", "--base-url", server.base_url)
        agreed = kp("plan", board, *real, env=env)
        server.set_options(price_factor="1.5")
        changed = kp("plan", board, *real, "--json", env=env)
        submits = server.stats()["submits"]
    assert agreed.returncode == 0, agreed.stderr
    assert (
        "  kling-video-o1-std/image-to-video, 5 s: catalogue 0.420 USD, WaveSpeed 0.42 USD "
        "(/api/v3/model/price): agrees"
    ) in agreed.stdout
    assert changed.returncode == 2
    assert json.loads(changed.stdout)["quotes"][1].endswith("differs")
    assert "shots (dusk): WaveSpeed quotes 1.26 USD" in changed.stderr
    assert submits == 0


TEXT_BOARD = """version = 1
[storyboard]
name = "words"

[[shots]]
id = "sea"
model = "kling-video-o1-std/text-to-video"
prompt = "A calm sea at dawn"
aspect_ratio = "9:16"
"""


@pytest.fixture
def text_board(tmp_path: Path) -> Path:
    path = tmp_path / "words.toml"
    path.write_text(TEXT_BOARD, encoding="utf-8")
    return path


async def test_an_unconfirmed_price_runs_on_the_quote_and_the_budget_counts_it(
    text_board, start_mock
):
    """O1 text-to-video: no confirmed price; WaveSpeed's quote prices the run and its bill."""
    mock = await started(start_mock)
    result = await render(
        text_board,
        backend="wavespeed",
        base_url=mock.base_url,
        api_key=mock.api_key,
        options=OPTIONS,
    )
    assert [s.state for s in result.shots] == ["done"]
    assert result.spent == Decimal("0.42")
    assert result.bill is not None
    assert result.bill.reconciles
    tight = attrs.evolve(OPTIONS, max_cost=Decimal("0.40"), rerender=("sea",))
    with pytest.raises(ShotListError, match=r"the plan costs 0\.420 USD for 1 shot"):
        await render(
            text_board,
            backend="wavespeed",
            base_url=mock.base_url,
            api_key=mock.api_key,
            options=tight,
        )


async def test_an_unconfirmed_price_without_a_quote_is_refused_before_any_submit(
    text_board, start_mock
):
    mock = await started(start_mock, quotes=False)
    with pytest.raises(ShotListError) as refused:
        await render(
            text_board,
            backend="wavespeed",
            base_url=mock.base_url,
            api_key=mock.api_key,
            options=OPTIONS,
        )
    (line,) = refused.value.lines()
    assert "shots (sea): no confirmed price for kling-video-o1-std/text-to-video, 5 s" in line
    assert "aspect_ratio=9:16" in line
    assert submits(mock) == 0


def test_bill_without_billing_search_checks_the_last_run_by_its_recorded_balance(board):
    with threaded(billings_search=False) as server:
        real = ("--backend", "wavespeed", "--base-url", server.base_url)
        env = {"WAVESPEED_API_KEY": server.api_key}
        done = kp("run", board, *real, "--yes", env=env)
        assert done.returncode == 0, done.stderr
        checked = kp("bill", board, *real, "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    document = json.loads(checked.stdout)
    assert document["mode"] == "balance"
    assert (document["balance_before"], document["balance_after"]) == ("1000.0", "998.32")
    assert Decimal(document["recorded"]) == Decimal(document["charged"]) == Decimal("1.68")
    assert document["reconciles"] is True
    assert any("other client" in w for w in document["warnings"])


async def test_the_family_storyboard_renders_and_its_bill_reconciles_to_the_cent(specs, start_mock):
    """specs/family.toml (O1, v2.5 turbo, v3 12 s with sound, v3 text-to-video) against the
    mock as WaveSpeed: each shot priced by the catalogue or the quote, rendered, and each
    task's charge matches its record to the cent."""
    board = specs / "family.toml"
    mock = await started(start_mock)
    result = await render(
        board,
        backend="wavespeed",
        base_url=mock.base_url,
        api_key=mock.api_key,
        options=OPTIONS,
    )
    assert [s.state for s in result.shots] == ["done"] * 4, result.as_json()
    bill = result.bill
    assert bill is not None
    assert bill.mode == "itemised"
    assert bill.reconciles, bill.as_json()
    by_shot = {line.shot_id: line for line in bill.lines}
    assert by_shot["harbour"].recorded == Decimal("0.420")
    assert by_shot["gull"].recorded == Decimal("0.35")
    assert by_shot["storm"].recorded == Decimal("1.008")  # no confirmed price: the quote's
    assert all(line.difference == 0 for line in bill.lines)
    assert bill.charged == result.spent == Decimal("2.198")
    checked = await asyncio.to_thread(
        kp,
        "bill",
        board,
        "--backend",
        "wavespeed",
        "--base-url",
        mock.base_url,
        env={"WAVESPEED_API_KEY": mock.api_key},
    )
    assert checked.returncode == 0, checked.stderr
    assert "reconciles" in checked.stdout
