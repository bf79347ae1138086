"""The WaveSpeed client: the exact requests it sends, how it reads answers, errors and retries."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest
import stamina
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from kling_pipe._backends.base import Prediction, SubmitRequest, list_all_predictions
from kling_pipe._backends.wavespeed.client import WaveSpeedClient
from kling_pipe._backends.wavespeed.parsing import prediction_from_json
from kling_pipe._backends.wavespeed.retries import RetryEvent, RetryPolicy, retry_wait_s
from kling_pipe._backends.wavespeed.scrub import Scrubber
from kling_pipe._backends.wavespeed.urls import validate_base_url
from kling_pipe.exceptions import (
    AuthError,
    BackendConnectionError,
    BadRequestError,
    BaseUrlError,
    KlingPipeError,
    NotFoundError,
    NotMp4Error,
    ProtocolError,
    RateLimitedError,
    ServerError,
    SubmitOutcomeUnknown,
)
from tests.scripted_server import Call, LoopbackResolver, ScriptedServer

#: The API as the client sees it; every host name reaches the scripted loopback server.
BASE = "http://localhost:8080"
CLIENT_LOG = "kling_pipe.wavespeed"
KEY = "ws-SECRET-KEY-0123456789abcdef"
MODEL = "kwaivgi/kling-video-o1-std/image-to-video"
TASK = "0123456789abcdef0123456789abcdef"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 8


def prediction(**overrides: object) -> dict[str, object]:
    """A prediction object as the API documents it."""
    obj: dict[str, object] = {
        "id": TASK,
        "model": MODEL,
        "outputs": [],
        "urls": {"get": f"{BASE}/api/v3/predictions/{TASK}/result"},
        "has_nsfw_contents": [],
        "status": "created",
        "created_at": "2025-06-01T11:59:58.123Z",
        "error": "",
        "timings": {"inference": None},
    }
    obj.update(overrides)
    return obj


def envelope(data: object, code: int = 200) -> dict[str, object]:
    return {"code": code, "message": "success", "data": data}


@pytest.fixture(autouse=True)
def no_sleep():
    """Retries happen (up to 4 attempts) but stamina skips every backoff sleep."""
    with stamina.set_testing(True, attempts=4):
        yield


@pytest.fixture
async def mocked(aiohttp_server) -> ScriptedServer:
    """The scripted loopback server every request of these tests goes to."""
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
        session,
        BASE,
        KEY,
        on_retry=events.append,
        rng=lambda: 0.0,
        clock=lambda: NOW,
        monotonic=lambda: 0.0,
    )


def calls(mocked: ScriptedServer, method: str, url: str) -> list[Call]:
    return mocked.calls_to(method, url)


REQUEST = SubmitRequest(
    model=MODEL,
    prompt="a lighthouse in a storm",
    image_url="https://cdn.example.test/first.png",
    last_image_url="https://cdn.example.test/last.png",
    duration=7,
)


# ------------------------------------------------------------------ requests sent


async def test_submit_posts_the_documented_body_with_bearer_auth(client, mocked):
    """submit POSTs prompt, image, last_image and duration to /api/v3/{model} with the key."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, payload=envelope(prediction()))
    result = await client.submit(REQUEST)
    [call] = calls(mocked, "POST", url)
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.json == {
        "prompt": "a lighthouse in a storm",
        "image": "https://cdn.example.test/first.png",
        "last_image": "https://cdn.example.test/last.png",
        "duration": 7,
    }
    assert result.id == TASK
    assert result.status == "created"
    assert result.created_at == datetime(2025, 6, 1, 11, 59, 58, 123000, tzinfo=UTC)


async def test_submit_never_follows_a_redirect(client, mocked):
    """A submit answered 307 is not sent on to another host (with the key and the body)."""
    url = f"{BASE}/api/v3/{MODEL}"
    elsewhere = f"http://elsewhere.example.test/api/v3/{MODEL}"
    mocked.post(url, status=307, headers={"Location": elsewhere})
    mocked.post(elsewhere, payload=envelope(prediction()))
    with pytest.raises(KlingPipeError):
        await client.submit(REQUEST)
    assert len(calls(mocked, "POST", url)) == 1
    assert calls(mocked, "POST", elsewhere) == []


async def test_submit_without_last_image_leaves_the_field_out(client, mocked):
    """A request with no last frame sends no last_image key at all (not null)."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, payload=envelope(prediction()))
    request = SubmitRequest(
        model=MODEL, prompt="p", image_url="https://x.test/a.png", last_image_url=None, duration=5
    )
    await client.submit(request)
    [call] = calls(mocked, "POST", url)
    assert "last_image" not in call.json


async def test_submit_refuses_a_model_id_that_would_escape_the_path(client, mocked):
    """A model id with '..' or a query is refused before anything is sent."""
    request = SubmitRequest(model="a/../b?x=1", prompt="p", image_url="u", duration=5)
    with pytest.raises(ValueError, match="model id"):
        await client.submit(request)
    assert mocked.calls == []


async def test_get_prediction_reads_the_result_endpoint(client, mocked):
    """get_prediction GETs /predictions/{id}/result and parses outputs, timings and flags."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    body = prediction(
        status="completed",
        outputs=["https://cdn.example.test/out.mp4"],
        has_nsfw_contents=[False],
        timings={"inference": 20123},
    )
    mocked.get(url, payload=envelope(body))
    result = await client.get_prediction(TASK)
    [call] = calls(mocked, "GET", url)
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert result.succeeded
    assert result.is_final
    assert result.outputs == ("https://cdn.example.test/out.mp4",)
    assert result.inference_ms == 20123
    assert result.has_nsfw_contents == (False,)


async def test_get_prediction_refuses_an_id_that_is_not_a_task_id(client, mocked):
    """A task id with a slash never reaches the URL."""
    with pytest.raises(ValueError, match="task id"):
        await client.get_prediction("../balance")
    assert mocked.calls == []


async def test_failed_task_carries_error_and_code(client, mocked):
    """A failed task is HTTP 200 with status failed; its error and task-level code are kept."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    body = prediction(status="failed", error="content flagged", code=1200)
    mocked.get(url, payload=envelope(body))
    result = await client.get_prediction(TASK)
    assert result.is_final
    assert not result.succeeded
    assert result.failure_reason == "failed (code 1200): content flagged"


async def test_list_predictions_posts_filters_in_utc(client, mocked):
    """History filters go in the JSON body; times are sent as UTC ISO 8601 with Z."""
    url = f"{BASE}/api/v3/predictions"
    mocked.post(url, payload=envelope({"page": 2, "items": [prediction(status="completed")]}))
    after = datetime(2025, 6, 1, 16, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2)))
    items = await client.list_predictions(
        model=MODEL, status="completed", created_after=after, page=2, page_size=50
    )
    [call] = calls(mocked, "POST", url)
    assert call.json == {
        "page": 2,
        "page_size": 50,
        "model": MODEL,
        "status": "completed",
        "created_after": "2025-06-01T14:00:00.500Z",
    }
    assert [p.id for p in items] == [TASK]


async def test_list_predictions_refuses_naive_times_and_big_pages(client, mocked):
    """A naive datetime or a page size over 100 is a caller bug, caught before sending."""
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.list_predictions(created_after=datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="page_size"):
        await client.list_predictions(page_size=101)
    assert mocked.calls == []


async def test_list_all_predictions_pages_until_a_short_page(client, mocked):
    """The convenience pages on while pages are full, and drops ids seen twice."""
    url = f"{BASE}/api/v3/predictions"
    ids = [f"{i:032x}" for i in range(3)]
    mocked.post(url, payload=envelope({"page": 1, "items": [prediction(id=i) for i in ids[:2]]}))
    # A task created meanwhile pushed ids[1] down onto page 2.
    mocked.post(url, payload=envelope({"page": 2, "items": [prediction(id=i) for i in ids[1:]]}))
    mocked.post(url, payload=envelope({"page": 3, "items": []}))
    found = await list_all_predictions(client, page_size=2)
    assert [p.id for p in found] == ids
    sent = calls(mocked, "POST", url)
    assert [c.json["page"] for c in sent] == [1, 2, 3]


async def test_upload_gets_a_ticket_then_puts_bytes_without_the_key(client, mocked, tmp_path):
    """Ticket POST carries the key; the PUT to storage carries only the ticket's headers."""
    image = tmp_path / "first.png"
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    image.write_bytes(data)
    put_url = "http://storage.example.test/bucket/abc?X-Signature=s1"
    ticket = {
        "type": "image",
        "filename": "first.png",
        "size": len(data),
        "download_url": "https://cdn.example.test/abc.png",
        "upload": {"method": "PUT", "url": put_url, "headers": {"Content-Type": "image/png"}},
    }
    mocked.post(f"{BASE}/api/v3/media/uploads", payload=envelope(ticket))
    mocked.put(put_url, status=200, body=b"")
    url = await client.upload_image(image)
    assert url == "https://cdn.example.test/abc.png"
    [ticket_call] = calls(mocked, "POST", f"{BASE}/api/v3/media/uploads")
    assert ticket_call.headers["Authorization"] == f"Bearer {KEY}"
    assert ticket_call.json == {
        "filename": "first.png",
        "size": len(data),
        "content_type": "image/png",
    }
    [put] = calls(mocked, "PUT", put_url)
    assert put.headers["Content-Type"] == "image/png"
    assert "Authorization" not in put.headers
    assert put.body == data


async def test_upload_retries_the_put_on_a_server_error(client, mocked, tmp_path, events):
    """A 503 from storage is retried; the ticket is not requested again."""
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    put_url = "http://storage.example.test/x"
    ticket = {
        "download_url": "https://cdn.example.test/x.png",
        "upload": {"method": "PUT", "url": put_url, "headers": {}},
    }
    mocked.post(f"{BASE}/api/v3/media/uploads", payload=envelope(ticket))
    mocked.put(put_url, status=503, body=b"<Error>SlowDown</Error>")
    mocked.put(put_url, status=200)
    assert await client.upload_image(image) == "https://cdn.example.test/x.png"
    assert len(calls(mocked, "PUT", put_url)) == 2
    assert len(calls(mocked, "POST", f"{BASE}/api/v3/media/uploads")) == 1
    assert [e.operation for e in events] == ["upload"]


async def test_download_sends_the_key_only_to_the_api_origin(client, mocked, tmp_path):
    """An output on the API's own origin gets the key; one on a CDN never does."""
    own = f"{BASE}/outputs/a.mp4"
    cdn = "http://cdn.example.test/outputs/b.mp4?token=t"
    mocked.get(own, body=MP4, headers={"Content-Length": str(len(MP4))})
    mocked.get(cdn, body=MP4)
    first = await client.download(own, tmp_path / "a.mp4")
    await client.download(cdn, tmp_path / "b.mp4")
    [own_call] = calls(mocked, "GET", own)
    [cdn_call] = calls(mocked, "GET", cdn)
    assert own_call.headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in cdn_call.headers
    assert first.size == len(MP4)
    assert first.sha256 == hashlib.sha256(MP4).hexdigest()
    assert (tmp_path / "a.mp4").read_bytes() == MP4


async def test_download_of_something_not_mp4_is_refused_and_leaves_nothing(
    client, mocked, tmp_path
):
    """An HTML page served as the output is a NotMp4Error; no file, no temp file, no retry."""
    url = "http://cdn.example.test/out.mp4"
    mocked.get(url, body=b"<html>expired</html>")
    with pytest.raises(NotMp4Error, match="not an MP4"):
        await client.download(url, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
    assert len(calls(mocked, "GET", url)) == 1


# ------------------------------------------------------------------ answers and errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
    ],
)
async def test_error_statuses_map_to_their_exception(client, mocked, status, kind):
    """Each documented status raises its own class with WaveSpeed's message in it."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=status, payload={"code": status, "message": "field prompt: too long"})
    with stamina.set_testing(True, attempts=1), pytest.raises(kind) as caught:
        await client.get_prediction(TASK)
    assert caught.value.status == status
    assert caught.value.api_message == "field prompt: too long"
    assert f"HTTP {status}" in str(caught.value)
    assert "field prompt: too long" in str(caught.value)


async def test_an_error_body_that_is_not_json_still_gives_a_clear_message(client, mocked):
    """A proxy's HTML 502 becomes a ServerError quoting the start of the page on one line."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=502, body=b"<html>\n<b>Bad gateway</b>\n</html>")
    with stamina.set_testing(True, attempts=1), pytest.raises(ServerError) as caught:
        await client.get_prediction(TASK)
    assert "\n" not in str(caught.value)
    assert "Bad gateway" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"code": 200, "message": "ok", "data": null}', "'data' is not an object"),
        (b'{"code": 200, "data": {"status": "created"}}', "'id'"),
        (b'{"code": 200, "data": {"id": "ab", "model": "m", "status": 3}}', "'status'"),
        (
            b'{"code": 200, "data": {"id": "ab", "model": "m", "status": "created",'
            b' "created_at": "yesterday"}}',
            "created_at",
        ),
        (
            b'{"code": 200, "data": {"id": "ab", "model": "m", "status": "completed",'
            b' "created_at": "2025-01-01T00:00:00Z", "outputs": "x.mp4"}}',
            "outputs",
        ),
    ],
)
async def test_malformed_answers_are_protocol_errors_not_key_errors(
    client, mocked, body, complaint
):
    """Whatever the server gets wrong, the error names it; never a KeyError or TypeError."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=200, body=body)
    with pytest.raises(ProtocolError, match=complaint):
        await client.get_prediction(TASK)
    assert len(calls(mocked, "GET", url)) == 1


async def test_an_envelope_code_overrides_a_200_status(client, mocked):
    """HTTP 200 whose envelope says 404 is a NotFoundError: the envelope mirrors the status."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=200, payload={"code": 404, "message": "task not found", "data": None})
    with pytest.raises(NotFoundError, match="task not found"):
        await client.get_prediction(TASK)


def test_prediction_parsing_tolerates_nulls_in_optional_fields():
    """Null outputs, error, timings and flags read as empty (a zone-less time is refused:
    tests/test_wavespeed_border.py)."""
    parsed = prediction_from_json(
        prediction(
            outputs=None,
            error=None,
            timings=None,
            has_nsfw_contents=None,
            created_at="2025-06-01T11:59:58+02:00",
        ),
        scrub=Scrubber(KEY),
    )
    assert parsed.outputs == ()
    assert parsed.error == ""
    assert parsed.inference_ms is None
    assert parsed.created_at == datetime(2025, 6, 1, 9, 59, 58, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "final", "pending", "unknown"),
    [
        ("created", False, True, False),
        ("processing", False, True, False),
        ("completed", True, False, False),
        ("failed", True, False, False),
        ("cancelled", True, False, False),
        ("timeout", True, False, False),
        ("deleted", True, False, False),
        ("queued-for-gpu", False, False, True),
    ],
)
def test_status_helpers_classify_every_status(status, final, pending, unknown):
    """Final statuses stop polling; an unknown one is neither final nor pending, and counted."""
    p = Prediction(id=TASK, model=MODEL, status=status, created_at=NOW)
    assert (p.is_final, p.is_pending, p.is_unknown_status) == (final, pending, unknown)
    assert not p.succeeded


def test_a_completed_task_without_outputs_is_not_a_success():
    """Completed with no URL to download is reported as a failure reason."""
    p = Prediction(id=TASK, model=MODEL, status="completed", created_at=NOW)
    assert p.is_final
    assert not p.succeeded
    assert p.failure_reason == "completed without any output"


# ------------------------------------------------------------------ retries


async def test_result_get_is_retried_on_429_5xx_and_dropped_connections(client, mocked, events):
    """A 429, a 503 and a dropped connection are each retried; the fourth attempt succeeds."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=429, headers={"Retry-After": "2"}, payload={"code": 429})
    mocked.get(url, status=503, payload={"code": 503, "message": "busy"})
    # aiohttp itself resends an idempotent request once when a kept-alive connection drops;
    # the second drop in a row is the client's to retry.
    mocked.get(url, exception=aiohttp.ServerDisconnectedError())
    mocked.get(url, exception=aiohttp.ServerDisconnectedError())
    mocked.get(url, payload=envelope(prediction(status="processing")))
    result = await client.get_prediction(TASK)
    assert result.status == "processing"
    assert len(calls(mocked, "GET", url)) == 5
    assert [e.attempt for e in events] == [2, 3, 4]
    causes = (RateLimitedError, ServerError, BackendConnectionError)
    assert all(isinstance(e.cause, c) for e, c in zip(events, causes, strict=True))


async def test_retries_stop_after_the_attempt_limit(client, mocked):
    """When every attempt fails, the last error goes to the caller."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    for _ in range(4):
        mocked.get(url, status=500, payload={"code": 500, "message": "boom"})
    with pytest.raises(ServerError, match="boom"):
        await client.get_prediction(TASK)
    assert len(calls(mocked, "GET", url)) == 4


async def test_a_bad_request_is_never_retried(client, mocked):
    """400 would fail the same way again: one attempt only."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, status=400, payload={"code": 400, "message": "duration must be 5 or 10"})
    with pytest.raises(BadRequestError, match="duration must be 5 or 10"):
        await client.submit(REQUEST)
    assert len(calls(mocked, "POST", url)) == 1


async def test_retry_after_is_a_lower_bound_on_the_wait(client, mocked, events):
    """A 429 with Retry-After: 7 waits at least 7 s, although the backoff would be 0.5 s."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=429, headers={"Retry-After": "7"}, payload={"code": 429})
    mocked.get(url, payload=envelope(prediction()))
    await client.get_prediction(TASK)
    [event] = events
    assert event.wait_s == 7.0
    assert event.cause.retry_after_s == 7.0


async def test_retry_after_as_an_http_date_is_understood(client, mocked, events):
    """Retry-After may be a date: the wait is measured from the client's clock."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    mocked.get(url, status=429, headers={"Retry-After": when}, payload={"code": 429})
    mocked.get(url, payload=envelope(prediction()))
    await client.get_prediction(TASK)
    assert events[0].wait_s == 30.0


async def test_a_very_long_retry_after_goes_to_the_caller(client, mocked):
    """Retry-After beyond the policy's limit is not slept through inside one call."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=429, headers={"Retry-After": "3600"}, payload={"code": 429})
    with pytest.raises(RateLimitedError) as caught:
        await client.get_prediction(TASK)
    assert caught.value.retry_after_s == 3600.0
    assert len(calls(mocked, "GET", url)) == 1


def test_retry_wait_grows_exponentially_up_to_the_cap():
    """Backoff doubles from wait_initial_s and stops at wait_max_s; non-retryable gives None."""
    policy = RetryPolicy(wait_initial_s=0.5, wait_max_s=4.0, jitter_fraction=0.0)
    error = ServerError("x", status=500)
    assert [retry_wait_s(error, n, policy, 0.0) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert retry_wait_s(BadRequestError("x", status=400), 1, policy, 0.0) is None
    assert retry_wait_s(ProtocolError("x"), 1, policy, 0.0) is None


async def test_history_listing_is_retried(client, mocked):
    """The history POST only reads, so it is retried like a GET."""
    url = f"{BASE}/api/v3/predictions"
    mocked.post(url, status=502, body=b"bad gateway")
    mocked.post(url, payload=envelope({"page": 1, "items": []}))
    assert await client.list_predictions() == []
    assert len(calls(mocked, "POST", url)) == 2


# ------------------------------------------------------------------ submit: never pay twice


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_submit_answered_429_or_5xx_is_retried(client, mocked, status):
    """An explicit 429/5xx created nothing, so the submit is sent again."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, status=status, payload={"code": status, "message": "later"})
    mocked.post(url, payload=envelope(prediction()))
    assert (await client.submit(REQUEST)).id == TASK
    assert len(calls(mocked, "POST", url)) == 2


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.SocketTimeoutError("read timed out"),
        TimeoutError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
    ],
)
async def test_submit_with_unknown_outcome_is_never_resent(client, mocked, exception):
    """A connection that broke after sending raises SubmitOutcomeUnknown after one POST."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, exception=exception)
    mocked.post(url, payload=envelope(prediction()))
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await client.submit(REQUEST)
    assert len(calls(mocked, "POST", url)) == 1
    assert caught.value.model == MODEL
    assert caught.value.sent_at == NOW
    assert "history" in str(caught.value)


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_gateways_bare_5xx_to_a_submit_is_an_unknown_outcome_never_resent(
    client, mocked, status
):
    """A gateway may answer 502/503/504 after the API created the task: never resend it."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, status=status, body=b"<html><h1>502 Bad Gateway</h1></html>")
    mocked.post(url, payload=envelope(prediction()))
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(REQUEST)
    assert len(calls(mocked, "POST", url)) == 1


async def test_a_gateways_bare_502_to_a_poll_is_retried(client, mocked):
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=502, body=b"<html>Bad Gateway</html>")
    mocked.get(url, payload=envelope(prediction()))
    assert (await client.get_prediction(TASK)).id == TASK


async def test_the_servers_clock_offset_is_learned_from_the_date_header(client, mocked):
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    server_time = NOW + timedelta(minutes=3)
    assert client.clock_offset is None
    mocked.get(
        url,
        payload=envelope(prediction()),
        headers={"Date": format_datetime(server_time, usegmt=True)},
    )
    await client.get_prediction(TASK)
    assert client.clock_offset == timedelta(minutes=3, milliseconds=500)


async def test_a_missing_or_garbled_date_header_leaves_the_offset_unknown(client, mocked):
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, payload=envelope(prediction()), headers={"Date": "yesterday-ish"})
    await client.get_prediction(TASK)
    assert client.clock_offset is None


async def test_submit_answered_200_with_garbage_is_an_unknown_outcome(client, mocked):
    """A success status whose body cannot be read may hide a created task: not resent."""
    url = f"{BASE}/api/v3/{MODEL}"
    mocked.post(url, status=200, body=b"<html>ok</html>")
    with pytest.raises(SubmitOutcomeUnknown, match="not JSON"):
        await client.submit(REQUEST)
    assert len(calls(mocked, "POST", url)) == 1


async def test_submit_whose_connection_never_opened_is_retried(client, mocked):
    """Connection refused means nothing was sent: retrying cannot create a second task."""
    url = f"{BASE}/api/v3/{MODEL}"
    key = ConnectionKey(
        host="localhost",
        port=8080,
        is_ssl=False,
        ssl=True,
        proxy=None,
        proxy_auth=None,
        proxy_headers_hash=None,
    )
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    mocked.post(url, exception=refused)
    mocked.post(url, payload=envelope(prediction()))
    assert (await client.submit(REQUEST)).id == TASK
    assert len(calls(mocked, "POST", url)) == 2


# ------------------------------------------------------------------ the key stays secret


def test_repr_and_str_redact_the_key(client):
    """The key appears in neither repr() nor str(); a placeholder shows it is set."""
    for text in (repr(client), str(client)):
        assert KEY not in text
        assert "***" in text
        assert BASE in text


async def test_a_server_echoing_the_key_does_not_leak_it(client, mocked, caplog):
    """A 401 whose message quotes the key is redacted in the exception and in the logs."""
    caplog.set_level(logging.DEBUG)
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=401, payload={"code": 401, "message": f"invalid key {KEY}"})
    with pytest.raises(AuthError) as caught:
        await client.get_prediction(TASK)
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert "invalid key ***" in str(caught.value)
    assert KEY not in caplog.text


async def test_retry_logs_and_events_never_carry_the_key(client, mocked, caplog, events):
    """Retries are logged without the key."""
    caplog.set_level(logging.DEBUG)
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=503, payload={"code": 503, "message": f"upstream said {KEY}"})
    mocked.get(url, payload=envelope(prediction()))
    await client.get_prediction(TASK)
    assert "retrying get_prediction" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in str(events[0].cause)


async def test_bad_keys_are_refused_without_quoting_them(session):
    """An empty key or one with a newline is refused with a message that does not echo it."""
    with pytest.raises(AuthError, match="empty"):
        WaveSpeedClient(session, BASE, "")
    with pytest.raises(AuthError, match="control characters") as caught:
        WaveSpeedClient(session, BASE, "abc\ndef")
    assert "abc" not in str(caught.value)


async def test_a_session_carrying_authorization_is_refused():
    """The key must go only where the client decides, so a session-wide header is refused."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer x"}) as s:
        with pytest.raises(ValueError, match="Authorization"):
            WaveSpeedClient(s, BASE, KEY)


# ------------------------------------------------------------------ base URL


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://api.wavespeed.ai", "https://api.wavespeed.ai"),
        ("https://api.wavespeed.ai/", "https://api.wavespeed.ai"),
        ("HTTPS://api.wavespeed.ai:8443/prefix/", "https://api.wavespeed.ai:8443/prefix"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.3.4.5", "http://127.3.4.5"),
        ("http://localhost:9000/", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_base_url_accepts_https_and_loopback_http(url, normalised):
    assert validate_base_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://api.wavespeed.ai", "refusing plain http:// to api.wavespeed.ai"),
        ("http://10.0.0.5:8080", "refusing plain http://"),
        ("http://localhost.evil.test", "refusing plain http://"),
        ("ftp://api.wavespeed.ai", "must start with https://"),
        ("api.wavespeed.ai", "must start with https://"),
        ("https://", "no host"),
        ("https://user:pw@api.wavespeed.ai", "credentials"),
        ("https://api.wavespeed.ai/?x=1", "query"),
        ("https://api.wavespeed.ai:99999", "invalid host or port"),
    ],
)
def test_base_url_refusals_are_one_line(url, complaint):
    with pytest.raises(BaseUrlError, match=complaint) as caught:
        validate_base_url(url)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value)


async def test_the_client_validates_its_base_url(session):
    """A client cannot be built pointing plain http at a remote host."""
    with pytest.raises(BaseUrlError):
        WaveSpeedClient(session, "http://api.wavespeed.ai", KEY)


async def test_cancelling_a_call_propagates_cancellation(client, mocked):
    """Cancellation is not an error to retry: it reaches the caller at once."""
    url = f"{BASE}/api/v3/predictions/{TASK}/result"

    arrived, never = asyncio.Event(), asyncio.Event()

    async def hang(_request: web.Request) -> web.StreamResponse:
        arrived.set()
        await never.wait()
        raise AssertionError("unreachable")

    mocked.get(url, handler=hang)
    task = asyncio.create_task(client.get_prediction(TASK))
    await arrived.wait()  # the event: the request is at the server, its answer pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls(mocked, "GET", url)) == 1


async def test_a_retry_line_says_what_failed_and_when_the_next_try_is(client, mocked, caplog):
    """One warning per retry, before the wait: the call, the wait, the attempt, the error."""
    caplog.set_level(logging.INFO, logger=CLIENT_LOG)
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=503, payload={"code": 503, "message": "upstream busy"})
    mocked.get(url, status=429, payload={"code": 429, "message": "slow down"})
    mocked.get(url, payload=envelope(prediction()))
    await client.get_prediction(TASK)
    ours = [r for r in caplog.records if r.name == CLIENT_LOG]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.WARNING]
    # rng is 0 in these tests: no jitter, so the waits are the policy's 0.5 s then 1 s.
    assert ours[0].getMessage() == (
        f"retrying get_prediction in 0.5 s (attempt 2 of 6) after: GET /api/v3/predictions/"
        f"{TASK}/result: HTTP 503 Service Unavailable: upstream busy"
    )
    assert ours[1].getMessage().startswith("retrying get_prediction in 1.0 s (attempt 3 of 6)")
    assert "HTTP 429" in ours[1].getMessage()


async def test_the_last_failure_is_not_announced_as_a_retry(session, mocked, caplog):
    """When no attempt is left, no "retrying" line promises one."""
    caplog.set_level(logging.INFO, logger=CLIENT_LOG)
    client = WaveSpeedClient(
        session, BASE, KEY, retry=RetryPolicy(attempts=2), rng=lambda: 0.0, clock=lambda: NOW
    )
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    mocked.get(url, status=503, payload={"code": 503, "message": "down"}, repeat=True)
    with pytest.raises(ServerError):
        await client.get_prediction(TASK)
    lines = [r.getMessage() for r in caplog.records if r.name == CLIENT_LOG]
    assert [line.split(" after:")[0] for line in lines if "retrying" in line] == [
        "retrying get_prediction in 0.5 s (attempt 2 of 2)"
    ]


async def test_the_servers_clock_survives_a_step_of_ours(session, mocked):
    """Our clock corrected by 10 minutes after an answer: ours plus the offset is still the
    server's time, carried forward on a clock that never jumps."""
    wall = [NOW]
    steady = [100.0]
    client = WaveSpeedClient(session, BASE, KEY, clock=lambda: wall[0], monotonic=lambda: steady[0])
    url = f"{BASE}/api/v3/predictions/{TASK}/result"
    server_time = NOW + timedelta(minutes=3)
    mocked.get(
        url,
        payload=envelope(prediction()),
        headers={"Date": format_datetime(server_time, usegmt=True)},
    )
    await client.get_prediction(TASK)
    steady[0] += 30.0
    wall[0] = NOW + timedelta(seconds=30) - timedelta(minutes=10)  # stepped back 10 minutes
    offset = client.clock_offset
    assert offset is not None
    assert wall[0] + offset == server_time + timedelta(seconds=30, milliseconds=500)
