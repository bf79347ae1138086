"""Running the installed `kling-pipe` as a user does, on a fresh copy of the examples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("kling-pipe")


def kp(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the console script without a terminal and without the caller's API key."""
    full_env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def copy_specs(dest: Path) -> Path:
    """Copy specs/ (without renders or run records) to *dest*/specs and return that folder."""
    shutil.copytree(
        REPO / "specs",
        dest / "specs",
        ignore=shutil.ignore_patterns("renders", "*.kling-state", "*.lock.json"),
    )
    return dest / "specs"
