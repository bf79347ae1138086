"""Proofs that a video was made from our images, read from its first and last frames.

When a submit's answer is lost, the account's history offers candidate tasks but not their
``input``, and it holds other clients' tasks too. The one public fact that ties an
image-to-video task to a request is its output: the video starts on the requested first
frame (and ends on ``last_image`` when one was given). A candidate becomes the shot's task
only when this module says "match"; "undecided" must be treated like "mismatch" by anyone who
needs certainty, it only tells that looking closer (or waiting) might help.

How a comparison works, and why:

* Geometry. The output may be rescaled, centre-cropped to another aspect ratio, or stretched
  to it (the mock stretches its last image), so both interpretations are tried and the
  better one counts: the expected picture is centre-cropped to the seen picture's aspect, or
  taken whole. Both are then area-averaged onto the same small grid (longest side 64, never
  finer than either source region), so resolution and codec detail drop out.
* Photometry. Each grid is blurred lightly and normalised jointly over all channels (zero
  mean, unit variance). Brightness and contrast drop out, while the hue stays: two frames of
  one storyboard often share the layout and differ in colour, which per-channel
  normalisation would throw away.
* Locality. The score is the *worst* 8x8-cell tile, ``1 - mean squared difference / 2`` (1 is
  identical; it equals the tile's correlation when both tiles have unit variance), so a
  small boat moved across the sea counts in full instead of being averaged away.
* Zoom. A chained shot starts on the previous shot's last frame, which for a push-in is the
  same picture 10 % closer. Identity alignment of a true pair fits better than any zoomed
  alignment; a zoom neighbour fits a zoomed alignment better. So the score is also taken
  with either side zoomed in by 5, 10 and 15 %, and four times whatever the best zoomed
  score exceeds the identity score by is taken off (``ZOOM_PENALTY``). True matches lose
  nothing there; zoom neighbours lose several times what separates them from a match.

Measured tolerance, ``python benchmarks/proof_tolerance.py`` (the four demo frames and 24
seeded synthetic pictures through rescaling, JPEG q~60 and q~45, centre crops to 16:9, 9:16
and 1:1, stretches, 10 % brightness / contrast / gamma / saturation shifts and a mix, plus
the end frames of real mock videos, push-in at 160 and 640 px and crossfade at 160 px)::

    kind             pairs   lowest  highest  extreme case
    match              612   0.9761   1.0000  syn15: mix
    zoom 10 %          252  -4.5520   0.8596  syn5: push-in 160px, last vs first
    different          756  -2.4450   0.7527  sea vs river
    crossfade ends      24  -2.2100   0.7552  crossfade sea>river: first image vs last

Lowest true match 0.9761, highest non-match 0.8596: margin 0.1165. With ``--seed 7`` the
lowest match is 0.9841 and the highest non-match 0.9216 (a synthetic picture, zoomed, halved
and re-encoded): it lands "undecided", which is why ``MISMATCH_AT`` (0.93) keeps a band below
``MATCH_AT`` (0.96, 0.016 under the lowest match) rather than sharing one threshold. Pictures
smaller than about 64 px a side, or outputs whose aspect is more than about 1 % off both a
pure crop and a pure stretch, may come out "undecided": the grid then has too little to see.

Pure: ``Picture``, ``similarity``, ``compare`` and ``prove`` do no I/O; decoding files into
pictures is `kling_pipe._outputs.media`'s (``load_picture``, ``video_end_pictures``). numpy
loads only when a comparison runs, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, Literal

import attrs

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    _Array = NDArray[np.float64]

Verdict = Literal["match", "mismatch", "undecided"]

#: At or above: the seen picture shows the expected one (lowest true match measured 0.9761).
MATCH_AT: Final = 0.96
#: At or below: it does not (highest non-match measured 0.8596; 0.9216 with ``--seed 7``).
MISMATCH_AT: Final = 0.93
#: How many times a better-fitting zoomed alignment's advantage is taken off the score.
ZOOM_PENALTY: Final = 4.0
#: Zoom factors tried on either side; 1.10 is the mock's push-in, the others bracket it.
_ZOOMS: Final = (1.05, 1.10, 1.15)
#: Longest side of the comparison grid, in cells.
_GRID: Final = 64
#: Side of the tiles whose worst one sets the score, in grid cells.
_TILE: Final = 8
#: Smaller than this (pixels, either side) and a picture cannot show enough to decide.
_MIN_SIDE: Final = 16
#: A picture whose grey levels vary less than this (standard deviation, 0..255) is
#: featureless: it would "match" every other flat picture.
_MIN_CONTRAST: Final = 2.0
#: ITU-R BT.601 luma weights, for comparing a grey picture with a colour one.
_LUMA: Final = (0.299, 0.587, 0.114)


def _check_pixels(instance: Picture, _attribute: attrs.Attribute[bytes], value: bytes) -> None:
    expected = instance.width * instance.height * instance.channels
    if len(value) != expected:
        raise ValueError(
            f"pixels: {len(value)} bytes for {instance.width}x{instance.height}"
            f"x{instance.channels}, expected {expected}"
        )


@attrs.frozen(kw_only=True)
class Picture:
    """A decoded picture as plain immutable bytes, so the core needs no decoder to be tested.

    ``pixels`` is row-major 8-bit data, ``channels`` bytes per pixel: 1 (grey) or 3 (RGB).
    """

    width: int = attrs.field(validator=attrs.validators.ge(1))
    height: int = attrs.field(validator=attrs.validators.ge(1))
    channels: Literal[1, 3] = attrs.field(validator=attrs.validators.in_((1, 3)))
    pixels: bytes = attrs.field(repr=False, validator=_check_pixels)


Box = tuple[float, float, float, float]


@attrs.frozen(eq=False)
class _Prepared:
    """A picture as a summed-area table: any box averages in O(1) per cell, at any zoom."""

    width: int
    height: int
    #: (height + 1, width + 1, channels) running sums, zero on the first row and column.
    sums: _Array


def _prepare(picture: Picture, grey: bool) -> _Prepared:
    import numpy as np  # noqa: PLC0415 - numpy loads on the first comparison

    data = np.frombuffer(picture.pixels, dtype=np.uint8).astype(np.float64)
    data = data.reshape(picture.height, picture.width, picture.channels)
    if grey and picture.channels == 3:
        data = (data @ np.asarray(_LUMA))[..., None]
    sums = np.zeros((picture.height + 1, picture.width + 1, data.shape[2]))
    sums[1:, 1:] = data.cumsum(axis=0).cumsum(axis=1)
    return _Prepared(picture.width, picture.height, sums)


def _sample(prepared: _Prepared, box: Box, grid_w: int, grid_h: int) -> _Array:
    """Average *box* onto a grid_w x grid_h grid; fractional edges are weighted exactly.

    The summed-area table of piecewise-constant pixels is bilinear inside each pixel, so
    interpolating it at fractional corners gives exact box integrals.
    """
    import numpy as np  # noqa: PLC0415

    x0, y0, x1, y1 = box
    xs = np.linspace(x0, x1, grid_w + 1)
    ys = np.linspace(y0, y1, grid_h + 1)
    sums = prepared.sums
    xi = np.clip(np.floor(xs).astype(int), 0, prepared.width - 1)
    xt = (xs - xi)[None, :, None]
    cols = sums[:, xi] * (1 - xt) + sums[:, xi + 1] * xt
    yi = np.clip(np.floor(ys).astype(int), 0, prepared.height - 1)
    yt = (ys - yi)[:, None, None]
    corners = cols[yi] * (1 - yt) + cols[yi + 1] * yt
    totals = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    cell = (x1 - x0) / grid_w * (y1 - y0) / grid_h
    result: _Array = totals / cell
    return result


def _normalised(grid: _Array) -> _Array | None:
    """Blur with a 3x3 binomial kernel, then scale jointly to zero mean and unit variance."""
    import numpy as np  # noqa: PLC0415

    padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    blurred = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    spread = float(blurred.std())
    if spread < _MIN_CONTRAST:
        return None
    result: _Array = (blurred - blurred.mean()) / spread
    return result


def _worst_tile(a: _Array, b: _Array) -> float:
    """Return ``1 - mean squared difference / 2`` of the worst tile, floored at -1."""
    grid_h, grid_w = a.shape[:2]
    diff = ((a - b) ** 2).mean(axis=2)
    rows, cols = max(1, grid_h // _TILE), max(1, grid_w // _TILE)
    worst = 0.0
    for i in range(rows):
        for j in range(cols):
            tile = diff[i * grid_h // rows : (i + 1) * grid_h // rows,
                        j * grid_w // cols : (j + 1) * grid_w // cols]  # fmt: skip
            worst = max(worst, float(tile.mean()))
    return max(-1.0, 1.0 - worst / 2)


def _fit(expected: _Prepared, e_box: Box, seen: _Prepared, s_box: Box) -> float | None:
    """Score one alignment: *e_box* of the expected picture shown as *s_box* of the seen."""
    e_w, e_h = e_box[2] - e_box[0], e_box[3] - e_box[1]
    s_w, s_h = s_box[2] - s_box[0], s_box[3] - s_box[1]
    aspect = s_w / s_h
    grid_w, grid_h = (_GRID, _GRID / aspect) if aspect >= 1 else (_GRID * aspect, _GRID)
    # Never finer than either source: upsampling one side only would blur it alone.
    grid_w = max(2, int(min(grid_w, e_w, s_w)))
    grid_h = max(2, int(min(grid_h, e_h, s_h)))
    a = _normalised(_sample(expected, e_box, grid_w, grid_h))
    b = _normalised(_sample(seen, s_box, grid_w, grid_h))
    if a is None or b is None:
        return None
    return _worst_tile(a, b)


def _centre_box(width: float, height: float, aspect: float, zoom: float = 1.0) -> Box:
    """Return the largest centred box of *aspect* in width x height, shrunk by *zoom*."""
    box_w, box_h = (height * aspect, height) if width / height > aspect else (width, width / aspect)
    box_w, box_h = box_w / zoom, box_h / zoom
    return ((width - box_w) / 2, (height - box_h) / 2, (width + box_w) / 2, (height + box_h) / 2)


def _zoomed(box: Box, zoom: float) -> Box:
    x0, y0, x1, y1 = box
    half_w, half_h = (x1 - x0) / 2 / zoom, (y1 - y0) / 2 / zoom
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def _interpretations(expected: Picture, seen: Picture) -> Iterator[tuple[Box, Box]]:
    """Ways *seen* may show *expected*: a centre crop to its aspect, or a stretch to it."""
    seen_box: Box = (0.0, 0.0, float(seen.width), float(seen.height))
    whole: Box = (0.0, 0.0, float(expected.width), float(expected.height))
    crop = _centre_box(expected.width, expected.height, seen.width / seen.height)
    yield crop, seen_box
    if max(abs(c - w) for c, w in zip(crop, whole, strict=True)) >= 0.5:
        yield whole, seen_box


def similarity(expected: Picture, seen: Picture) -> float:
    """Score how well *seen* shows *expected*: about 1 for the same picture, lower otherwise.

    NaN when either picture is featureless (nearly one flat colour): there is nothing to tell
    it apart by. See the module docstring for the measured figures.
    """
    grey = expected.channels == 1 or seen.channels == 1
    e, s = _prepare(expected, grey), _prepare(seen, grey)
    identity: float | None = None
    zoomed = -math.inf
    for e_box, s_box in _interpretations(expected, seen):
        score = _fit(e, e_box, s, s_box)
        if score is None:
            return math.nan
        identity = score if identity is None else max(identity, score)
        for zoom in _ZOOMS:
            for z_score in (
                _fit(e, _zoomed(e_box, zoom), s, s_box),
                _fit(e, e_box, s, _zoomed(s_box, zoom)),
            ):
                if z_score is not None:
                    zoomed = max(zoomed, z_score)
    assert identity is not None
    return identity - ZOOM_PENALTY * max(0.0, zoomed - identity)


def compare(expected: Picture, seen: Picture) -> Verdict:
    """Decide whether *seen* (a video's end frame) shows *expected* (the requested image)."""
    if min(expected.width, expected.height, seen.width, seen.height) < _MIN_SIDE:
        return "undecided"
    score = similarity(expected, seen)
    if math.isnan(score):
        return "undecided"
    if score >= MATCH_AT:
        return "match"
    if score <= MISMATCH_AT:
        return "mismatch"
    return "undecided"


def prove(
    *, first: Picture, last: Picture | None, video_first: Picture, video_last: Picture
) -> Verdict:
    """Decide whether a video was made from *first* (and *last*, when the request had one).

    One mismatch disproves it; a match needs every end to match.
    """
    verdicts = [compare(first, video_first)]
    if last is not None:
        verdicts.append(compare(last, video_last))
    if "mismatch" in verdicts:
        return "mismatch"
    if all(v == "match" for v in verdicts):
        return "match"
    return "undecided"
