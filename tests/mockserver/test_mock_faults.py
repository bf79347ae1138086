"""Fault injection: each kind, route targeting, limits, seeding, and runtime control."""

from __future__ import annotations

import time

import aiohttp
import pytest

from mockserver import FaultConfig, FaultKind, FaultRule, MockServer, RouteClass
from mockserver.faults import TASK_ERRORS, FaultInjector, parse_fault
from tests.mockserver.mock_support import AUTH, I2V, Api, i2v


def only(rule: FaultRule, seed: int = 0) -> FaultConfig:
    return FaultConfig(seed=seed, rules=(rule,))


async def test_latency_delays_the_answer_and_is_journalled(api: Api, mock: MockServer) -> None:
    """latency adds its delay before answering; the journal names the fault."""
    mock.set_faults(only(FaultRule(kind="latency", latency_s=0.2, routes=["other"])))
    started = time.perf_counter()
    status, _, _ = await api.call("GET", "/api/v3/balance")
    assert status == 200
    assert time.perf_counter() - started >= 0.2
    assert mock.journal()[-1]["faults"] == ["latency"]
    assert mock.stats()["faults"] == {"latency": 1}


async def test_rate_limit_fault_answers_429_with_retry_after(api: Api, mock: MockServer) -> None:
    """rate_limit answers 429 with Retry-After and creates no task."""
    mock.set_faults(only(FaultRule(kind="rate_limit", retry_after_s=3)))
    status, reply, headers = await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert (status, reply["code"], headers["Retry-After"]) == (429, 429, "3")
    assert mock.stats()["tasks_created"] == 0


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_server_error_fault_answers_its_status(api: Api, mock: MockServer, code: int) -> None:
    """server_error answers the configured 5xx in WaveSpeed's error shape."""
    mock.set_faults(only(FaultRule(kind="server_error", status=code, routes=["poll"])))
    task_id = await api.submit(i2v())
    status, reply, _ = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert (status, reply["code"]) == (code, code)


async def test_drop_before_closes_the_connection_and_creates_nothing(
    api: Api, mock: MockServer
) -> None:
    """drop_before: the client sees a disconnect, and no task or charge exists."""
    mock.set_faults(only(FaultRule(kind="drop_before", routes=["submit"])))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert mock.stats()["tasks_created"] == 0
    assert mock.ledger()["entries"] == []
    entry = mock.journal()[-1]
    assert (entry["status"], entry["faults"]) == (None, ["drop_before"])


async def test_drop_after_creates_and_charges_the_task_but_answers_nothing(
    api: Api, mock: MockServer
) -> None:
    """drop_after: the task exists and is charged, the client cannot tell; history finds it."""
    mock.set_faults(only(FaultRule(kind="drop_after", routes=["submit"], limit=1)))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert len(mock.ledger()["entries"]) == 1
    _, reply, _ = await api.call("POST", "/api/v3/predictions", json={})
    (item,) = reply["data"]["items"]  # type: ignore[index]
    entry = mock.journal()[-2]
    assert (entry["status"], entry["task_id"]) == (None, item["id"])


@pytest.mark.parametrize("code", sorted(TASK_ERRORS))
async def test_task_failure_fault_fails_the_task_with_each_documented_code(
    api: Api, mock: MockServer, code: int
) -> None:
    """task_failure: the submit succeeds, the task ends failed with the code, refunded."""
    mock.set_faults(only(FaultRule(kind="task_failure", codes=(code,))))
    task_id = await api.submit(i2v())
    mock.advance(10)
    data = await api.result(task_id)
    assert (data["status"], data["code"], data["error"]) == ("failed", code, TASK_ERRORS[code])
    assert mock.ledger()["balance_usd"] == "1000.000"


async def test_slow_download_throttles_the_output(api: Api, mock: MockServer) -> None:
    """slow_download sends the whole file at about bytes_per_s."""
    task_id = await api.submit(i2v())
    mock.complete(task_id)
    (url,) = (await api.result(task_id))["outputs"]  # type: ignore[misc]
    async with api.session.get(url) as response:
        size = len(await response.read())
    mock.set_faults(only(FaultRule(kind="slow_download", bytes_per_s=size * 4)))
    started = time.perf_counter()
    async with api.session.get(url) as response:
        assert len(await response.read()) == size
    assert time.perf_counter() - started >= 0.2


async def test_truncated_download_breaks_off_half_way(api: Api, mock: MockServer) -> None:
    """truncated_download announces the full length and sends half: a payload error."""
    task_id = await api.submit(i2v())
    mock.complete(task_id)
    (url,) = (await api.result(task_id))["outputs"]  # type: ignore[misc]
    mock.set_faults(only(FaultRule(kind="truncated_download")))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with api.session.get(url) as response:
            await response.read()
    assert mock.stats()["faults"] == {"truncated_download": 1}


async def test_faults_target_only_their_route_classes(api: Api, mock: MockServer) -> None:
    """A rule for polls leaves submits, balance and uploads alone."""
    mock.set_faults(only(FaultRule(kind="server_error", routes=["poll"])))
    task_id = await api.submit(i2v())
    status, _, _ = await api.call("GET", "/api/v3/balance")
    assert status == 200
    status, _, _ = await api.call("GET", f"/api/v3/predictions/{task_id}")
    assert status == 503


async def test_limit_caps_how_often_a_rule_fires(api: Api, mock: MockServer) -> None:
    """limit=2: the first two polls fail, the rest succeed."""
    mock.set_faults(only(FaultRule(kind="server_error", routes=["poll"], limit=2)))
    task_id = await api.submit(i2v())
    path = f"/api/v3/predictions/{task_id}/result"
    statuses = [(await api.call("GET", path))[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    """Draws are reproducible from the seed and differ across seeds."""

    def pattern(seed: int) -> list[list[str]]:
        rule = FaultRule(kind="server_error", rate=0.5)
        injector = FaultInjector(FaultConfig(seed=seed, rules=(rule,)))
        return [injector.draw(RouteClass.POLL).kinds for _ in range(64)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    hits = sum(bool(kinds) for kinds in pattern(1))
    assert 16 < hits < 48


def test_drop_before_hides_errors_and_errors_hide_task_failures() -> None:
    """Precedence: a dropped connection wins over a 5xx, a 5xx over a task failure."""
    rules = (
        FaultRule(kind="task_failure"),
        FaultRule(kind="server_error"),
        FaultRule(kind="drop_before"),
        FaultRule(kind="latency", latency_s=0.1),
    )
    drawn = FaultInjector(FaultConfig(rules=rules)).draw(RouteClass.SUBMIT)
    assert drawn.kinds == ["latency", "drop_before"]
    drawn = FaultInjector(FaultConfig(rules=rules[:2])).draw(RouteClass.SUBMIT)
    assert drawn.kinds == ["server_error"]


async def test_admin_route_sets_and_shows_faults(api: Api, mock: MockServer) -> None:
    """POST /_mock/faults replaces the rules; GET shows them; bad input is a 400."""
    rules = {"seed": 3, "rules": [{"kind": "rate_limit", "rate": 1.0, "routes": ["submit"]}]}
    status, reply, _ = await api.call("POST", "/_mock/faults", json=rules, headers={})
    assert status == 200
    assert reply["data"]["rules"][0]["routes"] == ["submit"]  # type: ignore[index]
    status, _, _ = await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert status == 429
    _, shown, _ = await api.call("GET", "/_mock/faults", headers={})
    assert shown["data"] == reply["data"]
    for broken in (
        {"rules": [{"kind": "gremlins"}]},
        {"rules": [{"kind": "latency", "rate": 2}]},
        {"rules": [{"kind": "latency", "colour": "red"}]},
        {"rules": [{"kind": "task_failure", "routes": ["poll"]}]},
    ):
        status, reply, _ = await api.call("POST", "/_mock/faults", json=broken, headers={})
        assert status == 400, broken
        assert reply["message"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency", FaultRule(kind=FaultKind.LATENCY)),
        ("rate_limit:0.25", FaultRule(kind=FaultKind.RATE_LIMIT, rate=0.25)),
        (
            "server_error:0.1:routes=poll+submit:status=502:limit=3",
            FaultRule(
                kind="server_error", rate=0.1, routes=["poll", "submit"], status=502, limit=3
            ),
        ),
        ("task_failure:1:codes=1200+5000", FaultRule(kind="task_failure", codes=(1200, 5000))),
        ("slow_download:bytes_per_s=1000", FaultRule(kind="slow_download", bytes_per_s=1000)),
    ],
)
def test_parse_fault_reads_the_command_line_form(text: str, expected: FaultRule) -> None:
    """KIND[:RATE][:KEY=VALUE...] builds the same rule as the Python API."""
    assert parse_fault(text) == expected


@pytest.mark.parametrize(
    "text", ["gremlins", "latency:fast", "latency:colour=red", "server_error:status=404"]
)
def test_parse_fault_rejects_nonsense(text: str) -> None:
    """Unknown kinds, rates, parameters and non-5xx statuses are ValueErrors."""
    with pytest.raises(ValueError):
        parse_fault(text)


async def test_admin_routes_are_never_faulted_or_authenticated(api: Api, mock: MockServer) -> None:
    """Even with every request failing, /_mock/stats answers without a key."""
    mock.set_faults(only(FaultRule(kind="server_error")))
    status, _, _ = await api.call("GET", "/_mock/stats", headers={})
    assert status == 200
    status, _, _ = await api.call("GET", "/api/v3/balance", headers=AUTH)
    assert status == 503
