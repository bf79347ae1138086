"""A picture fetched from a shot list's URL, for the frame proof, trusting nothing on the way.

When a submit's answer is lost for a shot whose first frame is an ``http(s)://`` URL, the
submit protocol needs that picture to prove which task in the history is the shot's. The URL
is text from a shot list (perhaps someone else's) and every redirect is text from a server,
so `fetch_image`:

* speaks http and https only, to a URL without credentials in it;
* never sends a credential: the request leaves without any Authorization or Cookie header,
  whatever the session carries (a per-request middleware removes them last thing);
* reaches no address a shot list has no business reaching (loopback, private, link-local
  with the cloud metadata service at 169.254.169.254, unique-local, multicast, unspecified,
  and every other address that is not globally reachable) unless the shot list's URL itself
  names that address: ``http://127.0.0.1:8000/a.png`` may reach 127.0.0.1 and
  ``http://localhost:8000/a.png`` loopback, while a public name that resolves to 10.0.0.1,
  or a redirect to 10.0.0.1, is refused;
* resolves each host once, checks every address, and connects to a checked address itself
  (the URL's host replaced by it; the Host header and the TLS server name keep the name):
  a DNS answer that changes between check and connect (DNS rebinding) is never asked for;
* follows at most `FetchLimits.max_redirects` redirects by hand, each hop checked as the
  first one was; reads at most `FetchLimits.max_bytes` (WaveSpeed's image limit), giving up
  the moment the body passes it; and takes at most `FetchLimits.total_s` in all;
* keeps only a PNG, JPEG or WebP (recognised by content), written to *dest* atomically.

A refusal is a `FetchRefusedError`; a server or network failure (a 404, a refused
connection) is a `FetchError`. Their messages are one line and show URLs only through
`safe_url`, without their query (where signed URLs keep their tokens).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver
from yarl import URL

from kling_pipe import _files as durable
from kling_pipe._backends.wavespeed.urls import safe_url
from kling_pipe._shotlist.images import sniff
from kling_pipe._shotlist.rules import MAX_IMAGE_BYTES
from kling_pipe.exceptions import FetchError, FetchRefusedError

__all__ = ["FetchLimits", "FetchedImage", "fetch_image", "why_unreachable"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES: Final = frozenset({"http", "https"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Headers that carry credentials: never sent to an image host.
_CREDENTIALS: Final = (aiohttp.hdrs.AUTHORIZATION, aiohttp.hdrs.COOKIE)
#: Enough of the body for `sniff` to recognise any of the three formats (WebP needs 12).
_SNIFF_BYTES: Final = 16
_CHUNK_BYTES: Final = 64 * 1024
#: NAT64's well-known prefix: its addresses carry an IPv4 address in their last 32 bits.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_RFC1918: Final = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL: Final = ipaddress.IPv6Network("fc00::/7")


@attrs.frozen(kw_only=True)
class FetchLimits:
    """How much a fetch may take: bytes, time, redirects."""

    #: The largest image read; WaveSpeed takes none larger.
    max_bytes: int = MAX_IMAGE_BYTES
    #: The whole fetch, every hop and the body included.
    total_s: float = 60.0
    #: Opening one connection; past it the next address of the host is tried.
    connect_s: float = 15.0
    #: Redirects followed before the fetch is refused.
    max_redirects: int = 5


@attrs.frozen(kw_only=True)
class FetchedImage:
    """A picture fetched whole, checked to be an image, and in place at `path`."""

    path: Path
    size: int
    #: Hex sha256 of the bytes.
    sha256: str
    #: ``png``, ``jpeg`` or ``webp``, as `sniff` recognised it.
    kind: str
    #: Where the bytes came from after any redirects, as `safe_url` shows it.
    source: str


def why_unreachable(address: IPAddress) -> str | None:
    """Say what kind of address a shot list's URL may not reach by a name, or None if public.

    An IPv6 address carrying an IPv4 one (mapped, 6to4, NAT64) is judged by the IPv4 one
    too, so ``::ffff:10.0.0.1`` is as private as 10.0.0.1.
    """
    if isinstance(address, ipaddress.IPv6Address):
        for carried in _carried_ipv4(address):
            why = why_unreachable(carried)
            if why is not None:
                return why
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_loopback, "a loopback"),
        (address.is_link_local, "a link-local (cloud metadata)"),
        (address.is_multicast, "a multicast"),
        (address.is_unspecified, "an unspecified"),
        (any(address in net for net in _RFC1918), "a private"),
        (address in _UNIQUE_LOCAL, "a unique-local"),
        (address.is_reserved or address.is_private or not address.is_global, "a non-public"),
    )
    return next((f"{kind} address" for hit, kind in checks if hit), None)


def _carried_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    carried = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried


async def fetch_image(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    limits: FetchLimits = FetchLimits(),
    resolver: AbstractResolver | None = None,
) -> FetchedImage:
    """Fetch the picture at *url* (from a shot list) into *dest*; see the module docstring.

    *session* is the caller's; its own resolver is never used (the fetch connects to the
    addresses it checked) and no credential it carries is sent. *resolver* turns host names
    into addresses (aiohttp's default resolver when None; tests pass a fake one). Creates
    *dest*'s folder. Raises FetchRefusedError or FetchError; *dest* is then left as it was.
    """
    first = _parse(url, url)
    named = _named_by(first)
    own = resolver is None
    active = resolver if resolver is not None else aiohttp.DefaultResolver()
    deadline = asyncio.timeout(limits.total_s)
    try:
        async with deadline:
            data, source = await _follow(session, first, named, active, limits)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise FetchRefusedError(
            f"{safe_url(url)}: refused: took longer than {limits.total_s:g} s"
        ) from None
    finally:
        if own:
            await active.close()
    info = sniff(data)
    if info is None:
        raise FetchRefusedError(f"{source}: refused: not a PNG, JPEG or WebP image")
    await asyncio.to_thread(_write, dest, data)
    return FetchedImage(
        path=dest,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        kind=info.kind,
        source=source,
    )


def _parse(text: str, shown_as: str) -> URL:
    """Return *text* as an absolute http(s) URL without credentials, or refuse it."""
    try:
        url = URL(text)
        host = url.raw_host
    except (ValueError, TypeError):
        raise FetchRefusedError(f"{safe_url(shown_as)}: refused: not a valid URL") from None
    if url.scheme not in _SCHEMES:
        raise FetchRefusedError(f"{safe_url(text)}: refused: only http:// and https:// are")
    if not host:
        raise FetchRefusedError(f"{safe_url(text)}: refused: the URL has no host")
    if url.user is not None or url.password is not None:
        raise FetchRefusedError(f"{safe_url(text)}: refused: the URL carries credentials")
    return url.with_fragment(None)


def _literal(host: str) -> IPAddress | None:
    """Return the address *host* spells, or None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _named_by(url: URL) -> Callable[[IPAddress], bool]:
    """Which addresses the shot list's own URL names: its literal address, or localhost's."""
    host = (url.raw_host or "").lower()
    if host == "localhost":
        return lambda address: address.is_loopback
    literal = _literal(host)
    return lambda address: address == literal


async def _follow(
    session: aiohttp.ClientSession,
    url: URL,
    named: Callable[[IPAddress], bool],
    resolver: AbstractResolver,
    limits: FetchLimits,
) -> tuple[bytes, str]:
    """Walk the redirects from *url* by hand, each hop checked; return the body and its URL."""
    for _ in range(limits.max_redirects + 1):
        shown = safe_url(str(url))
        addresses = await _checked_addresses(url, named, resolver)
        async with await _connect(session, url, addresses, limits) as response:
            if response.status in _REDIRECTS:
                location = response.headers.get(aiohttp.hdrs.LOCATION, "")
                if not location:
                    raise FetchError(f"{shown}: HTTP {response.status} without a Location")
                try:
                    joined = str(url.join(URL(location)))
                except (ValueError, TypeError):
                    joined = location
                url = _parse(joined, location)
                continue
            if response.status != 200:
                raise FetchError(f"{shown}: HTTP {response.status}; the image was not fetched")
            return await _read_bounded(response, shown, limits.max_bytes), shown
    raise FetchRefusedError(f"{shown}: refused: more than {limits.max_redirects} redirects")


async def _checked_addresses(
    url: URL, named: Callable[[IPAddress], bool], resolver: AbstractResolver
) -> list[IPAddress]:
    """Resolve *url*'s host once and return its addresses, or refuse if any is unreachable."""
    host = url.raw_host or ""
    shown = safe_url(str(url))
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            answers = await resolver.resolve(host, url.port or 0, family=socket.AF_UNSPEC)
        except OSError as exc:
            raise FetchError(f"{shown}: cannot resolve the host ({exc.strerror or exc})") from None
        addresses = list(dict.fromkeys(_answer_address(a["host"]) for a in answers))
        if not addresses:
            raise FetchError(f"{shown}: the host resolves to no address")
    for address in addresses:
        why = why_unreachable(address)
        if why is not None and not named(address):
            raise FetchRefusedError(
                f"{shown}: refused: {host} is {address}, {why}, which only a shot list's URL"
                " naming that address may reach"
            )
    return addresses


def _answer_address(text: str) -> IPAddress:
    literal = _literal(text)
    if literal is None:
        raise FetchError(f"the resolver answered {text!r:.60}, which is not an address")
    return literal


async def _connect(
    session: aiohttp.ClientSession, url: URL, addresses: list[IPAddress], limits: FetchLimits
) -> aiohttp.ClientResponse:
    """GET *url* from the first of *addresses* that accepts a connection."""
    name = url.raw_host or ""
    headers = {
        aiohttp.hdrs.HOST: url.host_port_subcomponent or name,
        aiohttp.hdrs.ACCEPT: "image/png, image/jpeg, image/webp",
        aiohttp.hdrs.ACCEPT_ENCODING: "identity",
    }
    # TLS checks the certificate against the name, not the address connected to.
    server_hostname = name if url.scheme == "https" and _literal(name) is None else None
    timeout = aiohttp.ClientTimeout(sock_connect=limits.connect_s)
    failure = ""
    for address in addresses:
        try:
            return await session.get(
                url.with_host(str(address)),
                headers=headers,
                allow_redirects=False,
                server_hostname=server_hostname,
                timeout=timeout,
                middlewares=(_without_credentials,),
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            failure = f"{type(exc).__name__} to {address}"
        except aiohttp.ClientError as exc:
            raise FetchError(f"{safe_url(str(url))}: {type(exc).__name__}") from None
    raise FetchError(f"{safe_url(str(url))}: cannot connect ({failure})")


async def _without_credentials(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Send *request* without any credential the session (or a netrc) put in it."""
    for name in _CREDENTIALS:
        request.headers.popall(name, None)
    return await handler(request)


async def _read_bounded(response: aiohttp.ClientResponse, shown: str, limit: int) -> bytes:
    """Read the body, refusing it the moment it passes *limit* or shows it is no image."""
    too_large = f"{shown}: refused: larger than {limit} bytes"
    if (response.content_length or 0) > limit:
        raise FetchRefusedError(too_large)
    chunks: list[bytes] = []
    size = 0
    head = b""
    try:
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise FetchRefusedError(too_large)
            if len(head) < _SNIFF_BYTES:
                head += chunk[: _SNIFF_BYTES - len(head)]
                if len(head) == _SNIFF_BYTES and sniff(head) is None:
                    raise FetchRefusedError(f"{shown}: refused: not a PNG, JPEG or WebP image")
            chunks.append(chunk)
    except aiohttp.ClientError as exc:
        raise FetchError(f"{shown}: the body did not arrive whole ({type(exc).__name__})") from None
    return b"".join(chunks)


def _write(dest: Path, data: bytes) -> None:
    """Put *data* at *dest* through a temp file beside it (blocking: run in a thread)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with durable.writing(dest) as handle:
        handle.write(data)
