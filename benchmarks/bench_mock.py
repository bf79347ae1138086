"""Benchmark the WaveSpeed mock: result polls served per second on one core, and MP4 time.

The server runs in its own process pinned to one core; the client (aiohttp, many concurrent
pollers) runs on the other cores, so the figure is what one server core sustains.

    python benchmarks/bench_mock.py [--seconds 5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mockserver.video import RenderSpec, render_mp4  # noqa: E402

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
TARGET_POLLS_PER_S = 2000


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m mockserver`` on a free port, pinned to one core."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", "0", "--manual", "--api-key", "bench"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(process.pid, {cores[0]})
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores[1:]))
    assert process.stdout is not None
    url = process.stdout.readline().rsplit(" ", 1)[1].strip()
    return process, url


async def poll_rate(base_url: str, seconds: float, concurrency: int) -> tuple[float, int]:
    """Poll one task's result from *concurrency* workers for *seconds*; return polls/s, errors."""
    headers = {"Authorization": "Bearer bench"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        body = {"prompt": "bench", "image": "https://example.com/a.png", "duration": 5}
        async with session.post(f"{base_url}/api/v3/{MODEL}", json=body) as response:
            task_id = (await response.json())["data"]["id"]
        url = f"{base_url}/api/v3/predictions/{task_id}/result"
        done = errors = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        for _ in range(concurrency // 4):  # warm the connection pool first
            await worker_once(session, url)
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started), errors


async def worker_once(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        await response.read()


def png(width: int, height: int, shade: int) -> bytes:
    """Encode a flat PNG with PyAV, as an uploaded first or last frame."""
    import av  # noqa: PLC0415

    frame = av.VideoFrame(width, height, "rgb24")
    frame.planes[0].update(bytes([shade]) * frame.planes[0].buffer_size)
    context = av.CodecContext.create("png", "w")
    context.width, context.height, context.pix_fmt = width, height, "rgb24"
    return b"".join(bytes(p) for p in context.encode(frame) + context.encode(None))


def render_times(repeats: int) -> dict[str, float]:
    """Median seconds to render each kind of output, directly (no HTTP)."""
    first, last = png(1280, 720, 40), png(1280, 720, 200)
    cases = {
        "5 s, 1280x720 PNG crossfading to a last image": RenderSpec(
            duration_s=5, fps=10, max_side_px=640, first_image=first, last_image=last
        ),
        "10 s, 1280x720 PNG crossfading to a last image": RenderSpec(
            duration_s=10, fps=10, max_side_px=640, first_image=first, last_image=last
        ),
        "5 s, placeholder, push-in": RenderSpec(
            duration_s=5, fps=10, max_side_px=640, first_image=None, placeholder_seed="a"
        ),
        "10 s, placeholder, push-in": RenderSpec(
            duration_s=10, fps=10, max_side_px=640, first_image=None, placeholder_seed="b"
        ),
    }
    render_mp4(cases["5 s, placeholder, push-in"])  # warms PyAV up
    results = {}
    for name, spec in cases.items():
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            render_mp4(spec)
            samples.append(time.perf_counter() - started)
        results[name] = statistics.median(samples)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    process, url = start_server()
    try:
        rate, errors = asyncio.run(poll_rate(url, args.seconds, args.concurrency))
    finally:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    verdict = "OK" if rate >= TARGET_POLLS_PER_S else "BELOW TARGET"
    print(
        f"result polls served on one core: {rate:,.0f}/s (target {TARGET_POLLS_PER_S:,}/s: "
        f"{verdict}); errors: {errors}; {args.concurrency} concurrent pollers, "
        f"{args.seconds:g} s"
    )
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    for name, seconds in render_times(args.repeats).items():
        print(f"output MP4, {name} (640x360, 10 fps): {seconds * 1000:,.0f} ms (median)")
    return 0 if rate >= TARGET_POLLS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
