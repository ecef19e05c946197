"""HTTP into an aiohttp app in the same process: real HTTP/1.1 bytes fed to the app's own request handler
over an in-memory transport, the answer parsed back. The adapter owns the app's lifetime.

What it must never do: open a socket, or bypass the app's middlewares.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from talkstream.engine.errors import ConnectionFailedError
from talkstream.engine.ports import HttpRequest, HttpResponse

__all__ = ["InProcessAdapter"]


class _MemoryTransport(asyncio.Transport):
    """Collects what the server writes; `done` is set when it closes the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.done = asyncio.Event()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self.done.set()

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 0), "sockname": ("127.0.0.1", 0)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class InProcessAdapter:
    """Sends protocol requests to `app` in this process (implements `engine.ports.HttpPort`)."""

    def __init__(self, app: web.Application, api_key: str, *, timeout: float = 60.0) -> None:
        self.app = app
        self._authorization = f"Basic {api_key}"
        self._timeout = timeout
        self._host = _Host(app)
        self._owner = True

    def __repr__(self) -> str:
        return "InProcessAdapter()"

    def with_key(self, api_key: str) -> InProcessAdapter:
        """Another adapter to the same running app, sending another key (its `aclose` leaves the app)."""
        sibling = InProcessAdapter(self.app, api_key, timeout=self._timeout)
        sibling._host, sibling._owner = self._host, False
        return sibling

    async def replace_app(self, app: web.Application) -> None:
        """Stop the running app (its cleanup runs) and serve `app` from the next request on."""
        await self._host.stop()
        self._host.app = self.app = app

    async def start(self) -> None:
        """Start the app now (the first request would); its startup code and cleanup contexts run."""
        await self._server()

    async def _server(self) -> web.Server:
        return await self._host.server()

    async def send(self, request: HttpRequest) -> HttpResponse:
        server = await self._server()
        body = b"" if request.body is None else json.dumps(request.body).encode()
        head = (
            f"{request.method} {request.path} HTTP/1.1\r\n"
            "Host: inprocess\r\n"
            f"Authorization: {self._authorization}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        transport = _MemoryTransport()
        protocol = server()
        protocol.connection_made(transport)
        protocol.data_received(head + body)
        try:
            await asyncio.wait_for(transport.done.wait(), self._timeout)
        except TimeoutError as exc:
            raise ConnectionFailedError(f"{request.method} {request.path}: no answer from the app") from exc
        finally:
            protocol.connection_lost(None)
        return _parse(bytes(transport.written))

    async def aclose(self) -> None:
        if self._owner:
            await self._host.stop()


class _Host:
    """The running app that an adapter and its siblings share."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None
        self.lock = asyncio.Lock()

    async def server(self) -> web.Server:
        async with self.lock:
            if self.runner is None:
                self.runner = web.AppRunner(self.app, access_log=None)
                await self.runner.setup()
            server = self.runner.server
            assert server is not None
            return server

    async def stop(self) -> None:
        async with self.lock:
            if self.runner is not None:
                await self.runner.cleanup()
                self.runner = None


def _parse(raw: bytes) -> HttpResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError) as exc:
        raise ConnectionFailedError("the app wrote no HTTP response") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    if headers.get("content-type", "").startswith(("video/", "application/octet-stream")):
        return HttpResponse(status=status, body=bytes(body), headers=headers)  # a talk's file, as is
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return HttpResponse(status=status, body=parsed, headers=headers)
