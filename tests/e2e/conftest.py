"""End-to-end fixtures: the bundled mock on a real loopback socket, and the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryPolicy
from mockserver import MockConfig, MockServer

#: Retries as in production, minus the waiting: faults are exercised, tests stay fast.
FAST_RETRY = RetryPolicy(wait_initial_s=0.005, wait_max_s=0.02, timeout_s=10.0)


@pytest.fixture
async def start_mock() -> AsyncIterator[Callable[[MockConfig], object]]:
    """Start mocks with a given config; each is closed after the test."""
    servers: list[MockServer] = []

    async def start(config: MockConfig) -> MockServer:
        server = MockServer(config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client_for(session: aiohttp.ClientSession) -> Callable[[MockServer], WaveSpeedClient]:
    def make(mock: MockServer) -> WaveSpeedClient:
        return WaveSpeedClient(
            session=session, base_url=mock.base_url, api_key=mock.api_key, retry=FAST_RETRY
        )

    return make
