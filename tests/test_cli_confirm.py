"""`run --backend wavespeed` on a terminal shows the plan and asks before spending.

Run on a pseudo-terminal, as a user at a shell: the question must read ``[y/N]`` as
written, stand on a screen the live table does not draw over, and take end of input
(Ctrl-D) as no, with nothing sent and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mockserver import MockConfig, ThreadedMockServer
from tests.cli_support import kp_on_a_terminal

KEY = {"WAVESPEED_API_KEY": "sk-test-key"}
QUESTION = "Spend up to 1.848 USD on WaveSpeed? [y/N] "


def ask(specs: Path, answer: bytes, base_url: str) -> tuple[int, str, str]:
    """Run keyframes.toml for real against *base_url*, typing *answer* to the question."""
    code, before, after = kp_on_a_terminal(
        "run",
        specs / "keyframes.toml",
        "--backend",
        "wavespeed",
        "--base-url",
        base_url,
        answer=answer,
        cwd=specs,
        env=KEY,
    )
    return code, before.replace("\r\n", "\n"), after.replace("\r\n", "\n")


def submitted(mock: ThreadedMockServer) -> int:
    return len(mock.tasks())


@pytest.mark.parametrize(
    ("answer", "echo"), [(b"\x04", ""), (b"n\r", "n"), (b"\r", ""), (b"yes please\r", "")]
)
def test_anything_but_yes_spends_nothing_and_exits_2(specs, answer, echo):
    """Ctrl-D (end of input) is no, as an Enter or a "no" is: exit 2, no traceback."""
    with ThreadedMockServer(MockConfig(api_key=KEY["WAVESPEED_API_KEY"])) as mock:
        code, before, after = ask(specs, answer, mock.base_url)
        assert submitted(mock) == 0
    assert code == 2
    assert before.endswith(QUESTION)
    assert "[y/N]" in before
    assert "not confirmed; nothing was submitted" in after
    assert "Traceback" not in before + after
    assert "committed" not in before + after  # no live table was drawn
    if echo:
        assert after.startswith(echo)


def test_the_plan_is_shown_above_the_question_and_no_table_is_drawn_over_it(specs):
    with ThreadedMockServer(MockConfig(api_key=KEY["WAVESPEED_API_KEY"])) as mock:
        code, before, _ = ask(specs, b"\x04", mock.base_url)
    assert code == 2
    plan, question = before.rsplit("\n", 1)
    assert question == QUESTION
    assert "total: 1.848 USD for 3 shots to render" in plan
    assert "\x1b[" not in before  # no cursor movement: nothing redrawn under the question


def test_yes_renders_and_the_live_table_starts_after_the_answer(specs):
    with ThreadedMockServer(MockConfig(api_key=KEY["WAVESPEED_API_KEY"])) as mock:
        code, before, after = ask(specs, b"y\r", mock.base_url)
        assert submitted(mock) == 3
    assert code == 0, after
    assert before.endswith(QUESTION)
    assert "3/3 done" in after
    assert "Traceback" not in after
    assert len(json.loads((specs / "keyframes.toml.lock.json").read_text())["shots"]) == 3
