"""D-ID's WebSocket streaming API as the client's port: `WebSocketAdapter` carries the protocol's requests as
WebSocket messages (create as ``init-stream``, sdp, ice, a talk's text as ``stream-text``, delete as
``delete-stream``) on one socket, so `StreamClient` drives a stream the same way over either API, and sends
the chunks of streamed talks (`ClientStream.stream_text`, `stream_audio`).

Every message gets one answer, in order (the server's contract): answers go to the requests in the order
they were sent. An error that answers nothing (a phrase that could not be spoken) lands in `errors`.

What it must never do: log the key, raise an aiohttp exception, or leave a request waiting after the socket
closed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from talkstream.engine.errors import (
    ConnectionFailedError,
    TalkstreamError,
    TimeoutError_,
    error_from_response,
)
from talkstream.engine.ports import HttpRequest, HttpResponse

__all__ = ["WebSocketAdapter"]

_CREATE = re.compile(r"^/(talks|clips)/streams$")
_ON_STREAM = re.compile(r"^/(talks|clips)/streams/([^/]+)(/sdp|/ice)?$")


class WebSocketAdapter:
    """Protocol requests over D-ID's WebSocket API at `url` (``ws://127.0.0.1:8000/ws``, or an
    ``http(s)://`` base URL, whose ``/ws`` it uses); the key goes in the query, as browsers must send it."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 45.0) -> None:
        parts = urlsplit(url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/") or ""
        if parts.scheme in ("http", "https"):
            path += "/ws"
        self.url = urlunsplit((scheme, parts.netloc, path or "/", "", ""))
        self._authorization = f"Basic {api_key}"
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[dict[str, Any]]] = collections.deque()
        self._lock = asyncio.Lock()
        self.errors: list[dict[str, Any]] = []  # errors that answered no message
        self.close_reason: tuple[int | None, str] | None = None  # (code, reason) once the server closed

    def __repr__(self) -> str:
        return f"WebSocketAdapter({self.url!r})"  # never the key

    # -- HttpPort -------------------------------------------------------------------------------------------

    async def send(self, request: HttpRequest) -> HttpResponse:
        """The HTTP request as the WebSocket message that does the same, and its answer as a response."""
        body: dict[str, Any] = dict(request.body) if isinstance(request.body, dict) else {}
        created = _CREATE.match(request.path)
        on_stream = _ON_STREAM.match(request.path)
        if request.method == "POST" and created:
            if created.group(1) == "clips":
                body["presenter_type"] = "clip"
            return await self._answered("init-stream", body, created_status=201)
        if on_stream is None or request.method not in ("POST", "DELETE"):
            return _refusal(404, "NotFound", f"{request.method} {request.path} has no WebSocket message")
        body["stream_id"] = on_stream.group(2)
        if request.method == "DELETE":
            return await self._answered("delete-stream", body)
        if on_stream.group(3):
            return await self._answered(on_stream.group(3)[1:], body)
        script = body.get("script")
        if not isinstance(script, dict) or script.get("type") != "text":
            return _refusal(400, "BadRequestError", "the WebSocket API streams text or PCM, not audio files")
        # A whole text as one chunk, then the end: the server speaks it phrase by phrase.
        text = {k: v for k, v in body.items() if k != "script"}
        first = await self._answered("stream-text", {**text, "script": script, "index": 0})
        if first.status != 200:
            return first
        end = await self._answered("stream-text", {**text, "script": {**script, "input": ""}, "index": 1})
        return first if first.body.get("video_id") else end

    async def aclose(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._fail_waiting(ConnectionFailedError("the socket was closed"))

    # -- messages ------------------------------------------------------------------------------------------

    async def message(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one message and return its answer's body (without ``messageType``); an error answer
        raises it as a `TalkstreamError`."""
        response = await self._answered(kind, payload)
        if response.status >= 400:
            raise error_from_response(response.status, response.body)
        body: dict[str, Any] = response.body
        return body

    async def _answered(
        self, kind: str, payload: dict[str, Any], *, created_status: int = 200
    ) -> HttpResponse:
        answer = await self._exchange({"type": kind, "payload": payload})
        if answer.get("messageType") == "error":
            status = answer.get("status")
            error = {k: v for k, v in answer.items() if k not in ("messageType", "type", "status")}
            return HttpResponse(status=status if isinstance(status, int) else 400, body=error)
        return HttpResponse(
            status=created_status, body={k: v for k, v in answer.items() if k != "messageType"}
        )

    async def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        ws = await self._connected()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        async with self._lock:  # the order sent is the order answered
            self._waiting.append(answer)
            try:
                await ws.send_str(json.dumps(message, separators=(",", ":")))
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                self._waiting.remove(answer)
                raise ConnectionFailedError(f"{message['type']}: the socket is closed ({exc})") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(answer), self._timeout)
        except TimeoutError as exc:
            raise TimeoutError_(f"{message['type']}: no answer within {self._timeout:g} s") from exc

    async def _connected(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is not None and not self._ws.closed:
            return self._ws
        if self.close_reason is not None:
            code, reason = self.close_reason
            raise ConnectionFailedError(f"the server closed the socket ({code}: {reason})")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(
                self.url,
                params={"authorization": self._authorization},
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                heartbeat=20.0,
                max_msg_size=4 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            # Refused before the upgrade: the server answered as over HTTP (401, 429, ...).
            raise error_from_response(exc.status, {"kind": "", "description": exc.message}) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailedError(f"could not open {self.url}: {type(exc).__name__}") from exc
        self._reader = asyncio.ensure_future(self._read(self._ws))
        return self._ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        try:
            while True:
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.CLOSE:
                    reason = str(message.extra or "")
                    break
                if message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                if message.type == aiohttp.WSMsgType.ERROR:
                    reason = str(ws.exception() or "error")
                    break
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._answer(message.data)
        finally:
            self.close_reason = (ws.close_code, reason)
            self._fail_waiting(ConnectionFailedError(f"the socket closed ({ws.close_code}: {reason})"))

    def _answer(self, text: str) -> None:
        try:
            answer = json.loads(text)
        except ValueError:
            return
        if not isinstance(answer, dict):
            return
        if answer.get("messageType") == "error" and "video_id" in answer and "status" not in answer:
            self.errors.append(answer)  # about a talk playing, not an answer to a message
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(answer)
                return

    def _fail_waiting(self, error: TalkstreamError) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: its caller may have timed out


def _refusal(status: int, kind: str, description: str) -> HttpResponse:
    return HttpResponse(status=status, body={"kind": kind, "description": description})
