"""Shared fixtures, the hypothesis profiles (`dev` by default, `ci` in CI), and a guard.

The guard: the suite leaves the checkout's examples as it found them, and works whatever a
newcomer's own runs left there (renders, run records, lock files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.cli_support import REPO, RUN_RECORDS, SPECS, copy_frames, copy_specs

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _specs_listing() -> dict[str, tuple[int, int]]:
    """Path -> (size, mtime_ns) of everything under the checkout's specs/."""
    return {
        str(p.relative_to(REPO)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(SPECS.rglob("*"))
    }


def _run_records_at_top() -> list[str]:
    """Renders and run records at the top of the checkout (a run from a wrong folder)."""
    return sorted(
        p.name for pattern in RUN_RECORDS for p in REPO.glob(pattern) if p.name != "specs"
    )


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """No test writes into the working tree: specs/ is as it was, nothing new beside it.

    Whatever a newcomer's own runs left in specs/ stays, and no test depends on its absence
    (tests copy the examples without run records: `copy_specs`).
    """
    specs, records = _specs_listing(), _run_records_at_top()
    yield
    assert _specs_listing() == specs, "a test changed the checkout's specs/"
    assert _run_records_at_top() == records, "a test rendered into the checkout"


@pytest.fixture(scope="session", autouse=True)
def no_user_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures render too: never into the user's real registry."""
    with pytest.MonkeyPatch.context() as patch:
        registry = tmp_path_factory.mktemp("session-registry") / "tasks.sqlite"
        patch.setenv("KLING_PIPE_REGISTRY", str(registry))
        yield


@pytest.fixture(autouse=True)
def private_task_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Every test gets its own user-level task registry; none touches the real one."""
    path = tmp_path_factory.mktemp("registry") / "tasks.sqlite"
    monkeypatch.setenv("KLING_PIPE_REGISTRY", str(path))
    return path


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """A folder holding a copy of the example frames, for shot lists written in tests."""
    return copy_frames(tmp_path / "frames")


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A copy of specs/ without any run's records: runs write into a temporary folder."""
    return copy_specs(tmp_path)


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to a shot-list file beside the `frames` folder and return its path."""

    def write(text: str, name: str = "board.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
