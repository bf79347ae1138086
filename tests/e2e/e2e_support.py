"""Shot lists for end-to-end tests (a module of its own: conftest is not for importing)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from kling_pipe._shotlist.specs import LocalImage, Shot, ShotList, Storyboard, UrlImage


def url_shots(count: int, *, duration: int = 5) -> tuple[Shot, ...]:
    return tuple(
        Shot(
            id=f"s{i:03d}",
            prompt=f"shot {i}",
            image=UrlImage(url=f"https://x.test/{i}.png"),
            duration=duration,
        )
        for i in range(count)
    )


def board(tmp_path: Path, *shots: Shot, max_cost: str | None = None) -> ShotList:
    cap = None if max_cost is None else Decimal(max_cost)
    return ShotList(
        storyboard=Storyboard(name="e2e", max_cost=cap),
        shots=shots,
        source=tmp_path / "e2e.toml",
    )


def local_shot(sid: str, frames: Path, name: str = "puddle.png") -> Shot:
    return Shot(id=sid, prompt=f"shot {sid}", image=LocalImage(path=str(frames / name)))


#: A chain of two shots from "dock" (`{dock}` is its prompt, to edit) and one shot apart.
HARBOUR = """version = 1
[storyboard]
name = "harbour"
[[shots]]
id = "dock"
prompt = "{dock}"
image = "frames/puddle.png"
[[shots]]
id = "harbour-a"
prompt = "the boat leaves the dock"
image = {{ shot = "dock", frame = "last" }}
[[shots]]
id = "harbour-b"
prompt = "the boat rounds the breakwater"
image = {{ shot = "harbour-a", frame = "last" }}
[[shots]]
id = "storm"
prompt = "a storm far out at sea"
image = "frames/dusk.png"
"""
