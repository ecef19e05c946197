"""D-ID's WebSocket streaming API on the same service, keys, limits and sessions as the HTTP API.

Connect to ``/ws`` (or ``/`` with an upgrade, as D-ID's demo does with a bare host) with the key in the query,
``?authorization=Basic%20<key>`` (browsers cannot set headers on a WebSocket), or in an Authorization
header. Every message is ``{"type": T, "payload": {...}}``: ``init-stream`` (a create body; a
``presenter_id`` or ``presenter_type: "clip"`` makes a clips stream), ``sdp``, ``ice``, ``stream-text``
(text chunks: phrases are spoken as they complete, a blank chunk ends the talk), ``stream-audio`` (PCM
chunks, played as they come; an empty one ends the talk), ``delete-stream``. Answers carry
``messageType``: the request's type and its HTTP answer's fields, or ``"error"`` with D-ID's ``kind``,
``description`` (and ``details``), the HTTP ``status`` it would have had and the ``type`` it answers.
Every message gets exactly one answer, in order; an error while speaking a phrase already accepted comes
on its own, with the talk's ``video_id``. specs/websocket.schema.json is the contract.

What it must never do: answer a message out of order, hold a stream's state the service does not (only
the talk being streamed in), leave a task behind the server, or close a socket without a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import WSCloseCode, WSMsgType, web

from talkstream.engine.errors import (
    InternalServerError,
    NotFoundError,
    SessionError,
    TalkstreamError,
    ValidationError,
)
from talkstream.engine.live import LiveSpeech, PhraseSplitter
from talkstream.engine.messages import (
    MAX_TEXT,
    DeleteRequest,
    IceCandidateRequest,
    Provider,
    SdpRequest,
    StreamAudioChunk,
    StreamTextChunk,
    TextScript,
    WebSocketMessage,
)
from talkstream.engine.ports import SpeechFeed

from .app import GATE, SERVICE, admit, open_clips_stream, open_talks_stream

__all__ = ["MAX_MESSAGE_BYTES", "SOCKETS", "install", "websocket_api"]

_log = logging.getLogger("talkstream.ws")

MAX_MESSAGE_BYTES = 512 * 1024  # a bigger message closes the socket (1009, "message too big")
MAX_BAD_IN_A_ROW = 20  # refused messages in a row before the server gives up on a client (1008)
HEARTBEAT = 20.0  # seconds between pings; a client that answers none is gone


@attrs.define(eq=False)
class _TextTalk:
    """A talk whose text is streaming in: the phrases wait for the speaker task, in order."""

    session_id: str | None
    live: LiveSpeech | None = None
    splitter: PhraseSplitter = attrs.field(factory=PhraseSplitter)
    phrases: asyncio.Queue[str | None] = attrs.field(factory=asyncio.Queue)
    ssml: bool = False
    provider: Provider | None = None
    last_index: int | None = None
    speaker: asyncio.Task[None] | None = None
    video_id: str | None = None
    length: int = 0  # characters so far: a talk's text is at most MAX_TEXT, as over HTTP


@attrs.define(eq=False)
class _AudioTalk:
    live: LiveSpeech
    feed: SpeechFeed
    video_id: str | None
    last_index: int | None = None


@attrs.define(eq=False)
class _Sockets:
    """The app's open sockets, so that shutdown can close them with a reason, and the tasks speaking their
    streamed texts (they outlive a socket that closed: what came is still said), which shutdown stops."""

    open: set[_Socket] = attrs.field(factory=set)
    speakers: set[asyncio.Task[None]] = attrs.field(factory=set)


SOCKETS: web.AppKey[_Sockets] = web.AppKey("websockets", _Sockets)


def install(app: web.Application) -> None:
    """Make `app` ready for sockets: their registry, and their closing (1001, with a reason) at shutdown."""
    app[SOCKETS] = _Sockets()
    app.on_shutdown.append(_close_all)


async def websocket_api(request: web.Request) -> web.StreamResponse:
    """Authenticate (401 in D-ID's shape before any upgrade), then serve one socket until it closes."""
    app = request.app
    authorization = request.headers.get("Authorization") or request.query.get("authorization")
    owner, granted = await admit(app, authorization)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=HEARTBEAT)
    await ws.prepare(request)
    sockets = app[SOCKETS]
    socket = _Socket(app, owner, granted, ws)
    sockets.open.add(socket)
    try:
        await socket.serve()
    finally:
        sockets.open.discard(socket)
        await socket.finish()
    return ws


def _in_order(last: int | None, index: int | None) -> None:
    """A chunk's `index` must follow the last one's (gaps are allowed: a chunk may say nothing)."""
    if last is not None and index is not None and index <= last:
        raise ValidationError("payload.index", f"{index} came after {last}")


async def _close_all(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for socket in list(sockets.open):
        await socket.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
    for task in list(sockets.speakers):
        task.cancel()
    await asyncio.gather(*sockets.speakers, return_exceptions=True)


class _Socket:
    def __init__(self, app: web.Application, owner: str, granted: frozenset[str], ws: web.WebSocketResponse):
        self.app = app
        self.service = app[SERVICE]
        self.owner = owner
        self.granted = granted
        self.ws = ws
        self.id = secrets.token_hex(4)
        self.streams: dict[str, str] = {}  # stream id -> session id, of the streams made on this socket
        self.text: dict[str, _TextTalk] = {}
        self.audio: dict[str, _AudioTalk] = {}
        self.bad_in_a_row = 0

    # -- the socket ---------------------------------------------------------------------------------------

    async def serve(self) -> None:
        idle = self.service.engine.idle_timeout
        while not self.ws.closed:
            try:
                message = await self.ws.receive(timeout=idle)
            except TimeoutError:
                await self.ws.close(code=WSCloseCode.OK, message=f"no message for {idle:g} s".encode())
                return
            if message.type == WSMsgType.TEXT:
                await self.on_text(message.data)
            elif message.type == WSMsgType.BINARY:
                await self.refuse(None, ValidationError("message", "binary frames are not read: send JSON"))
            elif message.type == WSMsgType.ERROR:
                _log.info("ws %s: %s", self.id, self.ws.exception())
                return
            else:  # CLOSE, CLOSING, CLOSED
                return
            if self.bad_in_a_row >= MAX_BAD_IN_A_ROW:
                await self.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION,
                    message=f"{MAX_BAD_IN_A_ROW} refused messages in a row".encode(),
                )

    async def finish(self) -> None:
        """The socket closed: streamed talks end with what came (their streams live on, as over HTTP)."""
        for stream_id, talk in list(self.text.items()):
            with contextlib.suppress(TalkstreamError):  # the stream may be gone too
                await self._end_text(stream_id, talk)
        for audio in self.audio.values():
            await self._end_audio(audio)
        self.text.clear()
        self.audio.clear()  # (its speakers go on saying what came; shutdown stops them)

    async def send(self, body: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client left while we answered
            await self.ws.send_str(json.dumps(body, separators=(",", ":")))

    async def refuse(self, kind: str | None, error: TalkstreamError) -> None:
        self.bad_in_a_row += 1
        body: dict[str, Any] = {"messageType": "error", "type": kind, "status": error.status}
        body.update(error.to_body())
        headers = error.headers()
        if "Retry-After" in headers:
            body["retry_after"] = float(headers["Retry-After"])
        await self.send(body)

    async def on_text(self, raw: str) -> None:
        kind: str | None = None
        try:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                raise ValidationError("message", "must be JSON") from None
            message = WebSocketMessage.from_json(data)
            kind = message.type
            if not self._continues_a_talk(kind, message.payload):
                # Each message is a request against the key's rate, but the chunks of a talk already
                # started are its body arriving: they are paced by the talk itself (LiveSpeech holds the
                # reader back once 5 s wait), as D-ID's demo sends a TTS's PCM as fast as it comes.
                await self.app[GATE].check(self.owner)
            handler: Callable[[Any], Awaitable[dict[str, Any]]] = getattr(
                self, "do_" + kind.replace("-", "_")
            )
            reply = await handler(message.payload)
        except TalkstreamError as exc:
            _log.info("ws %s %s -> %s: %s", self.id, kind or "?", exc.kind, exc.description)
            await self.refuse(kind, exc)
            return
        except Exception:
            _log.exception("ws %s %s failed", self.id, kind)
            await self.refuse(kind, InternalServerError())
            return
        self.bad_in_a_row = 0
        await self.send({"messageType": kind, **reply})

    def _continues_a_talk(self, kind: str, payload: Any) -> bool:
        """Whether a chunk belongs to a talk this socket is streaming in (not one that starts a talk)."""
        if kind not in ("stream-text", "stream-audio") or not isinstance(payload, dict):
            return False
        talks: dict[str, Any] = self.text if kind == "stream-text" else self.audio
        try:
            stream_id, _ = self.target(payload)
        except TalkstreamError:
            return False
        talk = talks.get(stream_id)
        return talk is not None and payload.get("index") != 0

    # -- which stream ---------------------------------------------------------------------------------------

    def target(self, payload: Any) -> tuple[str, str | None]:
        """(stream id, session id) a message is for: its `stream_id`, else this socket's stream with its
        `session_id` (D-ID's demo sends no stream id with sdp and candidates), else this socket's only one."""
        stream_id = payload.get("stream_id")
        session_id = payload.get("session_id")
        if isinstance(stream_id, str) and stream_id:
            return stream_id, session_id if isinstance(session_id, str) else None
        if isinstance(session_id, str):
            for sid, session in self.streams.items():
                if secrets.compare_digest(session.encode(), session_id.encode()):
                    return sid, session_id
            raise SessionError()
        if len(self.streams) == 1:
            ((sid, _),) = self.streams.items()
            return sid, None  # the service still asks for the session id
        raise NotFoundError("which stream? give its stream_id (and session_id)")

    # -- the messages --------------------------------------------------------------------------------------

    async def do_init_stream(self, payload: Any) -> dict[str, Any]:
        clip = payload.get("presenter_type") == "clip" or "presenter_id" in payload
        body = {k: v for k, v in payload.items() if k != "presenter_type"}
        opening = open_clips_stream if clip else open_talks_stream
        created = await opening(self.app, self.owner, self.granted, body)
        self.streams[created.id] = created.session_id
        return created.to_json()

    async def do_sdp(self, payload: Any) -> dict[str, Any]:
        stream_id, _ = self.target(payload)
        return (await self.service.answer(self.owner, stream_id, SdpRequest.from_json(payload))).to_json()

    async def do_ice(self, payload: Any) -> dict[str, Any]:
        stream_id, _ = self.target(payload)
        request = IceCandidateRequest.from_json(payload)
        return (await self.service.candidate(self.owner, stream_id, request)).to_json()

    async def do_delete_stream(self, payload: Any) -> dict[str, Any]:
        stream_id, _ = self.target(payload)
        text, audio = self.text.pop(stream_id, None), self.audio.pop(stream_id, None)
        if text is not None:
            text.phrases.put_nowait(None)  # the stream goes: nothing more is said
        if audio is not None:
            await self._end_audio(audio)
        reply = await self.service.delete(self.owner, stream_id, DeleteRequest.from_json(payload))
        self.streams.pop(stream_id, None)
        return reply.to_json()

    async def do_stream_text(self, payload: Any) -> dict[str, Any]:
        chunk = StreamTextChunk.from_json(payload)
        stream_id, session_id = self.target(payload)
        session_id = chunk.session_id or session_id
        talk = self.text.get(stream_id)
        if talk is not None and chunk.index == 0 and talk.last_index is not None:
            # A new text begins while the last one never sent its end: that one ends with what came.
            await self._end_text(stream_id, talk)
            talk = None
        if talk is not None:
            _in_order(talk.last_index, chunk.index)
        if talk is None:
            talk = _TextTalk(session_id=session_id, ssml=chunk.ssml, provider=chunk.provider)
            self.text[stream_id] = talk
        talk.last_index = chunk.index if chunk.index is not None else talk.last_index
        talk.length += len(chunk.input)
        if talk.length > MAX_TEXT:
            raise ValidationError("payload.script.input", f"the talk's text is over {MAX_TEXT} characters")
        if chunk.ends:
            answer = await self._end_text(stream_id, talk)
        else:
            answer = await self._add_text(stream_id, talk, talk.splitter.feed(chunk.input))
        return {**answer, "index": chunk.index}

    async def _add_text(self, stream_id: str, talk: _TextTalk, phrases: list[str]) -> dict[str, Any]:
        """Queue the phrases a chunk completed: the first of a talk asks the service for the talk."""
        answer: dict[str, Any]
        if talk.live is None and phrases:
            live = LiveSpeech(self.service.clock)
            started = await self.service.talk_speech(self.owner, stream_id, talk.session_id, live)
            talk.live = live
            talk.video_id = started.video_id
            talk.speaker = self._spawn(self._speak(stream_id, talk, live, started.video_id))
            answer = {**started.to_json(), "status": "started"}
        elif talk.live is None:
            answer = {"status": "buffered"}  # no phrase yet: nothing to say
        elif talk.live.closed:
            answer = {"status": "dropped"}  # the talk was interrupted (or its stream went): not said
        else:
            await self._chunk(stream_id, talk.session_id)
            answer = {"status": "streaming", "video_id": talk.video_id}
        for phrase in phrases:
            talk.phrases.put_nowait(phrase)
        return answer

    async def _end_text(self, stream_id: str, talk: _TextTalk) -> dict[str, Any]:
        """The talk's text is complete (its end chunk, a new text, the socket closing): say the rest."""
        if self.text.get(stream_id) is talk:
            del self.text[stream_id]
        try:
            rest = talk.splitter.flush()
            answer = await self._add_text(stream_id, talk, [rest] if rest else [])
        finally:
            talk.phrases.put_nowait(None)
        if answer["status"] in ("buffered", "streaming"):
            answer["status"] = "ended"  # (a talk its last chunk started says so: "started")
        return answer

    async def do_stream_audio(self, payload: Any) -> dict[str, Any]:
        chunk = StreamAudioChunk.from_json(payload)
        stream_id, session_id = self.target(payload)
        session_id = chunk.session_id or session_id
        talk = self.audio.get(stream_id)
        if talk is not None and chunk.index == 0 and talk.last_index is not None:
            await self._end_audio(talk)
            del self.audio[stream_id]
            talk = None
        if talk is not None:
            _in_order(talk.last_index, chunk.index)
        answer: dict[str, Any]
        if talk is None:
            if chunk.ends:
                return {"status": "ended", "index": chunk.index}  # an end with nothing before it
            feed = self.service.studio.pcm_feed(chunk.sample_rate)
            live = LiveSpeech(self.service.clock)
            started = await self.service.talk_speech(self.owner, stream_id, session_id, live)
            talk = self.audio[stream_id] = _AudioTalk(live=live, feed=feed, video_id=started.video_id)
            answer = {**started.to_json(), "status": "started"}
        elif talk.live.closed:
            answer = {"status": "dropped"}
        else:
            await self._chunk(stream_id, session_id)
            answer = {"status": "ended" if chunk.ends else "streaming"}
        talk.last_index = chunk.index if chunk.index is not None else talk.last_index
        if not talk.live.closed and chunk.data:
            await talk.live.put(talk.feed.feed(chunk.data))
        if chunk.ends:
            await self._end_audio(talk)
            self.audio.pop(stream_id, None)
        return {**answer, "video_id": talk.video_id, "index": chunk.index}

    # -- streamed talks ------------------------------------------------------------------------------------

    async def _chunk(self, stream_id: str, session_id: str | None) -> None:
        """More of the talk playing came: a message to its session (unless the talk ended meanwhile)."""
        with contextlib.suppress(TalkstreamError):
            await self.service.chunk(self.owner, stream_id, session_id)

    async def _end_audio(self, talk: _AudioTalk) -> None:
        if not talk.live.closed and not talk.live.ended:
            await talk.live.put(talk.feed.finish())
        talk.live.end()

    async def _speak(self, stream_id: str, talk: _TextTalk, live: LiveSpeech, video_id: str | None) -> None:
        """Speak the phrases in order as they come, into the talk's live speech; then end it. A phrase that
        cannot be spoken is skipped and said so: an error with the talk's `video_id`, answering no message."""
        studio = self.service.studio
        try:
            while (phrase := await talk.phrases.get()) is not None:
                if live.closed:
                    continue  # interrupted or gone: what is left is not said
                script = TextScript(input=phrase, ssml=talk.ssml, provider=talk.provider)
                try:
                    speech = await studio.speech(script, pad_audio=0.0)
                except TalkstreamError as exc:
                    await self.send(
                        {"messageType": "error", "type": "stream-text", "video_id": video_id, **exc.to_body()}
                    )
                    continue
                try:
                    while not live.closed and (stretch := await speech.next()) is not None:
                        await live.put(stretch)
                finally:
                    await speech.aclose()
        finally:
            live.end()

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        speakers = self.app[SOCKETS].speakers
        speakers.add(task)
        task.add_done_callback(lambda done: self._reap(speakers, done))
        return task

    def _reap(self, speakers: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        speakers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("ws %s: a streamed talk failed", self.id, exc_info=task.exception())
