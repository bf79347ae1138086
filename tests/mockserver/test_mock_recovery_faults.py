"""Faults that break a naive "lost submit" recovery, and the introspection to judge one.

History lag, a server clock offset (``created_at``, history filters, ``Date``), a second
client on the account, late creation, late answers, gateway errors after creation, and
``/_mock/tasks`` mapping every task to the request (or fault) that created it.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from mockserver import FaultConfig, FaultRule, ManualClock, MockConfig, RouteClass, cli
from mockserver.clock import MANUAL_EPOCH
from mockserver.faults import FaultInjector, SecondClient, parse_fault
from mockserver.server import MockServer
from mockserver.state import SECOND_CLIENT_IMAGE_BASE
from mockserver.threaded import ThreadedMockServer
from tests.mockserver.mock_support import AUTH, I2V, T2V, Api, MakeMock, i2v, until

SUBMIT = f"/api/v3/{I2V}"
HISTORY = "/api/v3/predictions"


def only(rule: FaultRule, seed: int = 0) -> FaultConfig:
    return FaultConfig(seed=seed, rules=(rule,))


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def listed(api: Api, **filters: object) -> list[str]:
    status, reply, _ = await api.call("POST", HISTORY, json=filters)
    assert status == 200, reply
    return [item["id"] for item in reply["data"]["items"]]  # type: ignore[index]


def submit_entry(mock: MockServer) -> dict[str, Any]:
    (entry,) = [e for e in mock.journal() if e["route"] == "submit"]
    return entry


# -- history lag ---------------------------------------------------------------------------


async def test_history_lag_hides_a_new_task_until_the_lag_has_passed(make_mock: MakeMock) -> None:
    """history_lag_s: the history lists a task only N s after its creation; GETs see it."""
    mock = await make_mock(history_lag_s=30)
    async with aiohttp.ClientSession() as session:
        api = Api(session, mock)
        task_id = await api.submit(i2v())
        assert (await api.result(task_id))["id"] == task_id
        assert await listed(api) == []
        mock.advance(29.5)
        assert await listed(api) == []
        assert [t["in_history"] for t in mock.tasks()] == [False]
        mock.advance(0.5)
        assert await listed(api) == [task_id]
        assert [t["in_history"] for t in mock.tasks()] == [True]


DEFAULT_OPTIONS = {
    "history_lag_s": 0.0,
    "clock_offset_s": 0.0,
    "price_factor": "1",
    "quotes": True,
    "billings_search": True,
}


async def test_options_change_at_run_time_and_reset_restores_them(
    api: Api, mock: MockServer
) -> None:
    """POST /_mock/options sets the lag and offset; bad input is a 400; reset undoes it."""
    status, reply, _ = await api.call(
        "POST", "/_mock/options", json={"history_lag_s": 5, "clock_offset_s": -120}, headers={}
    )
    assert status == 200
    assert reply["data"] == {**DEFAULT_OPTIONS, "history_lag_s": 5.0, "clock_offset_s": -120.0}
    task_id = await api.submit(i2v())
    assert await listed(api) == []
    mock.advance(5)
    assert await listed(api) == [task_id]
    for broken in ({"history_lag_s": -1}, {"clock_offset_s": "soon"}, {"colour": 1}):
        status, reply, _ = await api.call("POST", "/_mock/options", json=broken, headers={})
        assert status == 400, broken
        assert reply["message"]
    await api.call("POST", "/_mock/reset", headers={})
    _, reply, _ = await api.call("GET", "/_mock/options", headers={})
    assert reply["data"] == DEFAULT_OPTIONS


# -- server clock offset -------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-120.0, 180.0])
async def test_clock_offset_shows_in_created_at_date_headers_and_history_filters(
    make_mock: MakeMock, offset: float
) -> None:
    """clock_offset_s moves created_at, every Date header and the history's time filters."""
    mock = await make_mock(clock_offset_s=offset)
    server_now = MANUAL_EPOCH + offset
    async with aiohttp.ClientSession() as session:
        api = Api(session, mock)
        status, reply, headers = await api.call("POST", SUBMIT, json=i2v())
        assert status == 200
        data: dict[str, Any] = reply["data"]  # type: ignore[assignment]
        assert data["created_at"] == iso(server_now)
        assert headers["Date"] == formatdate(server_now, usegmt=True)
        for method, path, auth in (
            ("GET", "/api/v3/balance", AUTH),
            ("GET", "/api/v3/balance", {}),  # 401
            ("GET", "/api/v3/predictions/nope/result", AUTH),  # 404
            ("GET", "/_mock/stats", {}),
        ):
            _, _, headers = await api.call(method, path, headers=auth)
            assert headers["Date"] == formatdate(server_now, usegmt=True), path
        assert (await api.result(data["id"]))["created_at"] == iso(server_now)
        assert mock.tasks()[0]["created_at"] == iso(server_now)
        # The filters are in server time: one second either side of the server's creation.
        assert await listed(api, created_after=iso(server_now - 1)) == [data["id"]]
        assert await listed(api, created_before=iso(server_now + 1)) == [data["id"]]
        assert await listed(api, created_after=iso(server_now + 1)) == []
        assert await listed(api, created_before=iso(server_now - 1)) == []
        # A client filtering by its own clock (the mock clock) +- 1 s misses the task.
        if offset < 0:
            assert await listed(api, created_after=iso(MANUAL_EPOCH - 1)) == []
        else:
            assert await listed(api, created_before=iso(MANUAL_EPOCH + 1)) == []


async def test_date_header_follows_the_manual_clock_without_an_offset(
    api: Api, mock: MockServer
) -> None:
    """Date comes from the mock's clock: a manual clock's 2026-01-01, then an hour later."""
    task_id = await api.submit(i2v())
    _, _, headers = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert headers["Date"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    mock.advance(3600)
    data = await api.result(task_id)
    _, _, headers = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert headers["Date"] == "Thu, 01 Jan 2026 01:00:00 GMT"
    async with api.session.get(data["outputs"][0]) as response:  # type: ignore[index]
        assert response.status == 200
        assert response.headers["Date"] == "Thu, 01 Jan 2026 01:00:00 GMT"
    assert data["created_at"] == "2026-01-01T00:00:00.000Z"


# -- a second client on the account -------------------------------------------------------


async def test_second_client_adds_another_task_of_the_same_model_with_another_image(
    api: Api, mock: MockServer
) -> None:
    """second_client: an extra task, same model, other first image, charged, marked."""
    mock.set_faults(only(FaultRule(kind="second_client", within_s=0)))
    body = i2v(7, last_image="https://example.com/z.png")
    task_id = await api.submit(body)
    tasks = mock.tasks()
    assert len(tasks) == 2
    (mine,) = [t for t in tasks if t["id"] == task_id]
    (other,) = [t for t in tasks if t["id"] != task_id]
    entry = submit_entry(mock)
    assert (mine["created_by"], mine["request_seq"], mine["answer"]) == (
        "request",
        entry["seq"],
        "answered",
    )
    assert mine["input"] == body
    assert (other["created_by"], other["request_seq"], other["answer"]) == (
        "second_client",
        None,
        None,
    )
    assert other["trigger_seq"] == entry["seq"]
    assert other["model"] == I2V
    assert other["input"]["duration"] == 7
    assert other["input"]["image"].startswith(SECOND_CLIENT_IMAGE_BASE)
    assert other["input"]["image"] != body["image"]
    assert other["input"]["last_image"] != body["last_image"]
    charges = [e["task_id"] for e in mock.ledger()["entries"] if e["kind"] == "charge"]
    assert sorted(charges) == sorted([task_id, other["id"]])
    assert sorted(await listed(api)) == sorted([task_id, other["id"]])
    assert entry["faults"] == ["second_client"]
    # It renders, from a placeholder first frame.
    mock.advance(10)
    status, reply, _ = await api.call("GET", f"/api/v3/predictions/{other['id']}/result")
    assert (status, reply["data"]["status"]) == (200, "completed")  # type: ignore[index]


async def test_second_client_can_use_the_same_first_image(api: Api, mock: MockServer) -> None:
    """image=same: the adversarial case, the other task starts on the client's own frame."""
    mock.set_faults(only(parse_fault("second_client:1:image=same:within_s=0")))
    task_id = await api.submit(i2v())
    (other,) = [t for t in mock.tasks() if t["id"] != task_id]
    assert other["input"]["image"] == i2v()["image"]
    assert other["input"]["prompt"] != i2v()["prompt"]
    assert other["created_by"] == "second_client"


async def test_second_client_on_text_to_video_changes_the_prompt(
    api: Api, mock: MockServer
) -> None:
    """A text-to-video submit gets a same-model companion with its own prompt."""
    mock.set_faults(only(FaultRule(kind="second_client", within_s=0)))
    task_id = await api.submit({"prompt": "a storm", "duration": 10}, model=T2V)
    (other,) = [t for t in mock.tasks() if t["id"] != task_id]
    assert (other["model"], other["input"]["duration"]) == (T2V, 10)
    assert other["input"]["prompt"] != "a storm"


def _placements(seed: int, count: int = 8) -> list[SecondClient | None]:
    injector = FaultInjector(only(FaultRule(kind="second_client", within_s=5), seed))
    return [injector.draw(RouteClass.SUBMIT).second_client for _ in range(count)]


def test_second_client_placement_is_seeded() -> None:
    """Before or after, the gap and the image name repeat with the seed and vary across."""
    assert _placements(1) == _placements(1)
    assert _placements(1) != _placements(2)
    drawn = [p for p in _placements(1) if p is not None]
    assert {p.before for p in drawn} == {True, False}
    assert all(0 <= p.gap_s <= 5 for p in drawn)
    assert len({p.token for p in drawn}) == len(drawn)


def _seed_placing(before: bool) -> tuple[int, SecondClient]:
    for seed in range(100):
        first = _placements(seed, 1)[0]
        if first is not None and first.before is before and first.gap_s > 0.5:
            return seed, first
    raise AssertionError("no seed places the second client so")


async def test_second_client_before_is_created_earlier(api: Api, mock: MockServer) -> None:
    """Drawn before: the other task exists at once, created gap_s before the client's."""
    seed, placed = _seed_placing(before=True)
    mock.set_faults(only(FaultRule(kind="second_client", within_s=5), seed))
    task_id = await api.submit(i2v())
    other, mine = mock.tasks()
    assert mine["id"] == task_id
    assert other["created_wall"] == pytest.approx(MANUAL_EPOCH - placed.gap_s)
    assert await listed(api) == [task_id, other["id"]]  # newest first


async def test_second_client_after_appears_gap_s_later(api: Api, mock: MockServer) -> None:
    """Drawn after: the other task is created when the mock clock reaches gap_s later."""
    seed, placed = _seed_placing(before=False)
    mock.set_faults(only(FaultRule(kind="second_client", within_s=5), seed))
    task_id = await api.submit(i2v())
    assert [t["id"] for t in mock.tasks()] == [task_id]
    assert mock.stats()["pending_creations"] == 1
    mock.advance(placed.gap_s)
    await until(lambda: len(mock.tasks()) == 2)
    mine, other = mock.tasks()
    assert other["created_wall"] == pytest.approx(MANUAL_EPOCH + placed.gap_s)
    assert (other["created_by"], other["trigger_seq"]) == ("second_client", mine["request_seq"])
    assert await listed(api) == [other["id"], task_id]


# -- late creation ------------------------------------------------------------------------


async def test_late_create_creates_the_task_after_the_client_gave_up(
    api: Api, mock: MockServer
) -> None:
    """late_create: the client disconnects first; the task appears delay_s later, charged."""
    mock.set_faults(only(FaultRule(kind="late_create", delay_s=30)))
    client = asyncio.create_task(api.call("POST", SUBMIT, json=i2v()))
    await until(lambda: mock.state.pending_creations == 1)
    client.cancel()
    await asyncio.gather(client, return_exceptions=True)
    await until(mock.journal)
    entry = submit_entry(mock)
    assert (entry["status"], entry["task_id"], entry["faults"]) == (None, None, ["late_create"])
    assert mock.tasks() == []
    mock.advance(29)
    assert mock.tasks() == []
    mock.advance(1)
    await until(mock.tasks)
    (task,) = mock.tasks()
    assert task["created_at"] == iso(MANUAL_EPOCH + 30)
    assert (task["request_seq"], task["answer"]) == (entry["seq"], "client_gone")
    assert [e["task_id"] for e in mock.ledger()["entries"]] == [task["id"]]
    assert await listed(api) == [task["id"]]


async def test_late_create_answers_a_client_that_is_still_there(api: Api, mock: MockServer) -> None:
    """A patient client gets the normal answer, created_at being the late creation time."""
    mock.set_faults(only(parse_fault("late_create:delay_s=12")))
    client = asyncio.create_task(api.call("POST", SUBMIT, json=i2v()))
    await until(lambda: mock.state.pending_creations == 1)
    mock.advance(12)
    status, reply, _ = await client
    data: dict[str, Any] = reply["data"]  # type: ignore[assignment]
    assert (status, data["created_at"]) == (200, iso(MANUAL_EPOCH + 12))
    (task,) = mock.tasks()
    assert (task["id"], task["answer"], task["answer_status"]) == (data["id"], "answered", 200)


# -- late answer ---------------------------------------------------------------------------


async def test_late_answer_creates_at_once_and_answers_after_the_delay(
    api: Api, mock: MockServer
) -> None:
    """late_answer: the task exists (and is charged) while the answer is held back."""
    mock.set_faults(only(FaultRule(kind="late_answer", delay_s=20, routes=["submit"])))
    client = asyncio.create_task(api.call("POST", SUBMIT, json=i2v()))
    await until(mock.tasks)
    (task,) = mock.tasks()
    assert (task["answer"], task["created_at"]) == ("pending", iso(MANUAL_EPOCH))
    assert len(mock.ledger()["entries"]) == 1
    assert not client.done()
    mock.advance(20)
    status, reply, _ = await client
    assert (status, reply["data"]["id"]) == (200, task["id"])  # type: ignore[index]
    assert mock.tasks()[0]["answer"] == "answered"


async def test_late_answer_to_a_client_that_gave_up_reaches_nobody(
    api: Api, mock: MockServer
) -> None:
    """A client that leaves before the late answer leaves a created task: client_gone."""
    mock.set_faults(only(FaultRule(kind="late_answer", delay_s=20, routes=["submit"])))
    client = asyncio.create_task(api.call("POST", SUBMIT, json=i2v()))
    await until(mock.tasks)
    client.cancel()
    await asyncio.gather(client, return_exceptions=True)
    await until(mock.journal)
    entry = submit_entry(mock)
    (task,) = mock.tasks()
    assert (entry["status"], entry["task_id"]) == (None, task["id"])
    assert (task["request_seq"], task["answer"]) == (entry["seq"], "client_gone")


# -- gateway error after creation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "title"),
    [(502, "502 Bad Gateway"), (503, "503 Service Temporarily Unavailable"), (504, "504 Gateway")],
)
async def test_gateway_error_creates_and_charges_then_answers_html(
    api: Api, mock: MockServer, status: int, title: str
) -> None:
    """gateway_error: the task exists and is charged; the answer is nginx's page, no JSON."""
    mock.set_faults(only(FaultRule(kind="gateway_error", status=status, routes=["submit"])))
    async with api.session.post(mock.base_url + SUBMIT, json=i2v(), headers=AUTH) as response:
        text = await response.text()
        assert response.status == status
        assert response.content_type == "text/html"
    assert title in text
    assert "nginx" in text
    assert '"code"' not in text
    (task,) = mock.tasks()
    assert (task["answer"], task["answer_status"]) == ("gateway_error", status)
    assert task["request_seq"] == submit_entry(mock)["seq"]
    assert [e["kind"] for e in mock.ledger()["entries"]] == ["charge"]
    assert await listed(api) == [task["id"]]
    assert submit_entry(mock)["status"] == status


async def test_server_error_still_creates_nothing_and_answers_the_envelope(
    api: Api, mock: MockServer
) -> None:
    """The older server_error fault is unchanged: an enveloped 5xx and no task."""
    mock.set_faults(only(FaultRule(kind="server_error", status=502, routes=["submit"])))
    status, reply, _ = await api.call("POST", SUBMIT, json=i2v())
    assert (status, reply["code"]) == (502, 502)
    assert mock.tasks() == []


@pytest.mark.parametrize(
    "text",
    [
        "gateway_error:status=500",
        "second_client:image=maybe",
        "late_create:routes=poll",
        "second_client:routes=download",
        "late_answer:delay_s=-1",
    ],
)
def test_parse_fault_rejects_bad_recovery_faults(text: str) -> None:
    """Wrong statuses, images, routes and negative delays are ValueErrors."""
    with pytest.raises(ValueError):
        parse_fault(text)


def test_faults_acting_before_the_handler_hide_the_recovery_faults() -> None:
    """drop_before and rate_limit leave nothing done: no late or second-client creation."""
    kinds = ("second_client", "late_create", "late_answer", "gateway_error")
    rules = tuple(FaultRule(kind=k) for k in kinds)
    drawn = FaultInjector(FaultConfig(rules=rules)).draw(RouteClass.SUBMIT)
    assert drawn.kinds == ["late_create", "late_answer", "gateway_error", "second_client"]
    for first in ("drop_before", "rate_limit"):
        drawn = FaultInjector(FaultConfig(rules=(FaultRule(kind=first), *rules))).draw(
            RouteClass.SUBMIT
        )
        assert drawn.kinds == [first]
        assert (drawn.second_client, drawn.late_create_s) == (None, None)


# -- who created what ----------------------------------------------------------------------


async def test_tasks_route_maps_every_task_to_the_request_that_made_it(
    api: Api, mock: MockServer
) -> None:
    """GET /_mock/tasks: full input, server-time created_at, request seq and its outcome."""
    answered = await api.submit(i2v(prompt="first"))
    mock.set_faults(only(FaultRule(kind="drop_after", routes=["submit"], limit=1)))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("POST", SUBMIT, json=i2v(prompt="second"))
    status, reply, _ = await api.call("GET", "/_mock/tasks", headers={})
    assert status == 200
    first, second = reply["data"]  # type: ignore[misc]
    journal = {e["seq"]: e for e in mock.journal()}
    assert first["id"] == answered
    assert journal[first["request_seq"]]["task_id"] == answered
    assert journal[second["request_seq"]]["task_id"] == second["id"]
    assert (first["answer"], second["answer"]) == ("answered", "dropped")
    assert (first["answer_status"], journal[second["request_seq"]]["status"]) == (200, None)
    assert second["input"] == {**i2v(prompt="second")}
    assert set(first) == {
        "id",
        "model",
        "input",
        "status",
        "created_at",
        "created_wall",
        "cost_usd",
        "in_history",
        "created_by",
        "request_seq",
        "answer",
        "answer_status",
        "trigger_seq",
        "take",
    }
    assert (first["created_at"], first["cost_usd"], first["status"]) == (
        "2026-01-01T00:00:00.000Z",
        "0.420",
        "processing",
    )
    assert mock.tasks() == reply["data"]
    assert mock.state.describe_tasks() == reply["data"]


async def test_provenance_survives_a_restart_on_the_same_state_folder(
    make_mock: MakeMock, tmp_path: object
) -> None:
    """The origin of each task is persisted with it."""
    config = MockConfig(state_dir=tmp_path)  # type: ignore[arg-type]
    mock = await make_mock(config, faults=only(FaultRule(kind="second_client", within_s=0)))
    async with aiohttp.ClientSession() as session:
        await Api(session, mock).submit(i2v())
    before = mock.tasks()
    await mock.close()
    again = await make_mock(config)
    assert again.tasks() == before
    assert {t["created_by"] for t in before} == {"request", "second_client"}


def test_threaded_mock_offers_tasks_and_options() -> None:
    """The threaded server (the pytest fixture) has tasks(), options() and set_options()."""
    with ThreadedMockServer(MockConfig(), clock=ManualClock()) as mock:
        assert mock.set_options(history_lag_s=3) == {**DEFAULT_OPTIONS, "history_lag_s": 3.0}
        assert mock.options()["history_lag_s"] == 3.0
        assert mock.tasks() == []


# -- configuration -------------------------------------------------------------------------


def test_command_line_sets_the_options_and_the_recovery_faults() -> None:
    """--history-lag-s, --clock-offset-s and the new --fault kinds reach the config."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--history-lag-s",
            "45",
            "--clock-offset-s",
            "-120",
            "--fault",
            "late_create:0.2:delay_s=40",
            "--fault",
            "late_answer:routes=submit:delay_s=25",
            "--fault",
            "gateway_error:0.1:status=504",
            "--fault",
            "second_client:0.5:image=same:within_s=3",
        ]
    )
    config = cli.build_config(args)
    assert (config.history_lag_s, config.clock_offset_s) == (45.0, -120.0)
    assert config.faults.rules == (
        FaultRule(kind="late_create", rate=0.2, delay_s=40),
        FaultRule(kind="late_answer", routes=["submit"], delay_s=25),
        FaultRule(kind="gateway_error", rate=0.1, status=504),
        FaultRule(kind="second_client", rate=0.5, image="same", within_s=3),
    )


async def test_admin_faults_route_takes_the_recovery_faults(api: Api, mock: MockServer) -> None:
    """POST /_mock/faults accepts the new kinds and their parameters, and shows them back."""
    rules = {
        "seed": 4,
        "rules": [
            {"kind": "gateway_error", "status": 502, "routes": ["submit"]},
            {"kind": "second_client", "image": "same", "within_s": 0},
            {"kind": "late_answer", "delay_s": 0, "routes": ["submit"]},
        ],
    }
    status, reply, _ = await api.call("POST", "/_mock/faults", json=rules, headers={})
    assert status == 200, reply
    shown: dict[str, Any] = reply["data"]  # type: ignore[assignment]
    assert [r["kind"] for r in shown["rules"]] == ["gateway_error", "second_client", "late_answer"]
    assert (shown["rules"][1]["image"], shown["rules"][2]["delay_s"]) == ("same", 0.0)
    async with api.session.post(mock.base_url + SUBMIT, json=i2v(), headers=AUTH) as response:
        assert response.status == 502
    assert sorted(t["created_by"] for t in mock.tasks()) == ["request", "second_client"]
    broken = {"rules": [{"kind": "gateway_error", "status": 500}]}
    status, _, _ = await api.call("POST", "/_mock/faults", json=broken, headers={})
    assert status == 400


async def test_reset_cancels_a_pending_late_creation(api: Api, mock: MockServer) -> None:
    """A reset while a late creation waits: nothing is created, the waiting client hears so."""
    mock.set_faults(only(FaultRule(kind="late_create", delay_s=30)))
    client = asyncio.create_task(api.call("POST", SUBMIT, json=i2v()))
    await until(lambda: mock.state.pending_creations == 1)
    mock.reset()
    status, reply, _ = await client
    assert (status, reply["code"]) == (503, 503)
    mock.advance(30)
    assert mock.tasks() == []
    assert mock.state.pending_creations == 0
