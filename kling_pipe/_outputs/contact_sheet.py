"""The contact sheet: one self-contained ``index.html`` to watch a storyboard, shot by shot.

People judge a storyboard by watching it. The page sits in the output folder beside the
videos and refers to them and to its thumbnails by relative paths, so the folder can be
zipped, shared and opened anywhere, offline: it makes no network request (no external
fonts, scripts or styles; the CSS is inline). All text from the shot list is HTML-escaped.

The page is built from `SheetShot` values, whatever the source of truth: a `RunResult`
just returned by `render` (`sheet_shots_from_result`) or the files found on disk
(`sheet_shots_from_disk`, for `kling-pipe report`). Each shot carries its takes
(`SheetTake`): a shot of one take is a card, as it always was; a shot of several takes is a
row of its own with every take side by side, the picked one marked and, under each other
rendered one, the ``kling-pipe pick`` command that picks it.

Thumbnails are made while the run goes on (`kling_pipe._outputs.frames`); writing the page
reuses them and makes only the missing or stale ones, so after a run it writes HTML. It
blocks all the same (a missing thumbnail is decoded): call it in a thread from async code.
"""

from __future__ import annotations

import html
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Final
from urllib.parse import quote

import attrs

from kling_pipe import _files as durable
from kling_pipe._decisions.results import RunResult
from kling_pipe._outputs import frames
from kling_pipe._outputs.cut import rendered_shots
from kling_pipe._outputs.frames import THUMB_WIDTH_PX, Thumb
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.ownership import Ownership
from kling_pipe._shotlist import rules
from kling_pipe._shotlist.images import check_image_file
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ImageRef, LocalImage, ShotList

__all__ = [
    "CSS",
    "THUMB_WIDTH_PX",
    "CardContext",
    "SheetShot",
    "SheetTake",
    "SheetVersion",
    "sheet_shots_from_disk",
    "sheet_shots_from_result",
    "shot_card",
    "write_contact_sheet",
]

#: States in which a shot has its video.
_HAS_VIDEO: Final = frozenset({"done", "cached"})
_STATUS_CLASS: Final = {
    "done": "ok",
    "cached": "ok",
    "failed": "bad",
    "uncertain": "bad",
    "expired": "bad",
    "missing": "muted",
    "skipped": "muted",
    "cancelled": "muted",
}


@attrs.frozen(kw_only=True)
class SheetTake:
    """One take of a shot as the sheet shows it: its video, its outcome and its money."""

    #: 1-based, as ``kling-pipe pick`` counts.
    number: int = 1
    #: "done", "cached", "failed", "missing", ... (a `ShotResult` state, or "missing").
    status: str
    cost: Decimal
    error: str = ""
    code: int | None = None
    #: The take's video, or None when there is none to play.
    video: Path | None = None
    task_id: str | None = None
    #: Whether this take is the one ``<output_dir>/<id>.mp4`` holds (`SheetShot.of_takes`
    #: takes the first take when none is marked: take 1 until a pick).
    picked: bool = False


def _as_takes(takes: Iterable[SheetTake]) -> tuple[SheetTake, ...]:
    return tuple(takes)


def _as_versions(versions: Iterable[SheetVersion]) -> tuple[SheetVersion, ...]:
    return tuple(versions)


def _only_take(shot: SheetShot) -> tuple[SheetTake, ...]:
    return (
        SheetTake(
            number=1,
            status=shot.status,
            cost=shot.cost,
            error=shot.error,
            code=shot.code,
            video=shot.video,
            task_id=shot.task_id,
            picked=True,
        ),
    )


@attrs.frozen(kw_only=True)
class SheetVersion:
    """One version of a shot (a render it had, ``versions/<id>.v<N>.mp4``), as a card lists it."""

    number: int
    take: int
    cost: Decimal
    #: What changed from the version before ("first render", "prompt changed", "take 2").
    change: str
    task_id: str | None = None
    #: Its file, when it is on disk.
    video: Path | None = None
    #: "current", "picked", "approved": what it is now.
    marks: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SheetShot:
    """One shot as the contact sheet shows it, whatever recorded its outcome.

    The fields up to `task_id` describe the picked take (its video, status and error) and
    the shot's whole cost; `takes` lists every take. Built with those fields alone, a shot
    has one take that they describe; `SheetShot.of_takes` builds one from its takes.
    """

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
    task_id: str | None = None
    #: Every take in take order; one take (the fields above) unless given.
    takes: tuple[SheetTake, ...] = attrs.field(
        default=attrs.Factory(_only_take, takes_self=True), converter=_as_takes
    )
    #: Whether the shot is approved (frozen on one render until unapproved).
    approved: bool = False
    #: Whether the shot is marked for re-render (`kling-pipe mark`): the next run renders it.
    marked: bool = False
    #: Every render the shot had, oldest first (the live review page lists them).
    versions: tuple[SheetVersion, ...] = attrs.field(default=(), converter=_as_versions)

    @classmethod
    def of_takes(
        cls,
        *,
        id: str,  # noqa: A002 - named as the field it fills
        prompt: str,
        duration: int,
        takes: Sequence[SheetTake],
    ) -> SheetShot:
        """Describe a shot by its takes: the picked one's (the first, if none is) and their cost.

        Takes are shown in take-number order; exactly one is marked picked.
        """
        if not takes:
            raise ValueError(f"shot {id!r}: a shot has at least one take")
        ordered = sorted(takes, key=lambda t: t.number)
        picked = next((t for t in ordered if t.picked), ordered[0])
        marked = tuple(attrs.evolve(t, picked=t is picked) for t in ordered)
        return cls(
            id=id,
            prompt=prompt,
            duration=duration,
            cost=sum((t.cost for t in marked), ZERO_USD),
            status=picked.status,
            error=picked.error,
            video=picked.video,
            code=picked.code,
            task_id=picked.task_id,
            takes=marked,
        )


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
                task_id=r.task_id,
            )
        )
    return shots


def sheet_shots_from_disk(shotlist: ShotList, folder: Path | None = None) -> list[SheetShot]:
    """Describe each shot by what is on disk: "done" if its MP4 is there, else "missing".

    Without run state the money is inferred: a done shot is assumed paid at the model's
    price for its duration (`rules.shot_cost`; 0 where no price is confirmed), a missing one
    cost nothing.
    """
    present = dict(rendered_shots(shotlist, folder)[0])
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
                    cost=rules.shot_cost(shot.model, shot.duration, shot.model_fields) or ZERO_USD,
                    status="done",
                    video=video,
                )
            )
    return shots


def _missing(shot_id: str, prompt: str, duration: int) -> SheetShot:
    return SheetShot(id=shot_id, prompt=prompt, duration=duration, cost=ZERO_USD, status="missing")


@attrs.frozen
class SheetWritten:
    """The page written, and every thumbnail it shows with the shot it belongs to."""

    page: Path
    thumbs: tuple[tuple[str, Thumb], ...]


def write_contact_sheet(  # noqa: PLR0913 - keyword-only, each with a default
    shotlist: ShotList,
    shots: Sequence[SheetShot],
    *,
    spent: Decimal,
    out_dir: Path | None = None,
    simulated: bool = False,
    ownership: Ownership | None = None,
) -> Path:
    """Write ``<output_dir>/index.html`` and any thumbnail it lacks; return the page's path.

    *out_dir* is where the videos are (the mock's in ``<output_dir>/mock``); *simulated*
    labels the money as the mock's, which nobody was charged. A file of the user's where the
    page or a thumbnail goes (one *ownership* does not know as kling-pipe's) is set aside
    as ``<name>.yours-<n><ext>``, never overwritten.

    Blocking. Thumbnails of each video's first and last frames are in
    ``<output_dir>/thumbs/`` (`kling_pipe._outputs.frames`); a take with no video shows the
    shot's input frames when they are local files, else a placeholder. A video whose frames
    cannot be decoded still gets its card (with a placeholder), so one bad file never hides
    the rest.
    """
    return write_sheet(
        shotlist, shots, spent=spent, out_dir=out_dir, simulated=simulated, ownership=ownership
    ).page


def write_sheet(  # noqa: PLR0913 - keyword-only, each with a default
    shotlist: ShotList,
    shots: Sequence[SheetShot],
    *,
    spent: Decimal,
    out_dir: Path | None = None,
    simulated: bool = False,
    ownership: Ownership | None = None,
) -> SheetWritten:
    """`write_contact_sheet`, also saying which thumbnails the page shows (for the records)."""
    out_dir = out_dir or shotlist.output_path
    layout = OutputLayout.at(out_dir, shotlist.base_dir)
    ownership = ownership or Ownership((), shotlist.base_dir)
    layout.thumbs.mkdir(parents=True, exist_ok=True)
    numbered = list(enumerate(shots, 1))
    # The mock's money is nobody's: every amount on its sheet says so, not the total alone.
    usd = "USD simulated" if simulated else "USD"
    # Thumbnails are made during the run; a missing one is decoded here, and FFmpeg decodes
    # without holding the GIL, so a few threads make many missing ones faster.
    ctx = CardContext(
        href=lambda path: _href(path, layout.folder),
        thumbs=lambda take, shot_id, stem: _thumbnails(
            take, shot_id, shotlist, layout, ownership, inputs_stem=stem
        ),
        usd=usd,
        source_name=shotlist.source.name,
    )
    with ThreadPoolExecutor(max_workers=frames.DRAIN_WIDTH) as pool:
        cards = list(pool.map(lambda item: shot_card(item[0], item[1], ctx), numbered))
    page = _PAGE.format(
        title=_esc(f"{shotlist.storyboard.name} — contact sheet"),
        name=_esc(shotlist.storyboard.name),
        totals=_totals(shots, spent, simulated=simulated),
        counts=_esc(_counts(shots)),
        css=CSS,
        cards="\n".join(html_ for html_, _ in cards),
    )
    ownership.make_way(layout.sheet)
    written = durable.write_bytes(layout.sheet, page.encode("utf-8"))
    thumbs = tuple(
        (shot.id, thumb)
        for (_, shot), (_, used) in zip(numbered, cards, strict=True)
        for thumb in used
    )
    return SheetWritten(written, thumbs)


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


@attrs.frozen(kw_only=True)
class CardContext:
    """How a shot's card refers to files and finds thumbnails: the sheet's way or the live page's.

    The static sheet (`write_sheet`) refers to files by relative paths and makes missing
    thumbnails; the live review page (`kling_pipe._review`) refers to them by its own URLs,
    only reuses thumbnails a run made (it writes nothing), and adds its buttons. The markup
    itself is `shot_card`'s alone, so the two pages never drift apart.
    """

    #: The page's reference to a file under the output folder, escaped for an attribute.
    href: Callable[[Path], str]
    #: A take's first and last frame thumbnails: (take, shot id, stem for its input frames).
    thumbs: Callable[[SheetTake, str, str], tuple[Thumb | None, Thumb | None]]
    #: Follows each amount: ``USD``, or ``USD simulated`` on the mock's renders.
    usd: str = "USD"
    #: The shot list's file name, for the ``kling-pipe pick`` command the static sheet shows.
    source_name: str = ""
    #: The live page: buttons (pick, approve, unapprove, mark), not commands.
    live: bool = False


def shot_card(n: int, shot: SheetShot, ctx: CardContext) -> tuple[str, list[Thumb]]:
    """Return a shot's HTML (a card for one take, a row for several) and the thumbnails shown.

    The one place a shot's markup is written: the static sheet and the live page share it.
    """
    if len(shot.takes) > 1:
        return _row(n, shot, ctx)
    take = shot.takes[0]
    first, last = ctx.thumbs(take, shot.id, shot.id)
    status_class = _STATUS_CLASS.get(take.status, "pending")
    sid = _esc(shot.id)
    task = (
        ""
        if take.task_id is None or not ctx.live
        else f'<dt>Task</dt><dd class="task">{_esc(take.task_id)}</dd>\n'
    )
    card = f"""<article class="shot {status_class}" id="shot-{sid}" data-shot="{sid}">
<h2><span class="n">{n}</span> {sid}{_approved_badge(shot)}</h2>
{_player(take, first, ctx)}
<div class="frames">
{_figure(first, "first", shot.id, ctx)}
{_figure(last, "last", shot.id, ctx)}
</div>
<dl>
<dt>Duration</dt><dd class="duration">{shot.duration} s</dd>
<dt>Cost</dt><dd class="cost">{_esc(str(take.cost))} {ctx.usd}</dd>
<dt>Status</dt><dd><span class="status">{_esc(take.status)}</span></dd>
{task}</dl>
<p class="prompt">{_esc(shot.prompt)}</p>
{_error(take)}{_versions(shot, ctx)}{_actions(shot, ctx)}</article>"""
    return card, [t for t in (first, last) if t is not None]


def _row(n: int, shot: SheetShot, ctx: CardContext) -> tuple[str, list[Thumb]]:
    """Show a shot of several takes as one row: every take side by side, the picked one marked."""
    sid = _esc(shot.id)
    used: list[Thumb] = []
    sections: list[str] = []
    source = shlex.quote(ctx.source_name)
    for take in shot.takes:
        first, last = ctx.thumbs(take, shot.id, f"{shot.id}.inputs")
        used += [t for t in (first, last) if t is not None]
        status_class = _STATUS_CLASS.get(take.status, "pending")
        label = f"take {take.number} of {shot.id}"
        badge = ' <span class="badge">picked</span>' if take.picked else ""
        pick = ""
        if ctx.live:
            can = not take.picked and take.video is not None and not shot.approved
            pick = (
                f'<p class="pick"><button type="button" data-act="pick" data-shot="{sid}" '
                f'data-take="{take.number}"{"" if can else " disabled"}>'
                f"Pick take {take.number}</button></p>\n"
            )
        elif not take.picked and take.video is not None:  # only a rendered take is picked
            command = f"kling-pipe pick {source} {shot.id} {take.number}"
            pick = f'<p class="pick">To pick it: <code>{_esc(command)}</code></p>\n'
        task = (
            ""
            if take.task_id is None
            else f'<dt>Task</dt><dd class="task">{_esc(take.task_id)}</dd>\n'
        )
        classes = f"take {status_class}{' picked' * take.picked}"
        sections.append(
            f"""<section class="{classes}" id="shot-{sid}-take-{take.number}" \
data-take="{take.number}">
<h3>Take {take.number}{badge}</h3>
{_player(take, first, ctx)}
<div class="frames">
{_figure(first, "first", label, ctx)}
{_figure(last, "last", label, ctx)}
</div>
<dl>
<dt>Cost</dt><dd class="cost">{_esc(str(take.cost))} {ctx.usd}</dd>
<dt>Status</dt><dd><span class="status">{_esc(take.status)}</span></dd>
{task}</dl>
{pick}{_error(take)}
</section>"""
        )
    row = f"""<article class="shot takes" id="shot-{sid}" data-shot="{sid}">
<h2><span class="n">{n}</span> {sid} <span class="count">{len(shot.takes)} takes</span>\
{_approved_badge(shot)}</h2>
<div class="row">
{chr(10).join(sections)}
</div>
<dl>
<dt>Duration</dt><dd class="duration">{shot.duration} s</dd>
<dt>Cost</dt><dd class="cost">{_esc(str(shot.cost))} {ctx.usd}</dd>
</dl>
<p class="prompt">{_esc(shot.prompt)}</p>
{_versions(shot, ctx)}{_actions(shot, ctx)}</article>"""
    return row, used


def _approved_badge(shot: SheetShot) -> str:
    badges = ' <span class="badge approved">approved</span>' if shot.approved else ""
    if shot.marked:
        badges += ' <span class="badge marked">marked for re-render</span>'
    return badges


def _versions(shot: SheetShot, ctx: CardContext) -> str:
    """List a shot's versions side by side, each with what changed; nothing for one or none."""
    if len(shot.versions) < 2:
        return ""
    items = []
    for v in shot.versions:
        if v.video is None:
            video = '<div class="novideo">not on disk</div>'
        else:
            as_take = SheetTake(number=v.take, status="done", cost=v.cost, video=v.video)
            first = ctx.thumbs(as_take, shot.id, shot.id)[0]
            poster = "" if first is None else f' poster="{ctx.href(first.path)}"'
            video = f'<video controls preload="none" src="{ctx.href(v.video)}"{poster}></video>'

        marks = "".join(f' <span class="badge">{_esc(m)}</span>' for m in v.marks)
        task = "" if v.task_id is None else f' · <span class="task">{_esc(v.task_id)}</span>'
        items.append(
            f"""<li class="version{" current" * ("current" in v.marks)}" data-version="{v.number}">
{video}
<p><b>v{v.number}</b> · take {v.take}{marks}<br>{_esc(v.change)} · \
{_esc(str(v.cost))} {ctx.usd}{task}</p>
</li>"""
        )
    return f"""<details class="versions"><summary>{len(shot.versions)} versions</summary>
<ol class="row vrow">
{chr(10).join(items)}
</ol>
</details>
"""


def _actions(shot: SheetShot, ctx: CardContext) -> str:
    """Return the live page's buttons for a shot and its refusal's place; none on the sheet."""
    if not ctx.live:
        return ""
    sid = _esc(shot.id)
    approve = (
        f'<button type="button" data-act="unapprove" data-shot="{sid}">Unapprove</button>'
        if shot.approved
        else f'<button type="button" data-act="approve" data-shot="{sid}" accesskey="a">'
        "Approve</button>"
    )
    mark = (
        f'<button type="button" data-act="unmark" data-shot="{sid}">Unmark</button>'
        if shot.marked
        else f'<button type="button" data-act="mark" data-shot="{sid}">Mark for re-render</button>'
    )
    return f"""<div class="actions">{approve}
{mark}</div>
<p class="refusal" role="alert" hidden></p>
"""


def _player(take: SheetTake, first: Thumb | None, ctx: CardContext) -> str:
    if take.video is None:
        return '<div class="novideo">no video</div>'
    poster = f' poster="{ctx.href(first.path)}"' if first is not None else ""
    return f'<video controls preload="metadata" src="{ctx.href(take.video)}"{poster}></video>'


def _error(take: SheetTake) -> str:
    if not take.error and take.code is None:
        return ""
    code = f"code {take.code}: " if take.code is not None else ""
    return f'<p class="error">{_esc(code + take.error)}</p>'


def _figure(thumb: Thumb | None, which: str, subject: str, ctx: CardContext) -> str:
    if thumb is None:
        inner = f'<div class="placeholder">no {which} frame</div>'
    else:
        alt = _esc(f"{which} frame of {subject}")
        inner = (
            f'<img src="{ctx.href(thumb.path)}" alt="{alt}" '
            f'width="{thumb.width}" height="{thumb.height}" loading="lazy">'
        )
    return f"<figure>{inner}<figcaption>{which}</figcaption></figure>"


def _href(path: Path, base: Path) -> str:
    """Return a relative, URL-quoted reference from the page's folder to *path*."""
    relative = Path(os.path.relpath(path.absolute(), base.absolute())).as_posix()
    return _esc(quote(relative))


def _thumbnails(  # noqa: PLR0913 - the take, where its thumbnails go, and who may replace them
    take: SheetTake,
    shot_id: str,
    shotlist: ShotList,
    layout: OutputLayout,
    ownership: Ownership,
    *,
    inputs_stem: str,
) -> tuple[Thumb | None, Thumb | None]:
    """Return a take's first and last frame thumbnails: its video's, or else the shot's inputs."""
    if take.video is not None:
        dests = layout.thumbs_of(layout.thumb_stem(take.video))
        return frames.video_thumbs(take.video, dests, ownership=ownership)
    try:
        spec = shotlist.shot(shot_id)
    except KeyError:
        return None, None
    first_dest, last_dest = layout.thumbs_of(inputs_stem)
    return (
        _input_thumb(spec.image, shotlist, first_dest, ownership),
        _input_thumb(spec.last_image, shotlist, last_dest, ownership),
    )


def _input_thumb(
    image: ImageRef | None, shotlist: ShotList, dest: Path, ownership: Ownership
) -> Thumb | None:
    if not isinstance(image, LocalImage):
        return None
    # An image that fails validation is never handed to FFmpeg; a fresh thumbnail needs no check.
    path = shotlist.resolve(image)
    return frames.image_thumb(path, dest, check=check_image_file, ownership=ownership)


CSS: Final = """
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
.shot.takes { grid-column: 1 / -1; }
.count { color: var(--muted); font-size: .9rem; font-weight: normal; }
.row { display: grid; grid-auto-flow: column; gap: .75rem; overflow-x: auto;
  grid-auto-columns: minmax(min(85%, 20rem), 1fr); scroll-snap-type: x proximity; }
.take { border: 1px solid var(--line); border-radius: 8px; padding: .5rem; min-width: 0;
  display: flex; flex-direction: column; gap: .5rem; scroll-snap-align: start; }
.take.bad { border-color: var(--bad); }
.take.picked { border: 2px solid var(--ok); }
h3 { margin: 0; font-size: 1rem; }
.badge { display: inline-block; margin-left: .4em; padding: 0 .5em; border-radius: 999px;
  background: var(--ok); color: var(--card); font-size: .8rem; font-weight: 600; }
.task { overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .85rem; }
.pick { margin: 0; font-size: .85rem; color: var(--muted); }
.badge.approved { background: var(--wait); }
.badge.marked { background: var(--bad); }
.versions summary { cursor: pointer; color: var(--muted); }
.versions ol { list-style: none; margin: .5rem 0 0; padding: 0; }
.vrow { grid-auto-columns: minmax(min(70%, 13rem), 1fr); }
.version { border: 1px solid var(--line); border-radius: 8px; padding: .4rem; font-size: .85rem; }
.version.current { border: 2px solid var(--ok); }
.version p { margin: .3rem 0 0; overflow-wrap: anywhere; }
.pick code { display: block; user-select: all; overflow-wrap: anywhere; color: var(--ink);
  background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: .2em .4em; }
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
