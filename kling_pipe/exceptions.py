"""Every error kling-pipe raises on purpose, so callers can catch exactly what they mean to."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs


class KlingPipeError(Exception):
    """Base class of every error kling-pipe raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with a shot list: where it is, and what is wrong."""

    #: Key path inside the file, e.g. ``shots[1] (id "storm").duration``; "" for the whole file.
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ShotListError(KlingPipeError):
    """A shot list is invalid; `problems` lists every problem found in the file."""

    def __init__(
        self, source: str, problems: Iterable[Problem], *, warnings: Iterable[Problem] = ()
    ) -> None:
        self.source = source
        self.problems: tuple[Problem, ...] = tuple(problems)
        #: What was found besides, that refuses nothing (as `ShotList.warnings`).
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """Return one line per problem, each prefixed with the file name, as the CLI prints."""
        return [f"{self.source}: {p}" for p in self.problems]

    def as_pairs(self) -> list[tuple[str, str]]:
        """Return the problems as ``(path, message)`` pairs, for editors and other tools."""
        return [(p.path, p.message) for p in self.problems]


# Backend errors


class BackendError(KlingPipeError):
    """The render backend could not do what was asked; subclasses say why."""


class BaseUrlError(BackendError):
    """A base URL is unusable or insecure (plain http:// to a host that is not loopback)."""


class ProtocolError(BackendError):
    """The server's answer was not what the API promises (not JSON, or a field missing)."""


class WrongTaskError(ProtocolError):
    """An answer about one task described another; it is never followed, nor retried."""


class BackendConnectionError(BackendError):
    """The connection failed or timed out before a complete answer arrived."""


class ApiError(BackendError):
    """The API answered with an HTTP error status; `status` and `api_message` say which."""

    def __init__(self, message: str, *, status: int, api_message: str = "") -> None:
        self.status = status
        self.api_message = api_message
        super().__init__(message)


class BadRequestError(ApiError):
    """HTTP 400: the request was invalid; `api_message` is WaveSpeed's explanation."""


class AuthError(ApiError):
    """HTTP 401 or 403: the API key is missing, wrong, or not allowed to do this."""


class NotFoundError(ApiError):
    """HTTP 404: no such task (or an output URL that has expired)."""


class RateLimitedError(ApiError):
    """HTTP 429: too many requests; `retry_after_s` is the server's wait, if it gave one."""

    def __init__(
        self, message: str, *, status: int, api_message: str = "", retry_after_s: float | None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, status=status, api_message=api_message)


class ServerError(ApiError):
    """HTTP 5xx: the server failed; the call created nothing and may be retried."""


class GatewayError(ServerError):
    """HTTP 5xx or 408 without WaveSpeed's JSON envelope: said by something in front of the API.

    A gateway may say this after the API acted, so for a submit the outcome is unknown; for a
    safe call (a poll, an upload) it is retried like any server error.
    """


class QuoteUnavailableError(BackendError):
    """No endpoint would say what a request costs (no price route, no price in the models)."""


class SubmitOutcomeUnknown(BackendError):  # noqa: N818 -- the name states the one thing known
    """A submit may have created a paid task: never resend it, look it up in the history."""

    def __init__(self, message: str, *, model: str, sent_at: datetime) -> None:
        self.model = model
        #: UTC wall-clock time just before the request was sent: the task, if it exists, was
        #: created after this (give or take the clock skew between us and the server).
        self.sent_at = sent_at
        super().__init__(message)


class TruncatedDownloadError(BackendError):
    """A download ended before all its bytes arrived; it may be retried."""


class FetchError(KlingPipeError):
    """An image could not be fetched from its URL: the server or the network failed."""


class FetchRefusedError(FetchError):
    """An image URL was refused: its scheme, an address it reached, its size, time or bytes."""


class MediaError(KlingPipeError):
    """A video or image file could not be read, decoded or written."""


class NotMp4Error(MediaError):
    """A file or download that should be an MP4 is not one (no ISO BMFF ``ftyp`` box)."""
