"""When a call is tried again, and when it must not be.

Only `submit` costs money. It is retried when the server said it created nothing (429, or
a 5xx in WaveSpeed's own envelope) or the connection never opened; a request that may have
reached the server is never resent, and neither is one answered by something in front of
the API (a bare 5xx or 408: `may_follow_an_action`). Every other call is safe to repeat.
"""

from __future__ import annotations

from http import HTTPStatus

import attrs

from kling_pipe._decisions.pacing import backoff_delay
from kling_pipe.exceptions import (
    BackendConnectionError,
    BackendError,
    RateLimitedError,
    ServerError,
    TruncatedDownloadError,
)

__all__ = ["MaybeSentError", "RetryEvent", "RetryPolicy", "may_follow_an_action", "retry_wait_s"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How safe calls (and a submit answered 429/5xx) are retried."""

    #: Attempts per call, the first included.
    attempts: int = 6
    #: No new attempt starts once this long has passed since the first one.
    timeout_s: float = 120.0
    #: First backoff; it doubles per attempt up to `wait_max_s`.
    wait_initial_s: float = 0.5
    wait_max_s: float = 15.0
    #: Up to this fraction of each backoff is taken away at random, so that many tasks
    #: hitting the same error do not retry in lockstep.
    jitter_fraction: float = 0.5
    #: A Retry-After longer than this is not waited out inside one call: the RateLimitedError
    #: goes to the caller, whose scheduler can pace all work instead of one blocked call.
    max_retry_after_s: float = 120.0


@attrs.frozen(kw_only=True)
class RetryEvent:
    """A retry about to happen, reported to the client's ``on_retry`` hook (for run summaries)."""

    #: Which call: ``submit``, ``get_prediction``, ``list_predictions``, ``upload ticket``,
    #: ``upload``, ``download``.
    operation: str
    #: The attempt about to start: 2 for the first retry.
    attempt: int
    #: The backoff chosen before it (stamina's test mode skips the actual sleep).
    wait_s: float
    #: The error that made the previous attempt fail (its message is already redacted).
    cause: BackendError


def retry_wait_s(
    exc: BaseException, failures: int, policy: RetryPolicy, rng_value: float
) -> float | None:
    """Return the wait before retrying after *exc*, or None if it must not be retried.

    *failures* counts the failed attempts so far (1 after the first). Retried: 429 (waiting
    at least its Retry-After, unless that exceeds the policy's limit), 5xx, connection errors
    and truncated downloads. Everything else (400, 401/403, 404, malformed answers, an answer
    about another task (`WrongTaskError`: a cache would repeat it), a submit with unknown
    outcome) would fail the same way again, or could cost money twice.
    """
    floor = 0.0
    if isinstance(exc, RateLimitedError):
        if exc.retry_after_s is not None:
            if exc.retry_after_s > policy.max_retry_after_s:
                return None
            floor = exc.retry_after_s
    elif not isinstance(exc, ServerError | BackendConnectionError | TruncatedDownloadError):
        return None
    backoff = backoff_delay(
        failures,
        base=policy.wait_initial_s,
        cap=policy.wait_max_s,
        jitter_fraction=policy.jitter_fraction,
        rng_value=rng_value,
    )
    return max(floor, backoff)


class MaybeSentError(BackendConnectionError):
    """The connection failed after the request may have reached the server."""


def may_follow_an_action(status: int) -> bool:
    """Whether an error status, without WaveSpeed's envelope, may come after the API acted.

    Not only 502/503/504: a load balancer, a CDN (Cloudflare's 520-524) or nginx's bare 500
    page can answer any 5xx, or 408, once the request went on to the API and the API's own
    answer went missing. Only WaveSpeed's envelope says the API itself refused.
    """
    return status == HTTPStatus.REQUEST_TIMEOUT or status >= HTTPStatus.INTERNAL_SERVER_ERROR
