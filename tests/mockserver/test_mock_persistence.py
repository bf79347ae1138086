"""A state folder keeps tasks, uploads, the ledger and outputs across mock processes."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from mockserver import FixedTime, ManualClock, MockConfig, MockServer
from tests.mockserver.mock_support import Api, i2v, image_bytes


async def test_tasks_uploads_ledger_and_outputs_survive_a_restart(
    tmp_path: Path, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """A second server on the same state_dir answers for the first one's work."""
    config = MockConfig(processing=FixedTime(seconds=10), state_dir=tmp_path / "state")
    data = image_bytes(400, 300, (50, 60, 70))
    async with MockServer(config, clock=clock) as first:
        api = Api(session, first)
        _, reply, _ = await api.call(
            "POST", "/api/v3/media/uploads", json={"filename": "a.png", "size": len(data)}
        )
        ticket = reply["data"]
        assert isinstance(ticket, dict)
        async with session.put(ticket["upload"]["url"], data=data) as put:
            assert put.status == 200
        done = await api.submit(i2v(image=ticket["download_url"]))
        clock.advance(10)
        running = await api.submit(i2v())
        (old_url,) = (await api.result(done))["outputs"]  # type: ignore[misc]
        async with session.get(old_url) as response:
            video = await response.read()
        ledger = first.ledger()
    async with MockServer(config, clock=clock) as second:
        api = Api(session, second)
        (new_url,) = (await api.result(done))["outputs"]  # type: ignore[misc]
        async with session.get(new_url) as response:
            assert await response.read() == video
        assert second.stats()["renders"]["count"] == 0
        moved = str(ticket["download_url"]).replace(first.base_url, second.base_url)
        async with session.get(moved) as got:
            assert await got.read() == data
        assert (await api.result(running))["status"] == "processing"
        clock.advance(10)
        assert (await api.result(running))["status"] == "completed"
        assert second.ledger() == ledger
        _, history, _ = await api.call("POST", "/api/v3/predictions", json={})
        ids = [item["id"] for item in history["data"]["items"]]  # type: ignore[index]
        assert ids == [running, done]
        _, secret_2, _ = await api.call("GET", "/api/v3/webhook/secret")
    async with MockServer(config, clock=clock) as third:
        _, secret_3, _ = await Api(session, third).call("GET", "/api/v3/webhook/secret")
    assert secret_2 == secret_3


async def test_a_task_processing_when_the_process_died_completes_by_its_deadline(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Deadlines are wall-clock times: time that passed while no process ran still counts."""
    config = MockConfig(processing=FixedTime(seconds=30), state_dir=tmp_path)
    clock = ManualClock()
    async with MockServer(config, clock=clock) as first:
        task_id = await Api(session, first).submit(i2v())
    clock.advance(45)
    async with MockServer(config, clock=clock) as second:
        data = await Api(session, second).result(task_id)
    assert data["status"] == "completed"
    assert data["timings"] == {"inference": 30_000}


async def test_state_document_is_written_atomically_and_readable(
    tmp_path: Path, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """Only state.json (no temp files) sits beside uploads/ and outputs/; it is plain JSON."""
    async with MockServer(MockConfig(state_dir=tmp_path), clock=clock) as server:
        task_id = await Api(session, server).submit(i2v())
    names = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240 - after serving
    assert names == ["outputs", "state.json", "uploads"]
    document = json.loads((tmp_path / "state.json").read_text())
    assert document["version"] == 1
    assert [t["id"] for t in document["tasks"]] == [task_id]


async def test_without_a_state_dir_the_temp_folder_is_removed(clock: ManualClock) -> None:
    """The default temp folder exists while serving and is gone afterwards."""
    server = MockServer(clock=clock)
    root = server.state.storage.root
    assert not root.exists()
    async with server:
        assert root.is_dir()
        assert root.stat().st_mode & 0o777 == 0o700
    assert not root.exists()
