"""The server's driver: `StreamService`, D-ID's five stream operations over sessions, peers, faces and
speech, each in the order find → check the session id → check the state → do what can fail → apply the
input, so a rejected request changes nothing. Each stream has one player task and one way to close.

What it must never do: import a backend (it talks to ports), block the loop, or let one key reach another
key's streams.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import attrs

from . import player
from .channel import event_text
from .clock import run_with_timeout
from .errors import (
    BadRequestError,
    IllegalTransition,
    InternalServerError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    SessionError,
    TalkstreamError,
    ValidationError,
)
from .events import SessionClosed, SessionEvent, StateChanged
from .messages import (
    CreateStreamRequest,
    CreateStreamResponse,
    DeleteRequest,
    IceCandidateRequest,
    IceServer,
    SdpRequest,
    SessionDescription,
    StatusResponse,
    StreamInterrupt,
    TalkRequest,
    TalkResponse,
)
from .ports import (
    Face,
    PeerOptions,
    ServerPeer,
    ServerTransport,
    ServiceObserver,
    SpeechStream,
    StreamQuota,
    Studio,
    VideoCodec,
)
from .session import SessionEngine, StreamSession, new_session_id, new_stream_id
from .states import Input, State

__all__ = ["Limits", "LocalQuota", "Stream", "StreamKind", "StreamService"]

StreamKind = Literal["talks", "clips"]
_log = logging.getLogger("talkstream.server")
MAX_CLIENT_MESSAGE = 4096  # characters: a client's data-channel message longer than this is not read


@attrs.frozen(kw_only=True)
class Limits:
    """Live streams allowed per key and in all; `retry_after` is what a 429 tells the client to wait."""

    streams_per_key: int = 10
    streams_total: int = 100
    queued_talks: int = 20
    # Speech a stream may have waiting, the playing talk's rest included: one talk of D-ID's longest text
    # (40,000 characters, about 45 minutes) fits; more is a 400.
    queued_speech_seconds: float = 3600.0
    retry_after: float = 10.0
    ice_grace: float = 3.0  # how long a talk that arrives while ICE is still finishing waits for it


class LocalQuota:
    """`Limits.streams_per_key` and `Limits.streams_total`, counted in this process (one server alone)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._held: dict[str, set[str]] = {}

    async def acquire(self, owner: str, stream_id: str) -> None:
        limits = self.limits
        if len(self._held.get(owner, ())) >= limits.streams_per_key:
            raise RateLimitedError("too many live streams for this key", retry_after=limits.retry_after)
        if sum(map(len, self._held.values())) >= limits.streams_total:
            raise RateLimitedError(
                "the server holds its maximum of live streams", retry_after=limits.retry_after
            )
        self._held.setdefault(owner, set()).add(stream_id)

    async def release(self, owner: str, stream_id: str) -> None:
        held = self._held.get(owner)
        if held is not None:
            held.discard(stream_id)
            if not held:
                del self._held[owner]


class _Unobserved:
    """The observer of a service nobody measures."""

    def connected(self, seconds: float) -> None:
        pass

    def first_frame(self, seconds: float) -> None:
        pass

    def frame_sent(self) -> None:
        pass

    def talk_ended(self, outcome: Literal["done", "interrupted", "error", "rejected"]) -> None:
        pass

    def error(self, kind: str) -> None:
        pass


@attrs.define(eq=False)
class _Talk:
    video_id: str
    speech: SpeechStream
    requested_at: float  # on the engine's clock
    started_at: float | None = None  # on the engine's clock, once it plays
    interrupted: bool = False  # a client's interrupt stopped it (the player stops at its next frame)


@attrs.define(eq=False)
class Stream:
    """One live stream: its session, peer and face, and the talks waiting to play."""

    session: StreamSession
    peer: ServerPeer
    face: Face
    warmup: bool
    kind: StreamKind = "talks"  # which API made it: its later requests must come by the same path
    fluent: bool = False  # idle frames flow between talks (see `player.FluentPlayer`)
    talks: collections.deque[_Talk] = attrs.field(factory=collections.deque)
    playing: _Talk | None = None
    canvas: player.Canvas = attrs.field(factory=player.Canvas)
    player: asyncio.Task[None] | None = None
    # The transport's reports and the client's data-channel messages (text), in arrival order.
    reports: asyncio.Queue[tuple[Input, str] | str] = attrs.field(factory=asyncio.Queue)
    reporter: asyncio.Task[None] | None = None
    closing: asyncio.Task[None] | None = None  # frees the stream once its session closed, however
    first_frame_due: float | None = None  # when the talk now starting was asked for, until its first frame

    async def wait_closed(self) -> None:
        """Wait until a closed stream has freed its peer and tasks."""
        if self.closing is not None:
            await asyncio.shield(self.closing)


def new_video_id() -> str:
    return "tlk_" + secrets.token_urlsafe(12)


class StreamService:
    """The five operations, per key. One instance per server; `drain` stops taking work, `aclose` closes
    every stream.

    `worker`: this server's name in a cluster; it leads every stream and session id it makes, so a proxy
    routes a stream's requests here without asking anyone. `quota`: who counts live streams per key and in
    all (default: this process, by `limits`; a cluster shares one). `limits.streams_total` also caps this
    server's own streams, whatever the quota says. `observer` hears what metrics count. `ice_servers`: what
    each create answer hands the client, given the new stream's id (per-stream TURN credentials, say);
    default: the transport's `ice_servers`.
    """

    def __init__(
        self,
        *,
        engine: SessionEngine,
        transport: ServerTransport,
        studio: Studio,
        limits: Limits | None = None,
        worker: str | None = None,
        quota: StreamQuota | None = None,
        observer: ServiceObserver | None = None,
        ice_servers: Callable[[str], Sequence[IceServer]] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = engine.clock
        self.transport = transport
        self.studio = studio
        self.limits = limits or Limits()
        self.worker = worker
        self.quota: StreamQuota = quota if quota is not None else LocalQuota(self.limits)
        self.observer: ServiceObserver = observer if observer is not None else _Unobserved()
        self._ice_servers = ice_servers
        self.draining = False  # set by `drain`: no new streams or talks
        self._streams: dict[str, Stream] = {}
        self._creating = 0  # creates past the checks whose stream is not in `_streams` yet
        self.closed_count = 0  # streams closed since the service started (for operators and housekeeping)

    def ice_servers_for(self, stream_id: str) -> tuple[IceServer, ...]:
        """The ICE servers the create answer of stream `stream_id` hands its client."""
        if self._ice_servers is None:
            return tuple(self.transport.ice_servers)
        return tuple(self._ice_servers(stream_id))

    # -- the five operations ------------------------------------------------------------------------------

    async def create(
        self, owner: str, request: CreateStreamRequest, *, kind: StreamKind = "talks"
    ) -> CreateStreamResponse:
        """A new stream of `request`'s face; `kind` says which API it belongs to (``/talks/streams`` or
        ``/clips/streams``), and only that API's paths reach it afterwards (see `check_kind`)."""
        self._refuse_when_draining()
        if len(self._streams) + self._creating >= self.limits.streams_total:
            raise RateLimitedError(
                "the server holds its maximum of live streams", retry_after=self.limits.retry_after
            )
        stream_id = new_stream_id(self.worker)
        self._creating += 1  # this server's slot, held while the quota is asked and the face made
        try:
            await self.quota.acquire(owner, stream_id)
            try:
                face = await self.studio.face(request)  # 400/415 for a bad source, before anything exists
                timeout = request.session_timeout
                idle = min(timeout, self.engine.idle_timeout) if timeout else None
                session = self.engine.open(
                    owner, stream_id=stream_id, session_id=new_session_id(self.worker), idle_timeout=idle
                )
            except BaseException:
                await self.quota.release(owner, stream_id)
                raise
        finally:
            self._creating -= 1
        codec: VideoCodec = "h264" if request.compatibility_mode == "off" else "vp8"
        reports: asyncio.Queue[tuple[Input, str] | str] = asyncio.Queue()
        peer = self.transport.create_peer(
            stream_id,
            PeerOptions(video_codec=codec),
            lambda inp, detail: reports.put_nowait((inp, detail)),
            reports.put_nowait,
        )
        stream = Stream(
            session=session,
            peer=peer,
            face=face,
            warmup=bool(request.stream_warmup),
            kind=kind,
            fluent=bool(request.fluent),
            reports=reports,
        )
        stream.canvas.on_frame = lambda: self._frame_sent(stream)
        self._streams[stream_id] = stream
        session.subscribe(lambda event: self._on_event(stream, event))
        stream.reporter = asyncio.ensure_future(self._consume_reports(stream))
        try:
            sdp = await peer.make_offer()
            await session.apply(Input.OFFER_SENT)
        except BaseException:
            await session.close(Input.ERROR)
            await stream.wait_closed()
            raise
        _log.info(
            "%s created for %s (%s, %dx%d%s)",
            stream_id,
            owner,
            codec,
            face.width,
            face.height,
            ", fluent" if stream.fluent else "",
        )
        return CreateStreamResponse(
            id=stream_id,
            session_id=session.session_id,
            offer=SessionDescription(type="offer", sdp=sdp),
            ice_servers=self.ice_servers_for(stream_id),
            fluent=stream.fluent,
            interrupt_enabled=True,
        )

    async def answer(self, owner: str, stream_id: str, request: SdpRequest) -> StatusResponse:
        stream = self._find(owner, stream_id, request.session_id)
        self._check(stream.session, Input.ANSWER_RECEIVED)
        await stream.peer.apply_answer(request.answer.sdp)
        await stream.session.apply(Input.ANSWER_RECEIVED)
        return StatusResponse(status="success")

    async def candidate(self, owner: str, stream_id: str, request: IceCandidateRequest) -> StatusResponse:
        stream = self._find(owner, stream_id, request.session_id)
        self._check(stream.session, Input.CANDIDATE_RECEIVED)
        candidate = None if request.end_of_candidates else request.candidate
        await stream.peer.add_candidate(candidate, request.sdp_mid, request.sdp_m_line_index)
        await stream.session.apply(Input.CANDIDATE_RECEIVED)
        return StatusResponse(status="success")

    async def talk(self, owner: str, stream_id: str, request: TalkRequest) -> TalkResponse:
        requested = self.clock.now()
        stream = self._find(owner, stream_id, request.session_id)
        await self._ready_to_talk(stream)
        pad = request.config.pad_audio if request.config and request.config.pad_audio else 0.0
        speech = await self.studio.speech(request.script, pad_audio=pad)
        return await self._queue_talk(stream, speech, requested)

    async def talk_speech(
        self, owner: str, stream_id: str, session_id: str | None, speech: SpeechStream
    ) -> TalkResponse:
        """A talk whose speech the caller makes as it plays (the WebSocket API's streamed text or sound:
        an `engine.live.LiveSpeech`); the same checks and queue as `talk`. On a refusal the speech is
        closed."""
        requested = self.clock.now()
        try:
            stream = self._find(owner, stream_id, session_id)
            await self._ready_to_talk(stream)
        except BaseException:
            await speech.aclose()
            raise
        return await self._queue_talk(stream, speech, requested)

    async def chunk(self, owner: str, stream_id: str, session_id: str | None) -> None:
        """More of a streamed talk arrived while it plays: a message from the client (the idle deadline
        moves); 409 when no talk is playing or queued."""
        stream = self._find(owner, stream_id, session_id)
        self._check(stream.session, Input.CHUNK_RECEIVED)
        await stream.session.apply(Input.CHUNK_RECEIVED)

    async def _ready_to_talk(self, stream: Stream) -> None:
        self._refuse_when_draining()
        session = stream.session
        if session.state is State.ICE:
            # The client saw ICE connect; our side reports it a moment later. Give it that moment.
            await self._await_state_change(session, self.limits.ice_grace)
        self._check(session, Input.TALK_REQUESTED)
        if len(stream.talks) >= self.limits.queued_talks:
            raise RateLimitedError(
                "too many talks queued on this stream", retry_after=self.limits.retry_after
            )

    async def _queue_talk(self, stream: Stream, speech: SpeechStream, requested: float) -> TalkResponse:
        session = stream.session
        try:
            waiting = self._speech_waiting(stream)
            limit = self.limits.queued_speech_seconds
            if waiting + speech.duration > limit:
                raise BadRequestError(
                    f"this talk ({speech.duration:.0f} s) would take the speech waiting on this stream past "
                    f"its limit of {limit:g} s ({waiting:.0f} s waiting)"
                )
            await session.apply(Input.TALK_REQUESTED)
        except BaseException:
            await speech.aclose()
            raise
        talk = _Talk(video_id=new_video_id(), speech=speech, requested_at=requested)
        stream.talks.append(talk)
        if not stream.fluent and (stream.player is None or stream.player.done()):
            stream.player = asyncio.ensure_future(self._play(stream))
        _log.info("%s talk %s queued (%.2f s)", session.stream_id, talk.video_id, speech.duration)
        return TalkResponse(
            status="started", session_id=session.session_id, video_id=talk.video_id, duration=speech.duration
        )

    def _speech_waiting(self, stream: Stream) -> float:
        """Seconds of speech still to play on `stream`: the queued talks', and the playing one's rest."""
        waiting = sum(t.speech.duration for t in stream.talks)
        playing = stream.playing
        if playing is not None and playing.started_at is not None:
            waiting += max(0.0, playing.speech.duration - (self.clock.now() - playing.started_at))
        return waiting

    async def delete(self, owner: str, stream_id: str, request: DeleteRequest) -> StatusResponse:
        stream = self._find(owner, stream_id, request.session_id)
        await stream.session.close(Input.DELETE_REQUESTED)
        await stream.wait_closed()
        return StatusResponse(status="success")

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, owner: str, stream_id: str) -> Stream | None:
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.session.owner == owner else None

    def __len__(self) -> int:
        return len(self._streams)

    def streams(self) -> list[Stream]:
        """The live streams (for operators and tests; callers must not change them)."""
        return list(self._streams.values())

    def busy(self) -> list[Stream]:
        """The live streams with a talk playing or queued."""
        return [s for s in self._streams.values() if not s.session.closed and (s.playing or s.talks)]

    async def drain(self, within: float) -> int:
        """Take no more streams or talks (503 with ``Retry-After``) and wait, at most `within` seconds, for
        the talks playing or queued to end; return how many streams are still talking then. The streams stay
        open: `aclose` ends them."""
        if not self.draining:
            _log.info("draining: no new streams or talks; %d streams talking", len(self.busy()))
        self.draining = True
        deadline = self.clock.now() + within
        while self.busy() and self.clock.now() < deadline:
            await self.clock.sleep(min(0.05, max(0.0, deadline - self.clock.now())))
        return len(self.busy())

    async def aclose(self) -> None:
        """Close every stream; each client hears ``stream/error`` (kind ServiceUnavailable) first."""
        streams = list(self._streams.values())
        for stream in streams:
            self._send(
                stream, "stream/error", {"kind": "ServiceUnavailable", "description": "server shutting down"}
            )
        await asyncio.gather(*(s.session.close(Input.DELETE_REQUESTED) for s in streams))
        await asyncio.gather(*(s.wait_closed() for s in streams))

    # -- helpers ----------------------------------------------------------------------------------------

    def check_kind(self, owner: str, stream_id: str, kind: StreamKind) -> None:
        """404 when `owner`'s stream `stream_id` belongs to the other API (a clips stream asked for under
        ``/talks/streams``, or the reverse); a stream that does not exist is the operation's to answer."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.session.owner == owner and stream.kind != kind:
            raise NotFoundError(
                f"stream {stream_id} not found under /{kind}/streams (it is a {stream.kind} stream)"
            )

    def _find(self, owner: str, stream_id: str, session_id: str | None) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.session.owner != owner or stream.session.closed:
            raise NotFoundError(f"stream {stream_id} not found")
        if session_id is None or not secrets.compare_digest(
            session_id.encode(), stream.session.session_id.encode()
        ):
            raise SessionError()
        return stream

    async def _await_state_change(self, session: StreamSession, within: float) -> None:
        changed = asyncio.Event()
        subscription = session.subscribe(
            lambda event: changed.set() if isinstance(event, StateChanged) else None
        )
        try:
            await run_with_timeout(self.clock, within, changed.wait())
        except TimeoutError:
            pass
        finally:
            subscription.cancel()

    @staticmethod
    def _check(session: StreamSession, inp: Input) -> None:
        if not session.allows(inp):
            raise IllegalTransition(session.state, inp)

    def _refuse_when_draining(self) -> None:
        if self.draining:
            raise ServiceUnavailableError(
                "this server is shutting down: create a new stream (another server takes it)", retry_after=1
            )

    def _frame_sent(self, stream: Stream) -> None:
        self.observer.frame_sent()
        if stream.first_frame_due is not None:
            self.observer.first_frame(self.clock.now() - stream.first_frame_due)
            stream.first_frame_due = None

    def _send(self, stream: Stream, subject: str, payload: object | None = None) -> None:
        stream.peer.send_message(event_text(subject, payload))

    def _send_video_event(self, stream: Stream, what: str, payload: dict[str, Any]) -> None:
        """``stream/{what}`` as D-ID's streams send it, and on fluent streams ``stream-video/{what}`` too, the
        name D-ID's client SDK knows from fluent and agent streams (same payload). A talk dropped from the
        queue has only ``stream-video/rejected``, on every stream: only a client that interrupts sees one."""
        if what == "rejected":
            self._send(stream, "stream-video/rejected", payload)
            return
        self._send(stream, f"stream/{what}", payload)
        if stream.fluent:
            self._send(stream, f"stream-video/{what}", payload)

    def _on_event(self, stream: Stream, event: SessionEvent) -> None:
        # A subscriber must not await: log, and hand anything slow to a task.
        if isinstance(event, StateChanged):
            _log.info(
                "%s %s -> %s (%s)", event.stream_id, event.old.value, event.new.value, event.input.value
            )
            if event.new is State.CONNECTED and event.old is State.ICE:
                self.observer.connected(event.at - stream.session.created_at)
                if stream.fluent:
                    stream.player = asyncio.ensure_future(self._play_fluent(stream))
                elif stream.warmup:
                    stream.player = asyncio.ensure_future(self._play(stream, warmup=True))
        elif isinstance(event, SessionClosed) and stream.closing is None:
            # The one way a stream closes: whatever closed its session (delete, expiry, the peer, a
            # failure, shutdown), this task frees it; delete and aclose wait for it.
            stream.closing = asyncio.ensure_future(self._finish(stream))

    async def _consume_reports(self, stream: Stream) -> None:
        while True:
            item = await stream.reports.get()
            if isinstance(item, str):
                await self._on_client_message(stream, item)
                continue
            inp, detail = item
            _log.info("%s transport: %s (%s)", stream.session.stream_id, inp.value, detail)
            try:
                await stream.session.apply(inp)
            except IllegalTransition as exc:
                _log.debug("%s: %s", stream.session.stream_id, exc)

    async def _on_client_message(self, stream: Stream, text: str) -> None:
        """A message the client sent on the data channel. D-ID's clients send one kind, the interrupt; the
        channel has no answers, so anything else is logged (shortened) and changes nothing."""
        stream_id = stream.session.stream_id
        try:
            if len(text) > MAX_CLIENT_MESSAGE:
                raise ValidationError("message", f"longer than {MAX_CLIENT_MESSAGE} characters")
            try:
                data = json.loads(text)
            except ValueError:
                raise ValidationError("message", "not JSON") from None
            kind = data.get("type") if isinstance(data, dict) else None
            if kind != StreamInterrupt.type:
                raise ValidationError("message.type", f"{str(kind)[:40]!r}: not a message this server reads")
            message = StreamInterrupt.from_json(data)
        except ValidationError as exc:
            _log.info("%s: client message ignored (%s): %r", stream_id, exc.description, text[:80])
            return
        await self._interrupt(stream, message.video_id)

    async def _interrupt(self, stream: Stream, video_id: str) -> None:
        """Stop the talk playing and drop the queued ones, when `video_id` names one of them (an interrupt for
        a talk already over came too late and changes nothing)."""
        session = stream.session
        playing = stream.playing
        pending = (playing is not None and playing.video_id == video_id) or any(
            t.video_id == video_id for t in stream.talks
        )
        if not pending:
            _log.info("%s: interrupt for %s, which is not playing or queued", session.stream_id, video_id)
            if session.state is not State.CONNECTED:
                return  # another talk plays: this interrupt was meant for one that is over
        try:
            await session.apply(Input.INTERRUPT_RECEIVED)  # connected: nothing to stop, but a message
        except IllegalTransition as exc:
            _log.debug("%s: %s", session.stream_id, exc)
            return
        if not pending:
            return
        # Nothing between the input and here awaits: a talk asked for after the interrupt is applied after
        # it (the session's turn) and is not in the queue yet, so it is not dropped.
        playing, dropped = stream.playing, list(stream.talks)
        stream.talks.clear()
        if playing is not None:
            playing.interrupted = True
        _log.info(
            "%s: interrupted %s (%d queued dropped)",
            session.stream_id,
            playing.video_id if playing is not None else "nothing playing",
            len(dropped),
        )
        for talk in dropped:
            self.observer.talk_ended("rejected")
            self._send_video_event(
                stream, "rejected", {"metadata": {"videoId": talk.video_id}, "reason": "interrupted"}
            )
        await asyncio.gather(*(talk.speech.aclose() for talk in dropped), return_exceptions=True)

    async def _finish(self, stream: Stream) -> None:
        """Free everything a closed stream holds (run once, as its `closing` task)."""
        stream_id = stream.session.stream_id
        if self._streams.get(stream_id) is not stream:
            return
        del self._streams[stream_id]
        self.closed_count += 1
        current = asyncio.current_task()
        for task in (stream.player, stream.reporter):
            if task is not None and task is not current and not task.done():
                task.cancel()
        await stream.peer.close()
        for task in (stream.player, stream.reporter):
            if task is not None and task is not current:
                await asyncio.gather(task, return_exceptions=True)
        left = [*stream.talks, *([stream.playing] if stream.playing is not None else [])]
        stream.talks.clear()
        await asyncio.gather(*(talk.speech.aclose() for talk in left), return_exceptions=True)
        await self.quota.release(stream.session.owner, stream_id)
        reason = stream.session.close_reason
        _log.info("%s closed (%s)", stream_id, reason.value if reason else "?")

    # -- playing ---------------------------------------------------------------------------------------

    async def _play(self, stream: Stream, *, warmup: bool = False) -> None:
        """A stream's player while it has talks (D-ID's streams: nothing is sent between talks)."""
        # ICE can report connected a moment before DTLS and the data channel are up: frames and
        # messages sent before then would be lost.
        if not await stream.peer.ready(self.limits.ice_grace):
            _log.warning("%s: no data channel open; playing anyway", stream.session.stream_id)
        if warmup:
            await player.play(player.warmup(), stream.peer, stream.face, self.clock, stream.canvas)
            self._send(stream, "stream/ready")
        while stream.talks:
            if not await self._play_next(
                stream,
                lambda talk: player.play(
                    talk.speech,
                    stream.peer,
                    stream.face,
                    self.clock,
                    stream.canvas,
                    lambda: talk.interrupted,
                ),
            ):
                return

    async def _play_fluent(self, stream: Stream) -> None:
        """A fluent stream's player, from connect to close: idle frames between talks, never a gap."""
        session = stream.session
        if not await stream.peer.ready(self.limits.ice_grace):
            _log.warning("%s: no data channel open; playing anyway", session.stream_id)
        fluent = player.FluentPlayer(stream.peer, stream.face, self.clock, stream.canvas)
        warming = player.WARMUP_FRAMES if stream.warmup else 0
        try:
            while not session.closed:
                if stream.talks and not warming:
                    if not await self._play_next(
                        stream, lambda talk: fluent.talk(talk.speech, lambda: talk.interrupted)
                    ):
                        return
                    continue
                await fluent.idle()
                if warming:
                    warming -= 1
                    if not warming:
                        self._send(stream, "stream/ready")
        except asyncio.CancelledError:
            raise
        except Exception:
            # Idle frames that cannot be made or sent: the stream cannot go on.
            _log.exception("%s: the fluent stream's idle video failed", session.stream_id)
            await session.close(Input.ERROR)

    async def _play_next(self, stream: Stream, play: Callable[[_Talk], Awaitable[bool]]) -> bool:
        """Play the next queued talk with `play` and send its events; False once the session closed."""
        session = stream.session
        talk = stream.playing = stream.talks.popleft()
        talk.started_at = self.clock.now()
        stream.first_frame_due = talk.requested_at
        payload: dict[str, Any] = {"metadata": {"videoId": talk.video_id}}
        self._send_video_event(stream, "started", payload)
        try:
            try:
                await session.apply(Input.TALK_STARTED)
            except IllegalTransition:
                if not talk.interrupted:
                    raise
            completed = talk.interrupted or await play(talk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A talk that fails while playing (its speech, the face, the encoder, the peer) ends with
            # stream/error; the stream goes back to connected and takes the next talk.
            error = exc if isinstance(exc, TalkstreamError) else InternalServerError()
            if not isinstance(exc, TalkstreamError):
                _log.exception("%s: talk %s failed while playing", session.stream_id, talk.video_id)
            self.observer.talk_ended("error")
            self.observer.error(error.kind)
            self._send_video_event(
                stream,
                "error",
                {"kind": error.kind, "description": error.description, "videoId": talk.video_id},
            )
        else:
            cut = talk.interrupted or not completed
            if cut:
                payload = {**payload, "interrupted": True}
            self.observer.talk_ended("interrupted" if cut else "done")
            self._send_video_event(stream, "done", payload)
        finally:
            stream.playing = None
            stream.first_frame_due = None
            await talk.speech.aclose()
        if session.closed:
            return False
        if not talk.interrupted:
            # An interrupted talk's end is already in the session: the interrupt emptied its queue.
            await session.finish_talk()
        return True
