"""A mock to rehearse with: renders follow the prompt, the take and the frames, at 24 fps.

Picking a take, approving a version or checking that an edit took effect needs videos that
differ when the request differs (and only then), deterministically. Each test here changes
one thing and looks at the decoded frames, not only at the bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Final

import attrs
import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockserver import MockConfig, MockServer, cli
from mockserver.caption import MAX_LINES, Caption, printable, wrap
from mockserver.config import FixedTime
from mockserver.video import Motion, RenderSpec, _fade_weight, render_mp4
from tests.cli_support import SCRIPT, user_env
from tests.mockserver.mock_support import Api, MakeMock, i2v

#: Mean absolute difference (0..255 per channel byte) above which two frames plainly differ;
#: an H.264 re-encode of one sharp-edged picture stays under 4.
VISIBLY: Final = 10.0
#: ... and under which they show the same picture.
ALIKE: Final = 5.0


def pattern(seed: int, width: int = 240, height: int = 160) -> bytes:
    """A PNG full of detail (so a change of framing shows), different for every *seed*."""
    y, x = np.mgrid[0:height, 0:width]
    cell = 12 + 4 * seed
    red = x * 255 // width if seed % 2 else 255 - x * 255 // width
    green = ((x // cell + y // cell) % 2) * 150 + 50
    blue = (y * 255 // height + 80 * seed) % 256
    pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    context = av.CodecContext.create("png", "w")
    context.width, context.height, context.pix_fmt = width, height, "rgb24"
    context.time_base = Fraction(1, 25)
    return b"".join(bytes(p) for p in context.encode(frame) + context.encode(None))


def decoded(mp4: bytes) -> list[np.ndarray]:
    """Every frame of *mp4* as an RGB array."""
    with av.open(io.BytesIO(mp4)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def picture(png: bytes, like: np.ndarray) -> np.ndarray:
    """*png* decoded at the size of the frame *like*."""
    with av.open(io.BytesIO(png)) as container:
        frame = next(container.decode(video=0))
    height, width = like.shape[:2]
    return frame.reformat(width, height, "rgb24").to_ndarray()


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def rate_and_count(mp4: bytes) -> tuple[Fraction, int]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate is not None
        return stream.average_rate, sum(1 for _ in container.decode(video=0))


A, B, C = pattern(1), pattern(2), pattern(3)
PUSH = RenderSpec(duration_s=2, fps=12, max_side_px=240, first_image=A, motion_seed="dawn")
FADE = attrs.evolve(PUSH, last_image=B)


@pytest.mark.parametrize(
    "spec", [PUSH, FADE, attrs.evolve(FADE, caption="#1 dawn")], ids=["push", "fade", "caption"]
)
def test_the_same_spec_renders_the_same_bytes(spec: RenderSpec) -> None:
    assert render_mp4(spec) == render_mp4(spec)


@pytest.mark.parametrize(
    ("base", "change"),
    [
        (PUSH, {"motion_seed": "dusk"}),
        (PUSH, {"take": 2}),
        (PUSH, {"first_image": C}),
        (FADE, {"motion_seed": "dusk"}),
        (FADE, {"take": 2}),
        (FADE, {"first_image": C}),
        (FADE, {"last_image": C}),
    ],
    ids=[
        "push-prompt",
        "push-take",
        "push-first-frame",
        "fade-prompt",
        "fade-take",
        "fade-first-frame",
        "fade-last-frame",
    ],
)
def test_a_changed_prompt_take_or_frame_shows_in_the_frames(
    base: RenderSpec, change: dict[str, object]
) -> None:
    """Other bytes, and frames that plainly differ: the most differing frame is well apart."""
    one, other = render_mp4(base), render_mp4(attrs.evolve(base, **change))
    assert one != other
    frames_one, frames_other = decoded(one), decoded(other)
    assert len(frames_one) == len(frames_other) == 24
    worst = max(difference(a, b) for a, b in zip(frames_one, frames_other, strict=True))
    assert worst > VISIBLY


@pytest.mark.parametrize("take", [1, 2, 3])
@pytest.mark.parametrize("caption", ["", "#1 a boat on the sea"])
def test_the_ends_stay_the_inputs_whatever_the_take_or_caption(take: int, caption: str) -> None:
    """Proofs and chains read the first and last frames: no draw and no caption moves them."""
    frames = decoded(render_mp4(attrs.evolve(FADE, take=take, caption=caption)))
    assert difference(frames[0], picture(A, frames[0])) < ALIKE
    assert difference(frames[-1], picture(B, frames[-1])) < ALIKE
    pushed = decoded(render_mp4(attrs.evolve(PUSH, take=take, caption=caption)))
    assert difference(pushed[0], picture(A, pushed[0])) < ALIKE


def test_a_caption_darkens_the_bottom_band_of_the_middle_frames_only() -> None:
    plain = decoded(render_mp4(PUSH))
    captioned = decoded(render_mp4(attrs.evolve(PUSH, caption="#2 dawn over the harbour")))
    layout = Caption.layout("#2 dawn over the harbour", 240, 160)
    middle = len(plain) // 2
    top, band = slice(0, layout.top - 8), slice(layout.top + 2, None)
    assert difference(plain[middle][top], captioned[middle][top]) < ALIKE
    assert difference(plain[middle][band], captioned[middle][band]) > 3 * VISIBLY
    assert captioned[middle][band].mean() < plain[middle][band].mean()


@given(seed=st.text(max_size=40), take=st.integers(min_value=1, max_value=10_000))
def test_every_motion_starts_on_the_first_image_and_ends_on_the_last(seed: str, take: int) -> None:
    motion = Motion.draw(seed, take)
    assert all(0.2 <= h <= 0.8 for h in motion.heading)
    assert 0.6 <= motion.ease <= 1.6
    weights = [_fade_weight(i / 100, motion) for i in range(101)]
    assert (weights[0], weights[-1]) == (0, 256)
    assert weights == sorted(weights)
    assert Motion.draw(seed, take) == motion


@given(text=st.text(max_size=400), columns=st.integers(min_value=4, max_value=120))
def test_a_caption_wraps_into_at_most_three_lines_of_drawable_characters(
    text: str, columns: int
) -> None:
    lines = wrap(text, columns)
    assert 1 <= len(lines) <= MAX_LINES
    assert all(len(line) <= columns for line in lines)
    assert all(c in printable(c) for line in lines for c in line)


def test_caption_text_is_upper_case_without_accents_and_unknowns_are_question_marks() -> None:
    assert printable("Crème brûlée, 2 € ~ ok") == "CREME BRULEE, 2 ? ? OK"


# -- through the server -----------------------------------------------------------------------


async def download(api: Api, mock: MockServer, task_id: str) -> bytes:
    mock.complete(task_id)
    (url,) = (await api.result(task_id))["outputs"]  # type: ignore[misc]
    async with api.session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_twin_requests_are_numbered_takes_with_videos_of_their_own(
    api: Api, mock: MockServer
) -> None:
    """Two takes of one shot send one request: the second is take 2, and looks different."""
    body = i2v(5, prompt="a lighthouse at dusk")
    ids = [await api.submit(body) for _ in range(2)]
    other = await api.submit({**body, "prompt": "a lighthouse at dawn"})
    assert [t["take"] for t in mock.tasks()] == [1, 2, 1]
    one, two, dawn = [decoded(await download(api, mock, i)) for i in (*ids, other)]
    assert difference(one[0], two[0]) < ALIKE  # the same first frame
    assert max(difference(a, b) for a, b in zip(one, two, strict=True)) > VISIBLY
    assert max(difference(a, b) for a, b in zip(one, dawn, strict=True)) > VISIBLY


async def test_takes_are_counted_on_after_a_restart_on_the_same_state(
    api: Api, make_mock: MakeMock, tmp_path: Path
) -> None:
    config = MockConfig(processing=FixedTime(seconds=10), state_dir=tmp_path / "state")
    first = await make_mock(config)
    for _ in range(2):
        await Api(api.session, first).submit(i2v())
    await first.close()
    again = await make_mock(config)
    await Api(api.session, again).submit(i2v())
    assert [t["take"] for t in again.tasks()] == [1, 2, 3]


async def test_fps_and_caption_come_from_the_config(api: Api, make_mock: MakeMock) -> None:
    """24 fps by default (duration x 24 frames); MockConfig(fps=30, caption=True) obeyed."""
    plain = await make_mock()
    rate, count = rate_and_count(
        await download(Api(api.session, plain), plain, await Api(api.session, plain).submit(i2v()))
    )
    assert (rate, count) == (24, 5 * 24)
    other = await make_mock(fps=30, caption=True)
    other_api = Api(api.session, other)
    mp4 = await download(other_api, other, await other_api.submit(i2v(10)))
    assert rate_and_count(mp4) == (30, 10 * 30)


def test_fps_and_caption_options_reach_the_config() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert (cli.build_config(parser.parse_args([])).fps, MockConfig().fps) == (24, 24)
    config = cli.build_config(parser.parse_args(["--fps", "30", "--caption"]))
    assert (config.fps, config.caption) == (30, True)


@pytest.mark.parametrize("fps", ["0", "61"])
def test_an_impossible_fps_is_one_line_and_exit_2(
    fps: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--fps", fps])) == 2
    assert capsys.readouterr().err == (
        f"error: --fps {fps}: frames per second are 1 to 60 (24 is film's)\n"
    )


def test_kling_pipe_mock_renders_at_the_fps_it_is_given(tmp_path: Path) -> None:
    """`kling-pipe mock --fps 30`: a task's video has 30 frames a second, duration x 30."""
    process = subprocess.Popen(
        [str(SCRIPT), "mock", "--port", "0", "--processing-s", "0", "--fps", "30", "--caption"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().rsplit(" ", 1)[1].strip()
        key = process.stdout.readline().removeprefix("API key: ").strip()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        body = json.dumps(i2v(5)).encode()
        submit = urllib.request.Request(
            f"{base}/api/v3/kwaivgi/kling-video-o1-std/image-to-video", body, headers
        )
        with urllib.request.urlopen(submit, timeout=10) as answer:
            task_id = json.load(answer)["data"]["id"]
        poll = urllib.request.Request(f"{base}/api/v3/predictions/{task_id}/result", None, headers)
        with urllib.request.urlopen(poll, timeout=10) as answer:
            (url,) = json.load(answer)["data"]["outputs"]
        with urllib.request.urlopen(url, timeout=30) as answer:
            mp4 = answer.read()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert out.endswith("Stopped.\n")
    assert rate_and_count(mp4) == (30, 5 * 30)
    assert "Traceback" not in err
