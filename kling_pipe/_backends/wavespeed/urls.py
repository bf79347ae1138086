"""Where the API key may go: which base URLs are allowed, and which URLs share their origin.

The key is a bearer secret. It crosses a network only over TLS, and it is sent only to the
base URL's own origin; `safe_url` strips the query and fragment (where signed storage URLs
keep their tokens) from any URL that goes into a message.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import quote, urlsplit

from kling_pipe.exceptions import BaseUrlError

__all__ = ["is_loopback", "origin_of", "safe_url", "validate_base_url"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: The longest URL a message shows.
_MAX_SHOWN_CHARS: Final = 200


def validate_base_url(url: str) -> str:
    """Return *url* normalised (no trailing slash), or raise BaseUrlError with a one-line reason.

    Plain ``http://`` is refused to anything but a loopback host (127.0.0.0/8, ::1,
    localhost): the API key must never cross a network unencrypted.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BaseUrlError("base URL must start with https:// (or http:// to a loopback host)")
    try:
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise BaseUrlError(f"base URL has an invalid host or port: {exc}") from exc
    if not host:
        raise BaseUrlError("base URL has no host")
    if parts.username is not None or parts.password is not None:
        raise BaseUrlError("base URL must not contain credentials; the key goes in the header")
    if parts.query or parts.fragment:
        raise BaseUrlError("base URL must not have a query or a fragment")
    if scheme == "http" and not is_loopback(host):
        raise BaseUrlError(
            f"refusing plain http:// to {host}: use https:// (http is allowed only to loopback)"
        )
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def is_loopback(host: str) -> bool:
    """Whether *host* names this machine (localhost, 127.0.0.0/8 or ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of *url* with default ports filled in, or None if unusable."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    return (scheme, host, port) if host else None


def safe_url(url: str) -> str:
    """*url* for a one-line message: no query or fragment, no credentials, bounded.

    Signed output URLs carry their tokens in the query; a URL from a server (a redirect's
    Location) may carry anything, so white space and control characters are percent-encoded
    and a long URL is cut.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.netloc.rsplit("@", 1)[-1]
    shown = "".join(
        c if c.isprintable() and not c.isspace() else quote(c, safe="")
        for c in f"{parts.scheme}://{host}{parts.path}"
    )
    return shown if len(shown) <= _MAX_SHOWN_CHARS else shown[: _MAX_SHOWN_CHARS - 3] + "..."
