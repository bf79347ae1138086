"""A shot list's image URL fetched for the frame proof: what is fetched, and what is refused.

Every test talks to a real aiohttp server on loopback. Host names never reach DNS: a fake
resolver maps them (a public-looking name to 127.0.0.1, to show that a name is judged by the
address it resolves to), and the session's own resolver fails the test if it is ever asked.
Every request the session starts is traced, so "refused without connecting" is observed.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from kling_pipe._backends.fetch import FetchLimits, fetch_image, why_unreachable
from kling_pipe._backends.wavespeed.urls import safe_url
from kling_pipe.exceptions import FetchError, FetchRefusedError, KlingPipeError
from tests.imagefiles import write_image

TOKEN = "sig-SECRET-token-9f8e7d"


class FakeResolver(AbstractResolver):
    """Answer from a table: host -> addresses, or a list of answers given one per call."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        del family
        answers = self.table.get(host)
        if answers is None:
            raise OSError(socket.EAI_NONAME, "unknown host")
        if answers and isinstance(answers[0], list):
            answers = answers[min(len(self.calls_for(host)), len(answers) - 1)]
        self.calls.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if ":" in str(address) else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in answers
        ]

    def calls_for(self, host: str) -> list[str]:
        return [c for c in self.calls if c == host]

    async def close(self) -> None:
        """Nothing to release."""


class NoDnsResolver(AbstractResolver):
    """The session's resolver: the fetch connects to addresses it checked, never through it."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        del port, family
        raise AssertionError(f"the session's own resolver was asked for {host}")

    async def close(self) -> None:
        """Nothing to release."""


class ImageServer:
    """Serves an image, redirects, and misbehaviours; records every request it gets."""

    def __init__(self, png: bytes) -> None:
        self.png = png
        self.hits: list[web.Request] = []
        self.never = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_routes(
            [
                web.get("/a.png", self.image),
                web.get("/to", self.redirect),
                web.get("/loop", self.loop),
                web.get("/html", self.html),
                web.get("/big", self.big),
                web.get("/declared-big", self.declared_big),
                web.get("/hang", self.hang),
                web.get("/missing", self.missing),
            ]
        )
        self.port = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.hits]

    @web.middleware
    async def record(self, request: web.Request, handler):
        self.hits.append(request)
        return await handler(request)

    async def image(self, _: web.Request) -> web.Response:
        return web.Response(body=self.png, content_type="image/png")

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["loc"]})

    async def loop(self, _: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def html(self, _: web.Request) -> web.Response:
        return web.Response(text="<html><body>not found, but 200</body></html>" * 10)

    async def big(self, request: web.Request) -> web.StreamResponse:
        """An image header, then far more than the limit, then a body that never ends."""
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(self.png[:64])
        for _ in range(4):
            await response.write(b"\x00" * 64 * 1024)
        await self.never.wait()
        return response

    async def declared_big(self, _: web.Request) -> web.Response:
        return web.Response(body=self.png + b"\x00" * 5000, content_type="image/png")

    async def hang(self, _: web.Request) -> web.Response:
        await self.never.wait()
        raise AssertionError("unreachable")

    async def missing(self, _: web.Request) -> web.Response:
        return web.Response(status=404, text="gone")


@pytest.fixture
async def server(aiohttp_server, tmp_path_factory) -> ImageServer:
    png = write_image(tmp_path_factory.mktemp("img") / "a.png", "png", 320, 320).read_bytes()
    images = ImageServer(png)
    images.app.middlewares.append(images.record)
    images.port = (await aiohttp_server(images.app)).port
    yield images
    images.never.set()


@pytest.fixture
def started() -> list[URL]:
    """Every request the session started, by the URL it connected to."""
    return []


@pytest.fixture
async def session(started):
    trace = aiohttp.TraceConfig()

    async def on_start(_s, _ctx, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.url)

    trace.on_request_start.append(on_start)
    connector = aiohttp.TCPConnector(resolver=NoDnsResolver())
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as s:
        yield s


def assert_one_safe_line(error: BaseException, url: str) -> None:
    """A refusal's message is one line that names the URL without its query."""
    text = str(error)
    assert "\n" not in text
    assert TOKEN not in text
    assert safe_url(url) in text


def nothing_written(folder: Path) -> bool:
    return not folder.exists() or list(folder.iterdir()) == []


# ------------------------------------------------------------------ what is fetched


async def test_an_image_at_a_loopback_address_the_shot_list_names_is_fetched_atomically(
    server, session, tmp_path
):
    """The user wrote http://127.0.0.1:PORT/a.png: allowed, and placed whole at dest."""
    dest = tmp_path / "proof" / "first.png"
    got = await fetch_image(session, server.url("/a.png"), dest)  # the default resolver
    assert dest.read_bytes() == server.png
    assert (got.path, got.size, got.kind) == (dest, len(server.png), "png")
    assert got.sha256 == hashlib.sha256(server.png).hexdigest()
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left beside it


async def test_localhost_is_resolved_once_and_the_checked_address_is_connected(
    server, session, started, tmp_path
):
    """A name the URL gives is resolved once; the request goes to that address, Host kept.

    The resolver would answer 10.9.9.9 if asked again (DNS rebinding): it is never asked.
    """
    resolver = FakeResolver({"localhost": [["127.0.0.1"], ["10.9.9.9"]]})
    url = server.url("/a.png", host="localhost")
    await fetch_image(session, url, tmp_path / "a.png", resolver=resolver)
    assert resolver.calls == ["localhost"]
    assert [u.host for u in started] == ["127.0.0.1"]
    assert server.hits[0].headers["Host"] == f"localhost:{server.port}"


async def test_a_redirect_back_to_the_named_address_is_followed(server, session, tmp_path):
    """Hops stay under the same rules: a relative redirect on the named host is fine."""
    got = await fetch_image(
        session, server.url("/to?loc=/a.png"), tmp_path / "a.png", resolver=FakeResolver({})
    )
    assert got.source == server.url("/a.png")
    assert server.paths() == ["/to", "/a.png"]


async def test_no_authorization_or_cookie_ever_leaves_whatever_the_session_holds(
    server, session, tmp_path
):
    """Session headers, its cookie jar and the request's own: none reach the image host."""
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({"sid": "session-cookie"}, URL(server.url("/")))
    headers = {"Authorization": "Bearer ws-KEY-never-sent", "Cookie": "theme=dark"}
    async with aiohttp.ClientSession(headers=headers, cookie_jar=jar) as leaky:
        await fetch_image(
            leaky, server.url("/to?loc=/a.png"), tmp_path / "a.png", resolver=FakeResolver({})
        )
    assert len(server.hits) == 2
    for request in server.hits:
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers


# ------------------------------------------------------------------ what is refused


async def test_a_public_looking_name_resolving_to_loopback_is_refused_without_connecting(
    server, session, started, tmp_path
):
    """photos.example.com is 127.0.0.1 here: the URL did not name that address, so no."""
    resolver = FakeResolver({"photos.example.com": ["127.0.0.1"]})
    url = server.url(f"/a.png?token={TOKEN}", host="photos.example.com")
    refusal = r"photos\.example\.com is 127\.0\.0\.1, a loopback"
    with pytest.raises(FetchRefusedError, match=refusal):
        await fetch_image(session, url, tmp_path / "a.png", resolver=resolver)
    assert started == []
    assert server.hits == []
    assert nothing_written(tmp_path)


async def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    server, session, started, tmp_path
):
    resolver = FakeResolver({"cdn.example.com": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(FetchRefusedError, match=r"10\.0\.0\.7, a private address"):
        await fetch_image(
            session, "http://cdn.example.com/a.png", tmp_path / "a.png", resolver=resolver
        )
    assert started == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/x.png",
        "http://172.16.5.4/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",
        "http://0.0.0.0/x.png",
        "http://224.0.0.1/x.png",
        "http://[fd00::1]/x.png",
        "http://[fe80::1]/x.png",
        "http://[::]/x.png",
        "http://[::ffff:10.0.0.1]/x.png",
        "http://[64:ff9b::a9fe:a9fe]/x.png",  # NAT64 for 169.254.169.254
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused_without_connecting(
    server, session, started, tmp_path, target
):
    """The shot list named 127.0.0.1, not these: the hop is refused before any connection."""
    first = server.url(f"/to?loc={target}")
    with pytest.raises(FetchRefusedError, match=r"refused: .* address") as caught:
        await fetch_image(session, first, tmp_path / "a.png", resolver=FakeResolver({}))
    assert_one_safe_line(caught.value, str(URL(target)))  # as yarl spells it
    assert [u.path for u in started] == ["/to"]
    assert nothing_written(tmp_path)


async def test_a_redirect_to_a_name_resolving_to_cloud_metadata_is_refused(
    server, session, started, tmp_path
):
    resolver = FakeResolver({"metadata.example.net": ["169.254.169.254"]})
    first = server.url("/to?loc=http://metadata.example.net/latest/meta-data/")
    with pytest.raises(FetchRefusedError, match="link-local"):
        await fetch_image(session, first, tmp_path / "a.png", resolver=resolver)
    assert resolver.calls == ["metadata.example.net"]
    assert [u.path for u in started] == ["/to"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "gopher://127.0.0.1:70/",
        "http:///a.png",
        "not a url at all",
    ],
)
async def test_a_url_that_is_not_http_or_https_is_refused(session, started, tmp_path, url):
    with pytest.raises(FetchRefusedError, match="refused") as caught:
        await fetch_image(session, url, tmp_path / "a.png", resolver=FakeResolver({}))
    assert "\n" not in str(caught.value)
    assert started == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a.png"])
async def test_a_redirect_to_another_scheme_is_refused(server, session, started, tmp_path, target):
    with pytest.raises(FetchRefusedError, match=r"only http:// and https://"):
        await fetch_image(
            session, server.url(f"/to?loc={target}"), tmp_path / "a.png", resolver=FakeResolver({})
        )
    assert [u.path for u in started] == ["/to"]


async def test_a_url_carrying_credentials_is_refused(server, session, started, tmp_path):
    url = f"http://user:hunter2@127.0.0.1:{server.port}/a.png"
    with pytest.raises(FetchRefusedError, match="credentials") as caught:
        await fetch_image(session, url, tmp_path / "a.png", resolver=FakeResolver({}))
    assert "hunter2" not in str(caught.value)
    assert started == []


async def test_a_body_over_the_limit_is_refused_as_soon_as_it_passes(server, session, tmp_path):
    """The server never ends the body: only giving up at the limit ends the fetch."""
    limits = FetchLimits(max_bytes=100_000, total_s=30.0)
    with pytest.raises(FetchRefusedError, match="larger than 100000 bytes"):
        await fetch_image(
            session,
            server.url("/big"),
            tmp_path / "a.png",
            limits=limits,
            resolver=FakeResolver({}),
        )
    assert nothing_written(tmp_path)


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    server, session, tmp_path
):
    limits = FetchLimits(max_bytes=len(server.png))
    with pytest.raises(FetchRefusedError, match=f"larger than {len(server.png)} bytes"):
        await fetch_image(
            session,
            server.url("/declared-big"),
            tmp_path / "a.png",
            limits=limits,
            resolver=FakeResolver({}),
        )


async def test_a_page_that_is_not_an_image_is_refused_and_leaves_nothing(server, session, tmp_path):
    dest = tmp_path / "proof" / "a.png"
    with pytest.raises(FetchRefusedError, match="not a PNG, JPEG or WebP image"):
        await fetch_image(session, server.url("/html"), dest, resolver=FakeResolver({}))
    assert nothing_written(dest.parent)


async def test_too_many_redirects_are_refused(server, session, tmp_path):
    limits = FetchLimits(max_redirects=3)
    with pytest.raises(FetchRefusedError, match="more than 3 redirects"):
        await fetch_image(
            session,
            server.url("/loop"),
            tmp_path / "a.png",
            limits=limits,
            resolver=FakeResolver({}),
        )
    assert server.paths() == ["/loop"] * 4


async def test_the_whole_fetch_is_bounded_in_time(server, session, tmp_path):
    """A server that never answers: the fetch gives up at its total limit."""
    limits = FetchLimits(total_s=0.2)
    with pytest.raises(FetchRefusedError, match=r"took longer than 0\.2 s"):
        await fetch_image(
            session,
            server.url("/hang"),
            tmp_path / "a.png",
            limits=limits,
            resolver=FakeResolver({}),
        )


async def test_an_http_error_is_a_fetch_failure_not_a_refusal(server, session, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        await fetch_image(
            session, server.url("/missing"), tmp_path / "a.png", resolver=FakeResolver({})
        )
    assert not isinstance(caught.value, FetchRefusedError)
    assert isinstance(caught.value, KlingPipeError)


# ------------------------------------------------------------------ the address policy


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.1.1", "non-public"),
        ("255.255.255.255", "non-public"),
        ("::ffff:192.168.0.1", "private"),
        ("2002:0a00:0001::1", "private"),  # 6to4 around 10.0.0.1
    ],
)
def test_internal_addresses_are_unreachable_by_name(address, kind):
    assert kind in (why_unreachable(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_reachable(address):
    assert why_unreachable(ipaddress.ip_address(address)) is None


def test_a_url_in_a_message_is_one_short_line_without_its_query():
    shown = safe_url(f"http://u:pw@h.test/a\x1b[31m b\u202e.png?token={TOKEN}#x")
    assert shown == "http://h.test/a%1B[31m%20b%E2%80%AE.png"
    assert len(safe_url("http://h.test/" + "a" * 5000)) == 200
