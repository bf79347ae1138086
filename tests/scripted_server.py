"""A loopback HTTP server that gives scripted answers, for testing the client's requests.

The real client sends real requests through a real `aiohttp.ClientSession`: a resolver
(aiohttp's public `AbstractResolver`) sends every host name to one loopback server, which
answers each (method, URL) with the next answer scripted for it and records what it
received. Failures that happen below HTTP (a refused or reset connection, a time-out) are
raised by a client middleware (aiohttp's public `middlewares=`) in place of sending.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class Call:
    """One request as it arrived (or, for a scripted exception, as it was about to be sent)."""

    method: str
    url: URL
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)
    exception: BaseException | None = None
    handler: Handler | None = None
    repeat: bool = False


def _key(method: str, url: URL) -> tuple[str, str]:
    """Requests are matched on method and URL, the port aside (every host is one server)."""
    return method.upper(), str(url.with_port(None))


class ScriptedServer:
    """Answers scripted per (method, URL), in order; every call recorded.

    `get`/`post`/`put` take `payload` (JSON), `body`, `status`, `headers`, `exception`,
    `handler` (an aiohttp handler answering instead) and `repeat` (answer every time).
    """

    def __init__(self, now: datetime) -> None:
        self._answers: dict[tuple[str, str], list[Answer]] = {}
        self.calls: list[Call] = []
        #: The server's ``Date`` unless a scripted answer gives its own: the tests' clock.
        self._date = format_datetime(now, usegmt=True)
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._answer)

    # ---------------------------------------------------------------- the script

    def add(  # noqa: PLR0913 - the shape of an answer, spelled out
        self,
        method: str,
        url: str,
        *,
        status: int = 200,
        payload: object = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        exception: BaseException | None = None,
        handler: Handler | None = None,
        repeat: bool = False,
    ) -> None:
        if payload is not None:
            body = json.dumps(payload).encode()
        answer = Answer(
            status=status,
            body=body,
            headers=headers or {},
            exception=exception,
            handler=handler,
            repeat=repeat,
        )
        self._answers.setdefault(_key(method, URL(url)), []).append(answer)

    def get(self, url: str, **answer: Any) -> None:
        self.add("GET", url, **answer)

    def post(self, url: str, **answer: Any) -> None:
        self.add("POST", url, **answer)

    def put(self, url: str, **answer: Any) -> None:
        self.add("PUT", url, **answer)

    def calls_to(self, method: str, url: str) -> list[Call]:
        """The calls made to *method* *url*, in order."""
        return [c for c in self.calls if _key(c.method, c.url) == _key(method, URL(url))]

    def _next(self, method: str, url: URL) -> Answer | None:
        queue = self._answers.get(_key(method, url), [])
        if not queue:
            return None
        return queue[0] if queue[0].repeat else queue.pop(0)

    def _peek(self, method: str, url: URL) -> Answer | None:
        queue = self._answers.get(_key(method, url), [])
        return queue[0] if queue else None

    # ---------------------------------------------------------------- the server side

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        url = URL.build(scheme="http", host=request.host.split(":")[0], path=request.path)
        url = url.with_query(request.query)
        self.calls.append(Call(request.method, url, request.headers, await request.read()))
        answer = self._next(request.method, url)
        if answer is None:
            return web.json_response({"code": 599, "message": "nothing scripted"}, status=599)
        if answer.handler is not None:
            return await answer.handler(request)
        return web.Response(
            status=answer.status,
            body=answer.body,
            headers={"Content-Type": "application/json", "Date": self._date, **answer.headers},
        )

    # ---------------------------------------------------------------- the client side

    async def middleware(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Raise a scripted exception in place of sending; send anything else."""
        answer = self._peek(request.method, request.url)
        if answer is not None and answer.exception is not None:
            self._next(request.method, request.url)
            self.calls.append(
                Call(request.method, request.url, CIMultiDictProxy(request.headers), b"")
            )
            raise answer.exception
        return await handler(request)


class LoopbackResolver(AbstractResolver):
    """Resolve every host name to the scripted server on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self._port = port

    async def resolve(
        self,
        host: str,
        port: int = 0,  # noqa: ARG002 - every port of every host is the one server's
        family: socket.AddressFamily = socket.AF_INET,  # noqa: ARG002 - IPv4 loopback only
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self._port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""
