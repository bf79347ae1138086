"""The task lifecycle under a manual clock: timing, quota, polls, manual control, sync mode."""

from __future__ import annotations

import asyncio

import pytest

from mockserver import AfterPolls, Manual, ManualClock, MockConfig, MockServer, RandomTime
from tests.mockserver.mock_support import I2V, Api, MakeMock, i2v, until


async def test_task_processes_for_its_time_then_completes(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """With FixedTime 10 s: processing at 9.999 s, completed at 10 s, stamped at the deadline."""
    task_id = await api.submit(i2v())
    clock.advance(9.999)
    assert (await api.result(task_id))["status"] == "processing"
    clock.advance(0.001)
    assert (await api.result(task_id))["status"] == "completed"
    times = mock.stats()["tasks"][task_id]
    start = times["submitted_at"]
    assert (times["started_at"], times["completed_at"]) == (start, start + 10)
    assert times["processing_s"] == 10


async def test_tasks_beyond_the_quota_wait_in_created_and_start_as_slots_free(
    api: Api, make_mock: MakeMock, clock: ManualClock
) -> None:
    """Quota 2: the third task waits in created and starts exactly when the first ends."""
    tier = await make_mock(concurrency_limit=2)
    tier_api = Api(api.session, tier)
    first = await tier_api.submit(i2v())
    clock.advance(4)
    await tier_api.submit(i2v())
    third = await tier_api.submit(i2v())
    assert (await tier_api.result(third))["status"] == "created"
    assert tier.stats()["current_concurrent"] == 2
    clock.advance(30)
    assert (await tier_api.result(third))["status"] == "completed"
    stats = tier.stats()
    assert stats["tasks"][third]["started_at"] == stats["tasks"][first]["completed_at"]
    assert stats["peak_concurrent"] == 2
    assert stats["current_concurrent"] == 0


async def test_after_polls_completes_on_the_nth_result_request(
    api: Api, make_mock: MakeMock
) -> None:
    """AfterPolls(3): two polls see processing, the third sees completed."""
    polled = await make_mock(processing=AfterPolls(polls=3))
    polled_api = Api(api.session, polled)
    task_id = await polled_api.submit(i2v())
    statuses = [(await polled_api.result(task_id))["status"] for _ in range(3)]
    assert statuses == ["processing", "processing", "completed"]
    assert polled.stats()["polls"] == 3


async def test_manual_tasks_wait_for_complete_or_fail(
    api: Api, make_mock: MakeMock, clock: ManualClock
) -> None:
    """Manual(): tasks stay processing for any time until completed or failed by hand."""
    manual = await make_mock(processing=Manual())
    manual_api = Api(api.session, manual)
    done, failed = await manual_api.submit(i2v()), await manual_api.submit(i2v())
    clock.advance(10_000)
    assert (await manual_api.result(done))["status"] == "processing"
    manual.complete(done)
    manual.fail(failed, code=1200)
    assert (await manual_api.result(done))["status"] == "completed"
    data = await manual_api.result(failed)
    assert (data["status"], data["code"], data["outputs"]) == ("failed", 1200, [])
    assert str(data["error"]).startswith("Content moderation")
    with pytest.raises(ValueError, match="already completed"):
        manual.complete(done)
    with pytest.raises(ValueError, match="not a documented"):
        manual.fail(done, code=42)


async def test_admin_routes_complete_fail_and_advance(
    api: Api, make_mock: MakeMock, clock: ManualClock
) -> None:
    """POST /_mock/tasks/{id}/complete|fail and /_mock/clock/advance drive tasks over HTTP."""
    manual = await make_mock(processing=Manual())
    manual_api = Api(api.session, manual)
    first, second = await manual_api.submit(i2v()), await manual_api.submit(i2v())
    status, reply, _ = await manual_api.call("POST", f"/_mock/tasks/{first}/complete", headers={})
    assert (status, reply["data"]["status"]) == (200, "completed")
    status, reply, _ = await manual_api.call(
        "POST", f"/_mock/tasks/{second}/fail", json={"code": 5003, "error": "busy"}, headers={}
    )
    assert (status, reply["data"]["code"], reply["data"]["error"]) == (200, 5003, "busy")
    status, _, _ = await manual_api.call("POST", f"/_mock/tasks/{first}/complete", headers={})
    assert status == 409
    status, _, _ = await manual_api.call("POST", "/_mock/tasks/" + "0" * 32 + "/complete")
    assert status == 404
    status, reply, _ = await manual_api.call("POST", "/_mock/clock/advance", json={"seconds": 5})
    assert (status, reply["data"]["now"]) == (200, clock.now())


async def test_failed_tasks_are_refunded_exactly_once(api: Api, make_mock: MakeMock) -> None:
    """A failure adds one refund to the ledger; the balance returns to where it was."""
    manual = await make_mock(processing=Manual())
    manual_api = Api(api.session, manual)
    task_id = await manual_api.submit(i2v(10))
    manual.fail(task_id, code=5000)
    await manual_api.result(task_id)
    await manual_api.result(task_id)
    ledger = manual.ledger()
    assert [(e["kind"], e["amount_usd"]) for e in ledger["entries"]] == [
        ("charge", "-0.840"),
        ("refund", "0.840"),
    ]
    assert ledger["balance_usd"] == "1000.000"


async def test_random_processing_times_are_reproducible_from_the_seed(
    api: Api, make_mock: MakeMock
) -> None:
    """RandomTime draws the same times for the same seed, within mean ± jitter."""
    drawn = []
    for _ in range(2):
        server = await make_mock(processing=RandomTime(mean_s=60, jitter_s=20, seed=7))
        server_api = Api(api.session, server)
        ids = [await server_api.submit(i2v()) for _ in range(4)]
        drawn.append([server.stats()["tasks"][i]["processing_s"] for i in ids])
    assert drawn[0] == drawn[1]
    assert all(40 <= s <= 80 for s in drawn[0])
    assert len(set(drawn[0])) == 4


async def test_sync_mode_answers_the_final_prediction(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """enable_sync_mode holds the request until the task completes, then answers it."""
    request = asyncio.ensure_future(
        api.call("POST", f"/api/v3/{I2V}", json=i2v(enable_sync_mode=True))
    )
    await until(lambda: mock.stats()["tasks_created"] == 1)
    assert not request.done()
    clock.advance(10)
    status, reply, _ = await request
    assert status == 200
    assert reply["data"]["status"] == "completed"
    assert len(reply["data"]["outputs"]) == 1


async def test_sync_mode_times_out_with_5004_while_the_task_goes_on(
    api: Api, make_mock: MakeMock, clock: ManualClock
) -> None:
    """Past the sync timeout: 200, status processing, code 5004, 'Sync mode timed out'."""
    slow = await make_mock(sync_timeout_s=5)
    slow_api = Api(api.session, slow)
    request = asyncio.ensure_future(
        slow_api.call("POST", f"/api/v3/{I2V}", json=i2v(enable_sync_mode=True))
    )
    await until(lambda: slow.stats()["tasks_created"] == 1)
    clock.advance(5)
    status, reply, _ = await request
    data = reply["data"]
    assert (status, data["status"], data["code"]) == (200, "processing", 5004)
    assert data["error"].startswith("Sync mode timed out after 5 s")
    clock.advance(5)
    assert (await slow_api.result(data["id"]))["status"] == "completed"


async def test_journal_records_requests_without_the_key(api: Api, mock: MockServer) -> None:
    """Journal entries hold method, path, status, times, task id; never the key."""
    task_id = await api.submit(i2v())
    await api.result(task_id)
    await api.call("GET", "/api/v3/balance", headers={})
    entries = mock.journal()
    assert [(e["method"], e["status"], e["route"]) for e in entries] == [
        ("POST", 200, "submit"),
        ("GET", 200, "poll"),
        ("GET", 401, "other"),
    ]
    assert entries[0]["task_id"] == entries[1]["task_id"] == task_id
    assert entries[1]["path"] == f"/api/v3/predictions/{task_id}/result"
    assert set(entries[0]) == {
        "seq",
        "method",
        "path",
        "status",
        "monotonic",
        "wall",
        "route",
        "task_id",
        "faults",
    }
    assert "mock-key" not in repr(entries)
    status, reply, _ = await api.call("GET", "/_mock/journal?since=2", headers={})
    assert (status, [e["seq"] for e in reply["data"]]) == (200, [3])


async def test_stats_count_each_route_class(api: Api, mock: MockServer) -> None:
    """Stats count submits, polls, uploads and downloads, and admin calls not at all."""
    task_id = await api.submit(i2v())
    mock.complete(task_id)
    output = (await api.result(task_id))["outputs"]
    async with api.session.get(output[0]) as response:
        await response.read()
    await api.call("POST", "/api/v3/media/uploads", json={"filename": "a.png", "size": 1})
    await api.call("GET", "/_mock/stats", headers={})
    stats = mock.stats()
    counts = {k: stats[k] for k in ("requests", "submits", "polls", "uploads", "downloads")}
    assert counts == {"requests": 4, "submits": 1, "polls": 1, "uploads": 1, "downloads": 1}
    assert stats["renders"]["count"] == 1


async def test_reset_forgets_tasks_and_refills_the_balance(api: Api, mock: MockServer) -> None:
    """POST /_mock/reset: tasks 404, counters zero, balance back to the configured amount."""
    task_id = await api.submit(i2v())
    status, _, _ = await api.call("POST", "/_mock/reset", headers={})
    assert status == 200
    status, _, _ = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert status == 404
    stats = mock.stats()
    assert (stats["tasks_created"], stats["balance_usd"]) == (0, "1000")
    assert [e["route"] for e in mock.journal()] == ["poll"]


async def test_advance_needs_a_manual_clock() -> None:
    """MockServer.advance() on the real clock is a TypeError, the admin route a 409."""
    async with MockServer() as server:
        with pytest.raises(TypeError, match="ManualClock"):
            server.advance(1)


async def test_admin_balance_and_ledger_routes(api: Api, mock: MockServer) -> None:
    """POST /_mock/balance sets the balance; GET /_mock/ledger shows it and every charge."""
    status, _, _ = await api.call("POST", "/_mock/balance", json={"balance_usd": "0.5"})
    assert status == 200
    await api.submit(i2v())
    status, reply, _ = await api.call("GET", "/_mock/ledger", headers={})
    assert (status, reply["data"]["balance_usd"]) == (200, "0.080")  # type: ignore[index]
    for bad in ("lots", "-1", "NaN"):
        status, _, _ = await api.call("POST", "/_mock/balance", json={"balance_usd": bad})
        assert status == 400, bad


async def test_clock_route_refuses_the_real_clock(session) -> None:
    """POST /_mock/clock/advance answers 409 when the mock runs on real time."""
    async with MockServer() as server:
        status, reply, _ = await Api(session, server).call(
            "POST", "/_mock/clock/advance", json={"seconds": 1}
        )
    assert (status, reply["message"]) == (409, "clock: this mock runs on the real clock")


async def test_a_busy_port_fails_to_start_and_leaves_nothing_behind(mock: MockServer) -> None:
    """Binding a port in use raises OSError and removes the temp folder it made."""
    port = int(mock.base_url.rsplit(":", 1)[1])
    clash = MockServer(MockConfig(port=port))
    with pytest.raises(OSError, match="address already in use"):
        await clash.start()
    assert not clash.state.storage.root.exists()


async def test_an_expired_output_answers_404_while_its_task_still_answers(
    api: Api, mock: MockServer
) -> None:
    """WaveSpeed keeps outputs 7 days: after /expire the output URL 404s, /result stands."""
    task_id = await api.submit(i2v())
    mock.complete(task_id)
    output = (await api.result(task_id))["outputs"]
    assert isinstance(output, list)
    status, _, _ = await api.call("POST", f"/_mock/tasks/{task_id}/expire", headers={})
    assert status == 200
    async with api.session.get(output[0]) as response:
        assert response.status == 404
    assert (await api.result(task_id))["status"] == "completed"


async def test_only_a_completed_task_has_an_output_to_expire(api: Api, mock: MockServer) -> None:
    task_id = await api.submit(i2v())
    status, _, _ = await api.call("POST", f"/_mock/tasks/{task_id}/expire", headers={})
    assert status == 409
    status, _, _ = await api.call("POST", f"/_mock/tasks/{'0' * 32}/expire", headers={})
    assert status == 404


async def test_a_video_is_rendered_while_its_task_processes_not_at_its_download(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """As on WaveSpeed, the output is there when the task completes: the download waits on no
    encoder (a chained shot's next submit waits on its source's download)."""
    task_id = await api.submit(i2v())
    await mock.state.renderer.idle()
    assert len(mock.state.renderer.times) == 1  # rendered before any download asked
    clock.advance(10)
    result = await api.result(task_id)
    async with api.session.get(str(result["outputs"][0])) as reply:  # type: ignore[index]
        assert reply.status == 200
        assert (await reply.read())[4:8] == b"ftyp"
    assert len(mock.state.renderer.times) == 1  # the download served the render made earlier
