"""The client's driver: `StreamClient` makes streams against any compatible server (D-ID's or talkstream's)
and drives each one's session through the state machine in the client role; `ClientStream` and
`ClientTalk` are what a caller holds.

What it must never do: import a backend (HTTP and WebRTC come through `engine.ports`), or hide an error
answer: a refused request raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import attrs

from .channel import event_payload, split_event
from .clock import Clock, SystemClock, run_with_timeout
from .errors import (
    ConnectionFailedError,
    IllegalTransition,
    NotFoundError,
    TalkstreamError,
    error_from_response,
)
from .events import EventStream, SessionEvent, StateChanged
from .messages import (
    AudioScript,
    Background,
    CreateClipStreamRequest,
    CreateStreamRequest,
    CreateStreamResponse,
    DeleteRequest,
    IceCandidateRequest,
    IceServer,
    Presenter,
    PresentersResponse,
    Provider,
    SdpRequest,
    SessionDescription,
    StreamAudioChunk,
    StreamInterrupt,
    StreamTextChunk,
    TalkConfig,
    TalkRequest,
    TalkResponse,
    TextScript,
)
from .ports import ClientTransport, HttpPort, HttpRequest, HttpResponse, MessagePort, Sink
from .retry import RetryPolicy, parse_retry_after
from .session import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, SessionEngine, StreamSession
from .states import CloseReason, Input, State

__all__ = ["ClientStream", "ClientTalk", "StreamClient", "TalkFailedError"]

_log = logging.getLogger("talkstream.client")
T = TypeVar("T")


class TalkFailedError(TalkstreamError):
    """The server reported ``stream/error`` for a talk."""

    kind = "StreamError"
    status = 500
    default_description = "the talk failed"


class ClientTalk:
    """One talk asked of a stream: its id and duration as the server answered, and its end."""

    def __init__(self, response: TalkResponse, clock: Clock) -> None:
        self.video_id = response.video_id
        self.duration = response.duration
        self._clock = clock
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: TalkstreamError | None = None
        self.interrupted = False  # ended by our interrupt (playing, or dropped from the queue)

    async def done(self, within: float | None = None) -> None:
        """Wait until the server says the talk is done; raise `TalkFailedError` if it failed."""
        waiter = asyncio.shield(self.finished)
        if within is None:
            await waiter
        else:
            await run_with_timeout(self._clock, within, waiter)

    def _end(self, error: TalkstreamError | None = None, *, interrupted: bool = False) -> None:
        if not self.started.done():
            self.started.set_result(None)
        if not self.finished.done():
            self.interrupted = interrupted
            self.error = error
            if error is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(error)
                self.finished.exception()  # retrieved here: nobody may be waiting for this talk


@attrs.frozen
class _Message:
    """A data-channel message, queued with the transport's reports so both apply in arrival order."""

    subject: str
    payload: str


class ClientStream:
    """One stream on a server, as seen from the client."""

    def __init__(
        self,
        client: StreamClient,
        session: StreamSession,
        transport: ClientTransport,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
        offer: SessionDescription | None = None,
        api: Literal["talks", "clips"] = "talks",
        *,
        fluent: bool | None = None,
        interrupt_enabled: bool | None = None,
    ) -> None:
        self._client = client
        self._offer = offer
        self.api = api  # which of D-ID's APIs made the stream: its requests go to /{api}/streams/{id}
        self.fluent = fluent  # as the server's create answer said (None: it did not say)
        self.interrupt_enabled = interrupt_enabled
        self._interrupts: dict[str, asyncio.Future[None]] = {}  # video id -> the server said it is over
        self.session = session
        self.ready = asyncio.Event()  # stream/ready (after the warm-up video)
        self.messages: list[tuple[float, str]] = []
        self._talks: deque[ClientTalk] = deque()
        self._connected = asyncio.Event()
        self._reports: asyncio.Queue[tuple[Input, str] | _Message] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(self._consume())]
        self._closing: asyncio.Task[None] | None = None
        self.sink = sink  # what receives this stream's media (the caller's), if anything
        self._watchdog: asyncio.Task[None] | None = None
        session.subscribe(self._on_event)
        self.peer = transport.create_peer(session.stream_id, self._report, self._message, sink, ice_servers)

    @property
    def stream_id(self) -> str:
        return self.session.stream_id

    @property
    def _path(self) -> str:
        return f"/{self.api}/streams/{self.stream_id}"

    @property
    def state(self) -> State:
        return self.session.state

    def events(self) -> EventStream[SessionEvent]:
        """This stream's session events from now on (state changes, talks, the close)."""
        return self.session.events()

    async def negotiate(self, *, early_candidates: bool = False) -> None:
        """Answer the server's offer, then trickle the candidates and the end marker.

        With `early_candidates` the candidates go first, while the answer is still to come, as browsers
        often do; the server must buffer them.
        """
        if self._offer is None:
            raise IllegalTransition(self.session.state, Input.ANSWER_SENT, "no offer to answer")
        session, call = self.session, self._client._call
        answer = await self.peer.answer(self._offer.sdp)
        path = self._path
        sdp = SdpRequest(answer=SessionDescription(type="answer", sdp=answer), session_id=session.session_id)
        bodies = [
            IceCandidateRequest(candidate=c, sdp_mid=mid, sdp_m_line_index=i, session_id=session.session_id)
            for c, mid, i in self.peer.candidates()
        ]
        bodies.append(IceCandidateRequest(session_id=session.session_id))  # end-of-candidates
        if early_candidates:
            for ice in bodies:
                await call("POST", f"{path}/ice", ice.to_json(), retry=True)
                await session.apply(Input.CANDIDATE_SENT)
        await call("POST", f"{path}/sdp", sdp.to_json(), retry=True)
        await session.apply(Input.ANSWER_SENT)
        if not early_candidates:
            for ice in bodies:
                await call("POST", f"{path}/ice", ice.to_json(), retry=True)
                await session.apply(Input.CANDIDATE_SENT)

    async def connected(self, within: float | None = None) -> None:
        """Wait for ICE to connect; raise if the stream closes instead (connect timeout, ICE failure)."""
        wait = self._connected.wait()
        if within is None:
            await wait
        else:
            await run_with_timeout(self._client.clock, within, wait)
        if self.session.state is State.CLOSED:
            raise ConnectionFailedError(f"stream closed before connecting ({self._reason()})")

    async def talk(
        self,
        *,
        text: str | None = None,
        audio_url: str | None = None,
        voice: str | None = None,
        provider: str = "microsoft",
        ssml: bool = False,
        pad_audio: float | None = None,
        background: str | None = None,
    ) -> ClientTalk:
        """Ask for one talk (text, or an audio file's URL); it plays after the ones already queued.
        `background` (``#RRGGBB``) is what clips streams take as their talk's background colour."""
        if (text is None) == (audio_url is None):
            raise ValueError("give either text or audio_url")
        script: TextScript | AudioScript
        if text is not None:
            speaker = Provider(type=provider, voice_id=voice) if voice else None
            script = TextScript(input=text, ssml=ssml, provider=speaker)
        else:
            assert audio_url is not None
            script = AudioScript(audio_url=audio_url)
        config = TalkConfig(pad_audio=pad_audio) if pad_audio is not None else None
        request = TalkRequest(
            script=script,
            config=config,
            background=Background(color=background) if background is not None else None,
            session_id=self.session.session_id,
        )
        if not self.session.allows(Input.TALK_REQUESTED):
            raise IllegalTransition(self.session.state, Input.TALK_REQUESTED)
        body = await self._client._call("POST", self._path, request.to_json(), retry=True)
        talk = ClientTalk(TalkResponse.from_json(body), self._client.clock)
        self._talks.append(talk)
        await self.session.apply(Input.TALK_REQUESTED)
        if self._watchdog is None and self.sink is not None and not self.messages and not self.fluent:
            # (A fluent stream's video flows between talks too: it says nothing about them.)
            self._watchdog = asyncio.ensure_future(self._watch_video())
            self._tasks.append(self._watchdog)
        return talk

    async def interrupt(self, *, within: float | None = 5.0) -> ClientTalk | None:
        """Stop the talk playing and drop the queued ones (``stream/interrupt`` on the data channel, as D-ID's
        client SDK sends it); return the talk that was playing, or None when nothing was.

        Every pending talk ends at once with ``interrupted`` set. Then, unless `within` is None, wait that
        long for the server to say the talk is over (its ``stream/done``, or any end of it), so that a talk
        asked for next cannot race the interrupt; raise ``TimeoutError`` if it does not.
        """
        if not self._talks:
            return None
        if self.interrupt_enabled is False:
            raise IllegalTransition(self.session.state, Input.INTERRUPT_SENT, "the server did not enable it")
        if not self.session.allows(Input.INTERRUPT_SENT):
            raise IllegalTransition(self.session.state, Input.INTERRUPT_SENT)
        talk = self._talks[0]
        if talk.video_id is None:
            raise IllegalTransition(self.session.state, Input.INTERRUPT_SENT, "the talk has no video id yet")
        message = StreamInterrupt(video_id=talk.video_id, timestamp=round(time.time() * 1000))
        confirmed = self._interrupts.setdefault(talk.video_id, asyncio.get_running_loop().create_future())
        if not self.peer.send_message(json.dumps(message.to_json(), separators=(",", ":"))):
            self._interrupts.pop(talk.video_id, None)
            raise ConnectionFailedError("no data channel is open to send the interrupt on")
        await self.session.apply(Input.INTERRUPT_SENT)
        ended, self._talks = list(self._talks), deque()
        for each in ended:
            each._end(interrupted=True)
        if within is not None:
            await run_with_timeout(self._client.clock, within, asyncio.shield(confirmed))
        return talk

    async def stream_text(
        self,
        chunks: Iterable[str] | AsyncIterable[str],
        *,
        ssml: bool = False,
        voice: str | None = None,
        provider: str = "microsoft",
    ) -> ClientTalk | None:
        """A talk whose text comes in pieces (an LLM's tokens, say), over D-ID's WebSocket API (the
        client's port must be a `WebSocketAdapter`): each chunk goes as ``stream-text`` as it comes (one
        that is only whitespace with the next: a blank chunk ends the text), the server speaks each phrase
        once it is complete. Returns the talk once the last chunk is sent (it plays meanwhile), or None if
        no chunk held anything to say."""
        speaker = Provider(type=provider, voice_id=voice) if voice else None

        def chunk(text: str, index: int) -> dict[str, Any]:
            return StreamTextChunk(
                input=text,
                ssml=ssml,
                provider=speaker,
                index=index,
                stream_id=self.stream_id,
                session_id=self.session.session_id,
            ).to_json()

        return await self._stream("stream-text", _with_end(_no_blank(chunks), ""), chunk)

    async def stream_audio(
        self, chunks: Iterable[bytes] | AsyncIterable[bytes], *, sample_rate: int = 16_000
    ) -> ClientTalk | None:
        """A talk whose sound comes in pieces: 16-bit little-endian mono PCM at `sample_rate`, sent as
        ``stream-audio`` chunks (at most 96,000 bytes each) over D-ID's WebSocket API; the server plays
        them as they arrive, and an empty chunk ends the talk."""

        def chunk(data: bytes, index: int) -> dict[str, Any]:
            return StreamAudioChunk(
                data=data,
                sample_rate=sample_rate,
                index=index,
                stream_id=self.stream_id,
                session_id=self.session.session_id,
            ).to_json()

        return await self._stream("stream-audio", _with_end(chunks, b""), chunk)

    async def _stream(
        self, kind: str, chunks: AsyncIterator[T], payload: Callable[[T, int], dict[str, Any]]
    ) -> ClientTalk | None:
        port = self._client.http
        if not isinstance(port, MessagePort):
            raise TypeError("streamed talks go over D-ID's WebSocket API: give the client a WebSocketAdapter")
        talk: ClientTalk | None = None
        index = 0
        async for piece in chunks:
            if talk is None and not self.session.allows(Input.TALK_REQUESTED):
                raise IllegalTransition(self.session.state, Input.TALK_REQUESTED)
            answer = await port.message(kind, payload(piece, index))
            index += 1
            status = answer.get("status")
            if status == "started":
                talk = ClientTalk(TalkResponse.from_json(answer), self._client.clock)
                self._talks.append(talk)
                await self.session.apply(Input.TALK_REQUESTED)
            elif talk is not None and status in ("streaming", "ended"):
                await self._chunk_sent()
        return talk

    async def _chunk_sent(self) -> None:
        """More of a streamed talk went (unless the talk is over: interrupted, say)."""
        if self.session.allows(Input.CHUNK_SENT):
            await self.session.apply(Input.CHUNK_SENT)

    @property
    def received_frames(self) -> int:
        """Video frames the sink has received (0 without a sink)."""
        return self.sink.frames if self.sink is not None else 0

    #: A server that sends no data-channel events is followed by its video: frames arriving after a talk
    #: was asked mean it started, no frame for this long means it is done.
    VIDEO_IDLE_GAP = 0.6
    VIDEO_POLL = 0.05

    async def _watch_video(self) -> None:
        """Start and end talks by the video when the server says nothing on the data channel."""
        clock = self._client.clock
        frames = self.received_frames
        last_change = clock.now()
        playing = False
        while not self.messages and self.session.state is not State.CLOSED:
            await clock.sleep(self.VIDEO_POLL)
            if self.messages:
                return  # the server speaks the data channel: its events rule
            now_frames = self.received_frames
            if now_frames != frames:
                frames, last_change = now_frames, clock.now()
                if not playing and self._talks:
                    playing = True
                    await self._reports.put(_Message("stream/started", "{}"))
            elif playing and clock.now() - last_change >= self.VIDEO_IDLE_GAP:
                playing = False
                await self._reports.put(_Message("stream/done", ""))

    async def close(self) -> CloseReason | None:
        """Delete the stream on the server (if it still lives) and close the peer.

        The session closes as ``deleted`` first: the server's answer and the peer's own report of the
        connection closing race each other, and the reason is the client's request either way. A server
        that no longer knows the stream (it expired it) is not an error here.
        """
        if self.session.state is not State.CLOSED:
            await self.session.close(Input.DELETE_REQUESTED)
            try:
                await self._client._call(
                    "DELETE",
                    self._path,
                    DeleteRequest(session_id=self.session.session_id).to_json(),
                    retry=True,
                )
            except NotFoundError:
                pass
            finally:
                await self._shutdown()
        await self._shutdown()
        return self.session.close_reason

    # -- inside --------------------------------------------------------------------------------------

    def _reason(self) -> str:
        reason = self.session.close_reason
        return reason.value if reason else "?"

    def _on_event(self, event: SessionEvent) -> None:
        if isinstance(event, StateChanged):
            if event.new in (State.CONNECTED, State.CLOSED):
                self._connected.set()
            if event.new is State.CLOSED:
                for talk in self._talks:
                    talk._end(ConnectionFailedError(f"stream closed ({self._reason()})"))
                self._talks.clear()
                self._begin_shutdown()

    def _report(self, inp: Input, detail: str) -> None:
        self._reports.put_nowait((inp, detail))

    def _message(self, text: str) -> None:
        self.messages.append((time.monotonic(), text))
        self._reports.put_nowait(_Message(*split_event(text)))

    async def _consume(self) -> None:
        """Apply transport reports and data-channel messages one by one (never inside a callback)."""
        while True:
            item = await self._reports.get()
            try:
                if isinstance(item, _Message):
                    await self._on_message(item.subject, item.payload)
                else:
                    await self.session.apply(item[0])
            except IllegalTransition as exc:
                _log.debug("%s: %s", self.stream_id, exc)

    async def _on_message(self, subject: str, payload: str) -> None:
        if subject == "stream/ready":
            self.ready.set()
            return
        details: Any = event_payload(payload)
        video_id = _video_id(details)
        if subject in _TALK_OVER:
            self._confirm_over(video_id)
        if subject.startswith("stream-video/") and subject != "stream-video/rejected":
            return  # a fluent stream's second name for the stream/* events: those drive the talks
        talk = self._talk_for(video_id)
        if talk is None:
            # An event for a talk we no longer wait for (one we interrupted), or for none at all.
            _log.debug("%s: %s for %s, which is not pending", self.stream_id, subject, video_id)
            return
        if subject == "stream-video/rejected":
            if video_id is None or talk.video_id != video_id:
                return  # a rejection must name its talk
            # Dropped before it played (an interrupt that reached the server after this talk did).
            self._talks.remove(talk)
            reason = details.get("reason") if isinstance(details, dict) else None
            await self.session.finish_talk()
            talk._end(TalkFailedError(f"the talk was dropped ({reason or 'rejected'})", details=details))
            return
        if subject == "stream/started":
            if talk.video_id is None:
                talk.video_id = video_id
            if not talk.started.done():
                talk.started.set_result(None)
            await self.session.apply(Input.TALK_STARTED)
        elif subject in ("stream/done", "stream/error"):
            self._talks.remove(talk)
            error = None
            if subject == "stream/error":
                text = details.get("description") if isinstance(details, dict) else None
                error = TalkFailedError(text or "the talk failed", details=details)
            if not talk.started.done():
                await self.session.apply(Input.TALK_STARTED)
            await self.session.finish_talk()
            talk._end(error)

    def _talk_for(self, video_id: str | None) -> ClientTalk | None:
        """The pending talk an event is about: the one it names, else (an event that names none, or a server
        that gave its talks no id) the first pending one."""
        if not self._talks:
            return None
        if video_id is not None:
            for talk in self._talks:
                if talk.video_id == video_id:
                    return talk
            return self._talks[0] if self._talks[0].video_id is None else None
        return self._talks[0]

    def _confirm_over(self, video_id: str | None) -> None:
        """The server said a talk is over: an interrupt waiting for that (or, named or not, for any) ends."""
        keys = [video_id] if video_id is not None else list(self._interrupts)
        for key in keys:
            waiting = self._interrupts.pop(key, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    def _begin_shutdown(self) -> asyncio.Task[None]:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._free())
        return self._closing

    async def _shutdown(self) -> None:
        await asyncio.shield(self._begin_shutdown())

    async def _free(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.peer.close()
        self._client._streams.pop(self.stream_id, None)


async def _no_blank(chunks: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    """The chunks, each whitespace-only one joined to the next: for the server a blank chunk ends the text,
    and a language model's tokens are often only a space or a newline."""
    held = ""
    async for chunk in _with_end(chunks, None):
        if chunk is None:
            break
        if not chunk.strip():
            held += chunk
            continue
        yield held + chunk
        held = ""


async def _with_end(chunks: Iterable[T] | AsyncIterable[T], end: T) -> AsyncIterator[T]:
    """The chunks, then the empty one that ends a streamed talk."""
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
    yield end


#: The events that say a talk is over, however it ended.
_TALK_OVER = frozenset(
    {"stream/done", "stream/error", "stream-video/done", "stream-video/error", "stream-video/rejected"}
)


def _video_id(details: Any) -> str | None:
    """The video id an event's payload names (``metadata.videoId``, or ``videoId``), if any."""
    if not isinstance(details, dict):
        return None
    metadata = details.get("metadata")
    named = metadata.get("videoId") if isinstance(metadata, dict) else None
    if named is None:
        named = details.get("videoId")
    return named if isinstance(named, str) else None


class StreamClient:
    """Drives streams on one server. Use as ``async with StreamClient(http, transport) as client``."""

    def __init__(
        self,
        http: HttpPort,
        transport: ClientTransport,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.http = http
        self.transport = transport
        self.retry = retry if retry is not None else RetryPolicy.did_demo()
        self.clock = clock or SystemClock()
        self.engine = SessionEngine(
            clock=self.clock, idle_timeout=idle_timeout, connect_timeout=connect_timeout
        )
        self._streams: dict[str, ClientStream] = {}

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every stream this client opened, then the HTTP adapter and the transport."""
        streams = list(self._streams.values())
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        await self.http.aclose()
        await self.transport.aclose()

    async def create(
        self,
        source_url: str,
        *,
        sink: Sink | None = None,
        session_timeout: float | None = None,
        negotiate: bool = True,
        **options: Any,
    ) -> ClientStream:
        """Create a stream and negotiate its connection; `await stream.connected()` before talking.

        `options` are the other fields of D-ID's create request (``stream_warmup``, ``driver_url``,
        ``compatibility_mode``, ``output_resolution``, ...). `sink` receives the media. With
        ``negotiate=False`` the answer is left to `ClientStream.negotiate` (to test the steps apart).
        """
        request = CreateStreamRequest.from_json(
            {"source_url": source_url, "session_timeout": session_timeout, **options}
        )
        return await self._open("talks", request.to_json(), sink, session_timeout, negotiate)

    async def create_clip(
        self,
        presenter_id: str,
        *,
        driver_id: str | None = None,
        sink: Sink | None = None,
        session_timeout: float | None = None,
        negotiate: bool = True,
        **options: Any,
    ) -> ClientStream:
        """Create a clips stream (``/clips/streams``) of one of the server's presenters, and negotiate its
        connection; the stream then works as any other. `options` as for `create` (``stream_warmup``,
        ``compatibility_mode``, ...)."""
        request = CreateClipStreamRequest.from_json(
            {
                "presenter_id": presenter_id,
                "driver_id": driver_id,
                "session_timeout": session_timeout,
                **options,
            }
        )
        return await self._open("clips", request.to_json(), sink, session_timeout, negotiate)

    async def presenters(self) -> tuple[Presenter, ...]:
        """The presenters the server offers to clips streams (``GET /clips/presenters``)."""
        return PresentersResponse.from_json(
            await self._call("GET", "/clips/presenters", None, retry=True)
        ).presenters

    async def _open(
        self,
        api: Literal["talks", "clips"],
        body: dict[str, Any],
        sink: Sink | None,
        session_timeout: float | None,
        negotiate: bool,
    ) -> ClientStream:
        created = CreateStreamResponse.from_json(
            await self._call("POST", f"/{api}/streams", body, retry=True)
        )
        session = self.engine.open(
            "client", stream_id=created.id, session_id=created.session_id, idle_timeout=session_timeout
        )
        stream: ClientStream | None = None
        try:
            await session.apply(Input.OFFER_RECEIVED)
            stream = ClientStream(
                self,
                session,
                self.transport,
                sink,
                created.ice_servers,
                created.offer,
                api,
                fluent=created.fluent,
                interrupt_enabled=created.interrupt_enabled,
            )
            self._streams[created.id] = stream
            if negotiate:
                await stream.negotiate()
        except BaseException:
            await session.close(Input.ERROR)
            if stream is not None:
                await stream._shutdown()
            raise
        return stream

    async def _call(self, method: str, path: str, body: Any, *, retry: bool) -> Any:
        """One request with the client's retry policy; error answers raise typed errors."""

        async def attempt(_: int) -> Any:
            response = await self.http.send(HttpRequest(method=method, path=path, body=body))
            return self._check(response)

        if not retry:
            return await attempt(0)
        return await self.retry.run(attempt, clock=self.clock)

    @staticmethod
    def _check(response: HttpResponse) -> Any:
        if 200 <= response.status < 300:
            return response.body
        retry_after = parse_retry_after(response.headers.get("retry-after"), now_wall=time.time())
        raise error_from_response(response.status, response.body, retry_after=retry_after)

    def streams(self) -> list[ClientStream]:
        return list(self._streams.values())
