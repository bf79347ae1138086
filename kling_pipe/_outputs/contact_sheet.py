"""The contact sheet: one self-contained ``index.html`` to watch a storyboard, shot by shot.

People judge a storyboard by watching it. The page sits in the output folder beside the
videos and refers to them and to its thumbnails by relative paths, so the folder can be
zipped, shared and opened anywhere, offline: it makes no network request (no external
fonts, scripts or styles; the CSS is inline). All text from the shot list is HTML-escaped.

The page is built from `SheetShot` values, whatever the source of truth: a `RunResult`
just returned by `render` (`sheet_shots_from_result`) or the files found on disk
(`sheet_shots_from_disk`, for `kling-pipe report`). Writing it blocks (frames are decoded
and thumbnails encoded); call `write_contact_sheet` in a thread from async code.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

import attrs
import av

from kling_pipe._outputs import media
from kling_pipe._outputs.cut import rendered_shots
from kling_pipe._records import durable
from kling_pipe._running.results import RunResult
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.images import check_image_file, sniff
from kling_pipe._shotlist.specs import ImageRef, LocalImage, ShotList
from kling_pipe.exceptions import MediaError

#: Thumbnails are this wide (or narrower, for smaller videos): sharp on a phone, light to load.
THUMB_WIDTH_PX: Final = 320
#: MJPEG quantiser for thumbnails: 2 is best, 31 worst; 3 is visually clean at a few KB.
_JPEG_QSCALE: Final = 3
#: States in which a shot has its video.
_HAS_VIDEO: Final = frozenset({"done", "cached"})
_STATUS_CLASS: Final = {
    "done": "ok",
    "cached": "ok",
    "failed": "bad",
    "uncertain": "bad",
    "missing": "muted",
    "skipped": "muted",
    "cancelled": "muted",
}
ZERO_USD: Final = Decimal("0.000")


@attrs.frozen(kw_only=True)
class SheetShot:
    """One shot as the contact sheet shows it, whatever recorded its outcome."""

    id: str
    #: The final prompt: prefix, the shot's prompt and suffix joined, as sent to the model.
    prompt: str
    duration: int
    cost: Decimal
    #: "done", "cached", "failed", "missing", ... (a `ShotResult` state, or "missing").
    status: str
    error: str = ""
    #: The rendered video, or None when there is none to play.
    video: Path | None = None
    code: int | None = None


@attrs.frozen
class _Thumb:
    """A thumbnail written under ``thumbs/``, with its size for the ``<img>`` tag."""

    path: Path
    width: int
    height: int


def sheet_shots_from_result(shotlist: ShotList, result: RunResult) -> list[SheetShot]:
    """Describe each shot of *shotlist* as *result* left it, in storyboard (file) order."""
    by_id = {r.id: r for r in result.shots}
    shots: list[SheetShot] = []
    for shot in shotlist.shots:
        r = by_id.get(shot.id)
        if r is None:
            shots.append(_missing(shot.id, shot.final_prompt, shot.duration))
            continue
        video = r.file if r.state in _HAS_VIDEO else None
        shots.append(
            SheetShot(
                id=shot.id,
                prompt=shot.final_prompt,
                duration=shot.duration,
                cost=r.cost,
                status=r.state,
                error=r.error,
                video=video,
                code=r.code,
            )
        )
    return shots


def sheet_shots_from_disk(shotlist: ShotList, folder: Path | None = None) -> list[SheetShot]:
    """Describe each shot by what is on disk: "done" if its MP4 is there, else "missing".

    Without run state the money is inferred: a done shot is assumed paid at the model's
    price for its duration (`rules.shot_cost`), a missing one cost nothing.
    """
    present = dict(rendered_shots(shotlist, folder)[0])
    model = shotlist.storyboard.model
    shots: list[SheetShot] = []
    for shot in shotlist.shots:
        video = present.get(shot.id)
        if video is None:
            shots.append(_missing(shot.id, shot.final_prompt, shot.duration))
        else:
            shots.append(
                SheetShot(
                    id=shot.id,
                    prompt=shot.final_prompt,
                    duration=shot.duration,
                    cost=rules.shot_cost(model, shot.duration),
                    status="done",
                    video=video,
                )
            )
    return shots


def _missing(shot_id: str, prompt: str, duration: int) -> SheetShot:
    return SheetShot(id=shot_id, prompt=prompt, duration=duration, cost=ZERO_USD, status="missing")


def write_contact_sheet(
    shotlist: ShotList,
    shots: Sequence[SheetShot],
    *,
    spent: Decimal,
    out_dir: Path | None = None,
    simulated: bool = False,
) -> Path:
    """Write ``<output_dir>/index.html`` and its thumbnails; return the page's path.

    *out_dir* is where the videos are (the mock's in ``<output_dir>/mock``); *simulated*
    labels the money as the mock's, which nobody was charged.

    Blocking. Thumbnails of each video's first and last frames go to
    ``<output_dir>/thumbs/``; a shot with no video shows its input frames when they are
    local files, else a placeholder. A video whose frames cannot be decoded still gets its
    card (with a placeholder), so one bad file never hides the rest.
    """
    out_dir = out_dir or shotlist.output_path
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    # FFmpeg decodes without holding the GIL: a few threads make a long storyboard's
    # thumbnails several times faster on a multi-core machine.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        numbered = list(enumerate(shots, 1))
        cards = list(
            pool.map(lambda item: _card(item[0], item[1], shotlist, thumbs, out_dir), numbered)
        )
    page = _PAGE.format(
        title=_esc(f"{shotlist.storyboard.name} — contact sheet"),
        name=_esc(shotlist.storyboard.name),
        totals=_totals(shots, spent, simulated=simulated),
        counts=_esc(_counts(shots)),
        css=_CSS,
        cards="\n".join(cards),
    )
    return durable.write_bytes(out_dir / "index.html", page.encode("utf-8"))


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _totals(shots: Sequence[SheetShot], spent: Decimal, *, simulated: bool = False) -> str:
    n = len(shots)
    seconds = sum(s.duration for s in shots)
    money = (
        f"{spent} USD simulated (bundled mock: nothing charged)"
        if simulated
        else f"{spent} USD spent"
    )
    parts = [f"{n} shot{'s' * (n != 1)}", f"{seconds} s", money]
    return " · ".join(f'<span class="total">{_esc(p)}</span>' for p in parts)


def _counts(shots: Sequence[SheetShot]) -> str:
    counts = Counter(s.status for s in shots)
    return ", ".join(f"{count} {status}" for status, count in counts.items())


def _card(n: int, shot: SheetShot, shotlist: ShotList, thumbs: Path, out_dir: Path) -> str:
    first, last = _thumbnails(shot, shotlist, thumbs)
    status_class = _STATUS_CLASS.get(shot.status, "pending")
    if shot.video is not None:
        poster = f' poster="{_href(first.path, out_dir)}"' if first is not None else ""
        player = (
            f'<video controls preload="metadata" src="{_href(shot.video, out_dir)}"{poster}>'
            "</video>"
        )
    else:
        player = '<div class="novideo">no video</div>'
    error = ""
    if shot.error or shot.code is not None:
        code = f"code {shot.code}: " if shot.code is not None else ""
        error = f'<p class="error">{_esc(code + shot.error)}</p>'
    sid = _esc(shot.id)
    return f"""<article class="shot {status_class}" id="shot-{sid}">
<h2><span class="n">{n}</span> {sid}</h2>
{player}
<div class="frames">
{_figure(first, "first", shot.id, out_dir)}
{_figure(last, "last", shot.id, out_dir)}
</div>
<dl>
<dt>Duration</dt><dd class="duration">{shot.duration} s</dd>
<dt>Cost</dt><dd class="cost">{_esc(str(shot.cost))} USD</dd>
<dt>Status</dt><dd><span class="status">{_esc(shot.status)}</span></dd>
</dl>
<p class="prompt">{_esc(shot.prompt)}</p>
{error}
</article>"""


def _figure(thumb: _Thumb | None, which: str, shot_id: str, out_dir: Path) -> str:
    if thumb is None:
        inner = f'<div class="placeholder">no {which} frame</div>'
    else:
        alt = _esc(f"{which} frame of {shot_id}")
        inner = (
            f'<img src="{_href(thumb.path, out_dir)}" alt="{alt}" '
            f'width="{thumb.width}" height="{thumb.height}" loading="lazy">'
        )
    return f"<figure>{inner}<figcaption>{which}</figcaption></figure>"


def _href(path: Path, base: Path) -> str:
    """Return a relative, URL-quoted reference from the page's folder to *path*."""
    relative = Path(os.path.relpath(path.absolute(), base.absolute())).as_posix()
    return _esc(quote(relative))


def _thumbnails(
    shot: SheetShot, shotlist: ShotList, thumbs: Path
) -> tuple[_Thumb | None, _Thumb | None]:
    """Make the first and last frame thumbnails, from the video or else the inputs."""
    if shot.video is not None:
        return (
            _video_thumb(shot.video, "first", thumbs / f"{shot.id}.first.jpg"),
            _video_thumb(shot.video, "last", thumbs / f"{shot.id}.last.jpg"),
        )
    try:
        spec = shotlist.shot(shot.id)
    except KeyError:
        return None, None
    return (
        _input_thumb(spec.image, shotlist, thumbs / f"{shot.id}.first.jpg"),
        _input_thumb(spec.last_image, shotlist, thumbs / f"{shot.id}.last.jpg"),
    )


def _video_thumb(video: Path, which: Literal["first", "last"], dest: Path) -> _Thumb | None:
    reused = _fresh_thumb(video, dest)
    if reused is not None:
        return reused
    with tempfile.TemporaryDirectory(prefix="kling-pipe-frame-") as scratch:
        try:
            png = media.extract_frame(video, which, Path(scratch) / "frame.png")
            return _thumbnail(png, dest)
        except (MediaError, OSError):
            return None


def _fresh_thumb(source: Path, dest: Path) -> _Thumb | None:
    """Reuse a thumbnail written after its video: re-runs only decode the shots that changed."""
    try:
        if dest.stat().st_mtime_ns < source.stat().st_mtime_ns:
            return None
        with dest.open("rb") as fh:
            info = sniff(fh.read(64 * 1024))
    except OSError:
        return None
    if info is None or info.width is None or info.height is None:
        return None
    return _Thumb(dest, info.width, info.height)


def _input_thumb(image: ImageRef | None, shotlist: ShotList, dest: Path) -> _Thumb | None:
    if not isinstance(image, LocalImage):
        return None
    path = shotlist.resolve(image)
    if check_image_file(path) is not None:
        return None
    try:
        return _thumbnail(path, dest)
    except (MediaError, OSError):
        return None


def _thumbnail(image: Path, dest: Path) -> _Thumb:
    """Write a JPEG of *image* at most `THUMB_WIDTH_PX` wide to *dest* (blocking)."""
    try:
        with av.open(str(image)) as container:
            frame = next(container.decode(video=0))
        width = min(THUMB_WIDTH_PX, frame.width)
        height = max(2, round(frame.height * width / frame.width / 2) * 2)
        width -= width % 2
        small = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
        codec.time_base = Fraction(1, 1)
        codec.qmin = codec.qmax = _JPEG_QSCALE
        jpeg = b"".join(bytes(p) for p in [*codec.encode(small), *codec.encode(None)])
    except (av.FFmpegError, StopIteration) as exc:
        raise MediaError(f"{image}: cannot make a thumbnail: {exc}") from exc
    durable.write_bytes(dest, jpeg)
    return _Thumb(dest, width, height)


_CSS: Final = """
:root { color-scheme: light dark; --bg: #f6f6f4; --card: #fff; --ink: #1d1d1b;
  --muted: #6b6b66; --line: #deded8; --ok: #1f7a3a; --bad: #b3261e; --wait: #8a6d00; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #151514; --card: #21211f; --ink: #ececea; --muted: #a3a39c;
    --line: #3a3a36; --ok: #6fcf8a; --bad: #ff8a80; --wait: #e6c35c; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 1rem 1rem 0; }
h1 { margin: 0 0 .25rem; font-size: 1.6rem; overflow-wrap: anywhere; }
.totals { margin: 0; font-size: 1.05rem; }
.counts { margin: .25rem 0 0; color: var(--muted); }
main { display: grid; gap: 1rem; padding: 1rem;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 22rem), 1fr)); }
.shot { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: .75rem; display: flex; flex-direction: column; gap: .6rem; min-width: 0; }
.shot.bad { border-color: var(--bad); }
h2 { margin: 0; font-size: 1.1rem; overflow-wrap: anywhere; }
.n { display: inline-block; min-width: 1.8em; color: var(--muted); }
video, img { display: block; width: 100%; height: auto; border-radius: 6px;
  background: #000; }
.frames { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; }
figure { margin: 0; }
figcaption { font-size: .8rem; color: var(--muted); }
.placeholder, .novideo { display: grid; place-items: center; aspect-ratio: 16 / 9;
  border: 1px dashed var(--line); border-radius: 6px; color: var(--muted);
  font-size: .85rem; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .15rem .75rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
.status { font-weight: 600; color: var(--wait); }
.ok .status { color: var(--ok); }
.bad .status { color: var(--bad); }
.muted .status { color: var(--muted); }
.prompt { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.error { margin: 0; color: var(--bad); overflow-wrap: anywhere; }
footer { padding: 0 1rem 1rem; color: var(--muted); font-size: .85rem; }
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body>
<header>
<h1>{name}</h1>
<p class="totals">{totals}</p>
<p class="counts">{counts}</p>
</header>
<main>
{cards}
</main>
<footer>Made by kling-pipe. Videos and thumbnails are beside this page.</footer>
</body>
</html>
"""
