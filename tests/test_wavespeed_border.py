"""The client's border against answers that would make a run pay twice or crash.

Each test is named for the promise it keeps: a submit whose outcome is unknown is never
resent; a history answer the client cannot read whole is refused, never read as "no task";
a server clock that disagrees with the server's own task times is not trusted; no answer,
however deep its JSON, gets past the border as anything but a `ProtocolError`.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import stamina

from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.parsing import prediction_from_json
from kling_pipe._backends.wavespeed.scrub import Scrubber
from kling_pipe.exceptions import ProtocolError, ServerError, SubmitOutcomeUnknown
from tests.scripted_server import LoopbackResolver, ScriptedServer
from tests.test_wavespeed import BASE, KEY, MODEL, NOW, REQUEST, TASK, envelope, prediction

SUBMIT = f"{BASE}/api/v3/{MODEL}"
RESULT = f"{BASE}/api/v3/predictions/{TASK}/result"
HISTORY = f"{BASE}/api/v3/predictions"
#: JSON nested far deeper than Python's recursion limit: 100 KB, well under the size limit.
DEEP = b"[" * 50_000 + b"]" * 50_000


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
def client(session) -> WaveSpeedClient:
    return WaveSpeedClient(
        session, BASE, KEY, rng=lambda: 0.0, clock=lambda: NOW, monotonic=lambda: 0.0
    )


def dated(at_offset: timedelta) -> dict[str, str]:
    """A ``Date`` header *at_offset* from the tests' clock."""
    return {"Date": format_datetime(NOW + at_offset, usegmt=True)}


# ------------------------------------------------------------------ a submit is never resent blind


@pytest.mark.parametrize("status", [500, 501, 505, 520, 521, 522, 523, 524, 599, 408])
async def test_a_bare_5xx_or_408_to_a_submit_is_an_unknown_outcome_never_resent(
    client, mocked, status
):
    """Cloudflare's 52x or a bare nginx 500 page may come after the API created the task."""
    mocked.post(SUBMIT, status=status, body=b"<html><h1>origin timed out</h1></html>")
    mocked.post(SUBMIT, payload=envelope(prediction()))
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(REQUEST)
    assert len(mocked.calls_to("POST", SUBMIT)) == 1


@pytest.mark.parametrize("status", [500, 524])
async def test_wavespeeds_own_5xx_envelope_to_a_submit_created_nothing_and_is_resent(
    client, mocked, status
):
    mocked.post(SUBMIT, status=status, payload={"code": status, "message": "try later"})
    mocked.post(SUBMIT, payload=envelope(prediction()))
    assert (await client.submit(REQUEST)).id == TASK
    assert len(mocked.calls_to("POST", SUBMIT)) == 2


@pytest.mark.parametrize("status", [408, 520, 524])
async def test_a_bare_5xx_or_408_to_a_poll_is_retried(client, mocked, status):
    mocked.get(RESULT, status=status, body=b"<html>origin timed out</html>")
    mocked.get(RESULT, payload=envelope(prediction()))
    assert (await client.get_prediction(TASK)).id == TASK


async def test_a_bare_5xx_to_a_poll_says_what_it_was(client, mocked):
    mocked.get(RESULT, status=524, body=b"<html>origin timed out</html>", repeat=True)
    with pytest.raises(ServerError, match="HTTP 524"):
        await client.get_prediction(TASK)


# ------------------------------------------------------------------ a history whole, or refused


@pytest.mark.parametrize(
    "data",
    [{"page": 1}, {"page": 1, "items": None}, {}],
    ids=["no-items", "items-null", "empty-data"],
)
async def test_a_history_answer_without_items_is_refused_never_read_as_no_tasks(
    client, mocked, data
):
    mocked.post(HISTORY, payload=envelope(data))
    with pytest.raises(ProtocolError, match="'items'"):
        await client.list_predictions(model=MODEL, page=1)


async def test_an_empty_history_page_is_still_an_empty_page(client, mocked):
    mocked.post(HISTORY, payload=envelope({"page": 3, "items": []}))
    assert await client.list_predictions(page=3) == []


# ------------------------------------------------------------------ the server's time


def test_a_created_at_without_a_time_zone_is_refused_at_the_border():
    """A naive time could be any zone: taken as UTC it moves a task hours out of its window."""
    with pytest.raises(ProtocolError, match="time zone"):
        prediction_from_json(prediction(created_at="2025-06-01T11:59:58.123"), scrub=Scrubber(KEY))


@pytest.mark.parametrize("shift", [timedelta(hours=1), timedelta(hours=-1), timedelta(seconds=30)])
async def test_a_submit_answer_dated_off_its_date_header_makes_the_servers_clock_unknown(
    client, mocked, shift
):
    """``Date`` and ``created_at`` are one clock: when they disagree, neither places a window."""
    mocked.post(SUBMIT, payload=envelope(prediction()), headers=dated(shift))
    await client.submit(REQUEST)
    assert client.clock_offset is None


async def test_the_servers_clock_is_trusted_again_once_a_submit_answer_agrees_with_it(
    client, mocked
):
    mocked.post(SUBMIT, payload=envelope(prediction()), headers=dated(timedelta(hours=1)))
    mocked.post(SUBMIT, payload=envelope(prediction()))
    await client.submit(REQUEST)
    assert client.clock_offset is None
    await client.submit(REQUEST)
    assert client.clock_offset == timedelta(milliseconds=500)


async def test_a_late_submit_answer_dated_at_its_sending_keeps_the_servers_clock(session, mocked):
    """An answer a minute on the wire carries a task made when the request arrived: agreed."""
    steady = iter([0.0, *[60.0] * 10])
    client = WaveSpeedClient(session, BASE, KEY, clock=lambda: NOW, monotonic=lambda: next(steady))
    mocked.post(SUBMIT, payload=envelope(prediction()), headers=dated(timedelta(seconds=60)))
    await client.submit(REQUEST)
    assert client.clock_offset == timedelta(seconds=60, milliseconds=500)


async def test_a_history_item_created_in_the_servers_future_makes_its_clock_unknown(client, mocked):
    """The history's ``Date`` an hour behind its items: that clock is not the tasks' clock."""
    items = [prediction(created_at="2025-06-01T12:59:58.123Z")]
    mocked.post(HISTORY, payload=envelope({"page": 1, "items": items}))
    await client.list_predictions(page=1)
    assert client.clock_offset is None


async def test_a_history_of_past_tasks_leaves_the_servers_clock_known(client, mocked):
    items = [prediction(created_at="2025-05-30T08:00:00.000Z")]
    mocked.post(HISTORY, payload=envelope({"page": 1, "items": items}))
    await client.list_predictions(page=1)
    assert client.clock_offset == timedelta(milliseconds=500)


# ------------------------------------------------------------------ deep JSON


async def test_a_deeply_nested_poll_answer_is_a_protocol_error_not_a_crash(client, mocked):
    mocked.get(RESULT, body=b'{"code": 200, "message": "ok", "data": ' + DEEP + b"}")
    with pytest.raises(ProtocolError, match="not JSON"):
        await client.get_prediction(TASK)


async def test_a_deeply_nested_submit_answer_is_an_unknown_outcome_never_resent(client, mocked):
    mocked.post(SUBMIT, body=b'{"code": 200, "message": "ok", "data": ' + DEEP + b"}")
    mocked.post(SUBMIT, payload=envelope(prediction()))
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(REQUEST)
    assert len(mocked.calls_to("POST", SUBMIT)) == 1


async def test_a_deeply_nested_error_body_to_a_submit_is_an_unknown_outcome(client, mocked):
    """Deep JSON is not WaveSpeed's envelope: a 500 carrying it may follow a created task."""
    mocked.post(SUBMIT, status=500, body=DEEP)
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(REQUEST)
    assert len(mocked.calls_to("POST", SUBMIT)) == 1
