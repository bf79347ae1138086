"""What a render backend can do, and the values it trades in.

The scheduler talks to a `Backend`, never to HTTP: the WaveSpeed client
(`kling_pipe._backends.wavespeed.client.WaveSpeedClient`) implements it against the real
API and against the bundled mock server, and tests can implement it with a plain in-memory
fake. Every value here is a frozen attrs class, so it can be logged, compared and kept in
run state safely.

Status handling, decided once here so that no caller polls forever:

* `created` and `processing` are *pending*: poll again.
* `completed`, `failed`, `cancelled`, `timeout` and `deleted` are *final* (as in the official
  SDK): stop polling. Only `completed` with at least one output is a success.
* Any other status is *unknown*: it is not final, so the caller polls again (a new status the
  server starts sending may well be a pending one), but `Prediction.is_unknown_status` lets the
  caller count such answers, and the scheduler's per-task time-out bounds the wait. A caller
  never treats an unknown status as success.

Task ids are parsed here, once: a server's id becomes URL paths, file names and lock-file
keys further on, so a `TaskId` exists only by `parse_task_id`, which admits a short run of
letters, digits, ``_`` and ``-`` (WaveSpeed's and the bundled mock's are 32 hex digits) and
nothing that could name a path (no ``/``, ``.`` or ``%``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, NewType, Protocol

import attrs

from kling_pipe.exceptions import ProtocolError

__all__ = [
    "DEFAULT_BASE_URL",
    "FINAL_STATUSES",
    "MAX_PAGE_SIZE",
    "MOCK_FPS",
    "MOCK_MAX_FPS",
    "MOCK_ORIGIN",
    "MOCK_PROCESSING_S",
    "PENDING_STATUSES",
    "UPLOAD_REUSE_LIMIT",
    "Backend",
    "Download",
    "Prediction",
    "SubmitRequest",
    "TaskId",
    "list_all_predictions",
    "parse_task_id",
]

#: WaveSpeed's API: where a real run goes unless told otherwise.
DEFAULT_BASE_URL: Final = "https://api.wavespeed.ai"
#: The origin recorded for work done by the bundled mock (its port changes every run).
MOCK_ORIGIN: Final = "mock"
#: Seconds each task takes in the bundled mock when `render` starts it (demo speed).
MOCK_PROCESSING_S: Final = 1.0
#: Frames per second of the bundled mock's renders (24: a rate an editor's timecode counts
#: in), and the most it renders (mockserver.config's DEFAULT_FPS and MAX_FPS; the mock is a
#: separate program, so they are repeated here).
MOCK_FPS: Final = 24
MOCK_MAX_FPS: Final = 60

#: Statuses of a task that is still queued or running.
PENDING_STATUSES: Final = frozenset({"created", "processing"})
#: Statuses after which a task never changes again.
FINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})

#: Uploads are kept 7 days by WaveSpeed; reuse one for a day less, so it never expires mid-run.
UPLOAD_REUSE_LIMIT: Final = timedelta(days=6)

#: The largest page the history endpoint serves.
MAX_PAGE_SIZE: Final = 100

#: A task id as the API makes it, proved by `parse_task_id`: safe in a URL path and a file name.
TaskId = NewType("TaskId", str)

#: The one form a task id may take: a letter or digit first (never ``.`` or ``-``, which a
#: file name or a command line could read as something else), then at most 127 more of
#: letters, digits, ``_`` and ``-``. ASCII only: ``\w`` would admit look-alike letters.
_TASK_ID_FORM: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_TASK_ID_MAX: Final = 128


def parse_task_id(text: object, where: str) -> TaskId:
    """Return *text* as a `TaskId`, or raise ProtocolError naming *where* (the field).

    The only way to make a TaskId: every id from outside (an API answer, a record read back)
    comes through here before it reaches a URL or a path. The message never quotes the
    value (it may be a secret a hostile server echoed back); it says what is wrong with it.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"{where} should be a task id, got {type(text).__name__}")
    if _TASK_ID_FORM.fullmatch(text):
        return TaskId(text)
    if not text:
        problem = "it is empty"
    elif len(text) > _TASK_ID_MAX:
        problem = f"it has {len(text)} characters, more than {_TASK_ID_MAX}"
    elif not _is_id_char(text[0]) or text[0] in "_-":
        problem = f"it starts with {_one_char(text[0])}"
    else:
        problem = f"it holds {_one_char(next(c for c in text if not _is_id_char(c)))}"
    raise ProtocolError(
        f"{where} is not a task id (letters, digits, '_' and '-', at most {_TASK_ID_MAX}): "
        f"{problem}"
    )


def _is_id_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "_-")


def _one_char(char: str) -> str:
    """Show one offending character: one character cannot carry a secret, but may be unprintable."""
    return repr(char) if char.isascii() and char.isprintable() else f"U+{ord(char):04X}"


@attrs.frozen(kw_only=True)
class SubmitRequest:
    """One task to create: what the shot asks its model for, in the model's own field names."""

    #: WaveSpeed model id, e.g. ``kwaivgi/kling-video-o1-std/image-to-video``: the path posted to.
    model: str
    #: "" when the shot gives a multi-shot prompt instead (``multi_prompt`` in `fields`).
    prompt: str
    #: Public URL of the first frame (an upload's download URL, or a URL from the shot list);
    #: None on a text-to-video model.
    image_url: str | None = None
    #: Public URL of the last frame, or None to let the model choose the ending.
    last_image_url: str | None = None
    #: The model's name for the end frame: ``last_image`` (O1, v2.6 Pro) or ``end_image`` (v3).
    end_frame_field: str = "last_image"
    #: Length of the video in whole seconds.
    duration: int
    #: The model's own optional fields as sent (JSON values: ``sound``, ``cfg_scale``, ...).
    fields: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.frozen(kw_only=True)
class Prediction:
    """A task as the server last described it."""

    #: Task id (32 hex characters on WaveSpeed), proved safe by `parse_task_id`.
    id: TaskId
    model: str
    #: Raw status string; see the module docstring and the ``is_*`` properties.
    status: str
    #: Output URLs: temporary, download them promptly. Empty until completed.
    outputs: tuple[str, ...] = ()
    #: WaveSpeed's error message, "" unless the task failed: on one line, bounded, and with
    #: the API key replaced by ``***`` (the parser scrubs it before anyone else sees it).
    error: str = ""
    #: Task-level code (1200 moderation, 1401 invalid parameter, 5004 time-out, ...), if any.
    code: int | None = None
    #: When the server created the task (timezone-aware, UTC).
    created_at: datetime
    #: Server-side processing time in milliseconds (``timings.inference``), once known.
    inference_ms: int | None = None
    #: One flag per output: whether the server flagged it as NSFW.
    has_nsfw_contents: tuple[bool, ...] = ()

    @property
    def is_final(self) -> bool:
        """Whether the task can no longer change, so polling it again would be wasted."""
        return self.status in FINAL_STATUSES

    @property
    def is_pending(self) -> bool:
        """Whether the task is known to be queued or running."""
        return self.status in PENDING_STATUSES

    @property
    def is_unknown_status(self) -> bool:
        """Whether the status is one this library does not know (count these; see module doc)."""
        return self.status not in FINAL_STATUSES and self.status not in PENDING_STATUSES

    @property
    def succeeded(self) -> bool:
        """Whether the task completed with at least one output to download."""
        return self.status == "completed" and bool(self.outputs)

    @property
    def failure_reason(self) -> str:
        """Explain a final unsuccessful task in one line, e.g. ``failed (code 1200): ...``."""
        if self.status == "completed" and not self.outputs:
            return "completed without any output"
        code = f" (code {self.code})" if self.code is not None else ""
        error = f": {self.error}" if self.error else ""
        return f"{self.status}{code}{error}"


@attrs.frozen(kw_only=True)
class Download:
    """A completed download: the file is complete, checked to be an MP4, and renamed into place."""

    path: Path
    size: int
    #: Hex sha256 of the file's bytes, computed while streaming.
    sha256: str


class Backend(Protocol):
    """The render backend the scheduler drives.

    Every method may raise `kling_pipe.exceptions.BackendError` subclasses. Safe calls
    (everything except `submit`) have already been retried on rate limits, server errors and
    connection errors by the time they raise. `submit` raises `SubmitOutcomeUnknown` when the
    task may exist although no answer arrived: the caller must then look for it with
    `list_predictions` instead of submitting again.
    """

    @property
    def origin(self) -> str:
        """Where the work goes, as records name it: ``mock``, or the API's base URL.

        A render from one origin never satisfies a run against another, so every record
        keeps this beside its task id.
        """
        ...

    @property
    def clock_offset(self) -> timedelta | None:
        """The server's clock minus ours, learned from its answers (None until known).

        `created_at` is on the server's clock: every comparison with it goes through this.
        """
        ...

    async def upload_image(self, path: Path) -> str:
        """Upload a local image and return the public URL a task can use as its image."""
        ...

    async def submit(self, request: SubmitRequest) -> Prediction:
        """Create one task (this costs money) and return it as first described."""
        ...

    async def get_prediction(self, task_id: TaskId) -> Prediction:
        """Return the task's current state (NotFoundError if the server does not know it).

        Raises WrongTaskError (never retried) if the answer describes another task: a cache
        or proxy answering for the wrong task must not hand one shot another's video.
        """
        ...

    async def list_predictions(  # noqa: PLR0913 -- keyword-only filters, each optional
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
    ) -> list[Prediction]:
        """Return one page (1-based) of the last 7 days' tasks that match every filter given.

        A page holding one item that cannot be read (an id that is not a task id, a missing
        field) is refused whole with ProtocolError, never returned without that item: a
        history read that silently skipped a task could let the submit protocol conclude
        that no task was created and pay again.
        """
        ...

    async def download(self, url: str, dest: Path) -> Download:
        """Download an output video to *dest* atomically: all of it, or nothing at all."""
        ...


async def list_all_predictions(  # noqa: PLR0913 -- keyword-only filters, each optional
    backend: Backend,
    *,
    model: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    page_size: int = MAX_PAGE_SIZE,
    max_pages: int = 20,
) -> list[Prediction]:
    """Page through the history and return every matching task once, newest pages first.

    Stops at the first short page, or after *max_pages* pages so that a server ignoring `page`
    cannot keep a caller looping. A task may move between pages while paging (new tasks push
    old ones down), so duplicates are dropped by id, keeping the first copy seen.
    """
    seen: dict[TaskId, Prediction] = {}
    for page in range(1, max_pages + 1):
        items = await backend.list_predictions(
            model=model,
            status=status,
            created_after=created_after,
            created_before=created_before,
            page=page,
            page_size=page_size,
        )
        new = [p for p in items if p.id not in seen]
        for prediction in new:
            seen[prediction.id] = prediction
        if len(items) < page_size or not new:
            break
    return list(seen.values())
