"""The WaveSpeed client against hostile or broken answers: what it refuses, masks and never follows.

Every answer comes from the scripted loopback server (`tests.scripted_server`) through the
real client and a real `aiohttp.ClientSession`. aioresponses is not used: its latest release
(0.7.9) cannot build a response under aiohttp 3.14, whose `ClientResponse` takes a new
required `stream_writer` (pnuckowski/aioresponses#289, open), and a loopback server runs
the client's real HTTP code besides.
"""

from __future__ import annotations

import json
import logging
import string
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import stamina
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipe._backends.base import TaskId, list_all_predictions, parse_task_id
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.parsing import MAX_ERROR_CHARS, prediction_from_json
from kling_pipe._backends.wavespeed.retries import RetryEvent, RetryPolicy, retry_wait_s
from kling_pipe._backends.wavespeed.scrub import Scrubber
from kling_pipe._running.run import render
from kling_pipe.exceptions import (
    ApiError,
    AuthError,
    ProtocolError,
    SubmitOutcomeUnknown,
    WrongTaskError,
)
from tests.reliability.rel_support import url_board
from tests.scripted_server import LoopbackResolver, ScriptedServer
from tests.test_wavespeed import BASE, MODEL, NOW, REQUEST, TASK, envelope, prediction

RESULT = f"{BASE}/api/v3/predictions/{TASK}/result"
HISTORY = f"{BASE}/api/v3/predictions"
SUBMIT = f"{BASE}/api/v3/{MODEL}"
OTHER = "fedcba9876543210fedcba9876543210"
#: Shares no 8 characters with the task ids, paths and wording of these tests.
KEY = "ws-SECRET-HOSTILE-7Qz9Xv2Lp4Rt-KEY"
#: The key as a server might disguise it while echoing it back.
DISGUISES = (
    KEY,
    f"{KEY[:9]}\n{KEY[9:]}",  # wrapped at a line break
    f"{KEY[:5]}  \t{KEY[5:17]} {KEY[17:]}",  # split by runs of whitespace
    KEY.replace("-", "%2D"),  # percent-encoded in part
    "".join(f"%{b:02X}" for b in KEY.encode()),  # percent-encoded whole
    KEY.upper(),  # another letter case
)
#: Pieces of the key that must never be seen: the front, the back, and any 8 in between.
FRAGMENTS = (KEY[:8], KEY[-8:], KEY[8:16], KEY[16:24])


def assert_no_key(text: str, where: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment.lower() not in text.lower(), f"a piece of the key appears in {where}"


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


async def test_a_task_id_holding_the_api_key_is_refused(client, mocked):
    """A server naming a task by our key would write the key into records and file names."""
    mocked.post(SUBMIT, payload=envelope(prediction(id=KEY)))
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await client.submit(REQUEST)
    assert "holds the API key" in str(caught.value)
    assert_no_key(str(caught.value), "the error")


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


# ------------------------------------------------------------------ 3. scrubbed at the border


@pytest.mark.parametrize("disguise", DISGUISES)
async def test_a_failed_tasks_error_echoing_the_key_is_scrubbed_by_the_parser(
    client, mocked, disguise
):
    """The error is clean in the Prediction itself, before any caller stores or shows it."""
    body = prediction(status="failed", code=1402, error=f"cannot fetch image: auth {disguise}\n!")
    mocked.get(RESULT, payload=envelope(body))
    result = await client.get_prediction(TaskId(TASK))
    assert result.error == "cannot fetch image: auth *** !"
    for text in (result.error, result.failure_reason, repr(result)):
        assert_no_key(text, "the prediction")


@pytest.mark.parametrize("disguise", DISGUISES)
async def test_status_and_model_echoing_the_key_are_scrubbed(client, mocked, disguise):
    mocked.get(RESULT, payload=envelope(prediction(status=f"st {disguise}", model=disguise)))
    result = await client.get_prediction(TaskId(TASK))
    assert (result.status, result.model) == ("st ***", "***")


async def test_history_items_are_scrubbed_too(client, mocked):
    item = prediction(id=OTHER, status="failed", error=f"bad key {DISGUISES[1]}")
    mocked.post(HISTORY, payload=envelope({"page": 1, "items": [item]}))
    [listed] = await client.list_predictions()
    assert listed.error == "bad key ***"


@pytest.mark.parametrize("disguise", DISGUISES[1:])  # the plain key: see test_wavespeed.py
async def test_an_api_error_message_echoing_a_disguised_key_is_scrubbed(
    client, mocked, disguise, caplog
):
    """A 401 and a retried 503 quoting the key, however disguised: no piece of it anywhere."""
    caplog.set_level(logging.DEBUG)
    mocked.get(RESULT, status=503, payload={"code": 503, "message": f"upstream saw {disguise}"})
    mocked.get(RESULT, status=401, payload={"code": 401, "message": f"invalid key {disguise}"})
    with pytest.raises(AuthError) as caught:
        await client.get_prediction(TaskId(TASK))
    assert caught.value.api_message == "invalid key ***"
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert_no_key(text, "an error or the log")
    for record in caplog.records:
        assert_no_key(repr(record.args), "a log record's arguments")


async def test_an_output_url_carrying_the_key_is_refused(client, mocked):
    """A URL cannot be masked and still work: the answer is refused instead of kept."""
    done = prediction(status="completed", outputs=[f"https://cdn.example.test/{KEY}.mp4"])
    mocked.get(RESULT, payload=envelope(done))
    with pytest.raises(ProtocolError, match="outputs") as caught:
        await client.get_prediction(TaskId(TASK))
    assert_no_key(str(caught.value), "the error")


async def test_an_upload_ticket_whose_put_url_carries_the_key_gets_no_put(client, mocked, tmp_path):
    """The PUT would hand the key to the storage host: refused before anything is sent."""
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    put_url = f"http://storage.example.test/x?sig={KEY}"
    ticket = {
        "download_url": "https://cdn.example.test/x.png",
        "upload": {"method": "PUT", "url": put_url, "headers": {}},
    }
    mocked.post(f"{BASE}/api/v3/media/uploads", payload=envelope(ticket))
    mocked.put(put_url, status=200)
    with pytest.raises(ProtocolError, match="carries the API key"):
        await client.upload_image(image)
    assert mocked.calls_to("PUT", put_url) == []


def test_the_scrubber_masks_every_overlapping_occurrence():
    """Masking one of two overlapping occurrences must not leave the other's tail behind."""
    scrub = Scrubber("abcabc")
    assert scrub("x abcabcabc y") == "x *** y"
    assert scrub("ABC%61bc and abc\nabc") == "*** and ***"
    assert scrub("abcab") == "abcab"


def test_the_scrubber_never_shows_its_key():
    scrub = Scrubber(KEY)
    assert KEY not in repr(scrub)
    with pytest.raises(ValueError, match="one line") as caught:
        Scrubber("two words")
    assert "two" not in str(caught.value)


def hostile_app() -> web.Application:
    """Accepts every submit, then fails each task with an error quoting the key, disguised.

    Its clock is honest (tasks dated now, an empty history that answers): the key is the only
    hostile part, so the run spends no time waiting for a clock it could not trust.
    """
    seen: list[str] = []

    async def submit(request: web.Request) -> web.Response:
        task_id = f"{len(seen):032x}"
        seen.append(task_id)
        await request.read()
        created = datetime.now(UTC).isoformat(timespec="milliseconds")
        return web.json_response(envelope(prediction(id=task_id, created_at=created)))

    async def history(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(envelope({"page": body.get("page", 1), "items": []}))

    async def result(request: web.Request) -> web.Response:
        task_id = request.match_info["task"]
        disguise = DISGUISES[seen.index(task_id) % 3]  # plain, or split by white space
        error = f"image fetch failed with header Authorization: Bearer {disguise}"
        body = prediction(id=task_id, status="failed", code=1402, error=error)
        return web.json_response(envelope(body))

    app = web.Application()
    app.router.add_post("/api/v3/kwaivgi/{tail:.*}", submit)
    app.router.add_post("/api/v3/predictions", history)
    app.router.add_get("/api/v3/predictions/{task}/result", result)
    return app


async def test_a_failed_tasks_key_reaches_no_report_log_record_or_file(
    tmp_path, aiohttp_server, caplog
):
    """The error of a failed task, key and all: not in --json, the log, the store or the sheet."""
    caplog.set_level(logging.DEBUG)
    server = await aiohttp_server(hostile_app())
    async with aiohttp.ClientSession() as session:
        client = WaveSpeedClient(
            session=session, base_url=str(server.make_url("")).rstrip("/"), api_key=KEY
        )
        result = await render(url_board(tmp_path, 3), backend=client)
    assert [s.state for s in result.shots] == ["failed"] * 3
    assert_no_key(json.dumps(result.as_json()), "the run report")
    assert all("Authorization: Bearer ***" in s.error for s in result.shots)
    assert_no_key(caplog.text, "the log")
    for record in caplog.records:
        assert_no_key(repr(record.args), "a log record's arguments")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".lock.json") for p in files)
    for path in files:
        assert_no_key(path.read_bytes().decode("latin-1"), str(path))


# ------------------------------------------------------------------ 4. scrub, then cut


async def test_a_key_straddling_the_quoted_start_of_a_non_json_answer_never_leaks(client, mocked):
    """The first 80 characters of an HTML page are quoted: a key across that cut is masked."""
    mocked.get(RESULT, body=b"<" * 70 + KEY.encode() + b">" * 200)
    with pytest.raises(ProtocolError, match="not JSON") as caught:
        await client.get_prediction(TaskId(TASK))
    assert_no_key(str(caught.value), "the error")
    assert "***" in str(caught.value)


async def test_a_key_straddling_the_cut_of_an_error_message_never_leaks(client, mocked, caplog):
    """An error message is cut at 300 characters, after scrubbing: no retry line shows it."""
    caplog.set_level(logging.DEBUG)
    message = "#" * 290 + KEY + "#" * 50
    mocked.get(RESULT, status=503, payload={"code": 503, "message": message})
    mocked.get(RESULT, status=502, body=("<" * 290 + KEY).encode())
    mocked.get(RESULT, payload=envelope(prediction()))
    await client.get_prediction(TaskId(TASK))
    assert "retrying get_prediction" in caplog.text
    assert_no_key(caplog.text, "the log")


#: The key's characters, and a filler that shares none of them (nor '*' nor '.', which the
#: mask and the cut's ellipsis are made of), so any piece of the key in a message came from
#: the key or from the message's own wording, which the baseline shows.
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
FILLER_ALPHABET = " \n\t<>{}[]!#$&()+,:;=?@^|~\"'\u00e9\u20ac\u4e2d"
keys = st.text(KEY_ALPHABET, min_size=8, max_size=64)
fillers = st.text(FILLER_ALPHABET, max_size=1200)


def windows(text: str, size: int = 4) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def leaked(key: str, shown: str, baseline: str) -> set[str]:
    """The pieces of *key* (4 characters or more) in *shown* that its own wording lacks."""
    return {w for w in windows(key) if w in shown and w not in baseline}


def border_texts(client: WaveSpeedClient, body: str) -> list[str]:
    """Everything the border makes of *body*: error messages, reprs and a task's error."""
    raw = body.encode()
    texts: list[str] = []
    for status in (200, 401, 503):
        if status == 200:
            try:
                client._json_object(raw, "GET /x")
            except ProtocolError as exc:
                texts += [str(exc), repr(exc)]
            continue
        for answer in (raw, json.dumps({"code": status, "message": body}).encode()):
            error: ApiError = client._api_error("GET /x", status, answer, None)
            texts += [str(error), repr(error), error.api_message]
    failed = prediction(status=f"failed {body}", error=body, model=body, created_at=body)
    try:
        prediction_from_json(failed, scrub=client._scrubber)
    except ProtocolError as exc:  # created_at is not a time: the message quotes it
        texts.append(str(exc))
    parsed = prediction_from_json(
        prediction(status=body, error=body, model=body), scrub=client._scrubber
    )
    texts += [repr(parsed), parsed.failure_reason]
    return texts


async def test_no_piece_of_the_key_survives_the_border_wherever_the_key_falls(session):
    """For any key at any offset of a body of any length, no 4 characters of it are shown."""

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(key=keys, before=fillers, after=fillers)
    def check(key: str, before: str, after: str) -> None:
        client = WaveSpeedClient(session, BASE, key)
        shown = border_texts(client, before + key + after)
        baseline = border_texts(client, before + "~" * len(key) + after)
        for text, base in zip(shown, baseline, strict=True):
            assert not leaked(key, text, base), (text, key)

    check()


async def test_a_task_error_is_cut_after_it_is_scrubbed(client, mocked):
    """A failed task's error is bounded, and a key across the bound is masked first."""
    error = "#" * (MAX_ERROR_CHARS - 10) + KEY + "#" * 5000
    mocked.get(RESULT, payload=envelope(prediction(status="failed", error=error)))
    result = await client.get_prediction(TaskId(TASK))
    assert len(result.error) <= MAX_ERROR_CHARS
    assert_no_key(result.error, "the error")
    assert "***" in result.error
