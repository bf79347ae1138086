"""The same end-to-end path against real WaveSpeed: opt-in, because it costs money.

Runs only with ``KLING_PIPE_LIVE=1`` and ``WAVESPEED_API_KEY`` set (``pytest -m live``), the
way moto's verified tests run against AWS. One 5-second shot from a URL image: USD 0.42.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from kling_pipe._outputs import media
from kling_pipe._running.run import render
from kling_pipe._shotlist.specs import Shot, UrlImage
from tests.e2e.e2e_support import board

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("KLING_PIPE_LIVE") != "1" or not os.environ.get("WAVESPEED_API_KEY"),
        reason="live WaveSpeed tests cost money: set KLING_PIPE_LIVE=1 and WAVESPEED_API_KEY",
    ),
]

LIVE_IMAGE = os.environ.get(
    "KLING_PIPE_LIVE_IMAGE", "https://upload.wikimedia.org/wikipedia/commons/a/a9/Example.jpg"
)


async def test_one_shot_renders_on_real_wavespeed_within_its_budget(tmp_path):
    shot = Shot(id="live", prompt="A slow pan across the scene", image=UrlImage(url=LIVE_IMAGE))
    result = await render(board(tmp_path, shot, max_cost="0.42"), backend="wavespeed")
    assert result.exit_code == 0, result.as_json()
    done = result.shots[0]
    assert done.file is not None
    assert media.is_mp4(done.file)
    assert abs(media.probe_duration_s(done.file) - 5) < 0.5
    assert result.spent == Decimal("0.420")
