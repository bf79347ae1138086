"""The WaveSpeed client against hostile or broken answers: what it refuses, masks and never follows.

Every answer comes from the scripted loopback server (`tests.scripted_server`) through the
real client and a real `aiohttp.ClientSession`. aioresponses is not used: its latest release
(0.7.9) cannot build a response under aiohttp 3.14, whose `ClientResponse` takes a new
required `stream_writer` (pnuckowski/aioresponses#289, open), and a loopback server runs
the client's real HTTP code besides.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import stamina
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._backends.base import TaskId, list_all_predictions, parse_task_id
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.retries import RetryEvent, RetryPolicy, retry_wait_s
from kling_pipe.exceptions import (
    ProtocolError,
    SubmitOutcomeUnknown,
    WrongTaskError,
)
from tests.scripted_server import LoopbackResolver, ScriptedServer
from tests.test_wavespeed import BASE, MODEL, NOW, REQUEST, TASK, envelope, prediction

RESULT = f"{BASE}/api/v3/predictions/{TASK}/result"
HISTORY = f"{BASE}/api/v3/predictions"
SUBMIT = f"{BASE}/api/v3/{MODEL}"
OTHER = "fedcba9876543210fedcba9876543210"
#: Shares no 8 characters with the task ids, paths and wording of these tests.
KEY = "ws-SECRET-HOSTILE-7Qz9Xv2Lp4Rt-KEY"


@pytest.fixture(autouse=True)
def no_sleep():
    with stamina.set_testing(True, attempts=4):
        yield


@pytest.fixture
async def mocked(aiohttp_server) -> ScriptedServer:
    scripted = ScriptedServer(NOW)
    scripted.port = (await aiohttp_server(scripted.app)).port
    return scripted


@pytest.fixture
async def session(mocked: ScriptedServer):
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver(mocked.port))
    async with aiohttp.ClientSession(connector=connector, middlewares=(mocked.middleware,)) as s:
        yield s


@pytest.fixture
def events() -> list[RetryEvent]:
    return []


@pytest.fixture
def client(session, events) -> WaveSpeedClient:
    return WaveSpeedClient(
        session, BASE, KEY, on_retry=events.append, rng=lambda: 0.0, clock=lambda: NOW
    )


# ------------------------------------------------------------------ 1. task ids at the border

HOSTILE_IDS = [
    "x/../../../../../home/Videos/wedding",
    "../balance",
    "..",
    ".hidden",
    "-rf",
    "_leading_underscore",
    "a b",
    "a\nb",
    "a%2Fb",
    "a.mp4",
    "C:\\Users\\x",
    "caf\u00e9",
    "\u0430bc",  # a Cyrillic 'a': looks like "abc"
    "a" * 129,
    "",
]


@pytest.mark.parametrize(
    "good", [TASK, "0" * 32, "ab", "A1_b-2", "a" * 128, "7f3c2a9e4b1d4f6a8c0e5b3d2a1f9e8c"]
)
def test_a_task_id_of_the_apis_form_is_accepted(good):
    """WaveSpeed's 32 hex digits, the mock's uuid4().hex and other plain ids parse as themselves."""
    assert parse_task_id(good, "id") == good


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_a_task_id_that_could_name_a_path_is_refused_naming_the_field(bad):
    """Slashes, dots, spaces, non-ASCII, a leading '-' or '_', too long, empty: ProtocolError."""
    with pytest.raises(ProtocolError, match=r"^answer\.id is not a task id") as caught:
        parse_task_id(bad, "answer.id")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", [None, 42, ["abc"], {"id": "abc"}])
def test_a_task_id_that_is_not_a_string_is_refused_by_type(bad):
    with pytest.raises(ProtocolError, match="should be a task id, got"):
        parse_task_id(bad, "answer.id")


def test_a_refused_task_id_is_described_never_quoted():
    """The message says what is wrong, never the value: it may be a secret echoed back."""
    with pytest.raises(ProtocolError) as caught:
        parse_task_id(f"{KEY}/x", "answer.id")
    assert KEY not in str(caught.value)
    assert "it holds '/'" in str(caught.value)


@given(st.text(max_size=200))
def test_every_parsed_task_id_is_one_plain_file_name(text):
    """Whatever the text, a TaskId names one file in the folder it is put in, nothing more."""
    try:
        task_id = parse_task_id(text, "id")
    except ProtocolError as exc:
        assert "\n" not in str(exc)
        return
    assert Path(task_id).name == task_id
    assert task_id not in {".", ".."}
    assert task_id[0].isalnum()
    assert task_id.isascii()


@pytest.mark.parametrize("bad", HOSTILE_IDS[:6])
async def test_a_submit_answered_with_a_path_like_task_id_is_never_adopted(client, mocked, bad):
    """The task may exist, but its id cannot be used: an unknown outcome, never resent."""
    mocked.post(SUBMIT, payload=envelope(prediction(id=bad)))
    with pytest.raises(SubmitOutcomeUnknown, match="field 'id'"):
        await client.submit(REQUEST)
    assert len(mocked.calls_to("POST", SUBMIT)) == 1


async def test_a_history_page_with_one_hostile_item_is_refused_whole(client, mocked):
    """One bad item refuses its page: a history read never silently covers less than asked."""
    items = [prediction(id=OTHER), prediction(id="x/../../../../../home/Videos/wedding")]
    mocked.post(HISTORY, payload=envelope({"page": 1, "items": items}), repeat=True)
    with pytest.raises(ProtocolError, match=r"history page 1, item 1: .*field 'id'"):
        await client.list_predictions()
    with pytest.raises(ProtocolError, match="the whole page is refused"):
        await list_all_predictions(client)
    # Never retried: the same page would be refused the same way.
    assert len(mocked.calls_to("POST", HISTORY)) == 2


# ------------------------------------------------------------------ 2. the wrong task


async def test_a_poll_answered_with_another_tasks_body_is_never_followed(client, mocked, events):
    """A cache answering every /result with one task's body: WrongTaskError, after one GET."""
    done = prediction(id=OTHER, status="completed", outputs=["https://cdn.example.test/1.mp4"])
    mocked.get(RESULT, payload=envelope(done), repeat=True)
    with pytest.raises(WrongTaskError) as caught:
        await client.get_prediction(TaskId(TASK))
    assert OTHER in str(caught.value)
    assert TASK in str(caught.value)
    assert isinstance(caught.value, ProtocolError)
    assert len(mocked.calls_to("GET", RESULT)) == 1
    assert events == []
    # The same cache would answer the same wrong body: the policy never tries again.
    assert retry_wait_s(caught.value, 1, RetryPolicy(), 0.0) is None
