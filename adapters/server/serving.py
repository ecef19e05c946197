"""The server as a long-lived process: `GuardedSite` (a connection cap answered with D-ID's 503, a header
time limit), the descriptor limit, a bounded log of accept errors, `tune_process` (malloc arenas, FFmpeg
threads), a bounded executor, `MemoryKeeper`, and `serve_app`, which ``talkstream serve`` runs.

What it must never do: answer a refused connection outside D-ID's error shape, log once per failed
``accept()``, or change process-wide settings at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import av
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from talkstream.engine.errors import ServiceUnavailableError

__all__ = [
    "AcceptErrorThrottle",
    "ConnectionLimits",
    "GuardedSite",
    "MalformedRequests",
    "MemoryKeeper",
    "bounded_executor",
    "default_max_connections",
    "guarded_runner",
    "raise_descriptor_limit",
    "serve_app",
    "tune_process",
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


# -- memory ------------------------------------------------------------------------------------------------
#
# Measured with bench/churn.py (8 clients cycling create -> talk -> delete on 2 cores): RSS rose from ~110 MB
# to 550-600 MB and stayed there when the clients stopped, while glibc reported only ~200 MB in use. The rest
# was freed memory kept by the allocator: one arena per thread that ever allocated (the default executor's
# workers encode video; every FFmpeg filter graph, one per stream's Opus encoder, started its own pool of
# threads: 42 threads at the peak), each with holes that free() never gives back. Fewer threads, at most two
# arenas, and a malloc_trim after streams close hold it at ~300-410 MB under churn and ~240 MB after it.

_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _libavutil() -> ctypes.CDLL | None:
    """The FFmpeg utility library PyAV loaded (its wheels bundle their own, beside the package)."""
    here = Path(av.__file__).resolve().parent
    for folder in (here.parent / "av.libs", here / ".dylibs"):
        for path in sorted(folder.glob("libavutil*")) if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                return ctypes.CDLL(str(path))
    name = ctypes.util.find_library("avutil")
    with contextlib.suppress(OSError, TypeError):
        return ctypes.CDLL(name) if name else None
    return None


def tune_process(*, arena_max: int = 2, ffmpeg_threads: int = 1) -> dict[str, bool]:
    """Process-wide settings for a long-running server; call once, early, before threads start.

    `arena_max`: glibc keeps at most this many malloc arenas (default: 8 per core, each holding on to what
    its threads freed). `ffmpeg_threads`: the CPU count FFmpeg's automatic thread pools assume (each
    audio resampler's filter graph otherwise starts one per core, per stream). Returns what took effect;
    a platform without one of them keeps its default.
    """
    done = {"arena_max": False, "ffmpeg_threads": False}
    libc = _libc()
    if libc is not None and arena_max > 0:
        done["arena_max"] = bool(libc.mallopt(_M_ARENA_MAX, arena_max))
    avutil = _libavutil()
    if avutil is not None and ffmpeg_threads > 0 and hasattr(avutil, "av_cpu_force_count"):
        avutil.av_cpu_force_count(ffmpeg_threads)
        done["ffmpeg_threads"] = avutil.av_cpu_count() == ffmpeg_threads
    return done


def bounded_executor(loop: asyncio.AbstractEventLoop, workers: int | None = None) -> ThreadPoolExecutor:
    """Give `loop` a default executor of `workers` threads (default: cores + 1, at most 4). aiortc encodes
    video there and talkstream makes faces and speech there; more threads only spread memory thinner."""
    count = workers or min(4, (os.cpu_count() or 1) + 1)
    executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="talkstream")
    loop.set_default_executor(executor)
    return executor


class MemoryKeeper:
    """Gives a closed stream's memory back to the system soon after it closes.

    A closed stream's objects (aiortc's peer, its RTP history, DTLS and SRTP contexts) hold one another in
    reference cycles, which only Python's full collection frees, and that runs rarely: under churn it held
    20-57 MB at any moment here. So every `interval` seconds, if `closed()` (a count of closed streams) has
    moved, the keeper collects, then runs ``malloc_trim(0)`` in a worker thread (glibc only) so that what
    was freed leaves the process. Call ``gc.freeze()`` once the server is built: the collection then skips
    everything made at start-up (80-170 ms without, 20-80 ms with, under churn here).
    """

    def __init__(self, closed: Callable[[], int], *, interval: float = 5.0) -> None:
        self._closed = closed
        self.interval = interval
        self.runs = 0
        self._libc = _libc()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        seen = self._closed()
        while True:
            await asyncio.sleep(self.interval)
            now = self._closed()
            if now != seen:
                seen = now
                await self.release()

    async def release(self) -> None:
        """Collect, then give freed memory back."""
        gc.collect()
        if self._libc is not None:
            await asyncio.to_thread(self._libc.malloc_trim, 0)
        self.runs += 1

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class MalformedRequests(logging.Filter):
    """aiohttp logs a request its HTTP parser refuses (a NUL in a header, a header over 8 KiB) at ERROR with
    a traceback, though the fault is the client's and the client has its 400: this filter on the
    ``aiohttp.server`` logger turns such a record into one warning line, without the bytes aiohttp quotes
    (an Authorization header holds a key). Any other record passes as is."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and (error.code or 400) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            said = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            said = re.split(r":? b['\"]", said, maxsplit=1)[0]  # not the bytes it quotes: they may hold a key
            record.msg, record.args = "malformed request from %s: %s", (remote, said[:200])
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _quiet_malformed_requests() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server_log.filters):
        server_log.addFilter(MalformedRequests())


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits | None = None,
    *,
    shutdown_timeout: float = 5.0,
    started: Callable[[GuardedSite], None] | None = None,
    keeper: MemoryKeeper | None = None,
    drain: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then close it (its cleanup closes every stream).

    With `drain`, SIGTERM first awaits it while the server goes on answering (a proxy's health check sees
    it draining, its streams' requests still arrive); SIGINT, or a second signal, cuts the drain short.
    The loop gets a bounded default executor and the accept-error throttle, requests the HTTP parser
    refuses one log line each (`MalformedRequests`); `keeper`, if given, runs meanwhile."""
    loop = asyncio.get_running_loop()
    bounded_executor(loop)
    loop.set_exception_handler(AcceptErrorThrottle())
    _quiet_malformed_requests()
    stop, cut = asyncio.Event(), asyncio.Event()

    def on_signal(signum: int) -> None:
        if signum == signal.SIGINT or stop.is_set():
            cut.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    limits = limits or ConnectionLimits()
    runner = guarded_runner(app, limits, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, limits)
        await site.start()
        if started is not None:
            started(site)
        if keeper is not None:
            gc.collect()
            gc.freeze()  # what exists now lives as long as the server: full collections skip it
            keeper.start()
        await stop.wait()
        if drain is not None and not cut.is_set():
            _log.info("SIGTERM: draining (a second signal stops at once)")
            draining = asyncio.ensure_future(drain())
            cutting = asyncio.ensure_future(cut.wait())
            await asyncio.wait({draining, cutting}, return_when=asyncio.FIRST_COMPLETED)
            for task in (draining, cutting):
                task.cancel()
            drained, _ = await asyncio.gather(draining, cutting, return_exceptions=True)
            if isinstance(drained, Exception):  # closing goes on: every stream still hears why
                _log.error("the drain failed", exc_info=drained)
    finally:
        if keeper is not None:
            await keeper.aclose()
        await asyncio.wait_for(runner.cleanup(), shutdown_timeout + 5.0)
