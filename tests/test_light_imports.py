"""Light commands stay light: `import kling_pipe`, `--version`, `validate`, `plan` load no heavy
library (`plan` reads the records database only once there is one)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import kling_pipe

HEAVY = frozenset({"aiohttp", "av", "rich", "sqlite3", "PIL", "numpy"})


def imported(*args: str, cwd: Path) -> set[str]:
    """Run ``python -X importtime ARGS`` in *cwd*; return the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (line.partition("|")[2] for line in done.stderr.splitlines())
    return {line.rpartition("|")[2].strip() for line in lines if line}


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("-c", "import kling_pipe"), frozenset()),
        (("-m", "kling_pipe", "--version"), frozenset()),
        (("-m", "kling_pipe", "--help"), frozenset()),
        # Local images are checked whole by the standard library, not decoded by FFmpeg.
        (("-m", "kling_pipe", "validate", "specs/demo.toml"), frozenset()),
        # With no records yet, planning opens no database: nothing but the shot list.
        (("-m", "kling_pipe", "plan", "specs/demo.toml"), frozenset()),
    ],
    ids=["import", "version", "help", "validate", "plan"],
)
def test_a_light_command_imports_no_heavy_library(specs, args, allowed):
    loaded = imported(*args, cwd=specs.parent)  # a copy of the examples, not the checkout
    assert "kling_pipe" in loaded
    assert HEAVY & loaded <= allowed


def test_plan_loads_sqlite_only_when_the_shot_list_has_records(specs):
    """Records exist once a run kept them: then, and only then, `plan` reads the database."""
    state = specs / "demo.toml.kling-state"
    before = imported("-m", "kling_pipe", "plan", "specs/demo.toml", cwd=specs.parent)
    assert "sqlite3" not in before
    store = importlib.import_module("kling_pipe._records.store").Store.open(state)
    store.close()
    after = imported("-m", "kling_pipe", "plan", "specs/demo.toml", cwd=specs.parent)
    assert "sqlite3" in after
    assert HEAVY & after == {"sqlite3"}


def test_rendering_loads_no_display_until_a_live_table_is_shown(tmp_path):
    """`render()` reports to nobody by default: a library caller never loads rich."""
    loaded = imported("-c", "import kling_pipe._running.run", cwd=tmp_path)
    assert "rich" not in loaded


def test_every_public_name_is_listed_and_resolves():
    """`__all__` is sorted, `dir()` shows it, and each name imports from its module."""
    assert kling_pipe.__all__ == sorted(kling_pipe.__all__)
    assert set(kling_pipe.__all__) <= set(dir(kling_pipe))
    for name in kling_pipe.__all__:
        assert getattr(kling_pipe, name) is not None


def test_plan_and_cut_stay_functions_once_their_modules_are_imported():
    """`kling_pipe.plan` is the function, as `from kling_pipe import plan` promises."""
    for name, home in (("plan", "_decisions.plan"), ("cut", "_outputs.cut")):
        module = importlib.import_module(f"kling_pipe.{home}")
        public = getattr(kling_pipe, name)
        assert public is getattr(module, name)
        assert callable(public)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = kling_pipe.nothing  # type: ignore[attr-defined]
