"""Every endpoint of the WaveSpeed API as the mock serves it, and every error path."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest

from kling_pipe._shotlist import rules
from mockserver import ManualClock, MockServer
from tests.mockserver.mock_support import AUTH, I2V, KEY, T2V, Api, MakeMock, i2v, image_bytes

PREDICTION_FIELDS = {
    "id",
    "model",
    "outputs",
    "urls",
    "has_nsfw_contents",
    "status",
    "created_at",
    "error",
    "timings",
}


async def test_prediction_object_has_exactly_the_documented_fields(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """Submit answers the envelope around a prediction with WaveSpeed's fields and formats."""
    status, reply, _ = await api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert status == 200
    assert reply["code"] == 200
    assert reply["message"] == "success"
    data = reply["data"]
    assert isinstance(data, dict)
    assert set(data) == PREDICTION_FIELDS
    assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
    assert data["model"] == I2V
    assert data["outputs"] == []
    assert data["has_nsfw_contents"] == []
    assert data["status"] == "processing"
    assert data["urls"] == {"get": f"{mock.base_url}/api/v3/predictions/{data['id']}/result"}
    assert data["created_at"] == "2026-01-01T00:00:00.000Z"
    assert data["error"] == ""
    assert data["timings"] == {"inference": 0}


async def test_completed_prediction_lists_one_output_and_its_nsfw_flag(
    api: Api, mock: MockServer
) -> None:
    """Once completed, outputs holds one mock URL and has_nsfw_contents one False."""
    task_id = await api.submit(i2v())
    mock.advance(10)
    data = await api.result(task_id)
    assert data["status"] == "completed"
    assert data["outputs"] == [f"{mock.base_url}/media/outputs/{task_id}.mp4"]
    assert data["has_nsfw_contents"] == [False]
    assert data["timings"] == {"inference": 10_000}


async def test_both_result_routes_answer_the_same_prediction(api: Api) -> None:
    """GET /predictions/{id} and /predictions/{id}/result give the same envelope."""
    task_id = await api.submit(i2v())
    _, short, _ = await api.call("GET", f"/api/v3/predictions/{task_id}")
    _, long, _ = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert short == long


@pytest.mark.parametrize(
    ("headers", "label"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer nope"}, "wrong"),
        ({"Authorization": KEY}, "bare"),
    ],
)
async def test_api_routes_answer_401_without_the_right_bearer_key(
    api: Api, headers: dict[str, str], label: str
) -> None:
    """A missing, wrong or non-Bearer key gets 401 with a JSON error body."""
    for method, path in [("POST", f"/api/v3/{I2V}"), ("GET", "/api/v3/balance")]:
        status, reply, _ = await api.call(method, path, json=i2v(), headers=headers)
        assert status == 401, label
        assert reply == {"code": 401, "message": "Unauthorized: invalid or missing API key"}


async def test_unknown_prediction_id_is_404(api: Api) -> None:
    """An id the mock never issued: 404 with a JSON body naming it."""
    status, reply, _ = await api.call("GET", "/api/v3/predictions/" + "0" * 32 + "/result")
    assert status == 404
    assert reply == {"code": 404, "message": f"prediction not found: {'0' * 32}"}


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    """Routes that do not exist answer 404 in WaveSpeed's error shape, API or not."""
    for path in ("/api/v3/nothing/here", "/nowhere"):
        status, reply, _ = await api.call("GET", path)
        assert status == 404
        assert reply["code"] == 404


async def test_unknown_model_is_404(api: Api) -> None:
    """POST to a model id the catalogue does not know: 404 naming it."""
    status, reply, _ = await api.call("POST", "/api/v3/acme/nope", json=i2v())
    assert (status, reply["message"]) == (404, "model not found: acme/nope")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v3/predictions", {}, "items"),
        ("/api/v3/predictions/delete", {"ids": []}, "deleted_count"),
        ("/api/v3/media/uploads", {"filename": "a.png", "size": 3}, "upload"),
    ],
)
async def test_fixed_post_routes_are_not_taken_for_model_ids(
    api: Api, path: str, body: dict[str, object], field: str
) -> None:
    """The submit route's {model:.+} does not swallow history, delete or upload routes."""
    status, reply, _ = await api.call("POST", path, json=body)
    assert status == 200
    data = reply["data"]
    assert isinstance(data, dict)
    assert field in data


SUBMIT_ERRORS = [
    ({"image": "https://x/a.png"}, "prompt: is required"),
    ({"prompt": "  ", "image": "https://x/a.png"}, "prompt: is required"),
    ({"prompt": 3, "image": "https://x/a.png"}, "prompt: must be a string"),
    ({"prompt": "p" * 2501, "image": "https://x/a.png"}, "prompt: at most 2500 characters"),
    ({"prompt": "p"}, "image: is required"),
    ({"prompt": "p", "image": "ftp://x/a.png"}, "image: must be an http(s) URL"),
    ({"prompt": "p", "image": "data:image/png;base64,!!"}, "image: invalid data URI"),
    (
        {"prompt": "p", "image": "https://x/a.png", "duration": 7},
        "duration: 7 needs last_image; without it only 5 or 10 are allowed",
    ),
    (
        {"prompt": "p", "image": "https://x/a.png", "last_image": "https://x/b.png", "duration": 2},
        "duration: 2 is not allowed; with last_image the duration is 3 to 10 seconds",
    ),
    ({"prompt": "p", "image": "https://x/a.png", "duration": 5.0}, "duration: must be a whole"),
    ({"prompt": "p", "image": "https://x/a.png", "enable_sync_mode": "yes"}, "enable_sync_mode"),
]


@pytest.mark.parametrize(("body", "message"), SUBMIT_ERRORS)
async def test_invalid_image_to_video_body_is_400_naming_the_field(
    api: Api, body: dict[str, object], message: str
) -> None:
    """Each broken rule answers 400 with a message that starts with the field's name."""
    status, reply, _ = await api.call("POST", f"/api/v3/{I2V}", json=body)
    assert status == 400
    assert reply["code"] == 400
    assert str(reply["message"]).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "p", "aspect_ratio": "4:3"}, "aspect_ratio: must be one of 16:9, 9:16, 1:1"),
        ({"prompt": "p", "duration": 7}, "duration: 7 is not allowed; this model takes 5 or 10"),
    ],
)
async def test_invalid_text_to_video_body_is_400(
    api: Api, body: dict[str, object], message: str
) -> None:
    """Text-to-video checks aspect_ratio and allows only 5 or 10 seconds."""
    status, reply, _ = await api.call("POST", f"/api/v3/{T2V}", json=body)
    assert (status, str(reply["message"])[: len(message)]) == (400, message)


async def test_text_to_video_is_accepted_with_an_aspect_ratio(api: Api) -> None:
    """The sibling endpoint takes prompt, duration and aspect_ratio, no image."""
    task_id = await api.submit({"prompt": "p", "duration": 10, "aspect_ratio": "9:16"}, T2V)
    assert (await api.result(task_id))["model"] == T2V


async def test_malformed_json_and_non_object_bodies_are_400(api: Api) -> None:
    """A body that is not a JSON object answers 400 about the body."""
    url = f"{api.server.base_url}/api/v3/{I2V}"
    for raw in (b"{not json", b"[1, 2]"):
        async with api.session.post(url, data=raw, headers=AUTH) as response:
            assert response.status == 400
            assert (await response.json())["message"].startswith("body:")


async def test_webhook_query_must_be_an_http_url(api: Api) -> None:
    """?webhook= with something other than an http(s) URL is a 400 about webhook."""
    status, reply, _ = await api.call("POST", f"/api/v3/{I2V}?webhook=ftp://x", json=i2v())
    assert (status, reply["message"]) == (400, "webhook: must be an http(s) URL")


async def test_balance_is_debited_by_the_price_of_each_accepted_task(
    api: Api, mock: MockServer
) -> None:
    """Two tasks of 5 s and 7 s cost 0.42 + 0.588; invalid ones cost nothing."""
    await api.submit(i2v(5))
    await api.submit(i2v(7, last_image="https://x/b.png"))
    await api.call("POST", f"/api/v3/{I2V}", json=i2v(7))
    _, reply, _ = await api.call("GET", "/api/v3/balance")
    assert reply["data"] == {"balance": float(Decimal(1000) - Decimal("1.008"))}
    kinds = [(e["kind"], e["amount_usd"]) for e in mock.ledger()["entries"]]
    assert kinds == [("charge", "-0.420"), ("charge", "-0.588")]


async def test_insufficient_balance_is_refused_with_402_and_creates_nothing(
    api: Api, make_mock: MakeMock
) -> None:
    """A task that costs more than the balance: 402, message with both amounts, no task."""
    poor = await make_mock(balance_usd=Decimal("0.50"))
    poor_api = Api(api.session, poor)
    await poor_api.submit(i2v(5))
    status, reply, _ = await poor_api.call("POST", f"/api/v3/{I2V}", json=i2v(5))
    assert status == 402
    assert reply["message"] == (
        "insufficient balance: this task costs USD 0.420, the balance is USD 0.080"
    )
    assert poor.stats()["tasks_created"] == 1


async def test_submit_rate_limit_answers_429_with_retry_after(
    api: Api, make_mock: MakeMock, clock: ManualClock
) -> None:
    """Beyond the per-minute limit: 429 and Retry-After until the oldest submit ages out."""
    limited = await make_mock(submits_per_minute=2)
    limited_api = Api(api.session, limited)
    await limited_api.submit(i2v())
    clock.advance(20)
    await limited_api.submit(i2v())
    status, reply, headers = await limited_api.call("POST", f"/api/v3/{I2V}", json=i2v())
    assert status == 429
    assert reply["message"] == "rate limit exceeded: at most 2 submissions per minute"
    assert headers["Retry-After"] == "40"
    clock.advance(40)
    await limited_api.submit(i2v())


async def test_history_lists_newest_first_with_paging(api: Api, clock: ManualClock) -> None:
    """POST /predictions pages newest first; page_size is honoured."""
    ids = []
    for _ in range(5):
        ids.append(await api.submit(i2v()))
        clock.advance(1)
    _, reply, _ = await api.call("POST", "/api/v3/predictions", json={"page": 2, "page_size": 2})
    data = reply["data"]
    assert isinstance(data, dict)
    assert data["page"] == 2
    assert [item["id"] for item in data["items"]] == [ids[2], ids[1]]
    assert set(data["items"][0]) == PREDICTION_FIELDS


async def test_history_filters_by_model_status_and_time(
    api: Api, mock: MockServer, clock: ManualClock
) -> None:
    """model, status, created_after and created_before narrow the list."""
    first = await api.submit(i2v())
    mock.complete(first)
    clock.advance(60)
    second = await api.submit({"prompt": "p"}, T2V)

    async def ids(**filters: object) -> list[str]:
        _, reply, _ = await api.call("POST", "/api/v3/predictions", json=filters)
        data = reply["data"]
        assert isinstance(data, dict)
        return [item["id"] for item in data["items"]]

    assert await ids(model=T2V) == [second]
    assert await ids(status="completed") == [first]
    assert await ids(created_after="2026-01-01T00:00:30Z") == [second]
    assert await ids(created_before="2026-01-01T00:00:30.000Z") == [first]
    clock.advance(8 * 24 * 3600)
    assert await ids() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"page_size": 101}, "page_size: must be an integer from 1 to 100"),
        ({"page": 0}, "page: must be an integer from 1"),
        ({"status": "done"}, "status: unknown status 'done'"),
        ({"created_after": "yesterday"}, "created_after: 'yesterday' is not an ISO 8601 time"),
        ({"created_before": "2026-01-01T00:00:00"}, "created_before: needs a time zone"),
    ],
)
async def test_history_rejects_bad_filters_with_400(
    api: Api, body: dict[str, object], message: str
) -> None:
    """History's paging and filter fields are validated like submit's."""
    status, reply, _ = await api.call("POST", "/api/v3/predictions", json=body)
    assert status == 400
    assert str(reply["message"]).startswith(message)


async def test_delete_removes_predictions_and_counts_only_known_ids(api: Api) -> None:
    """Deleted predictions are gone (404); unknown ids are not counted."""
    task_id = await api.submit(i2v())
    status, reply, _ = await api.call(
        "POST", "/api/v3/predictions/delete", json={"ids": [task_id, "f" * 32]}
    )
    assert (status, reply["data"]) == (200, {"deleted_count": 1})
    status, _, _ = await api.call("GET", f"/api/v3/predictions/{task_id}/result")
    assert status == 404
    status, reply, _ = await api.call("POST", "/api/v3/predictions/delete", json={"ids": "x"})
    assert (status, reply["message"]) == (400, "ids: must be a list of prediction ids")


async def test_upload_ticket_then_put_without_authorization_serves_the_bytes(
    api: Api,
) -> None:
    """Ticket, then PUT with only the ticket's headers; download_url serves the same bytes."""
    data = image_bytes(400, 300, (10, 200, 10))
    _, reply, _ = await api.call(
        "POST", "/api/v3/media/uploads", json={"filename": "f.png", "size": len(data)}
    )
    ticket = reply["data"]
    assert isinstance(ticket, dict)
    assert ticket["type"] == "image"
    assert ticket["filename"] == "f.png"
    assert ticket["size"] == len(data)
    upload = ticket["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/png"}
    async with api.session.get(ticket["download_url"]) as early:
        assert early.status == 404
    async with api.session.put(upload["url"], data=data, headers=upload["headers"]) as put:
        assert put.status == 200
    async with api.session.get(ticket["download_url"]) as got:
        assert got.status == 200
        assert got.headers["Content-Type"] == "image/png"
        assert await got.read() == data
    async with api.session.put(upload["url"], data=data, headers=upload["headers"]) as again:
        assert again.status == 409


async def test_upload_put_checks_its_token_and_the_announced_size(api: Api) -> None:
    """A forged token is 403; a body of another size than announced is 400."""
    _, reply, _ = await api.call(
        "POST", "/api/v3/media/uploads", json={"filename": "f.png", "size": 10}
    )
    ticket = reply["data"]
    assert isinstance(ticket, dict)
    url = ticket["upload"]["url"]
    async with api.session.put(url.replace("token=", "token=x"), data=b"0" * 10) as forged:
        assert forged.status == 403
    async with api.session.put(url, data=b"0" * 9) as short:
        assert short.status == 400
        assert (await short.json())["message"] == "size: the ticket announced 10 bytes, got 9"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"size": 3}, "filename: is required"),
        ({"filename": "a.png"}, "size: is required"),
        ({"filename": "a.png", "size": rules.MAX_IMAGE_BYTES + 1}, "size: at most 10485760"),
    ],
)
async def test_upload_ticket_validates_filename_and_size(
    api: Api, body: dict[str, object], message: str
) -> None:
    """Tickets need a filename and a size of at most 10 MB."""
    status, reply, _ = await api.call("POST", "/api/v3/media/uploads", json=body)
    assert status == 400
    assert str(reply["message"]).startswith(message)


async def test_binary_upload_takes_a_multipart_file(api: Api) -> None:
    """The older multipart form answers a download_url that serves the file."""
    data = image_bytes(320, 320, (0, 0, 250), codec="mjpeg")
    form = aiohttp.FormData()
    form.add_field("file", data, filename="x.jpg", content_type="image/jpeg")
    url = f"{api.server.base_url}/api/v3/media/upload/binary"
    async with api.session.post(url, data=form, headers=AUTH) as response:
        assert response.status == 200
        reply = await response.json()
    assert reply["data"]["type"] == "image"
    async with api.session.get(reply["data"]["download_url"]) as got:
        assert await got.read() == data


async def test_binary_upload_over_10_mb_is_413_and_missing_file_is_400(api: Api) -> None:
    """The documented 10 MB cap holds for multipart; a form without file is refused."""
    url = f"{api.server.base_url}/api/v3/media/upload/binary"
    form = aiohttp.FormData()
    big = io.BytesIO(b"0" * (rules.MAX_IMAGE_BYTES + 1))
    form.add_field("file", big, filename="big.png", content_type="image/png")
    async with api.session.post(url, data=form, headers=AUTH) as response:
        assert response.status == 413
    form = aiohttp.FormData()
    form.add_field("other", io.BytesIO(b"x"), filename="a.png", content_type="image/png")
    async with api.session.post(url, data=form, headers=AUTH) as response:
        assert (response.status, (await response.json())["message"]) == (400, "file: is required")


async def test_request_bodies_beyond_the_cap_are_413(api: Api, make_mock: MakeMock) -> None:
    """client_max_size caps bodies: a larger JSON body is refused as JSON 413."""
    small = await make_mock(max_body_bytes=1024)
    url = f"{small.base_url}/api/v3/{I2V}"
    async with api.session.post(url, json=i2v(prompt="p" * 2000), headers=AUTH) as response:
        assert response.status == 413
        assert (await response.json())["message"].startswith("body: larger than")


async def test_webhook_secret_is_published_with_its_prefix(api: Api) -> None:
    """GET /webhook/secret answers a whsec_ secret, stable across calls."""
    _, first, _ = await api.call("GET", "/api/v3/webhook/secret")
    _, second, _ = await api.call("GET", "/api/v3/webhook/secret")
    data = first["data"]
    assert isinstance(data, dict)
    assert str(data["secret"]).startswith("whsec_")
    assert first == second


async def test_other_methods_on_api_paths_are_json_404(api: Api) -> None:
    """A path the API does not serve with that method answers 404 naming both."""
    status, reply, _ = await api.call("DELETE", "/api/v3/balance")
    assert (status, reply["message"]) == (404, "not found: DELETE /api/v3/balance")


async def test_created_at_is_iso_utc_with_milliseconds(api: Api, clock: ManualClock) -> None:
    """created_at carries milliseconds and Z, and parses back to the clock's time."""
    clock.advance(1.2345)
    data = await api.result(await api.submit(i2v()))
    created = str(data["created_at"])
    assert created == "2026-01-01T00:00:01.234Z"
    parsed = datetime.fromisoformat(created)
    assert parsed.tzinfo == UTC
