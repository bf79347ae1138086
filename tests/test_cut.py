"""The final cut joins rendered shots in storyboard order: copied when it can, re-encoded else."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from kling_pipe import _files
from kling_pipe._outputs import media
from kling_pipe._outputs.cut import MissingShotsError, cut, rendered_shots
from kling_pipe._records.lockfile import lock_path_for, write_lock
from kling_pipe._shotlist.fingerprint import fingerprints
from kling_pipe._shotlist.specs import Shot, ShotList, Storyboard, UrlImage
from kling_pipe.exceptions import MediaError
from tests.mp4clips import frame_shades, write_video

FPS = 10
FRAME_S = 1 / FPS


def board(tmp_path: Path, *ids: str) -> ShotList:
    shots = tuple(
        Shot(id=i, prompt=f"shot {i}", image=UrlImage(url=f"https://x.test/{i}.png")) for i in ids
    )
    shotlist = ShotList(
        storyboard=Storyboard(name="cut"), shots=shots, source=tmp_path / "board.toml"
    )
    shotlist.output_path.mkdir(parents=True)
    return shotlist


def render(shotlist: ShotList, shot_id: str, seconds: float, **kwargs) -> Path:
    return write_video(shotlist.output_path / f"{shot_id}.mp4", seconds, fps=FPS, **kwargs)


def size_of(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_shots_that_share_their_encoding_are_joined_by_copying_packets(tmp_path):
    shotlist = board(tmp_path, "a", "b", "c")
    for shot_id, seconds, shade in (("a", 2, 40), ("b", 3, 120), ("c", 2.5, 200)):
        render(shotlist, shot_id, seconds, shade=shade)
    result = cut(shotlist, tmp_path / "film.mp4")
    assert result.stream_copy is True
    assert result.shots == ("a", "b", "c")
    assert result.missing == ()
    assert abs(result.duration_s - 7.5) <= 3 * FRAME_S
    assert abs(media.probe_duration_s(tmp_path / "film.mp4") - 7.5) <= 3 * FRAME_S
    shades = frame_shades(tmp_path / "film.mp4")
    assert len(shades) == 75
    assert [round(s / 40) * 40 for s in (shades[0], shades[20], shades[50])] == [40, 120, 200]


def test_the_film_follows_file_order_not_the_order_files_were_rendered(tmp_path):
    shotlist = board(tmp_path, "z-first", "a-second")
    render(shotlist, "a-second", 2, shade=200)
    render(shotlist, "z-first", 2, shade=40)
    result = cut(shotlist, tmp_path / "film.mp4")
    shades = frame_shades(result.output)
    assert result.shots == ("z-first", "a-second")
    assert abs(shades[0] - 40) < 10
    assert abs(shades[-1] - 200) < 10


def test_shots_with_b_frames_are_copied_with_increasing_timestamps(tmp_path):
    shotlist = board(tmp_path, "a", "b")
    render(shotlist, "a", 2, preset="medium", shade=40)
    render(shotlist, "b", 3, preset="medium", shade=200)
    result = cut(shotlist, tmp_path / "film.mp4")
    assert result.stream_copy is True
    with av.open(str(result.output)) as container:
        dts = [p.dts for p in container.demux(video=0) if p.dts is not None]
    assert dts == sorted(dts)
    assert len(set(dts)) == len(dts)
    assert len(frame_shades(result.output)) == 50
    assert abs(result.duration_s - 5) <= 2 * FRAME_S


def test_shots_of_different_sizes_are_re_encoded_at_the_first_shots_size(tmp_path):
    shotlist = board(tmp_path, "small", "wide", "tall")
    render(shotlist, "small", 2, width=64, height=48, shade=40)
    render(shotlist, "wide", 3, width=96, height=40, shade=120)
    render(shotlist, "tall", 1, width=40, height=64, shade=200)
    result = cut(shotlist, tmp_path / "film.mp4")
    assert result.stream_copy is False
    assert size_of(result.output) == (64, 48)
    assert abs(result.duration_s - 6) <= 3 * FRAME_S
    shades = frame_shades(result.output)
    assert len(shades) == 60
    assert abs(shades[0] - 40) < 10


def test_a_shot_at_another_frame_rate_keeps_its_duration_when_re_encoded(tmp_path):
    shotlist = board(tmp_path, "ten", "twentyfive")
    render(shotlist, "ten", 2, width=64, height=48)
    write_video(shotlist.output_path / "twentyfive.mp4", 2, fps=25, width=80, height=48)
    result = cut(shotlist, tmp_path / "film.mp4")
    assert result.stream_copy is False
    assert abs(result.duration_s - 4) <= 2 * FRAME_S


def test_missing_shots_are_an_error_that_names_them_and_writes_nothing(tmp_path):
    shotlist = board(tmp_path, "a", "b", "c", "d")
    render(shotlist, "a", 2)
    render(shotlist, "c", 2)
    with pytest.raises(MissingShotsError) as caught:
        cut(shotlist, tmp_path / "film.mp4")
    assert caught.value.missing == ("b", "d")
    assert "2 shots not rendered by WaveSpeed in" in str(caught.value)
    assert '"b", "d"; render them first, or join the rest with --partial' in str(caught.value)
    assert not (tmp_path / "film.mp4").exists()


def test_partial_joins_the_rendered_shots_and_reports_the_rest(tmp_path):
    shotlist = board(tmp_path, "a", "b", "c")
    render(shotlist, "a", 2)
    render(shotlist, "c", 3)
    result = cut(shotlist, tmp_path / "film.mp4", partial=True)
    assert result.shots == ("a", "c")
    assert result.missing == ("b",)
    assert abs(result.duration_s - 5) <= 2 * FRAME_S


def test_partial_with_nothing_rendered_is_still_an_error(tmp_path):
    shotlist = board(tmp_path, "a", "b")
    with pytest.raises(MissingShotsError, match=r'"a", "b"; render them first$'):
        cut(shotlist, tmp_path / "film.mp4", partial=True)


def test_a_file_that_is_not_an_mp4_counts_as_not_rendered(tmp_path):
    shotlist = board(tmp_path, "a", "b")
    render(shotlist, "a", 2)
    (shotlist.output_path / "b.mp4").write_bytes(b"<html>not a video</html>")
    present, missing = rendered_shots(shotlist)
    assert [shot_id for shot_id, _ in present] == ["a"]
    assert missing == ["b"]


def test_a_failed_cut_leaves_the_old_film_and_no_temporary_file(tmp_path):
    shotlist = board(tmp_path, "a", "b")
    render(shotlist, "a", 2)
    (shotlist.output_path / "b.mp4").write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 64)
    film = tmp_path / "film.mp4"
    film.write_bytes(b"old film")
    with pytest.raises(MediaError, match=r"b\.mp4: cannot read the video"):
        cut(shotlist, film)
    assert film.read_bytes() == b"old film"
    assert leftovers(tmp_path) == []


def test_a_new_cut_replaces_the_old_film_and_leaves_no_temporary_file(tmp_path):
    shotlist = board(tmp_path, "a")
    render(shotlist, "a", 2)
    film = tmp_path / "film.mp4"
    film.write_bytes(b"old film")
    cut(shotlist, film)
    assert media.is_mp4(film)
    assert leftovers(tmp_path) == []


def test_writing_the_film_over_a_rendered_shot_is_refused(tmp_path):
    shotlist = board(tmp_path, "a")
    shot = render(shotlist, "a", 2)
    with pytest.raises(MediaError, match="is one of the rendered shots"):
        cut(shotlist, shot)
    assert abs(media.probe_duration_s(shot) - 2) <= FRAME_S


def test_a_film_in_a_folder_that_does_not_exist_is_refused(tmp_path):
    shotlist = board(tmp_path, "a")
    render(shotlist, "a", 2)
    with pytest.raises(MediaError, match="does not exist"):
        cut(shotlist, tmp_path / "nowhere" / "film.mp4")


def recorded(shotlist: ShotList, *, stale: str) -> None:
    """Write the lock file a run leaves; *stale*'s entry was made for an earlier version."""
    current = fingerprints(shotlist, _files.sha256_file)
    entries = {
        shot.id: {
            "fingerprint": "0" * 64 if shot.id == stale else current[shot.id],
            "status": "downloaded",
            "origin": "https://api.wavespeed.ai",
            "task_id": f"{n:032x}",
            "submitted_at": "2026-12-06T12:00:00.000+00:00",
            "cost": "0.168",
            "file": f"renders/cut/{shot.id}.mp4",
            "sha256": _files.sha256_file(shotlist.output_path / f"{shot.id}.mp4"),
        }
        for n, shot in enumerate(shotlist.shots, 1)
    }
    write_lock(lock_path_for(shotlist.source), {"lock_version": 1, "shots": entries})


def test_a_stale_shot_is_refused_by_name_and_partial_leaves_it_out_naming_it(tmp_path):
    """The rule export follows: an edited shot's old video never enters the film silently."""
    shotlist = board(tmp_path, "a", "b", "c")
    for shot_id in ("a", "b", "c"):
        render(shotlist, shot_id, 2)
    recorded(shotlist, stale="b")
    with pytest.raises(MissingShotsError) as caught:
        cut(shotlist, tmp_path / "film.mp4")
    assert caught.value.stale == (("b", "changed since it was rendered"),)
    assert caught.value.missing == ()
    assert "1 shot not current in " in str(caught.value)
    assert str(caught.value).endswith(
        '"b" (changed since it was rendered); render them first, or join the rest with --partial'
    )
    assert not (tmp_path / "film.mp4").exists()
    result = cut(shotlist, tmp_path / "film.mp4", partial=True)
    assert result.shots == ("a", "c")
    assert result.stale == (("b", "changed since it was rendered"),)
