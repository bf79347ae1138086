"""Fixtures for the mock server's tests: a manual clock, servers on it, a client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import attrs
import pytest

from mockserver import FixedTime, ManualClock, MockConfig, MockServer
from tests.mockserver.mock_support import Api, MakeMock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_mock(clock: ManualClock) -> AsyncIterator[MakeMock]:
    """Start MockServers on the manual clock (FixedTime 10 s unless given); close them after."""
    servers: list[MockServer] = []

    async def make(config: MockConfig | None = None, **changes: object) -> MockServer:
        base = config or MockConfig(processing=FixedTime(seconds=10))
        server = MockServer(attrs.evolve(base, **changes), clock=clock)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def mock(make_mock: MakeMock) -> MockServer:
    return await make_mock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(session: aiohttp.ClientSession, mock: MockServer) -> Api:
    return Api(session, mock)
