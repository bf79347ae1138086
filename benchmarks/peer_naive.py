"""A typical hand-written asyncio + aiohttp script: the second peer of the benchmarks.

What one writes in an afternoon: a semaphore for concurrency, one shared `ClientSession`,
submit, then sleep one second and GET the result until it is final, then download the video
into memory and write it out. No retries, no records, no budget. Every shot uses the same
settings as kling-pipe's in the benchmarks.

    python benchmarks/peer_naive.py --base-url URL --api-key KEY [--shots 100] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
POLL_INTERVAL_S = 1.0


async def render_one(  # noqa: PLR0913, PLR0917 - a flat script's signature
    session: aiohttp.ClientSession,
    limit: asyncio.Semaphore,
    base_url: str,
    headers: dict[str, str],
    shot: dict,
    out_dir: Path,
    noticed: dict[str, float],
) -> bool:
    async with limit:
        async with session.post(
            f"{base_url}/api/v3/{MODEL}", json=shot["input"], headers=headers
        ) as reply:
            reply.raise_for_status()
            task = (await reply.json())["data"]
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            async with session.get(
                f"{base_url}/api/v3/predictions/{task['id']}/result", headers=headers
            ) as reply:
                reply.raise_for_status()
                data = (await reply.json())["data"]
            if data["status"] == "completed":
                break
            if data["status"] in ("failed", "cancelled", "timeout"):
                return False
        noticed[task["id"]] = time.time()
        async with session.get(data["outputs"][0]) as reply:
            reply.raise_for_status()
            video = await reply.read()
        (out_dir / f"{shot['id']}.mp4").write_bytes(video)
        return True


async def render_all(
    base_url: str, api_key: str, shots: list[dict], concurrency: int, out_dir: Path
) -> tuple[int, dict[str, float]]:
    """Render *shots*; return how many succeeded and when each task was seen completed."""
    headers = {"Authorization": f"Bearer {api_key}"}
    limit = asyncio.Semaphore(concurrency)
    noticed: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        done = await asyncio.gather(
            *(
                render_one(session, limit, base_url, headers, shot, out_dir, noticed)
                for shot in shots
            )
        )
    return sum(done), noticed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--shots", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    shots = [
        {
            "id": f"s{i:05d}",
            "input": {"prompt": f"shot {i}", "image": "https://x.test/f.png", "duration": 5},
        }
        for i in range(args.shots)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        ok, _ = asyncio.run(
            render_all(args.base_url, args.api_key, shots, args.concurrency, Path(tmp))
        )
        wall = time.monotonic() - started
    print(json.dumps({"ok": ok, "wall_s": wall}))


if __name__ == "__main__":
    main()
