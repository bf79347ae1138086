"""A pytest plugin: the ``wavespeed_mock`` fixture, a WaveSpeed mock per test.

Loaded through the ``pytest11`` entry point in every pytest session where kling-pipe is
installed, so it imports nothing heavy: the server is imported only when a test asks.
Override ``wavespeed_mock_config`` in a conftest to change the mock's behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mockserver.config import MockConfig
    from mockserver.threaded import ThreadedMockServer


@pytest.fixture
def wavespeed_mock_config() -> MockConfig:
    """Return the mock's config: tasks finish 0.2 s after they start, everything else default."""
    from mockserver.config import FixedTime, MockConfig  # noqa: PLC0415 - keep the plugin light

    return MockConfig(processing=FixedTime(seconds=0.2))


@pytest.fixture
def wavespeed_mock(wavespeed_mock_config: MockConfig) -> Iterator[ThreadedMockServer]:
    """Yield a running mock: ``base_url``, ``api_key``, views and controls.

    The views are ``journal()``, ``stats()``, ``ledger()`` and ``tasks()``; the controls
    ``complete()``, ``fail()``, ``set_faults()``, ``set_options()``, ``advance()``.
    It serves from its own thread, so sync tests and async tests on any loop can use it.
    """
    from mockserver.threaded import ThreadedMockServer  # noqa: PLC0415 - keep the plugin light

    with ThreadedMockServer(wavespeed_mock_config) as mock:
        yield mock
