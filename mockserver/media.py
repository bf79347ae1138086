"""Uploaded media, and how a task's image URLs turn into pixels without leaving the machine.

An image URL is one of: this mock's own upload (read from disk), a ``data:`` URI (decoded),
an ``http(s)`` URL on a loopback host (fetched, as WaveSpeed fetches the URLs it is given:
a test serves its pictures on 127.0.0.1), or anything else, which the mock never fetches (it
leaves the machine): it draws a placeholder seeded by the URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes, urlsplit

import attrs

from mockserver import catalogue
from mockserver.video import RenderSpec

if TYPE_CHECKING:
    from mockserver.config import MockConfig
    from mockserver.storage import Storage
    from mockserver.tasks import Task

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
#: How long fetching a loopback image URL may take.
_FETCH_TIMEOUT_S: Final = 5.0
_UPLOAD_PATH: Final = re.compile(r"^/media/uploads/([0-9a-f]{32})(/|$)")


@attrs.define(kw_only=True)
class Upload:
    """One uploaded file; *complete* once its bytes arrived."""

    id: str
    filename: str
    size: int
    content_type: str
    token: str
    created_at: float
    complete: bool = False


def media_type(content_type: str) -> str:
    """Return WaveSpeed's coarse ``type`` for a content type: image, video, audio or file."""
    major = content_type.partition("/")[0]
    return major if major in {"image", "video", "audio"} else "file"


def own_upload_id(url: str, hosts: frozenset[str]) -> str | None:
    """Return the upload id if *url* points at this mock's uploads (by host and path)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or parts.hostname not in hosts | LOOPBACK_HOSTS:
        return None
    match = _UPLOAD_PATH.match(parts.path)
    return match.group(1) if match else None


def decode_data_uri(url: str) -> bytes | None:
    """Return the bytes of a ``data:`` URI, None if *url* is not one; ValueError if broken."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ValueError("invalid data URI: no comma before the data")
    if header.endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise ValueError("invalid data URI: the base64 data does not decode") from exc
    else:
        data = unquote_to_bytes(payload)
    if len(data) > catalogue.MAX_IMAGE_BYTES:
        raise ValueError("the image is larger than 10 MB")
    return data


#: The inputs that shape a task's video: equal ones are the same request.
_SHAPING: Final = (
    "prompt",
    "image",
    "last_image",
    "end_image",
    "duration",
    "aspect_ratio",
    "negative_prompt",
    "cfg_scale",
    "guidance_scale",
    "sound",
    "multi_prompt",
)


def request_key(model: str, data: dict[str, Any]) -> str:
    """Hash what a request asks for (model and shaping inputs), to count identical requests.

    WaveSpeed's Kling endpoints take no seed, so two takes of one shot are the same request;
    the mock tells them apart by the order they arrive in (`Task.take`).
    """
    document = {"model": model, "input": {k: data.get(k) for k in _SHAPING}}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def render_key(task: Task, config: MockConfig) -> str:
    """Hash everything that shapes a task's video, so equal requests share one file.

    The request (the prompt shapes every video: text-to-video draws from it, and the motion
    follows it), which of its identical requests the task is, and how the mock renders.
    """
    if config.share_renders:
        shared = {k: task.input.get(k) for k in ("image", "last_image", "end_image", "duration")}
        document: dict[str, object] = {"shared": shared, "fps": config.fps}
        if config.flat_placeholders:
            document["flat"] = True
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    document = {
        "request": request_key(task.model, task.input),
        "take": task.take,
        "fps": config.fps,
        "max": config.max_side_px,
        "caption": config.caption,
    }
    if config.flat_placeholders:
        document["flat"] = True
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _image_bytes(
    url: object, uploads: dict[str, Upload], storage: Storage, hosts: frozenset[str]
) -> bytes | None:
    if not isinstance(url, str):
        return None
    upload_id = own_upload_id(url, hosts)
    if upload_id is not None:
        upload = uploads.get(upload_id)
        path = storage.upload_path(upload_id)
        return path.read_bytes() if upload and upload.complete and path.exists() else None
    try:
        data = decode_data_uri(url)
    except ValueError:
        return None
    return data if data is not None else _fetch_loopback(url)


def _fetch_loopback(url: str) -> bytes | None:
    """Fetch an image URL on a loopback host (blocking: the renderer runs in a thread).

    Nothing that leaves the machine is ever fetched; a URL that cannot be had gives the
    placeholder, as an unreachable URL would make WaveSpeed's task fail.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        return None
    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_S) as answer:  # noqa: S310 - http(s) to loopback only, checked above
            data: bytes = answer.read(catalogue.MAX_IMAGE_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if len(data) <= catalogue.MAX_IMAGE_BYTES else None


def render_spec(
    task: Task,
    uploads: dict[str, Upload],
    storage: Storage,
    config: MockConfig,
    hosts: frozenset[str],
) -> RenderSpec:
    """Gather what a task's video needs (blocking: reads uploads from disk).

    *hosts* are the names this mock was reached by, to recognise its own upload URLs.
    """
    data: dict[str, Any] = task.input
    image = data.get("image")
    prompt = str(data.get("prompt", ""))
    parts = data.get("multi_prompt")
    if not prompt and isinstance(parts, list):  # a multi-shot prompt: its parts in order
        prompt = " / ".join(str(p.get("prompt", "")) for p in parts if isinstance(p, dict))
    last = data.get("last_image", data.get("end_image"))
    return RenderSpec(
        duration_s=int(data.get("duration", catalogue.DEFAULT_DURATION)),
        fps=config.fps,
        max_side_px=config.max_side_px,
        first_image=_image_bytes(image, uploads, storage, hosts),
        last_image=_image_bytes(last, uploads, storage, hosts),
        placeholder_seed=str(image) if image is not None else prompt,
        aspect_ratio=str(data.get("aspect_ratio", "16:9")),
        motion_seed=prompt,
        take=task.take,
        caption=f"#{task.take} {prompt}" if config.caption else "",
        checker=not config.flat_placeholders,
    )
