"""Validation: `kling-pipe validate` on a generated 10,000-shot file, in a fresh process.

The file mixes what storyboards hold: URL frames, local PNG frames (ten files shared by a
fifth of the shots, each checked by content), last frames with durations of 3-10 s, and
chains (every tenth shot starts from the last frame of the shot before). The figure is the
wall time of the whole command (interpreter start and imports included), best of three; the
in-process `kling_pipe.load` time is printed too.

    python benchmarks/bench_validate.py [--shots 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

KLING = str(Path(sys.executable).with_name("kling-pipe"))


def png(width: int, height: int, shade: int) -> bytes:
    """A valid grey RGB PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes([shade, shade, shade]) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def shotlist_toml(shots: int) -> str:
    lines = [
        "version = 1",
        "",
        "[storyboard]",
        'name = "validate-bench"',
        "concurrency = 8",
        "",
        "[defaults]",
        'prompt_prefix = "35mm film, soft dusk light. "',
        "",
    ]
    for i in range(shots):
        lines += ["[[shots]]", f'id = "shot-{i:05d}"']
        lines.append(f'prompt = "Shot {i}: the camera glides over a harbour, gulls, shot {i}"')
        if i % 10 == 9:
            lines.append(f'image = {{ shot = "shot-{i - 1:05d}", frame = "last" }}')
        elif i % 5 == 0:
            lines.append(f'image = "frames/f{i % 10}.png"')
        else:
            lines.append(f'image = "https://frames.example/{i}.png"')
        if i % 7 == 0:
            lines += [
                f'last_image = "https://frames.example/{i}-end.png"',
                f"duration = {3 + i % 8}",
            ]
        else:
            lines.append(f"duration = {5 if i % 2 else 10}")
        lines.append("")
    return "\n".join(lines)


def measure(shots: int = 10_000, repeat: int = 3) -> dict[str, Any]:
    print(f"validate: {shots} shots", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "frames").mkdir()
        for k in range(10):
            (folder / "frames" / f"f{k}.png").write_bytes(png(480, 320, 20 * k))
        source = folder / "big.toml"
        source.write_text(shotlist_toml(shots))
        env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run(
                [KLING, "validate", str(source)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            times.append(time.perf_counter() - started)
            assert done.returncode == 0, done.stdout + done.stderr
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", "import kling_pipe"], capture_output=True, env=env, check=False
        )
        import_s = time.perf_counter() - started
        from kling_pipe import load  # noqa: PLC0415

        started = time.perf_counter()
        loaded = load(source)
        load_s = time.perf_counter() - started
        assert len(loaded.shots) == shots
        size = source.stat().st_size
    best = min(times)
    print(
        f"  kling-pipe validate: best {best:.3f} s of {repeat} (interpreter start and "
        f"`import kling_pipe` {import_s:.3f} s; in-process load {load_s:.3f} s); "
        f"file {size / 1024:.0f} kB",
        flush=True,
    )
    return {
        "shots": shots,
        "file_bytes": size,
        "cli_s": best,
        "cli_all_s": times,
        "import_s": import_s,
        "load_s": load_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = measure(args.shots, args.repeat)
    benchlib.write_json(args.json, figures)
    print(f"{benchlib.machine()}; {benchlib.today()}; goal <= 0.6 s")


if __name__ == "__main__":
    main()
