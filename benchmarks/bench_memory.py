"""Memory: the client's peak RSS for 10,000 shots, and what downloading a 200 MB output adds.

* 10,000 shots of 0 s at concurrency 50, with records, against a mock in its own process:
  the client process's peak RSS (interpreter and imports included).
* One shot whose output is 200 MB: the mock (with a state folder) renders the shared output
  once, then 200 MB are appended to that MP4 as a trailing ``free`` box (valid ISO BMFF,
  skipped by every reader), so the mock serves a real 200 MB MP4. The client renders one
  shot against the small output and, in a fresh process, one against the 200 MB one; the
  difference of the two peak RSS figures is what the download adds.

    python benchmarks/bench_memory.py [--shots 10000] [--download-mb 200]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scaling
import benchlib

_CHUNK = 1024 * 1024


def grow_mp4(path: Path, extra_mb: int) -> int:
    """Append a ``free`` box of *extra_mb* MB to the MP4 at *path*; return its new size."""
    payload = extra_mb * _CHUNK
    with path.open("ab") as fh:
        fh.write(struct.pack(">I4s", 8 + payload, b"free"))
        zeros = bytes(_CHUNK)
        for _ in range(extra_mb):
            fh.write(zeros)
    return path.stat().st_size


def download_delta(extra_mb: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "mock-state"
        with benchlib.mock_process(*benchlib.processing_args(0.0, 0.0, 1), state_dir=state) as mock:
            mock.prewarm()
            small = benchlib.run_contender("kling", mock.base_url, 1, 1)
            (output,) = (state / "outputs").glob("*.mp4")
            size = grow_mp4(output, extra_mb)
            large = benchlib.run_contender("kling", mock.base_url, 1, 1)
    assert small["ok"] == 1, small
    assert large["ok"] == 1, large
    return {
        "output_bytes": size,
        "small_peak_rss_mb": small["peak_rss_mb"],
        "large_peak_rss_mb": large["peak_rss_mb"],
        "download_adds_mb": large["peak_rss_mb"] - small["peak_rss_mb"],
        "large_wall_s": large["wall_s"],
    }


def measure(
    shots: int = 10_000, extra_mb: int = 200, scaling: dict[str, Any] | None = None
) -> dict[str, Any]:
    """*scaling*: the figures of `bench_scaling.one` for *shots*, if already measured."""
    print(f"memory: peak RSS for {shots} shots; one {extra_mb} MB download", flush=True)
    run = scaling if scaling is not None else bench_scaling.one(shots, 50)
    download = download_delta(extra_mb)
    print(
        f"  {shots} shots: peak RSS {run['peak_rss_mb']:.0f} MB; a {extra_mb} MB download "
        f"adds {download['download_adds_mb']:.1f} MB "
        f"({download['small_peak_rss_mb']:.0f} -> {download['large_peak_rss_mb']:.0f} MB)",
        flush=True,
    )
    return {"shots": shots, "run": run, "download_mb": extra_mb, "download": download}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=10_000)
    parser.add_argument("--download-mb", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = measure(args.shots, args.download_mb)
    benchlib.write_json(args.json, figures)
    print(f"{benchlib.machine()}; {benchlib.today()}; goals <= 200 MB and <= 20 MB")


if __name__ == "__main__":
    main()
