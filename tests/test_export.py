"""`export`: the storyboard as an editor's timeline that OpenTimelineIO and its adapters read back.

The library tests build small shot lists, renders and lock files by hand so each case is
exact; the command-line tests render the demo against the bundled mock and export that.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import opentimelineio as otio
import pytest

from kling_pipe import _files
from kling_pipe._backends.base import DEFAULT_BASE_URL, MOCK_ORIGIN
from kling_pipe._cli import tools as cli_tools
from kling_pipe._outputs import export, media
from kling_pipe._outputs.export import (
    ExportError,
    UnrenderedShotsError,
    export_timeline,
)
from kling_pipe._records.assessment import open_store
from kling_pipe._records.layout import OutputLayout
from kling_pipe._records.lockfile import lock_path_for, write_lock
from kling_pipe._shotlist.fingerprint import fingerprints, take_fingerprint
from kling_pipe._shotlist.specs import (
    ChainImage,
    LocalImage,
    Shot,
    ShotList,
    Storyboard,
    UrlImage,
)
from tests.cli_support import copy_specs, kp
from tests.mp4clips import write_video
from tests.test_light_imports import imported

DEMO_ORDER = ["puddle", "gutter", "street", "river", "open-sea", "dusk"]


def board(tmp_path: Path, *shots: tuple[str, int]) -> ShotList:
    """A shot list of (id, planned seconds) shots with URL frames: nothing to read to hash it."""
    return ShotList(
        storyboard=Storyboard(name="harbour"),
        shots=tuple(
            Shot(
                id=shot_id,
                prompt=f"the {shot_id} shot",
                prompt_prefix="Macro lens. ",
                image=UrlImage(url=f"https://x.test/{shot_id}.png"),
                duration=seconds,
            )
            for shot_id, seconds in shots
        ),
        source=tmp_path / "board.toml",
    )


def render(
    shotlist: ShotList,
    shot_id: str,
    seconds: float,
    *,
    fps: int | Fraction = 24,
    origin: str = MOCK_ORIGIN,
) -> Path:
    folder = OutputLayout.of(shotlist, origin).folder
    folder.mkdir(parents=True, exist_ok=True)
    return write_video(folder / f"{shot_id}.mp4", seconds, fps=fps)


def entry_for(shotlist: ShotList, shot_id: str, origin: str = MOCK_ORIGIN) -> dict[str, Any]:
    """The lock entry a run writes for a downloaded render of *shot_id*."""
    path = OutputLayout.of(shotlist, origin).folder / f"{shot_id}.mp4"
    return {
        "fingerprint": fingerprints(shotlist, _files.sha256_file)[shot_id],
        "model": shotlist.storyboard.model,
        "duration": shotlist.shot(shot_id).duration,
        "status": "downloaded",
        "origin": origin,
        "task_id": f"task-{shot_id}",
        "cost": "0.168",
        "file": str(path.relative_to(shotlist.base_dir)),
        "sha256": _files.sha256_file(path),
        "bytes": path.stat().st_size,
        "submitted_at": "2026-01-02T03:04:05.000+00:00",
        "completed_at": "2026-01-02T03:05:05.000+00:00",
    }


def write_lock_of(
    shotlist: ShotList, entries: dict[str, dict[str, Any]], origin: str = MOCK_ORIGIN
) -> None:
    section = "simulated" if origin == MOCK_ORIGIN else "shots"
    document: dict[str, Any] = {"lock_version": 1, "shots": {}, section: entries}
    write_lock(lock_path_for(shotlist.source), document)


def rendered(
    shotlist: ShotList, seconds: dict[str, float], *, fps: int | Fraction = 24
) -> ShotList:
    """Render each shot of *seconds* and record it in the lock file, as a mock run would."""
    for shot_id, length in seconds.items():
        render(shotlist, shot_id, length, fps=fps)
    write_lock_of(shotlist, {sid: entry_for(shotlist, sid) for sid in seconds})
    return shotlist


def clips_of(timeline: Any) -> list[Any]:
    (track,) = timeline.video_tracks()
    return list(track)


def path_of(clip: Any) -> Path:
    return Path(otio.url_utils.filepath_from_url(clip.media_reference.target_url))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def harbour(tmp_path: Path) -> ShotList:
    """Three shots rendered at lengths that differ from their plan, in another order."""
    shotlist = board(tmp_path, ("dawn", 5), ("boats", 5), ("gulls", 10))
    return rendered(shotlist, {"gulls": 2.5, "dawn": 2, "boats": 3})


# The .otio round trip


def test_an_otio_timeline_reads_back_with_one_clip_per_shot_in_storyboard_order(harbour, tmp_path):
    result = export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otio")
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.otio"))
    clips = clips_of(timeline)
    assert [c.name for c in clips] == ["dawn", "boats", "gulls"]
    assert all(isinstance(c, otio.schema.Clip) for c in clips)
    assert timeline.name == "harbour"
    assert result.clips == ("dawn", "boats", "gulls")
    assert result.gaps == ()
    assert result.adapter == "otio_json"
    assert result.duration_s == pytest.approx(7.5)


def test_each_clip_is_its_files_real_length_at_its_files_rate_not_the_planned_one(
    harbour, tmp_path
):
    export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otio")
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otio")))
    for clip in clips:
        frames, rate = export.probe_frames(path_of(clip))
        expected = otio.opentime.RationalTime(frames, float(rate))
        assert clip.source_range.start_time.value == 0
        assert clip.source_range.duration == expected
        assert clip.media_reference.available_range.duration == expected
        assert clip.duration().to_seconds() == pytest.approx(media.probe_duration_s(path_of(clip)))
    assert [c.duration().value for c in clips] == [48, 72, 60]
    assert [c.duration().rate for c in clips] == [24, 24, 24]


def test_each_clip_references_the_shots_render_by_an_absolute_file_url(harbour, tmp_path):
    export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otio")
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otio")))
    folder = OutputLayout.of(harbour, MOCK_ORIGIN).folder
    for clip in clips:
        assert clip.media_reference.target_url.startswith("file:///")
        assert path_of(clip) == (folder / f"{clip.name}.mp4").resolve()
        assert path_of(clip).is_file()


def test_a_path_with_spaces_and_hashes_survives_the_url(tmp_path):
    home = tmp_path / "my films #2"
    home.mkdir()
    shotlist = rendered(board(home, ("dawn", 5)), {"dawn": 1})
    export_timeline(shotlist, MOCK_ORIGIN, home / "film.otio")
    (clip,) = clips_of(otio.adapters.read_from_file(str(home / "film.otio")))
    assert "%20" in clip.media_reference.target_url
    assert "%23" in clip.media_reference.target_url
    assert path_of(clip) == (OutputLayout.of(shotlist, MOCK_ORIGIN).folder / "dawn.mp4").resolve()


def test_clip_metadata_carries_prompt_cost_task_id_fingerprint_and_take(harbour, tmp_path):
    export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otio")
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.otio"))
    dawn = clips_of(timeline)[0]
    meta = dict(dawn.metadata["kling_pipe"])
    entry = entry_for(harbour, "dawn")
    assert meta == {
        "shot": "dawn",
        "take": 1,
        "prompt": "Macro lens. the dawn shot",
        "duration_planned": 5,
        "cost": "0.168",
        "simulated": True,
        "task_id": "task-dawn",
        "fingerprint": entry["fingerprint"],
        "sha256": entry["sha256"],
        "model": harbour.storyboard.model,
        "origin": "mock",
        "reel": "dawn",
    }
    assert dict(dawn.metadata["cmx_3600"]) == {"reel": "dawn"}
    about = dict(timeline.metadata["kling_pipe"])
    assert about["storyboard"] == "harbour"
    assert about["origin"] == "mock"
    assert about["simulated"] is True
    assert about["shot_list"] == str(harbour.source.resolve())


def test_the_picked_take_is_the_clip_and_the_shots_chained_from_it_are_current(tmp_path):
    """The lock entry's top level describes the pick; a chain follows the picked take."""
    shotlist = ShotList(
        storyboard=Storyboard(name="pier"),
        shots=(
            Shot(id="wave", prompt="a wave", image=UrlImage(url="https://x.test/w.png"), takes=2),
            Shot(id="spray", prompt="spray", image=ChainImage(shot="wave", frame="last")),
        ),
        source=tmp_path / "pier.toml",
    )
    render(shotlist, "wave", 1)
    render(shotlist, "spray", 1)
    take_1 = fingerprints(shotlist, _files.sha256_file)["wave"]
    take_2 = take_fingerprint(take_1, 2)
    spray = fingerprints(shotlist, _files.sha256_file, {"wave": (2, take_2)})["spray"]
    assert spray != fingerprints(shotlist, _files.sha256_file)["spray"]
    write_lock_of(
        shotlist,
        {
            "wave": entry_for(shotlist, "wave")
            | {
                "pick": 2,
                "fingerprint": take_2,
                "task_id": "task-wave-2",
                "takes": [
                    {"take": 1, "fingerprint": take_1, "task_id": "task-wave"},
                    {"take": 2, "fingerprint": take_2, "task_id": "task-wave-2"},
                ],
            },
            "spray": entry_for(shotlist, "spray") | {"fingerprint": spray},
        },
    )
    result = export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "film.otio")
    assert result.clips == ("wave", "spray")
    wave = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otio")))[0]
    assert wave.metadata["kling_pipe"]["take"] == 2
    assert wave.metadata["kling_pipe"]["task_id"] == "task-wave-2"
    assert wave.metadata["kling_pipe"]["fingerprint"] == take_2


def test_a_real_export_takes_the_real_renders_and_leaves_the_mocks_out(tmp_path):
    shotlist = board(tmp_path, ("dawn", 5), ("boats", 5))
    render(shotlist, "dawn", 1, origin=DEFAULT_BASE_URL)
    render(shotlist, "boats", 1, origin=DEFAULT_BASE_URL)
    render(shotlist, "dawn", 2, origin=MOCK_ORIGIN)
    write_lock_of(
        shotlist,
        {sid: entry_for(shotlist, sid, DEFAULT_BASE_URL) for sid in ("dawn", "boats")},
        origin=DEFAULT_BASE_URL,
    )
    export_timeline(shotlist, DEFAULT_BASE_URL, tmp_path / "film.otio")
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otio")))
    assert [path_of(c) for c in clips] == [
        (shotlist.output_path / "dawn.mp4").resolve(),
        (shotlist.output_path / "boats.mp4").resolve(),
    ]
    assert clips[0].metadata["kling_pipe"]["simulated"] is False
    with pytest.raises(UnrenderedShotsError, match='"dawn" \\(not in the lock file\\)'):
        export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "mock.otio")


def test_a_file_kling_pipe_did_not_write_is_never_replaced(harbour, tmp_path):
    target = tmp_path / "film.otio"
    target.write_text("the editor's own timeline", encoding="utf-8")
    store = open_store(harbour, create=True)
    try:
        for records in (None, store):
            with pytest.raises(ExportError) as caught:
                export_timeline(harbour, MOCK_ORIGIN, target, store=records)
            assert str(caught.value) == (
                f"{target}: exists and was not written by kling-pipe export (or was changed "
                "since); choose another file name, or remove it yourself"
            )
    finally:
        store.close()
    assert target.read_text(encoding="utf-8") == "the editor's own timeline"


def test_an_earlier_export_is_replaced_whole_unless_someone_changed_it(harbour, tmp_path):
    target = tmp_path / "film.otio"
    store = open_store(harbour, create=True)
    try:
        export_timeline(harbour, MOCK_ORIGIN, target, store=store)
        (OutputLayout.of(harbour, MOCK_ORIGIN).folder / "boats.mp4").unlink()
        export_timeline(harbour, MOCK_ORIGIN, target, store=store, allow_gaps=True)
        recorded = store.written("film.otio")
        assert recorded is not None
        assert recorded.kind == "export"
        assert recorded.sha256 == _files.sha256_file(target)
        assert leftovers(tmp_path) == []
        timeline = otio.adapters.read_from_file(str(target))
        assert [type(i).__name__ for i in clips_of(timeline)] == ["Clip", "Gap", "Clip"]

        target.write_text("edited by hand", encoding="utf-8")
        with pytest.raises(ExportError, match="exists and was not written by kling-pipe export"):
            export_timeline(harbour, MOCK_ORIGIN, target, store=store, allow_gaps=True)
    finally:
        store.close()
    assert target.read_text(encoding="utf-8") == "edited by hand"


# Other formats, through the adapters


def test_an_edl_is_written_and_read_back_by_the_cmx_3600_adapters_own_reader(harbour, tmp_path):
    result = export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.edl")
    assert result.adapter == "cmx_3600"
    assert result.format_name == "CMX 3600 EDL"
    text = (tmp_path / "film.edl").read_text(encoding="utf-8")
    assert text.startswith("TITLE: harbour")
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.edl"), rate=24)
    clips = clips_of(timeline)
    assert [c.name for c in clips] == ["dawn", "boats", "gulls"]
    assert [c.duration().value for c in clips] == [48, 72, 60]
    assert [path_of(c) for c in clips] == [
        (OutputLayout.of(harbour, MOCK_ORIGIN).folder / f"{c.name}.mp4").resolve() for c in clips
    ]


def test_an_fcp_xml_is_written_and_read_back_by_the_fcp_xml_adapter(harbour, tmp_path):
    result = export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.xml")
    assert result.adapter == "fcp_xml"
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.xml"))
    clips = clips_of(timeline)
    assert [c.name for c in clips] == ["dawn", "boats", "gulls"]
    assert [c.duration().value for c in clips] == [48, 72, 60]
    assert all(path_of(c).is_file() for c in clips)


#: Ids an editor's reel names would merge: shared first eight letters, long ids, ids that
#: differ after the eighth character only or in punctuation only, a reserved reel name.
SIMILAR_IDS = [
    "harbour-wide",
    *(f"harbour-wide-{c}" for c in "bcdefghijklmnop"),
    "harbourwide",
    "harbour_wide",
    "a-very-long-shot-id-about-the-lighthouse-keeper-at-dawn-take-one",
    "a-very-long-shot-id-about-the-lighthouse-keeper-at-dawn-take-two",
    "sea1",
    "sea-1",
    "bl",
    "gulls",
]


def reel_of(clip: Any, suffix: str) -> str:
    """The reel the format's own reader gives *clip*: CMX 3600's event, FCP XML's timecode."""
    if suffix == "edl":
        return str(clip.metadata["cmx_3600"]["reel"])
    return str(clip.media_reference.metadata["fcp_xml"]["timecode"]["reel"]["name"])


@pytest.mark.parametrize("suffix", ["edl", "xml"])
def test_every_shot_is_its_own_reel_pointing_at_its_own_file(tmp_path, suffix):
    """A conform links an event by reel and source timecode, and every render starts at 0."""
    shotlist = rendered(
        board(tmp_path, *((sid, 5) for sid in SIMILAR_IDS)), dict.fromkeys(SIMILAR_IDS, 0.5)
    )
    export_timeline(shotlist, MOCK_ORIGIN, tmp_path / f"film.{suffix}")
    extra = {"rate": 24} if suffix == "edl" else {}
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / f"film.{suffix}"), **extra))
    folder = OutputLayout.of(shotlist, MOCK_ORIGIN).folder
    assert [c.name for c in clips] == SIMILAR_IDS
    assert [path_of(c) for c in clips] == [(folder / f"{sid}.mp4").resolve() for sid in SIMILAR_IDS]
    reels = [reel_of(c, suffix) for c in clips]
    assert len(set(reels)) == len(SIMILAR_IDS)
    assert all(re.fullmatch(r"[a-z0-9]{1,8}", reel) for reel in reels)
    assert reels[SIMILAR_IDS.index("gulls")] == "gulls"
    assert reels[SIMILAR_IDS.index("sea1")].startswith("sea1")
    assert reels[SIMILAR_IDS.index("bl")] != "bl"


def test_an_edls_reels_do_not_change_with_the_order_of_the_shots(tmp_path):
    forwards = tmp_path / "forwards"
    backwards = tmp_path / "backwards"
    for folder, ids in ((forwards, SIMILAR_IDS), (backwards, SIMILAR_IDS[::-1])):
        folder.mkdir()
        shotlist = rendered(board(folder, *((sid, 5) for sid in ids)), dict.fromkeys(ids, 0.5))
        export_timeline(shotlist, MOCK_ORIGIN, folder / "film.edl")
    reels = [
        {c.name: reel_of(c, "edl") for c in clips_of(otio.adapters.read_from_file(str(f), rate=24))}
        for f in (forwards / "film.edl", backwards / "film.edl")
    ]
    assert reels[0] == reels[1]


@pytest.mark.parametrize("suffix", ["edl", "xml"])
def test_ntsc_film_rate_keeps_its_exact_rate(tmp_path, suffix):
    shotlist = board(tmp_path, ("dawn", 5), ("boats", 5))
    rendered(shotlist, {"dawn": 2, "boats": 1}, fps=Fraction(24000, 1001))
    export_timeline(shotlist, MOCK_ORIGIN, tmp_path / f"film.{suffix}")
    extra = {"rate": 24000 / 1001} if suffix == "edl" else {}
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / f"film.{suffix}"), **extra))
    assert [round(c.duration().rescaled_to(24000 / 1001).value) for c in clips] == [48, 24]
    assert clips[0].duration().rate == pytest.approx(24000 / 1001)


def test_an_otioz_bundle_carries_the_media_with_it(harbour, tmp_path):
    result = export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otioz")
    assert result.format_name == "OpenTimelineIO with its media"
    clips = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otioz")))
    assert [c.name for c in clips] == ["dawn", "boats", "gulls"]
    assert [c.media_reference.target_url for c in clips] == [
        "media/dawn.mp4",
        "media/boats.mp4",
        "media/gulls.mp4",
    ]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("suffix", "what"), [("edl", "an EDL"), ("xml", "FCP XML")])
def test_a_rate_with_no_smpte_timecode_is_refused_for_timecode_formats(tmp_path, suffix, what):
    shotlist = rendered(board(tmp_path, ("dawn", 5)), {"dawn": 1}, fps=10)
    target = tmp_path / f"film.{suffix}"
    with pytest.raises(ExportError) as caught:
        export_timeline(shotlist, MOCK_ORIGIN, target)
    assert str(caught.value) == (
        f"{target}: {what} counts in SMPTE timecode, which has no 10 fps "
        "(the bundled mock renders 24 fps unless run --fps says otherwise); export .otio instead"
    )
    assert not target.exists()
    assert export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "film.otio").clips == ("dawn",)


def test_an_edl_of_shots_at_different_rates_is_refused(tmp_path):
    shotlist = board(tmp_path, ("dawn", 5), ("boats", 5))
    render(shotlist, "dawn", 1, fps=24)
    render(shotlist, "boats", 1, fps=25)
    write_lock_of(shotlist, {sid: entry_for(shotlist, sid) for sid in ("dawn", "boats")})
    with pytest.raises(ExportError, match=r"an EDL has one frame rate.*\(24 fps, 25 fps\)"):
        export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "film.edl")
    clips = clips_of(
        otio.adapters.read_from_file(
            str(export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "film.xml").output)
        )
    )
    assert [c.duration().rate for c in clips] == [24, 25]


def without_editors() -> dict[str, str]:
    """What `writers` finds when only OpenTimelineIO itself is installed."""
    return {"otio": "otio_json", "otioz": "otioz"}


@pytest.mark.parametrize(
    ("suffix", "what"), [("edl", "a CMX 3600 EDL"), ("xml", "Final Cut Pro 7 XML")]
)
def test_a_missing_adapter_is_one_line_naming_the_extra_and_nothing_is_written(
    harbour, tmp_path, monkeypatch, suffix, what
):
    monkeypatch.setattr(export, "writers", without_editors)
    target = tmp_path / f"film.{suffix}"
    with pytest.raises(ExportError) as caught:
        export_timeline(harbour, MOCK_ORIGIN, target)
    assert str(caught.value) == (
        f"{target}: writing {what} (.{suffix}) needs an OpenTimelineIO adapter that is not "
        "installed: pip install 'kling-pipe[editors]'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.toml.lock.json", "renders"]


def test_an_unknown_extension_lists_what_works_and_the_extra(harbour, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "writers", without_editors)
    with pytest.raises(ExportError) as caught:
        export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.mov")
    assert str(caught.value) == (
        f"{tmp_path / 'film.mov'}: no timeline format has the extension .mov; write one of "
        ".otio, .otioz; .edl and .xml need pip install 'kling-pipe[editors]'"
    )
    assert not (tmp_path / "film.mov").exists()


def test_an_unknown_extension_with_the_adapters_installed_lists_them(harbour, tmp_path):
    with pytest.raises(ExportError, match=r"write one of \.edl, \.otio, \.otioz, \.xml$"):
        export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film")


def test_the_installed_adapters_are_found_by_extension():
    found = export.writers()
    assert found["otio"] == "otio_json"
    assert found["edl"] == "cmx_3600"
    assert found["xml"] == "fcp_xml"
    assert "otiod" not in found  # writes a folder, not a file


def test_an_adapter_plug_in_that_cannot_load_is_left_out(monkeypatch):
    class Broken:
        name = "broken"
        suffixes = ("brk",)

        def has_feature(self, _feature: str) -> bool:
            raise ImportError("no module named broken_adapter")

    manifest = SimpleNamespace(adapters=[Broken(), *otio.plugins.ActiveManifest().adapters])
    monkeypatch.setattr(otio.plugins, "ActiveManifest", lambda: manifest)
    found = export.writers()
    assert "brk" not in found
    assert found["otio"] == "otio_json"


def test_an_adapter_that_fails_is_one_error_and_leaves_no_file(harbour, tmp_path, monkeypatch):
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("no can do")

    monkeypatch.setattr(otio.adapters, "write_to_file", broken)
    with pytest.raises(ExportError, match="the otio_json adapter cannot write the timeline"):
        export_timeline(harbour, MOCK_ORIGIN, tmp_path / "film.otio")
    assert not (tmp_path / "film.otio").exists()
    assert leftovers(tmp_path) == []


# Shots with nothing to export


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda _s, f: f.unlink(), "not rendered"),
        (lambda _s, f: write_video(f, 1, shade=200), "not the file the lock file records"),
        (lambda s, _f: write_lock_of(s, {"dawn": entry_for(s, "dawn")}), "not in the lock file"),
        (
            lambda s, _f: write_lock_of(
                s,
                {sid: entry_for(s, sid) | {"fingerprint": "0" * 64} for sid in ("dawn", "gulls")}
                | {"boats": entry_for(s, "boats")},
            ),
            "changed since it was rendered",
        ),
    ],
    ids=["no-file", "other-file", "no-record", "stale"],
)
def test_a_shot_without_its_recorded_render_is_refused_by_name(
    harbour, tmp_path, damage: Callable[[ShotList, Path], object], reason
):
    gulls = OutputLayout.of(harbour, MOCK_ORIGIN).folder / "gulls.mp4"
    damage(harbour, gulls)
    target = tmp_path / "film.otio"
    with pytest.raises(UnrenderedShotsError) as caught:
        export_timeline(harbour, MOCK_ORIGIN, target)
    folder = OutputLayout.of(harbour, MOCK_ORIGIN).folder
    assert caught.value.shots[-1] == ("gulls", reason)
    assert str(caught.value).startswith(f"{len(caught.value.shots)} shot")
    assert f'"gulls" ({reason})' in str(caught.value)
    assert str(caught.value).endswith(
        f"render them first (kling-pipe run {harbour.source}), or export with --allow-gaps"
    )
    assert f"cannot be exported from {folder}" in str(caught.value)
    assert not target.exists()


def test_a_missing_shot_becomes_a_gap_of_its_planned_duration_with_allow_gaps(harbour, tmp_path):
    (OutputLayout.of(harbour, MOCK_ORIGIN).folder / "boats.mp4").unlink()
    result = export_timeline(harbour, MOCK_ORIGIN, tmp_path / "rough.otio", allow_gaps=True)
    assert result.clips == ("dawn", "gulls")
    assert result.gaps == ("boats",)
    assert result.duration_s == pytest.approx(2 + 5 + 2.5)
    items = clips_of(otio.adapters.read_from_file(str(tmp_path / "rough.otio")))
    assert [type(i).__name__ for i in items] == ["Clip", "Gap", "Clip"]
    gap = items[1]
    assert gap.name == "boats"
    assert gap.duration() == otio.opentime.RationalTime(120, 24)
    assert gap.metadata["kling_pipe"]["missing"] == "not rendered"
    assert gap.metadata["kling_pipe"]["prompt"] == "Macro lens. the boats shot"


def test_gaps_survive_an_edl(harbour, tmp_path):
    (OutputLayout.of(harbour, MOCK_ORIGIN).folder / "boats.mp4").unlink()
    export_timeline(harbour, MOCK_ORIGIN, tmp_path / "rough.edl", allow_gaps=True)
    timeline = otio.adapters.read_from_file(str(tmp_path / "rough.edl"), rate=24)
    items = clips_of(timeline)  # the timeline stays alive: items know their parent
    assert [type(i).__name__ for i in items] == ["Clip", "Gap", "Clip"]
    assert items[2].range_in_parent().start_time == otio.opentime.RationalTime(48 + 120, 24)


def test_with_nothing_rendered_even_allow_gaps_is_refused(tmp_path):
    shotlist = board(tmp_path, ("dawn", 5), ("boats", 5))
    with pytest.raises(UnrenderedShotsError) as caught:
        export_timeline(shotlist, MOCK_ORIGIN, tmp_path / "film.otio", allow_gaps=True)
    assert str(caught.value).endswith(f"render them first (kling-pipe run {shotlist.source})")
    assert caught.value.shots == (("dawn", "not rendered"), ("boats", "not rendered"))


# Where it may write


def test_a_folder_as_target_is_refused(harbour, tmp_path):
    (tmp_path / "cut.otio").mkdir()
    with pytest.raises(ExportError, match=r"cut\.otio: is a folder; name the timeline file"):
        export_timeline(harbour, MOCK_ORIGIN, tmp_path / "cut.otio")


def test_a_target_in_a_missing_folder_is_refused(harbour, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_timeline(harbour, MOCK_ORIGIN, tmp_path / "nope" / "film.otio")


def test_an_input_of_the_shot_list_is_never_written_over(tmp_path):
    keyframe = tmp_path / "key.xml"  # an odd name for an image, but the user's file
    keyframe.write_bytes(b"not ours")
    shotlist = ShotList(
        storyboard=Storyboard(name="odd"),
        shots=(Shot(id="one", prompt="p", image=LocalImage(path="key.xml")),),
        source=tmp_path / "odd.toml",
    )
    with pytest.raises(ExportError, match="is one of the shot list's inputs, records or renders"):
        export_timeline(shotlist, MOCK_ORIGIN, keyframe)
    assert keyframe.read_bytes() == b"not ours"


# The command line, on the demo rendered by the bundled mock


@pytest.fixture(scope="module")
def demo_rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """specs/ copied and its demo rendered once by the bundled mock, for this module."""
    specs = copy_specs(tmp_path_factory.mktemp("rendered"))
    done = kp("run", specs / "demo.toml", "-q", "--no-report", "--mock-processing", "0.1")
    assert done.returncode == 0, done.stderr
    return specs


@pytest.fixture
def demo(demo_rendered: Path, tmp_path: Path) -> Path:
    """A copy of the rendered demo of this test's own, to change as it likes."""
    return shutil.copytree(demo_rendered, tmp_path / "specs") / "demo.toml"


def test_export_gives_a_timeline_with_one_clip_per_shot_of_the_demo(demo, tmp_path):
    done = kp("export", demo, "-o", tmp_path / "film.otio")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'film.otio'}: 6 clips, 37.0 s (OpenTimelineIO)\n"
    assert done.stderr == ""
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.otio"))
    clips = clips_of(timeline)
    assert [c.name for c in clips] == DEMO_ORDER
    lock = json.loads((demo.parent / "demo.toml.lock.json").read_text(encoding="utf-8"))
    for clip in clips:
        path = path_of(clip)
        assert path == (demo.parent / "renders" / "paper-boat" / "mock" / f"{clip.name}.mp4")
        assert path.is_file()
        assert clip.duration().to_seconds() == pytest.approx(media.probe_duration_s(path))
        recorded = lock["simulated"][clip.name]
        assert clip.metadata["kling_pipe"]["task_id"] == recorded["task_id"]
        assert clip.metadata["kling_pipe"]["fingerprint"] == recorded["fingerprint"]
        assert clip.metadata["kling_pipe"]["cost"] == recorded["cost"]


def test_export_again_replaces_its_own_timeline_but_not_a_users_file(demo, tmp_path):
    assert kp("export", demo, "-o", tmp_path / "film.otio").returncode == 0
    again = kp("export", demo, "-o", tmp_path / "film.otio")
    assert again.returncode == 0, again.stderr
    (tmp_path / "mine.otio").write_text("mine", encoding="utf-8")
    refused = kp("export", demo, "-o", tmp_path / "mine.otio")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"kling-pipe: {tmp_path / 'mine.otio'}: exists and was not written by kling-pipe "
        "export (or was changed since); choose another file name, or remove it yourself\n"
    )
    assert (tmp_path / "mine.otio").read_text(encoding="utf-8") == "mine"


def test_the_mocks_24_fps_renders_export_to_an_edl_of_duration_times_24_frames(demo, tmp_path):
    done = kp("export", demo, "-o", tmp_path / "film.edl")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'film.edl'}: 6 clips, 37.0 s (CMX 3600 EDL)\n"
    timeline = otio.adapters.read_from_file(str(tmp_path / "film.edl"), rate=24)
    clips = clips_of(timeline)
    assert [c.name for c in clips] == DEMO_ORDER
    frames = [seconds * 24 for seconds in (5, 5, 5, 7, 10, 5)]
    assert [c.duration().value for c in clips] == frames
    assert [export.probe_frames(path_of(c)) for c in clips] == [(n, 24) for n in frames]


def test_export_with_a_shot_missing_names_it_and_allow_gaps_fills_its_place(demo, tmp_path):
    (demo.parent / "renders" / "paper-boat" / "mock" / "river.mp4").unlink()
    refused = kp("export", demo, "-o", tmp_path / "film.otio")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "1 shot cannot be exported from" in refused.stderr
    assert '"river" (not rendered)' in refused.stderr
    assert not (tmp_path / "film.otio").exists()

    done = kp("export", demo, "-o", tmp_path / "film.otio", "--allow-gaps")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'film.otio'}: 5 clips, 1 gap, 37.0 s (OpenTimelineIO)\n"
    assert done.stderr == f'{demo}: gaps for shots not rendered: "river"\n'
    items = clips_of(otio.adapters.read_from_file(str(tmp_path / "film.otio")))
    assert [(i.name, type(i).__name__) for i in items][3] == ("river", "Gap")


def test_export_for_the_real_backend_finds_no_real_renders(demo, tmp_path):
    done = kp("export", demo, "-o", tmp_path / "film.otio", "--backend", "wavespeed")
    assert done.returncode == 2
    assert done.stderr.startswith("kling-pipe: 6 shots cannot be exported from ")
    assert done.stderr.endswith(f"render them first (kling-pipe run {demo})\n")


def test_export_of_an_invalid_shot_list_is_exit_2(tmp_path):
    done = kp("export", tmp_path / "nope.toml", "-o", tmp_path / "film.otio")
    assert done.returncode == 2
    assert done.stderr == f"{tmp_path / 'nope.toml'}: file not found\n"


def in_process(*args: str | Path) -> int:
    """Run a command on a parser built by `add_commands`, in this process (to monkeypatch)."""
    parser = argparse.ArgumentParser(prog="kling-pipe")
    cli_tools.add_commands(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args([str(a) for a in args])
    code: int = parsed.handler(parsed)
    return code


def test_export_without_the_adapter_names_the_extra_and_exits_2(
    demo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(export, "writers", without_editors)
    assert in_process("export", demo, "-o", tmp_path / "film.xml") == 2
    assert capsys.readouterr().err == (
        f"kling-pipe: {tmp_path / 'film.xml'}: writing Final Cut Pro 7 XML (.xml) needs an "
        "OpenTimelineIO adapter that is not installed: pip install 'kling-pipe[editors]'\n"
    )
    assert not (tmp_path / "film.xml").exists()


def test_export_has_help_with_examples():
    done = kp("export", "--help")
    assert done.returncode == 0
    assert "examples:\n  kling-pipe export specs/demo.toml -o paper-boat.otio" in done.stdout
    assert "pip install 'kling-pipe[editors]'" in done.stdout


def test_only_export_loads_opentimelineio(specs):
    for args in (("--help",), ("export", "--help"), ("validate", "specs/demo.toml")):
        assert "opentimelineio" not in imported("-m", "kling_pipe", *args, cwd=specs.parent)
