"""Shared fixtures and the hypothesis profiles (`dev` by default, `ci` in CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def private_task_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Every test gets its own user-level task registry; none touches the real one."""
    path = tmp_path_factory.mktemp("registry") / "tasks.sqlite"
    monkeypatch.setenv("KLING_PIPE_REGISTRY", str(path))
    return path


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """A folder holding a copy of the example frames, for shot lists written in tests."""
    folder = tmp_path / "frames"
    shutil.copytree(SPECS / "frames", folder)
    return folder


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to a shot-list file beside the `frames` folder and return its path."""

    def write(text: str, name: str = "board.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
