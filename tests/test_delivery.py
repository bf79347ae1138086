"""Delivery: a finished task's video fetched, checked and put in place, and nowhere else."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from kling_pipe._backends.base import Download
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.store import Store
from kling_pipe._running.delivery import Delivery, DeliveryError
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from tests.mp4clips import write_video

HOSTILE = "x/../../../../home/Videos/wedding"


class CarelessBackend:
    """Writes each download exactly where it is told, making folders as a client does."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.asked: list[Path] = []

    async def download(self, url: str, dest: Path) -> Download:  # noqa: ARG002 - one video
        self.asked.append(dest)
        return copy_to(self.video, dest)


def copy_to(video: Path, dest: Path) -> Download:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(video, dest)
    data = dest.read_bytes()
    return Download(path=dest, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def board(folder: Path) -> ShotList:
    shot = Shot(id="river", prompt="p", image=UrlImage(url="https://x.test/r.png"), duration=2)
    return ShotList(storyboard=Storyboard(name="b"), shots=(shot,), source=folder / "b.toml")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("seconds", [2, 1], ids=["good-video", "video-that-fails-the-checks"])
async def test_a_download_whose_task_id_is_hostile_never_writes_outside_the_output_folder(
    tmp_path, seconds
):
    project = tmp_path / "project"
    project.mkdir()
    shotlist = board(project)
    backend = CarelessBackend(write_video(tmp_path / "clip.mp4", seconds))
    before = files_under(tmp_path)
    store = Store.in_memory()
    delivery = Delivery(
        backend=backend,  # type: ignore[arg-type]
        store=store,
        shotlist=shotlist,
        origin="https://api.example.test",
        thumbnails=False,
    )
    try:
        with pytest.raises(DeliveryError) as caught:
            await delivery.fetch(
                shot_id="river", duration=2, task_id=HOSTILE, url="https://cdn.test/v.mp4"
            )
    finally:
        await delivery.frames.close()
        store.close()
    root = OutputLayout.of(shotlist, "https://api.example.test").root.resolve()
    outside = {p for p in files_under(tmp_path) - before if not p.resolve().is_relative_to(root)}
    assert outside == set()
    assert all(p.resolve().is_relative_to(root) for p in backend.asked)
    assert HOSTILE not in str(caught.value)  # a server's string is never echoed back
    assert "nothing was downloaded" in str(caught.value)
