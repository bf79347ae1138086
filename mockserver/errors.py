"""The error a handler raises to answer with WaveSpeed's error body."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An HTTP error answered as ``{"code": status, "message": message}``, like WaveSpeed's."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
