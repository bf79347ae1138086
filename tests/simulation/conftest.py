"""The simulation's pictures: the example frames plus seeded synthetic ones, all distinct."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from kling_pipe._decisions import proof
from kling_pipe._outputs import media
from tests.cli_support import SPECS
from tests.simulation.sim_support import POOL_NAMES, SYNTHETIC, TALLY


def synthetic(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A two-colour gradient with a few discs and boxes: structure like a storyboard frame."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = rng.uniform(0, 255, 3) * (1 - yy[..., None]) + rng.uniform(0, 255, 3) * yy[..., None]
    for _ in range(rng.integers(3, 9)):
        cx, cy = rng.uniform(0, w / max(w, h)), rng.uniform(0, h / max(w, h))
        r = rng.uniform(0.04, 0.25)
        if rng.random() < 0.5:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            mask = (abs(xx - cx) < r) & (abs(yy - cy) < r * rng.uniform(0.3, 1))
        img[mask] = img[mask] * 0.3 + rng.uniform(0, 255, 3) * 0.7
    return np.clip(img, 0, 255).round().astype(np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Encode an RGB array as a PNG with PyAV."""
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "rgb24"
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _small(picture: proof.Picture) -> proof.Picture:
    pixels = np.frombuffer(picture.pixels, np.uint8).reshape(picture.height, picture.width, 3)
    small = np.ascontiguousarray(pixels[::3, ::3])
    return proof.Picture(
        width=small.shape[1], height=small.shape[0], channels=3, pixels=small.tobytes()
    )


@pytest.fixture(scope="session")
def sim_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 20 pictures (>= 300 px on the short side) the proof tells apart pairwise."""
    folder = tmp_path_factory.mktemp("sim-pool")
    for source in sorted((SPECS / "frames").iterdir()):
        if source.suffix in (".png", ".jpg"):
            shutil.copyfile(source, folder / source.name)
    rng = np.random.default_rng(20260101)
    for i in range(SYNTHETIC):
        size = (480, 320) if i % 2 else (320, 400)
        write_png(folder / f"syn{i:02d}.png", synthetic(rng, *size))
    assert sorted(p.name for p in folder.iterdir()) == list(POOL_NAMES)
    # Compared at a third of the size: the proof's grid is 64 cells wide either way.
    pictures = {p.name: _small(media.load_picture(p)) for p in sorted(folder.iterdir())}
    for (a, pa), (b, pb) in itertools.combinations(pictures.items(), 2):
        score = max(proof.similarity(pa, pb), proof.similarity(pb, pa))
        assert score < proof.MISMATCH_AT, f"pictures {a} and {b} look alike ({score:.3f})"
    return folder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what the schedules exercised (lost answers adopted, kills, final states)."""
    if TALLY["schedules"]:
        terminalreporter.section("simulation")
        for key, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{key}: {count}")
