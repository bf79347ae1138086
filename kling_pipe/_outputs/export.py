"""Handing the cut to an editor: the storyboard as an OpenTimelineIO timeline.

An editor finishes the film in Resolve, Premiere or Avid, not from a joined MP4: they want
each shot as its own clip, in order, at its real length, pointing at the rendered file.
`export_timeline` writes that as one video track with a clip per shot in storyboard order.
Each clip references ``<output_dir>/<id>.mp4`` (always the picked take) by an absolute,
percent-encoded ``file://`` URL, the form FCP XML's ``pathurl`` and OpenTimelineIO's
importers read; its range is the file's own frame count at the file's own frame rate, read
with PyAV, never the duration the shot list planned. The prompt, cost, task id, fingerprint
and take of the render ride along as clip metadata under ``kling_pipe``.

What is exported is what the lock file records: a shot is a clip only when its ``<id>.mp4``
is current (`kling_pipe._outputs.current`, the rule `cut` follows too): its lock entry is
downloaded, for the shot as it is now, with the bytes the file has. Any other shot (stale,
missing, or not in the lock file) is refused by name, or, with ``allow_gaps``, becomes a gap
of its planned duration so the timing of the rest holds.

The format follows the output's extension, through OpenTimelineIO's adapters: ``.otio`` is
OpenTimelineIO's own and always there; ``.edl`` (CMX 3600) and ``.xml`` (Final Cut Pro 7
XML) come with the ``kling-pipe[editors]`` extra, and any other installed adapter that writes
a file is used by its extension too. The file is written to a temporary file and renamed, so
a failed export leaves nothing behind, and, as `cut` does, never over a file kling-pipe did
not write: an existing target is replaced only when the records say `export` wrote it.

This module imports OpenTimelineIO and (through `media`) PyAV: only `export` loads it, so
light commands stay light. Everything here blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import attrs
import opentimelineio as otio

from kling_pipe import _files as durable
from kling_pipe._backends.base import MOCK_ORIGIN
from kling_pipe._outputs import media
from kling_pipe._outputs.current import shot_videos
from kling_pipe._outputs.folders import protected_paths, record_written
from kling_pipe._outputs.reels import reel_names
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.ownership import Ownership
from kling_pipe._records.store import Store, state_dir_for
from kling_pipe._shotlist.specs import Shot, ShotList
from kling_pipe._version import __version__
from kling_pipe.exceptions import KlingPipeError, MediaError

#: The optional extra that installs the adapters editors ask for most.
EDITORS_EXTRA: Final = "pip install 'kling-pipe[editors]'"
#: Extensions the `editors` extra adds, and what they are, for the message when it is missing.
_EXTRA_FORMATS: Final = {"edl": "a CMX 3600 EDL", "xml": "Final Cut Pro 7 XML"}
#: Adapters that write SMPTE timecode, and what their files are called in messages.
_TIMECODE_FORMATS: Final = {"cmx_3600": "an EDL", "fcp_xml": "FCP XML"}
#: Adapters that do not write one file (``otiod`` writes a folder): never chosen.
_NOT_A_FILE: Final = frozenset({"otiod"})
#: What the summary calls each adapter's format; others go by the adapter's name.
FORMAT_NAMES: Final = {
    "otio_json": "OpenTimelineIO",
    "otioz": "OpenTimelineIO with its media",
    "cmx_3600": "CMX 3600 EDL",
    "fcp_xml": "Final Cut Pro 7 XML",
}
#: How the records name a file `export` wrote (`cut` uses "cut"): only such a file is replaced.
RECORD_KIND: Final = "export"
#: Where kling-pipe's own metadata lives on the timeline, its clips and its gaps.
METADATA_KEY: Final = "kling_pipe"
#: Used for gaps when no clip states a rate; Kling's own output is 24 fps.
_FALLBACK_RATE: Final = Fraction(24)


class ExportError(KlingPipeError):
    """The timeline cannot be written as asked; the message names the file and says why."""


class UnrenderedShotsError(ExportError):
    """Some shots have no render to export; `shots` pairs each id with why, in storyboard order."""

    def __init__(
        self, shots: Sequence[tuple[str, str]], folder: Path, shot_list: Path, *, none: bool
    ) -> None:
        self.shots = tuple(shots)
        listed = ", ".join(f'"{sid}" ({why})' for sid, why in self.shots)
        n = len(self.shots)
        advice = f"render them first (kling-pipe run {shot_list})" + (
            "" if none else ", or export with --allow-gaps"
        )
        super().__init__(
            f"{n} shot{'s' * (n != 1)} cannot be exported from {folder}: {listed}; {advice}"
        )


@attrs.frozen(kw_only=True)
class ExportResult:
    """What `export_timeline` wrote: the file, its format, the clips and the gaps in it."""

    output: Path
    #: The OpenTimelineIO adapter that wrote it (``otio_json``, ``cmx_3600``, ...).
    adapter: str
    #: Ids of the shots that are clips, in storyboard order.
    clips: tuple[str, ...]
    #: Ids of the shots that are gaps (only with ``allow_gaps``), in storyboard order.
    gaps: tuple[str, ...]
    #: The timeline's length, clips and gaps together.
    duration_s: float
    #: (id, why) of each gap: "not rendered", or why its video is not current (stale).
    gap_reasons: tuple[tuple[str, str], ...] = ()

    @property
    def format_name(self) -> str:
        """The written format, as people call it."""
        return FORMAT_NAMES.get(self.adapter, self.adapter)


@attrs.frozen(kw_only=True)
class Take:
    """A shot's picked render as the lock file records it and its file measures."""

    shot: Shot
    path: Path
    #: The file's frame count and frame rate, read from the file itself.
    frames: int
    rate: Fraction
    #: The lock entry's top level, which describes the picked take.
    entry: Mapping[str, Any]
    pick: int
    origin: str


@attrs.frozen(kw_only=True)
class Missing:
    """A shot with no render to export, and why (it becomes a gap, or the export is refused)."""

    shot: Shot
    reason: str


def export_timeline(
    shotlist: ShotList,
    origin: str,
    dest: Path,
    *,
    allow_gaps: bool = False,
    store: Store | None = None,
) -> ExportResult:
    """Write *shotlist*'s renders from *origin* to *dest* as a timeline an editor opens.

    The format comes from *dest*'s extension (`writer_for`). Raises `ExportError` for an
    extension no installed adapter writes (naming the extra to install) and for a *dest*
    that may not be written (`check_target`); `UnrenderedShotsError` naming the shots with
    no render, unless *allow_gaps* (with no render at all it is an error still);
    `MediaError` for a render that cannot be read. Nothing is written unless everything
    succeeds. *store* holds the shot list's records: an existing *dest* is replaced only
    when they say `export` wrote it, and the new file is recorded there.
    """
    adapter = writer_for(dest)
    check_target(shotlist, dest, store)
    folder = OutputLayout.of(shotlist, origin).folder
    pieces = gather(shotlist, origin)
    takes = [p for p in pieces if isinstance(p, Take)]
    missing = [(p.shot.id, p.reason) for p in pieces if isinstance(p, Missing)]
    if not takes or (missing and not allow_gaps):
        raise UnrenderedShotsError(missing, folder, shotlist.source, none=not takes)
    _check_timecode_rates(dest, adapter, takes)
    timeline = build_timeline(shotlist, origin, pieces)
    with durable.filling(dest) as tmp:
        _write(timeline, adapter, tmp, dest)
    if store is not None:
        record_written(store, shotlist, dest, kind=RECORD_KIND, origin=origin, shot_id=None)
    return ExportResult(
        output=dest,
        adapter=adapter,
        clips=tuple(t.shot.id for t in takes),
        gaps=tuple(sid for sid, _ in missing),
        duration_s=float(timeline.duration().to_seconds()),
        gap_reasons=tuple(missing),
    )


def _write(timeline: Any, adapter: str, tmp: Path, dest: Path) -> None:
    """Have *adapter* write *timeline* to the temp file *tmp*, errors naming *dest*."""
    # Some adapters (otioz) refuse to write over any file, even our empty temp file; its
    # random name stays ours, and `durable` discards whatever is left there on failure.
    tmp.unlink()
    try:
        otio.adapters.write_to_file(timeline, str(tmp), adapter_name=adapter)
    except OSError as exc:
        if exc.filename == str(tmp):
            exc.filename = str(dest)  # the user named dest, not our temp file
        raise
    except Exception as exc:  # an adapter is a plug-in: whatever it raises is a failed export
        raise ExportError(
            f"{dest}: the {adapter} adapter cannot write the timeline: {exc}"
        ) from exc


# Formats


def writers() -> dict[str, str]:
    """Return the installed adapters that write one file, by extension (without the dot).

    Asked of OpenTimelineIO's plug-in manifest each time, so an adapter package installed
    (or not) is seen as it is; the first adapter to claim an extension has it, as in
    OpenTimelineIO's own lookup. An adapter whose module fails to import is left out.
    """
    found: dict[str, str] = {}
    for adapter in otio.plugins.ActiveManifest().adapters:
        name = str(adapter.name)
        if name in _NOT_A_FILE:
            continue
        try:  # asking imports the adapter's module
            writes = adapter.has_feature("write_to_file") or adapter.has_feature("write_to_string")
        except Exception:  # noqa: BLE001, S112 - a broken plug-in is a format fewer, not a crash
            continue
        if writes:
            for suffix in adapter.suffixes:
                found.setdefault(str(suffix).lower(), name)
    return found


def writer_for(dest: Path) -> str:
    """Return the name of the adapter that writes *dest*, chosen by its extension.

    Raises `ExportError` in one line: for ``.edl`` or ``.xml`` without their adapter, naming
    the extra that installs it; for any other extension, listing the ones that work.
    """
    suffix = dest.suffix.lower().removeprefix(".")
    available = writers()
    if suffix in available:
        return available[suffix]
    if suffix in _EXTRA_FORMATS:
        raise ExportError(
            f"{dest}: writing {_EXTRA_FORMATS[suffix]} (.{suffix}) needs an OpenTimelineIO "
            f"adapter that is not installed: {EDITORS_EXTRA}"
        )
    known = ", ".join(f".{s}" for s in sorted(available))
    lacking = [s for s in _EXTRA_FORMATS if s not in available]
    hint = f"; .{' and .'.join(lacking)} need {EDITORS_EXTRA}" if lacking else ""
    what = f"no timeline format has the extension .{suffix}" if suffix else "has no extension"
    raise ExportError(f"{dest}: {what}; write one of {known}{hint}")


def _check_timecode_rates(dest: Path, adapter: str, takes: Sequence[Take]) -> None:
    """Refuse an EDL or FCP XML its readers would misread, before writing anything.

    Both count in SMPTE timecode, which exists only for the broadcast rates (24, 25, 30, ...
    and their NTSC variants): a clip at another rate (the bundled mock's ``--fps 10``, say) has
    no honest timecode. An EDL also states no rate at all, so its clips must share one.
    """
    if adapter not in _TIMECODE_FORMATS:
        return
    what = _TIMECODE_FORMATS[adapter]
    rates = sorted({t.rate for t in takes})
    odd = [r for r in rates if not otio.opentime.RationalTime.is_valid_timecode_rate(float(r))]
    if odd:
        shown = " or ".join(_fps(r) for r in odd)
        raise ExportError(
            f"{dest}: {what} counts in SMPTE timecode, which has no {shown} (the bundled "
            "mock renders 24 fps unless run --fps says otherwise); export .otio instead"
        )
    if adapter == "cmx_3600" and len(rates) > 1:
        shown = ", ".join(_fps(r) for r in rates)
        raise ExportError(
            f"{dest}: an EDL has one frame rate, and these shots have several ({shown}); "
            "export .otio or .xml instead"
        )


def _fps(rate: Fraction) -> str:
    return f"{float(rate):.3f}".rstrip("0").rstrip(".") + " fps"


def check_target(shotlist: ShotList, dest: Path, store: Store | None) -> None:
    """Refuse to write *dest* unless it is a new file or one `export` wrote and nobody changed.

    Never a folder, in a folder that does not exist, or over the shot list's inputs, records
    or renders; an existing file is replaced only when *store* records it as an export with
    the sha256 it still has. The rule `cut` keeps, with exports recorded as their own kind.
    """
    if dest.is_dir():
        raise ExportError(f"{dest}: is a folder; name the timeline file to write")
    if not dest.parent.is_dir():
        raise ExportError(f"{dest}: the folder {dest.parent} does not exist")
    resolved = dest.resolve()
    ownership = Ownership.of(store, shotlist.base_dir)
    recorded = ownership.recorded(dest)
    exported = recorded is not None and recorded.kind == RECORD_KIND
    state = state_dir_for(shotlist.source).resolve()
    if (resolved in protected_paths(shotlist, store) and not exported) or (
        resolved.is_relative_to(state)
    ):
        raise ExportError(
            f"{dest}: is one of the shot list's inputs, records or renders; "
            "choose another file name"
        )
    if dest.exists() and not ownership.ours(dest, RECORD_KIND):
        raise ExportError(
            f"{dest}: exists and was not written by kling-pipe export (or was changed since); "
            "choose another file name, or remove it yourself"
        )


# What there is to export


def gather(shotlist: ShotList, origin: str) -> list[Take | Missing]:
    """Return, per shot in storyboard order, its picked render or why it has none.

    Which shots have a current video is decided by `kling_pipe._outputs.current`, the rule
    `cut` follows too; only those are clips (a video the records say nothing of has no
    metadata to carry). Measures each clip's file. Raises `MediaError` when a recorded
    render cannot be read as a video.
    """
    pieces: list[Take | Missing] = []
    for video in shot_videos(shotlist, origin):
        if not video.current or video.entry is None:
            pieces.append(Missing(shot=video.shot, reason=video.reason))
            continue
        frames, rate = probe_frames(video.path)
        pieces.append(
            Take(
                shot=video.shot,
                path=video.path,
                frames=frames,
                rate=rate,
                entry=video.entry,
                pick=video.pick,
                origin=str(video.entry.get("origin") or origin),
            )
        )
    return pieces


def probe_frames(path: Path) -> tuple[int, Fraction]:
    """Return the MP4 at *path*'s frame count and frame rate (blocking).

    The count is the one the container states (exact for an MP4), else the duration times
    the rate. Raises `NotMp4Error` for a file that is not an MP4, `MediaError` when the video
    states no frame rate or cannot be read.
    """
    import av  # noqa: PLC0415 - FFmpeg loads only when a video is really read

    duration_s = media.probe_duration_s(path)  # also refuses a file that is not an MP4
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            stated = int(stream.frames or 0)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read the video: {exc}") from exc
    if not rate:
        raise MediaError(f"{path}: the video states no frame rate")
    rate = Fraction(rate)
    return (stated or round(duration_s * rate)), rate


# The timeline


def build_timeline(shotlist: ShotList, origin: str, pieces: Sequence[Take | Missing]) -> Any:
    """Return the `opentimelineio.schema.Timeline` of *pieces*: one track, a clip or gap each.

    Pure: everything it says comes from *pieces*, measured by `gather`.
    """
    rates = [p.rate for p in pieces if isinstance(p, Take)]
    timeline_rate = rates[0] if rates else _FALLBACK_RATE
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    # Every shot's, rendered or not: a shot's reel does not change as others are rendered.
    reels = reel_names(p.shot.id for p in pieces)
    for piece in pieces:
        if isinstance(piece, Take):
            track.append(_clip(piece, reels[piece.shot.id]))
        else:
            track.append(_gap(piece, timeline_rate))
    timeline = otio.schema.Timeline(
        name=shotlist.storyboard.name,
        metadata={
            METADATA_KEY: {
                "storyboard": shotlist.storyboard.name,
                "shot_list": str(shotlist.source.resolve()),
                "model": shotlist.storyboard.model,
                "origin": origin,
                "simulated": origin == MOCK_ORIGIN,
                "version": __version__,
            }
        },
    )
    timeline.tracks.append(track)
    return timeline


def _range(frames: int, rate: Fraction) -> Any:
    fps = float(rate)
    return otio.opentime.TimeRange(
        start_time=otio.opentime.RationalTime(0, fps),
        duration=otio.opentime.RationalTime(frames, fps),
    )


def _clip(take: Take, reel: str) -> Any:
    """Make the shot's clip: named after it, the whole picked take, its record as metadata.

    *reel* is the shot's own reel name (`reel_names`), set where each adapter reads one: the
    clip's ``cmx_3600`` metadata for an EDL, the file's timecode for FCP XML.
    """
    available = _range(take.frames, take.rate)
    reference = otio.schema.ExternalReference(
        target_url=take.path.resolve().as_uri(),
        available_range=available,
        metadata={"fcp_xml": {"timecode": {"reel": {"name": reel}}}},
    )
    reference.name = take.path.name
    entry = take.entry
    return otio.schema.Clip(
        name=take.shot.id,
        media_reference=reference,
        source_range=available,
        metadata={
            "cmx_3600": {"reel": reel},
            METADATA_KEY: {
                "shot": take.shot.id,
                "take": take.pick,
                "prompt": take.shot.final_prompt,
                "duration_planned": take.shot.duration,
                "cost": str(entry.get("cost", "")),
                "simulated": take.origin == MOCK_ORIGIN,
                "task_id": str(entry.get("task_id", "")),
                "fingerprint": str(entry.get("fingerprint", "")),
                "sha256": str(entry.get("sha256", "")),
                "model": str(entry.get("model", "")),
                "origin": take.origin,
                "reel": reel,
            },
        },
    )


def _gap(missing: Missing, rate: Fraction) -> Any:
    """Make a gap holding a missing shot's place for its planned duration, at *rate*."""
    return otio.schema.Gap(
        name=missing.shot.id,
        source_range=_range(round(missing.shot.duration * rate), rate),
        metadata={
            METADATA_KEY: {
                "shot": missing.shot.id,
                "missing": missing.reason,
                "prompt": missing.shot.final_prompt,
                "duration_planned": missing.shot.duration,
            }
        },
    )
