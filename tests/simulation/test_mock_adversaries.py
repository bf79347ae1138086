"""The mock's faults for the adversaries between runs: a busy account, hostile answers.

`burst` (another client's batch of tasks just after a submit's), `hostile_id` (a task id in
a hostile form), `wrong_task` (a poll answered with another task, as a caching proxy might)
and `echo_key` (error texts that echo the API key), on the mock alone: what the simulation
relies on them to do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from mockserver import FaultConfig, FaultRule, FixedTime, ManualClock, MockConfig, MockServer
from mockserver.faults import ECHO_KEY_FORMS, HOSTILE_ID_FORMS, echo_key, hostile_id, parse_fault
from tests.mockserver.mock_support import I2V, KEY, Api, i2v


def only(*rules: FaultRule) -> FaultConfig:
    return FaultConfig(seed=3, rules=rules)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def mock(clock: ManualClock) -> AsyncIterator[MockServer]:
    server = MockServer(MockConfig(processing=FixedTime(seconds=1)), clock=clock)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def api(mock: MockServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, mock)


async def history(api: Api, **body: object) -> list[dict[str, object]]:
    status, reply, _ = await api.call("POST", "/api/v3/predictions", json=body)
    assert status == 200, reply
    data = reply["data"]
    assert isinstance(data, dict)
    items = data["items"]
    assert isinstance(items, list)
    return items


async def test_a_burst_follows_the_submit_newer_than_its_task_and_pages_deep(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """250 other tasks over the next second: the submit's task is the oldest, on page 3."""
    mock.set_faults(only(FaultRule(kind="burst", count=250, within_s=1.0, completed=0.1)))
    ours = await api.submit(i2v())
    tasks = mock.tasks()
    burst = [t for t in tasks if t["created_by"] == "burst"]
    assert len(burst) == 250
    assert all(t["created_wall"] > tasks[0]["created_wall"] for t in burst)
    assert {t["status"] for t in burst} == {"completed", "failed"}
    assert all(t["input"]["duration"] == 5 for t in burst)
    # Not in the history before the clock gets there; then all of it, newest first.
    assert [t["id"] for t in await history(api, page_size=100)] == [ours]
    clock.advance(1.0)
    pages = [await history(api, page=n, page_size=100) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [100, 100, 51]
    assert pages[2][-1]["id"] == ours
    # Failed ones are refunded: the account is charged for ours and the completed ones.
    completed = sum(t["status"] == "completed" for t in burst)
    assert Decimal(mock.ledger()["balance_usd"]) == Decimal(1000) - Decimal("0.42") * (
        1 + completed
    )
    assert {t["trigger_seq"] for t in burst} == {mock.journal()[0]["seq"]}


async def test_a_lost_only_burst_fires_only_with_a_lost_answer(api: Api, mock: MockServer) -> None:
    mock.set_faults(only(FaultRule(kind="burst", count=10, lost_only=True, limit=1)))
    await api.submit(i2v())
    assert mock.stats()["tasks_created"] == 1
    mock.set_faults(
        only(
            FaultRule(kind="drop_after", routes=["submit"], limit=1),
            FaultRule(kind="burst", count=10, lost_only=True, limit=1),
        )
    )
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert mock.stats()["tasks_created"] == 12
    assert mock.stats()["faults"] == {"drop_after": 1, "burst": 1}


async def test_the_history_filters_stay_exact_on_the_index(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """created_after / created_before (server time, offset included) bound the listing."""
    mock.set_options(clock_offset_s=-120.0)
    ids = []
    for _ in range(5):
        ids.append(await api.submit(i2v()))
        clock.advance(10)
    created = {t["id"]: t["created_at"] for t in mock.tasks()}
    listed = await history(
        api, created_after=created[ids[1]], created_before=created[ids[3]], page_size=100
    )
    assert [t["id"] for t in listed] == [ids[3], ids[2], ids[1]]


SHAPES = {
    "traversal": lambda i: i.startswith("../../"),
    "slash": lambda i: "/" in i and not i.startswith(("/", "..")),
    "absolute": lambda i: i.startswith("/etc/"),
    "long": lambda i: len(i) > 4000,
    "control": lambda i: "\r\n\x00" in i,
    "dots": lambda i: i == "..",
    "bidi": lambda i: "\u202e" in i,
}


async def test_hostile_ids_on_submit_answers_take_every_form_and_mangle_the_answer(
    api: Api, mock: MockServer
) -> None:
    """Each answer names its task in a hostile form (all forms drawn); the task is real."""
    assert set(SHAPES) == set(HOSTILE_ID_FORMS)
    mock.set_faults(only(FaultRule(kind="hostile_id", routes=["submit"])))
    seen = []
    for _ in range(60):
        status, reply, _ = await api.call("POST", f"/api/v3/{I2V}", json=i2v())
        assert status == 200
        data = reply["data"]
        assert isinstance(data, dict)
        seen.append(str(data["id"]))
    tasks = mock.tasks()
    assert len(tasks) == 60
    assert {t["answer"] for t in tasks} == {"mangled"}
    assert not {t["id"] for t in tasks} & set(seen)
    assert {form for form, shape in SHAPES.items() if any(shape(i) for i in seen)} == set(SHAPES)
    assert hostile_id("dots", "0123456789abcdef") == ".."


async def test_hostile_ids_on_polls_and_history_pages(api: Api, mock: MockServer) -> None:
    task_id = await api.submit(i2v())
    mock.set_faults(only(FaultRule(kind="hostile_id", routes=["poll", "other"])))
    status, reply, _ = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert status == 200
    assert reply["data"]["id"] != task_id  # type: ignore[index]
    (item,) = await history(api)
    assert item["id"] != task_id


async def test_wrong_task_answers_a_poll_with_another_completed_task_of_the_duration(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    first = await api.submit(i2v())
    await api.submit(i2v(duration=10))
    clock.advance(2)
    asked = await api.submit(i2v())
    mock.set_faults(only(FaultRule(kind="wrong_task", limit=1)))
    answered = await api.result(asked)
    assert answered["id"] == first
    assert answered["status"] == "completed"
    assert (await api.result(asked))["id"] == asked  # the limit: the next poll is honest


@pytest.mark.parametrize("form", ECHO_KEY_FORMS)
def test_echo_key_forms_all_carry_the_key_in_some_disguise(form: str) -> None:
    text = echo_key("mock-key-0123", form)
    assert text != echo_key("mock-key-0123", "plain") or form == "plain"
    assert "Bearer" in text


async def test_echo_key_answers_an_error_that_echoes_the_key(api: Api, mock: MockServer) -> None:
    mock.set_faults(only(FaultRule(kind="echo_key", routes=["submit"], status=400, limit=1)))
    status, reply, _ = await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert status == 400
    message = str(reply["message"])
    assert KEY in message or KEY.upper() in message or "%6D" in message or "\r\n" in message
    assert mock.stats()["tasks_created"] == 0


async def test_a_failed_task_and_a_gateway_page_may_echo_the_key(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    mock.set_faults(only(FaultRule(kind="task_failure", codes=(5000,), echo_key=True, limit=1)))
    task_id = await api.submit(i2v())
    clock.advance(2)
    error = str((await api.result(task_id))["error"])
    assert error.startswith("Internal error: request rejected upstream")
    mock.set_faults(
        only(FaultRule(kind="gateway_error", routes=["submit"], status=502, echo_key=True))
    )
    async with api.session.post(
        f"{mock.base_url}/api/v3/{I2V}", json=i2v(), headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        page = await response.text()
    assert response.status == 502
    assert "Bearer" in page


def test_the_new_parameters_parse_from_the_command_line() -> None:
    rule = parse_fault("burst:0.5:count=2500:within_s=0.5:completed=0.02:lost_only=1:limit=2")
    assert (rule.count, rule.within_s, rule.completed, rule.lost_only, rule.limit) == (
        2500,
        0.5,
        0.02,
        True,
        2,
    )
    assert parse_fault("task_failure:codes=5000:echo_key=true").echo_key
    assert parse_fault("echo_key:0.1:routes=poll:status=500").status == 500
    with pytest.raises(ValueError, match="status"):
        parse_fault("echo_key:status=200")
    with pytest.raises(ValueError, match="routes"):
        parse_fault("wrong_task:routes=submit")
