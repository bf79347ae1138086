"""Real output videos: H.264 MP4 animatics made with PyAV, deterministic to the byte.

The first frame is the input image; with a last image the video crossfades to it, without
one the camera pushes in slowly. How it moves is drawn from the prompt and the take (see
`RenderSpec`): where the push-in heads and how it eases, when the crossfade happens and how
long it takes, and which colour the light leans to mid-video. The ends never move: the first
frame is the input, the last the last image or the push-in's 10 % closer view, whatever the
draw, because a client proves a lost task its own by them. Everything here is blocking: call
it from a thread. PyAV is imported lazily so that starting the mock stays fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import attrs

from mockserver.caption import Caption

if TYPE_CHECKING:
    import av

#: Pixel sizes per aspect ratio at the default longest side of 640.
_ASPECTS: Final[dict[str, tuple[int, int]]] = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}
#: FFmpeg's AVColorRange MPEG (limited) and the SMPTE 170M (BT.601) colour tags.
_MPEG_RANGE: Final = 1
_SMPTE170M: Final = 6
#: How much brighter a placeholder's light squares are (luma levels).
_CHECKER: Final = 48
#: How far the push-in zooms by the last frame.
_ZOOM: Final = 0.1
#: The push-in's zoom goes as (time ** ease), the ease drawn in this range: below 1 it
#: starts fast and settles, above 1 it creeps then hurries.
_EASE: Final = (0.6, 1.6)
#: The light of a take: the middle of the video is mixed towards a colour drawn per take, by
#: up to this much (out of 256), rising from nothing at the first frame and back by the last.
_TINT: Final = (40, 72)
#: The crossfade starts this far into the video (fractions of it) and lasts this long.
_FADE_START: Final = (0.1, 0.35)
_FADE_LENGTH: Final = (0.3, 0.5)


@attrs.frozen(kw_only=True)
class RenderSpec:
    """What one output video shows; equal specs give equal bytes."""

    duration_s: int
    fps: int
    max_side_px: int
    #: Encoded image (PNG, JPEG, WebP) for the first frame, or None for a placeholder.
    first_image: bytes | None
    last_image: bytes | None = None
    #: Seeds the placeholder's colours: the image URL, or the prompt for text-to-video.
    placeholder_seed: str = ""
    aspect_ratio: str = "16:9"
    #: Seeds the motion with `take` (the prompt): two prompts on one picture start alike and
    #: move apart, as two real renders would. Empty, with take 1: straight to the centre.
    motion_seed: str = ""
    #: Which of several identical requests this is (1, 2, ...): WaveSpeed's API takes no
    #: seed, so two takes of one shot send the same request, and their renders still differ.
    take: int = 1
    #: Written across the bottom of every frame but the first and last, if not empty.
    caption: str = ""
    #: Draw the placeholder's checkerboard (False: a bare gradient, whose videos are a tenth
    #: the size and decode twice as fast; what benchmarks of the client's own work want).
    checker: bool = True


@attrs.frozen
class Motion:
    """How a render moves, drawn from its seed and take; see the module docstring."""

    #: Where a push-in heads, as fractions of the room to each side: (0.5, 0.5) the centre.
    heading: tuple[float, float] = (0.5, 0.5)
    #: The push-in's zoom goes as time ** ease.
    ease: float = 1.0
    #: When a crossfade starts and how long it lasts, as fractions of the video.
    fade_start: float = 0.0
    fade_length: float = 1.0
    #: The colour (Y, U, V) the light leans to mid-video, and how far (out of 256; 0: not).
    tint: tuple[int, int, int] = (128, 128, 128)
    tint_peak: int = 0

    @classmethod
    def draw(cls, seed: str, take: int) -> Motion:
        """Draw a motion from *seed* and *take*; an empty seed with take 1 gives the plain one."""
        if not seed and take == 1:
            return cls()
        digest = hashlib.sha256(json.dumps([seed, take]).encode()).digest()
        unit = [byte / 255 for byte in digest[:6]]
        hue = 2 * math.pi * digest[6] / 256
        return cls(
            heading=(0.2 + 0.6 * unit[0], 0.2 + 0.6 * unit[1]),
            ease=_within(_EASE, unit[2]),
            fade_start=_within(_FADE_START, unit[3]),
            fade_length=_within(_FADE_LENGTH, unit[4]),
            tint=(
                96 + digest[7] % 64,
                round(128 + 80 * math.cos(hue)),
                round(128 + 80 * math.sin(hue)),
            ),
            tint_peak=round(_within(_TINT, unit[5])),
        )


def _within(bounds: tuple[float, float], unit: float) -> float:
    return round(bounds[0] + (bounds[1] - bounds[0]) * unit, 4)


def fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) down to *max_side* keeping the aspect ratio, with even sides."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def render_mp4(spec: RenderSpec) -> bytes:
    """Return the MP4 for *spec*: ``duration_s * fps`` frames of H.264, yuv420p."""
    first = _decode(spec.first_image)
    if first is None:
        aw, ah = _ASPECTS.get(spec.aspect_ratio, (16, 9))
        width, height = fit(aw * 1000, ah * 1000, spec.max_side_px)
        first = _placeholder(width, height, spec.placeholder_seed, checker=spec.checker)
    width, height = fit(first.width, first.height, spec.max_side_px)
    first = _to_yuv(first, width, height)
    count = spec.duration_s * spec.fps
    motion = Motion.draw(spec.motion_seed, spec.take)
    last = _decode(spec.last_image)
    if last is not None:
        frames = _crossfade(first, _to_yuv(last, width, height), count, motion)
    else:
        frames = _push_in(first, count, spec.fps, motion)
    _light(frames, motion)
    if spec.caption:
        caption = Caption.layout(spec.caption, width, height)
        for frame in frames[1:-1]:
            caption.draw(frame)
    return _encode(frames, width, height, spec.fps)


def _to_yuv(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """Scale to width x height in limited-range BT.601 yuv420p, as the stream declares."""
    from av.video.reformatter import ColorRange, Colorspace  # noqa: PLC0415

    return frame.reformat(
        width,
        height,
        "yuv420p",
        dst_colorspace=Colorspace.ITU601,
        dst_color_range=ColorRange.MPEG,
    )


def _decode(data: bytes | None) -> av.VideoFrame | None:
    """Decode an image, or return None if there is none or it is not an image we can read."""
    import av  # noqa: PLC0415 - PyAV loads only when a video is made

    if not data:
        return None
    try:
        with av.open(io.BytesIO(data), "r") as container:
            return next(container.decode(video=0), None)
    except (av.FFmpegError, ValueError, IndexError):
        return None


def _placeholder(width: int, height: int, seed: str, *, checker: bool = True) -> av.VideoFrame:
    """Make a deterministic gradient frame whose colours come from *seed*.

    A checkerboard over the gradient's brightness gives the motion something to show: on a
    bare gradient two takes' push-ins would look alike.
    """
    import av  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    digest = hashlib.sha256(seed.encode()).digest()
    frame = av.VideoFrame(width, height, "yuv420p")
    cell = max(4, max(width, height) // 24)
    for index, plane in enumerate(frame.planes):
        base, slope = digest[index], 32 + digest[index + 3] % 96
        y, x = np.mgrid[0 : plane.height, 0 : plane.line_size]
        values = base + slope * y // plane.height
        if index == 0 and checker:
            values += np.where((x // cell + y // cell) % 2 == 1, _CHECKER, 0)
        plane.update((values % 256).astype(np.uint8).tobytes())
    return frame


def _blend(a: bytes, b: bytes, weight: int) -> bytes:
    """Return ``a * (256 - weight) / 256 + b * weight / 256`` byte by byte, at C speed.

    Each byte gets a 16-bit lane of one big integer, so one multiplication and one addition
    blend a whole plane without numpy: 255 * 256 still fits a lane, nothing carries over.
    """
    size = len(a)
    wide_a, wide_b = bytearray(2 * size), bytearray(2 * size)
    wide_a[0::2], wide_b[0::2] = a, b
    mixed = (
        int.from_bytes(wide_a, "little") * (256 - weight)
        + int.from_bytes(wide_b, "little") * weight
    )
    return mixed.to_bytes(2 * size + 1, "little")[1 : 2 * size : 2]


def _light(frames: list[av.VideoFrame], motion: Motion) -> None:
    """Lean the middle frames' light towards *motion*'s tint, the first and last untouched."""
    import numpy as np  # noqa: PLC0415

    if motion.tint_peak == 0:
        return
    last = len(frames) - 1
    for index in range(1, last):
        weight = round(motion.tint_peak * math.sin(math.pi * index / last))
        for plane, value in zip(frames[index].planes, motion.tint, strict=True):
            pixels = np.frombuffer(bytes(plane), dtype=np.uint8).astype(np.uint16)
            mixed = (pixels * (256 - weight) + value * weight) >> 8
            plane.update(mixed.astype(np.uint8).tobytes())


def _fade_weight(time: float, motion: Motion) -> int:
    """Return how much of the last image shows at *time* (0..1 of the video), out of 256.

    Nothing before the fade starts, all of it once it ended, a smoothstep between.
    """
    into = min(1.0, max(0.0, (time - motion.fade_start) / motion.fade_length))
    return round(256 * into * into * (3 - 2 * into))


def _crossfade(
    first: av.VideoFrame, last: av.VideoFrame, count: int, motion: Motion
) -> list[av.VideoFrame]:
    """Fade from *first* to *last* when *motion* says; the last frame is *last* itself."""
    import av  # noqa: PLC0415

    a = [bytes(p) for p in first.planes]
    b = [bytes(p) for p in last.planes]
    frames = []
    for i in range(count):
        weight = _fade_weight(i / (count - 1), motion) if count > 1 else 0
        frame = av.VideoFrame(first.width, first.height, "yuv420p")
        for plane, pa, pb in zip(frame.planes, a, b, strict=True):
            plane.update(_blend(pa, pb, weight))
        frames.append(frame)
    return frames


def _push_in(first: av.VideoFrame, count: int, fps: int, motion: Motion) -> list[av.VideoFrame]:
    """Zoom in by `_ZOOM` with FFmpeg's zoompan filter, starting on the image itself.

    The zoomed window heads to *motion*'s heading (fractions of the room it has to each side)
    and zooms as time to the power of its ease.
    """
    import av  # noqa: PLC0415

    graph = av.filter.Graph()
    source = graph.add_buffer(
        width=first.width,
        height=first.height,
        format=av.VideoFormat("yuv420p"),
        time_base=Fraction(1, fps),
    )
    steps = max(1, count - 1)
    zoompan = graph.add(
        "zoompan",
        f"z='1+{_ZOOM}*pow(on/{steps},{motion.ease:.4f})'"
        f":x='(iw-iw/zoom)*{motion.heading[0]:.4f}':y='(ih-ih/zoom)*{motion.heading[1]:.4f}'"
        f":d={count}:s={first.width}x{first.height}:fps={fps}",
    )
    sink = graph.add("buffersink")
    source.link_to(zoompan)
    zoompan.link_to(sink)
    graph.configure()
    first.pts = 0
    graph.push(first)
    graph.push(None)
    frames: list[av.VideoFrame] = []
    while len(frames) < count:
        try:
            frame = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        assert isinstance(frame, av.VideoFrame)
        frames.append(frame)
    return frames


def _encode(frames: list[av.VideoFrame], width: int, height: int, fps: int) -> bytes:
    """Mux *frames* into MP4 with libx264, single-threaded and bit-exact for determinism."""
    import av  # noqa: PLC0415

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "crf": "20", "threads": "1"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Declare what the pixels are (BT.601, limited range) so players convert them right.
        context = stream.codec_context
        context.color_range = _MPEG_RANGE
        context.colorspace = context.color_primaries = context.color_trc = _SMPTE170M
        for index, frame in enumerate(frames):
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
