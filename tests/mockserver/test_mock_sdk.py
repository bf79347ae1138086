"""The official WaveSpeed SDK, run against the mock as a third-party client.

Each assertion is what the SDK gives against the real service for the same situation.
The SDK is synchronous, so the mock serves from its own thread.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
import requests
import wavespeed

from mockserver import FaultConfig, FaultRule, FixedTime, MockConfig, ThreadedMockServer, catalogue
from tests.mockserver.mock_support import I2V, image_bytes

POLL_S = 0.02


@pytest.fixture(scope="module")
def mock() -> Iterator[ThreadedMockServer]:
    with ThreadedMockServer(MockConfig(processing=FixedTime(seconds=0.05))) as server:
        yield server


@pytest.fixture
def client(mock: ThreadedMockServer) -> wavespeed.Client:
    return wavespeed.Client(api_key=mock.api_key, base_url=mock.base_url, retry_interval=0.01)


def body(duration: int = 5) -> dict[str, object]:
    return {"prompt": "waves", "image": "https://example.com/a.png", "duration": duration}


def test_run_returns_a_downloadable_mp4(client: wavespeed.Client) -> None:
    """run() polls to completion and returns outputs; the URL serves an MP4."""
    output = client.run(I2V, body(), poll_interval=POLL_S, timeout=30)
    assert list(output) == ["outputs"]
    (url,) = output["outputs"]
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"


def test_run_in_sync_mode_returns_outputs_in_one_request(
    client: wavespeed.Client, mock: ThreadedMockServer
) -> None:
    """With enable_sync_mode the SDK gets the outputs from the submit itself, never polling."""
    before = mock.stats()["polls"]
    output = client.run(I2V, body(), enable_sync_mode=True)
    assert len(output["outputs"]) == 1
    assert mock.stats()["polls"] == before


def test_run_no_throw_reports_completion(client: wavespeed.Client) -> None:
    """run_no_throw() returns status, outputs, task id and no error."""
    result = client.run_no_throw(I2V, body(), poll_interval=POLL_S, timeout=30)
    assert result["status"] == "completed"
    assert result["error"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", result["task_id"])
    assert len(result["outputs"]) == 1


def test_upload_returns_a_url_usable_as_the_image(client: wavespeed.Client, tmp_path: Path) -> None:
    """upload() goes ticket + PUT; the returned URL serves the bytes and feeds a task."""
    data = image_bytes(480, 320, (200, 40, 40))
    path = tmp_path / "first.png"
    path.write_bytes(data)
    url = client.upload(str(path))
    fetched = requests.get(url, timeout=10)
    assert fetched.content == data
    assert fetched.headers["Content-Type"] == "image/png"
    output = client.run(I2V, {**body(), "image": url}, poll_interval=POLL_S, timeout=30)
    assert len(output["outputs"]) == 1


def test_get_result_returns_the_full_envelope(client: wavespeed.Client) -> None:
    """get_result() returns the whole response: code, message and the prediction."""
    task_id = client.run_no_throw(I2V, body(), poll_interval=POLL_S, timeout=30)["task_id"]
    response = client.get_result(task_id)
    assert response["code"] == 200
    assert response["data"]["id"] == task_id
    assert response["data"]["status"] == "completed"


def test_wrong_key_raises_on_submit_with_http_401(mock: ThreadedMockServer) -> None:
    """A bad key: the submit answers 401 and the SDK raises without retrying."""
    client = wavespeed.Client(api_key="wrong", base_url=mock.base_url)
    with pytest.raises(RuntimeError, match="HTTP 401"):
        client.run(I2V, body(), poll_interval=POLL_S)
    result = client.run_no_throw(I2V, body(), poll_interval=POLL_S)
    assert result["status"] == "failed"
    assert result["outputs"] is None
    assert "HTTP 401" in result["error"]


def test_invalid_body_raises_with_http_400_naming_the_field(client: wavespeed.Client) -> None:
    """Duration 7 without last_image: 400 whose message names duration."""
    with pytest.raises(RuntimeError, match=r"HTTP 400.*duration: 7 needs last_image"):
        client.run(I2V, body(duration=7), poll_interval=POLL_S)


def test_failed_task_raises_and_run_no_throw_reports_it(
    client: wavespeed.Client, mock: ThreadedMockServer
) -> None:
    """A task failing with 1403: run() raises 'Prediction failed', run_no_throw() says failed."""
    rule = FaultRule(kind="task_failure", codes=(1403,), limit=2)
    mock.set_faults(FaultConfig(rules=(rule,)))
    try:
        with pytest.raises(RuntimeError, match=r"Prediction failed \(task_id: [0-9a-f]{32}\)"):
            client.run(I2V, body(), poll_interval=POLL_S, timeout=30)
        result = client.run_no_throw(I2V, body(), poll_interval=POLL_S, timeout=30)
    finally:
        mock.set_faults(FaultConfig())
    assert result["status"] == "failed"
    assert result["outputs"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", result["task_id"])
    assert "Generation failed" in result["error"]
    refunds = [e for e in mock.ledger()["entries"] if e["task_id"] == result["task_id"]]
    assert [e["kind"] for e in refunds] == ["charge", "refund"]


def _family_body(model: str) -> dict[str, object]:
    """A request every model of the mock's catalogue takes: its own fields, set."""
    served = catalogue.MODELS[model]
    sent: dict[str, object] = {"prompt": "waves", "duration": served.durations[-1]}
    if served.takes_image:
        sent["image"] = "https://example.com/a.png"
    for name, rule in served.fields.items():
        if rule.kind == "boolean":
            sent[name] = True
        elif rule.kind == "choice":
            sent[name] = rule.choices[-1]
        elif rule.kind == "number":
            sent[name] = 0.7
        elif rule.kind == "text":
            sent[name] = "blur"
    return sent


@pytest.mark.parametrize("model", sorted(catalogue.MODELS))
def test_the_sdk_runs_every_model_of_the_family(
    client: wavespeed.Client, mock: ThreadedMockServer, model: str
) -> None:
    """The SDK posts to each model's own path with its own fields and gets an MP4 of its length."""
    sent = _family_body(model)
    result = client.run_no_throw(model, sent, poll_interval=POLL_S, timeout=30)
    assert result["status"] == "completed", result
    (url,) = result["outputs"]
    video = requests.get(url, timeout=30)
    assert video.content[4:8] == b"ftyp"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.frames / stream.average_rate)
    assert round(seconds) == sent["duration"]


@pytest.mark.parametrize("model", sorted(catalogue.MODELS))
def test_the_sdk_is_refused_a_field_the_model_does_not_take(
    client: wavespeed.Client, model: str
) -> None:
    """A field another model takes is a 400 naming it, before anything is billed."""
    result = client.run_no_throw(
        model, {**_family_body(model), "voice_list": []}, poll_interval=POLL_S, timeout=30
    )
    assert result["status"] != "completed"
    assert "voice_list" in str(result["error"])
