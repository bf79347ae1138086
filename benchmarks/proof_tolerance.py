"""Measure kling_pipe._decisions.proof's tolerance: the scores of true matches and of non-matches.

True matches: each image through rescaling, JPEG (quality about 60), centre crops to 16:9,
9:16 and 1:1, stretches, 10 % brightness / contrast / gamma / saturation shifts and a mix of
them, and the end frames of real mock videos (push-in and crossfade). Non-matches: every pair
of different images, 10 % zoom neighbours (plain, re-encoded, and the ends of mock push-ins)
and the opposite ends of crossfades. Images: the demo storyboard (specs/frames) and seeded
synthetic pictures (gradients, discs and boxes).

    python benchmarks/proof_tolerance.py [--synthetic 24] [--seed 1]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from kling_pipe._decisions.proof import MATCH_AT, MISMATCH_AT, Picture, similarity
from kling_pipe._outputs.media import load_picture, video_end_pictures
from mockserver.video import RenderSpec, render_mp4

FRAMES = Path(__file__).resolve().parent.parent / "specs" / "frames"


def picture(a: np.ndarray) -> Picture:
    a = np.ascontiguousarray(np.clip(a, 0, 255).round().astype(np.uint8))
    return Picture(width=a.shape[1], height=a.shape[0], channels=3, pixels=a.tobytes())


def array(p: Picture) -> np.ndarray:
    return np.frombuffer(p.pixels, np.uint8).reshape(p.height, p.width, 3).astype(float)


def frame_of(a: np.ndarray) -> av.VideoFrame:
    a = np.ascontiguousarray(np.clip(a, 0, 255).round().astype(np.uint8))
    return av.VideoFrame.from_ndarray(a, format="rgb24")


def resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = frame_of(a).reformat(width, height, interpolation="BICUBIC")
    return frame.to_ndarray(format="rgb24").astype(float)


def encode(a: np.ndarray, codec: str, pix_fmt: str, options: dict[str, str] | None = None):
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = a.shape[1], a.shape[0], pix_fmt
    if options:
        ctx.options = options
    frame = frame_of(a).reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def jpeg(a: np.ndarray, qscale: int = 8) -> np.ndarray:
    """JPEG round trip; FFmpeg's qscale 8 is about libjpeg quality 60."""
    data = encode(a, "mjpeg", "yuvj420p", {"qmin": str(qscale), "qmax": str(qscale)})
    ctx = av.CodecContext.create("mjpeg", "r")
    frames = [*ctx.decode(av.Packet(data)), *ctx.decode(None)]
    return frames[0].to_ndarray(format="rgb24").astype(float)


def png(a: np.ndarray) -> bytes:
    return encode(a, "png", "rgb24")


def centre_crop(a: np.ndarray, aspect: float, zoom: float = 1.0) -> np.ndarray:
    h, w = a.shape[:2]
    bw, bh = (h * aspect, h) if w / h > aspect else (w, w / aspect)
    bw, bh = bw / zoom, bh / zoom
    x0, y0 = round((w - bw) / 2), round((h - bh) / 2)
    return a[y0 : y0 + round(bh), x0 : x0 + round(bw)]


def zoom_in(a: np.ndarray, zoom: float = 1.1) -> np.ndarray:
    h, w = a.shape[:2]
    return resize(centre_crop(a, w / h, zoom), w, h)


def colour(a: np.ndarray, b=1.0, c=1.0, g=1.0, s=1.0) -> np.ndarray:
    x = (a / 255.0) ** g
    x = ((x - 0.5) * c + 0.5) * b
    luma = x.mean(axis=2, keepdims=True)
    return np.clip((luma + (x - luma) * s) * 255, 0, 255)


def transforms(a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    h, w = a.shape[:2]
    yield "same", a
    yield "down/3", resize(a, w // 6 * 2, h // 6 * 2)
    yield "up x2", resize(a, w * 2, h * 2)
    yield "jpeg q60", jpeg(a, 8)
    yield "jpeg q45", jpeg(a, 12)
    for name, aspect, size in (("16:9", 16 / 9, (256, 144)), ("9:16", 9 / 16, (144, 256)),
                               ("1:1", 1.0, (200, 200))):  # fmt: skip
        yield f"crop {name}", jpeg(resize(centre_crop(a, aspect), *size), 8)
    yield "stretch 16:9", resize(a, 320, 180)
    yield "stretch 9:16", resize(a, 180, 320)
    for f in (0.9, 1.1):
        yield f"brightness x{f}", colour(a, b=f)
        yield f"contrast x{f}", colour(a, c=f)
        yield f"gamma {f}", colour(a, g=f)
        yield f"saturation x{f}", colour(a, s=f)
    yield "mix", jpeg(resize(colour(a, 1.1, 0.9, 1.1, 0.9), w // 2, h // 2), 8)


def render(first: np.ndarray, last: np.ndarray | None, side: int) -> tuple[Picture, Picture]:
    spec = RenderSpec(
        duration_s=1,
        fps=4,
        max_side_px=side,
        first_image=png(first),
        last_image=None if last is None else png(last),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.mp4"
        path.write_bytes(render_mp4(spec))
        return video_end_pictures(path)


def synthetic(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A two-colour gradient with a few discs and boxes: structure like a storyboard frame."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = rng.uniform(0, 255, 3) * (1 - yy[..., None]) + rng.uniform(0, 255, 3) * yy[..., None]
    for _ in range(rng.integers(2, 8)):
        cx, cy = rng.uniform(0, w / max(w, h)), rng.uniform(0, h / max(w, h))
        r = rng.uniform(0.03, 0.25)
        if rng.random() < 0.5:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            mask = (abs(xx - cx) < r) & (abs(yy - cy) < r * rng.uniform(0.3, 1))
        img[mask] = img[mask] * 0.3 + rng.uniform(0, 255, 3) * 0.7
    return np.clip(img, 0, 255).round()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    demo = {p.stem: array(load_picture(p)) for p in sorted(FRAMES.iterdir())}
    rng = np.random.default_rng(args.seed)
    pool = dict(demo)
    for i in range(args.synthetic):
        pool[f"syn{i}"] = synthetic(rng, *((320, 200) if i % 2 else (200, 300)))

    scores: dict[str, list[tuple[float, str]]] = defaultdict(list)

    def record(kind: str, label: str, expected, seen) -> None:
        e = expected if isinstance(expected, Picture) else picture(expected)
        s = seen if isinstance(seen, Picture) else picture(seen)
        scores[kind].append((similarity(e, s), label))

    for name, a in pool.items():
        for t, b in transforms(a):
            record("match", f"{name}: {t}", a, b)
        for side in (160, 640):
            v_first, v_last = render(a, None, side)
            record("match", f"{name}: push-in {side}px, first frame", a, v_first)
            record("zoom 10 %", f"{name}: push-in {side}px, image vs last", a, v_last)
            record("zoom 10 %", f"{name}: push-in {side}px, last vs image", v_last, a)
            record("zoom 10 %", f"{name}: push-in {side}px, last vs first", v_last, v_first)
        z = zoom_in(a)
        record("zoom 10 %", f"{name}: zoomed", a, z)
        record("zoom 10 %", f"{name}: zoomed, reversed", z, a)
        record("zoom 10 %", f"{name}: zoomed, half size, jpeg", a, jpeg(resize(z, *halved(z))))
    for x, y in itertools.permutations(pool, 2):
        record("different", f"{x} vs {y}", pool[x], pool[y])
    for x, y in itertools.permutations(demo, 2):
        v_first, v_last = render(pool[x], pool[y], 160)
        record("match", f"crossfade {x}>{y}: first frame", pool[x], v_first)
        record("match", f"crossfade {x}>{y}: last frame", pool[y], v_last)
        record("crossfade ends", f"crossfade {x}>{y}: first image vs last", pool[x], v_last)
        record("crossfade ends", f"crossfade {x}>{y}: last image vs first", pool[y], v_first)

    print(f"{'kind':16} {'pairs':>5} {'lowest':>8} {'highest':>8}  extreme case")
    for kind, rows in scores.items():
        rows.sort()
        lo, hi = rows[0], rows[-1]
        case = lo[1] if kind == "match" else hi[1]
        print(f"{kind:16} {len(rows):5} {lo[0]:8.4f} {hi[0]:8.4f}  {case}")
    lowest_match = scores["match"][0][0]
    highest_non = max(rows[-1][0] for kind, rows in scores.items() if kind != "match")
    print(f"lowest match {lowest_match:.4f}, highest non-match {highest_non:.4f}, "
          f"margin {lowest_match - highest_non:.4f}")  # fmt: skip
    print(f"MATCH_AT {MATCH_AT} (headroom {lowest_match - MATCH_AT:.4f}), "
          f"MISMATCH_AT {MISMATCH_AT} (headroom {MISMATCH_AT - highest_non:.4f})")  # fmt: skip
    wrong = [(s, label) for s, label in scores["match"] if s < MATCH_AT]
    wrong += [(s, label) for k, r in scores.items() if k != "match" for s, label in r
              if s >= MATCH_AT]  # fmt: skip
    print(f"misjudged at the thresholds: {len(wrong)}", *wrong, sep="\n  ")


def halved(a: np.ndarray) -> tuple[int, int]:
    return a.shape[1] // 4 * 2, a.shape[0] // 4 * 2


if __name__ == "__main__":
    main()
