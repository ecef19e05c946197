"""Running the HTTP app on a socket so that no client can hold the server: connection cap, time limits,
descriptor limit, and a bounded log when the process runs out of descriptors anyway.

`serve_app` is what ``talkstream serve`` runs; services embedding talkstream on their own aiohttp runner
use `GuardedSite` and `ConnectionLimits` the same way. The request body's time limit is the app's
(`http_server.create_app`'s ``body_timeout``), since only a handler knows when it reads a body.

What it must never do: answer a refused connection with anything but D-ID's error shape, or log once per
failed ``accept()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import signal
import time
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from talkstream.engine.errors import ServiceUnavailableError

__all__ = [
    "AcceptErrorThrottle",
    "ConnectionLimits",
    "GuardedSite",
    "default_max_connections",
    "raise_descriptor_limit",
    "serve_app",
]

_log = logging.getLogger("talkstream.serving")


@attrs.frozen(kw_only=True)
class ConnectionLimits:
    """`max_connections` open at once (more are answered 503 and closed); `header_timeout`: a request's
    headers must be complete this many seconds after the connection opened or its last answer went out
    (an idle keep-alive connection is closed then too); `linger`: after answering a request whose body it
    did not read (a 401, a 408), the server reads on this long so the client sees the answer, then closes."""

    max_connections: int = 1000
    header_timeout: float = 15.0
    linger: float = 2.0  # after answering a request whose body was not read, wait this long for the rest


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def default_max_connections(descriptors: int, streams: int) -> int:
    """Connections a server may hold open within `descriptors`, leaving each of `streams` live streams its
    sockets (about 4: ICE per address, and its HTTP connection) and the process 64 of its own."""
    return max(16, min(4096, descriptors - 4 * streams - 64))


_REFUSAL = ServiceUnavailableError("the server holds its maximum of open connections", retry_after=1)
_REFUSAL_BODY = json.dumps(_REFUSAL.to_body()).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    + b"".join(f"{k}: {v}\r\n".encode() for k, v in _REFUSAL.headers().items())
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + _REFUSAL_BODY
)
_REFUSAL_LINGER = 1.0  # seconds a refused client has to read the answer before its connection is cut


class _Refused(asyncio.Protocol):
    """A connection over the cap: the 503 goes out, what the client sends is dropped, and the connection is
    closed once the client closes or after a second, whichever comes first."""

    def __init__(self) -> None:
        self._cut: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._cut = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # a request we will not serve

    def eof_received(self) -> bool:
        return False  # close now

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._cut is not None:
            self._cut.cancel()


class GuardedSite(web.BaseSite):
    """A TCP site that serves at most `limits.max_connections` connections at once and refuses the rest
    with D-ID's 503 (``ServiceUnavailableError``, ``Retry-After: 1``). The runner must be made with
    ``keepalive_timeout=limits.header_timeout`` (`guarded_runner` does)."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits, *, backlog: int = 512
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self.limits = host, port, limits
        self.refused = 0
        self._bound: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return self._bound if self._bound is not None else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        limit = self.limits.max_connections

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    _log.warning("%d open connections: refusing more (%d so far)", limit, self.refused)
                return _Refused()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self._host, self._port, backlog=self._backlog)
        self._bound = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def guarded_runner(
    app: web.Application, limits: ConnectionLimits, *, shutdown_timeout: float = 5.0
) -> web.AppRunner:
    """An app runner whose connections must send complete request headers within `header_timeout`."""
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.header_timeout,
        lingering_time=limits.linger,
        shutdown_timeout=shutdown_timeout,
    )


ACCEPT_FAILED = "socket.accept() out of system resource"


@attrs.define
class AcceptErrorThrottle:
    """A loop exception handler: asyncio's report of a failed ``accept()`` (the process is out of
    descriptors) is logged once per `interval` seconds with the number of failures since; every other
    report goes to the loop's default handler."""

    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    _last: float = float("-inf")
    _since: int = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        self.failures += 1
        self._since += 1
        now = self.clock()
        if now - self._last >= self.interval:
            _log.error(
                "accept() failed %d times in the last %.0f s: %s (open files: raise the limit or lower "
                "--max-connections)",
                self._since,
                min(now - self._last, 1e9),
                context.get("exception"),
            )
            self._last, self._since = now, 0


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    shutdown_timeout: float = 5.0,
    started: Callable[[GuardedSite], None] | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then close it (its cleanup closes every stream)."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorThrottle())
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = guarded_runner(app, limits, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, limits)
        await site.start()
        if started is not None:
            started(site)
        await stop.wait()
    finally:
        await asyncio.wait_for(runner.cleanup(), shutdown_timeout + 5.0)
