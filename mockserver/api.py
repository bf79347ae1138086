"""WaveSpeed's ``/api/v3`` routes: submit, results, history, delete, uploads, balance, secret."""

from __future__ import annotations

import itertools
import mimetypes
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from mockserver import catalogue
from mockserver.media import media_type, own_upload_id
from mockserver.tasks import FINAL, Provenance, Status, Task
from mockserver.validation import bad, int_field, json_object, time_field, validate_submit
from mockserver.wire import (
    CLIENT_GONE,
    DRAWN,
    PROVENANCE,
    STATE,
    TASK_ID,
    ApiError,
    envelope,
    origin,
    wait_unless_gone,
)

if TYPE_CHECKING:
    from mockserver.faults import Burst, Drawn, SecondClient
    from mockserver.state import MockState

_HISTORY_DAYS_S: Final = 7 * 24 * 3600


def _note_host(request: web.Request, state: MockState) -> str:
    """Remember how the client reached us (to recognise our own URLs); return the origin."""
    if request.url.host:
        state.hosts.add(request.url.host)
    return origin(request)


def _unreachable(task_input: dict[str, Any], state: MockState) -> int | None:
    """Return 1402 if an image URL names one of our uploads that does not exist (yet)."""
    hosts = frozenset(state.hosts)
    for field in ("image", "last_image", "end_image"):
        url = task_input.get(field)
        upload_id = own_upload_id(url, hosts) if isinstance(url, str) else None
        if upload_id is not None:
            upload = state.uploads.get(upload_id)
            if upload is None or not upload.complete:
                return 1402
    return None


def _create(  # noqa: PLR0913 - the submit's parts, passed on unchanged
    state: MockState,
    model: str,
    task_input: dict[str, Any],
    *,
    webhook: str | None,
    planned: int | None,
    provenance: Provenance,
    second: SecondClient | None,
    burst: Burst | None = None,
    failure_echo: str | None = None,
) -> Task:
    """Create the submit's task, and another client's just before or after it if drawn.

    A drawn *burst* (another client's batch) follows the task, newer than it.
    """
    if second is not None and second.before:
        state.second_client(
            model, task_input, second, provenance, planned_failure=_unreachable(task_input, state)
        )
    try:
        task = state.submit(
            model,
            task_input,
            webhook=webhook,
            planned_failure=planned or _unreachable(task_input, state),
            provenance=provenance,
            failure_echo=failure_echo if planned else None,
        )
    finally:
        if second is not None and not second.before:
            _second_after(state, model, task_input, second, provenance)
    if burst is not None:
        state.burst(model, task_input, burst, provenance)
    return task


def _second_after(
    state: MockState,
    model: str,
    task_input: dict[str, Any],
    second: SecondClient,
    provenance: Provenance,
) -> None:
    def create() -> None:
        failure = _unreachable(task_input, state)
        state.second_client(model, task_input, second, provenance, planned_failure=failure)

    if second.gap_s <= 0:
        create()
    else:
        state.later(state.clock.now() + second.gap_s, create)


async def submit(request: web.Request) -> web.Response:
    """Validate, charge and queue a task; with ``enable_sync_mode`` wait for it to end.

    Under ``late_create`` the task is created only when the mock clock reaches arrival +
    ``delay_s``, by a job of the state's that runs on if the client goes away meanwhile.
    """
    state = request.app[STATE]
    model = request.match_info["model"]
    if model not in catalogue.MODELS:
        raise ApiError(404, f"model not found: {model}")
    body = json_object(await request.read())
    task_input = validate_submit(model, body)
    webhook = request.query.get("webhook")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise bad("webhook", "must be an http(s) URL")
    base = _note_host(request, state)
    state.origin = base
    drawn: Drawn | None = request.get(DRAWN)
    provenance = request[PROVENANCE] = Provenance()

    def create() -> Task:
        return _create(
            state,
            model,
            task_input,
            webhook=webhook,
            planned=drawn.task_failure if drawn and drawn.task_failure else None,
            provenance=provenance,
            second=drawn.second_client if drawn else None,
            burst=drawn.burst if drawn else None,
            failure_echo=drawn.failure_echo if drawn else None,
        )

    if drawn is not None and drawn.late_create_s is not None:
        job = state.later(state.clock.now() + drawn.late_create_s, create)
        if not await wait_unless_gone(request, job):
            request[CLIENT_GONE] = True
            return web.Response(status=204)  # nobody is there to read it
        if job.cancelled():
            raise ApiError(503, "the mock was reset before this task was created")
        task = job.result()
    else:
        task = create()
    request[TASK_ID] = task.id
    if body.get("enable_sync_mode") is True:
        timeout_s = state.config.sync_timeout_s
        await state.wait_final(task, state.clock.now() + timeout_s)
        data = state.prediction(task, base)
        if task.status not in FINAL:
            data["status"] = Status.PROCESSING.value
            data["code"] = 5004
            data["error"] = (
                f"Sync mode timed out after {timeout_s:g} s; the task is still running, "
                f"query its result at {data['urls']['get']}"
            )
        return envelope(data)
    return envelope(state.prediction(task, base))


def _task(request: web.Request) -> Task:
    state = request.app[STATE]
    state.refresh()
    task_id = request.match_info["task_id"]
    task = state.book.get(task_id)
    if task is None:
        raise ApiError(404, f"prediction not found: {task_id}")
    return task


async def result(request: web.Request) -> web.Response:
    """Answer a poll: the prediction in its envelope (counts towards `AfterPolls`)."""
    state = request.app[STATE]
    task = _task(request)
    state.poll(task)
    return envelope(state.prediction(task, origin(request)))


async def history(request: web.Request) -> web.Response:
    """List the last 7 days' predictions, newest first, filtered and paged."""
    state = request.app[STATE]
    state.refresh()
    body = json_object(await request.read())
    page = int_field(body, "page", 1, 1, 1_000_000)
    page_size = int_field(body, "page_size", 20, 1, 100)
    model, status = body.get("model"), body.get("status")
    if model is not None and not isinstance(model, str):
        raise bad("model", "must be a model id string")
    if status is not None and status not in {s.value for s in Status}:
        raise bad("status", f"unknown status {status!r}")
    # The filters are in the server's time, which is the mock clock + clock_offset_s.
    after = time_field(body, "created_after")
    before = time_field(body, "created_before")
    now = state.clock.now()
    lag, offset = state.config.history_lag_s, state.config.clock_offset_s
    oldest = now - _HISTORY_DAYS_S
    # The index is on the mock clock: a second's margin either side of the filters (in the
    # server's time), then the exact tests below (`in_history`, `server_time`, inlined).
    since = oldest if after is None else max(oldest, after - offset - 1.0)
    until = now if before is None else min(now, before - offset + 1.0)
    chosen = (
        task
        for task in state.book.newest_first(since=since, until=until)
        if task.created_at >= oldest
        and task.created_at + lag <= now
        and (model is None or task.model == model)
        and (status is None or task.status.value == status)
        and (after is None or task.created_at + offset >= after)
        and (before is None or task.created_at + offset <= before)
    )
    base = origin(request)
    start = (page - 1) * page_size
    items = [state.prediction(t, base) for t in itertools.islice(chosen, start, start + page_size)]
    return envelope({"page": page, "items": items})


async def delete(request: web.Request) -> web.Response:
    """Delete predictions by id; unknown ids are not counted."""
    state = request.app[STATE]
    ids = json_object(await request.read()).get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad("ids", "must be a list of prediction ids")
    return envelope({"deleted_count": state.delete(ids)})


async def upload_ticket(request: web.Request) -> web.Response:
    """Open an upload: the client then PUTs the bytes to ``upload.url`` with its headers."""
    state = request.app[STATE]
    body = json_object(await request.read())
    filename = body.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise bad("filename", "is required")
    if "size" not in body:
        raise bad("size", "is required")
    size = int_field(body, "size", 0, 0, 2**63)
    if size > catalogue.MAX_IMAGE_BYTES:
        raise bad("size", f"at most {catalogue.MAX_IMAGE_BYTES} bytes (10 MB), got {size}")
    content_type = body.get("content_type") or _guess_type(filename)
    if not isinstance(content_type, str):
        raise bad("content_type", "must be a string")
    upload = state.new_upload(filename, size, content_type)
    base = _note_host(request, state)
    return envelope(
        {
            "type": media_type(content_type),
            "filename": filename,
            "size": size,
            "download_url": f"{base}/media/uploads/{upload.id}/{quote(filename)}",
            "upload": {
                "method": "PUT",
                "url": f"{base}/media/put/{upload.id}?token={upload.token}",
                "headers": {"Content-Type": content_type},
            },
        }
    )


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


async def upload_binary(request: web.Request) -> web.Response:
    """Take a multipart upload (field ``file``), the older single-request form."""
    state = request.app[STATE]
    if not request.content_type.startswith("multipart/"):
        raise bad("file", "send multipart/form-data with a field named file")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "file":
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > catalogue.MAX_IMAGE_BYTES:
                    raise ApiError(413, "file: larger than 10 MB")
            filename = part.filename or "upload"
            content_type = part.headers.get("Content-Type") or _guess_type(filename)
            upload = state.new_upload(filename, len(data), content_type)
            await state.store_upload(upload, bytes(data))
            base = _note_host(request, state)
            return envelope(
                {
                    "type": media_type(content_type),
                    "filename": filename,
                    "size": len(data),
                    "download_url": f"{base}/media/uploads/{upload.id}/{quote(filename)}",
                }
            )
    raise bad("file", "is required")


async def balance(request: web.Request) -> web.Response:
    """Answer the account balance in USD."""
    return envelope({"balance": float(request.app[STATE].ledger.balance_usd)})


async def webhook_secret(request: web.Request) -> web.Response:
    """Publish the secret that signs this mock's webhooks."""
    return envelope({"secret": request.app[STATE].webhook_secret})


async def unknown(request: web.Request) -> web.Response:
    """Answer 404 for API paths that do not exist with this method."""
    raise ApiError(404, f"not found: {request.method} {request.path}")


#: Fixed paths first: the submit route's ``{model:.+}`` would otherwise match them too.
ROUTES: Final = [
    web.post("/api/v3/predictions", history, name="history"),
    web.post("/api/v3/predictions/delete", delete, name="delete"),
    web.get("/api/v3/predictions/{task_id}/result", result, name="result"),
    web.get("/api/v3/predictions/{task_id}", result, name="prediction"),
    web.post("/api/v3/media/uploads", upload_ticket, name="upload_ticket"),
    web.post("/api/v3/media/upload/binary", upload_binary, name="upload_binary"),
    web.get("/api/v3/balance", balance, name="balance"),
    web.get("/api/v3/webhook/secret", webhook_secret, name="webhook_secret"),
    web.post("/api/v3/{model:.+}", submit, name="submit"),
    # Last: any other method on an API path is unknown (not "405: POST allowed" because of
    # the submit route's pattern, which says nothing about the path existing).
    web.route("*", "/api/v3/{tail:.*}", unknown),
]
