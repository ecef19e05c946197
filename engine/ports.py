"""What the engine's drivers talk through, as small protocols: server and client peers and transports, the
studio with its faces and speech, and the client's HTTP port; the media conventions they share.

What it must never do: import a backend, or grow methods the drivers do not call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import numpy as np
import numpy.typing as npt

from .messages import AudioScript, CreateStreamRequest, IceServer, TextScript
from .states import Input

__all__ = [
    "AUDIO_FRAME_SAMPLES",
    "AUDIO_RATE",
    "FRAME_SECONDS",
    "SAMPLES_PER_VIDEO_FRAME",
    "VIDEO_FPS",
    "ClientPeer",
    "ClientTransport",
    "Face",
    "HttpPort",
    "HttpRequest",
    "HttpResponse",
    "MessageCallback",
    "MessagePort",
    "Mouth",
    "PeerOptions",
    "PreparedSpeech",
    "ReportCallback",
    "ServerPeer",
    "ServerTransport",
    "ServiceObserver",
    "Sink",
    "Speech",
    "SpeechFeed",
    "SpeechStream",
    "StreamQuota",
    "Studio",
    "VideoCodec",
    "VideoFrame",
]

AUDIO_RATE = 48_000  # every PCM sample in talkstream: 48 kHz mono int16
AUDIO_FRAME_SAMPLES = 960  # 20 ms, Opus's usual frame
VIDEO_FPS = 25
FRAME_SECONDS = 1.0 / VIDEO_FPS  # one video frame: 40 ms
SAMPLES_PER_VIDEO_FRAME = AUDIO_RATE // VIDEO_FPS  # 1920

VideoFrame = npt.NDArray[np.uint8]
PCM = npt.NDArray[np.int16]
VideoCodec = Literal["vp8", "h264"]
ReportCallback = Callable[[Input, str], None]  # (transport input, detail)


@attrs.frozen(kw_only=True)
class PeerOptions:
    """Per-stream choices: the video codec, and the label of the data channel the offer creates."""

    video_codec: VideoCodec = "vp8"
    channel_label: str = "JanusDataChannel"


class ServerPeer(Protocol):
    """The server's side of one stream's peer connection.

    Backend exceptions never cross it: a bad answer or candidate is `BadRequestError`, anything else from
    the backend `TransportError`. Its backend's callbacks only call the `ReportCallback` it was made with.
    """

    async def make_offer(self) -> str:
        """Create the offer (audio, video, data channel) with its candidates inline; return its SDP."""
        ...

    async def apply_answer(self, sdp: str) -> None:
        """Apply the client's answer, then the candidates buffered before it."""
        ...

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_m_line_index: int | None
    ) -> None:
        """Add one remote candidate (None: end-of-candidates); buffered until the answer is applied."""
        ...

    def send_message(self, text: str) -> int:
        """Send `text` to the client on one open data channel (its own if it opened one); return on how many
        it went: 1, or 0 when none is open yet (kept until one opens)."""
        ...

    async def ready(self, within: float) -> bool:
        """Wait at most `within` seconds until media and messages can flow; say whether they can."""
        ...

    async def send_video(self, frame: VideoFrame, at: float) -> None:
        """Queue one I420 frame for media time `at` (seconds since the peer's epoch). The caller draws the
        next frame into the same array once this returns: a peer that keeps the frame keeps a copy."""
        ...

    async def send_audio(self, pcm: PCM, at: float) -> None:
        """Queue 20 ms of 48 kHz mono PCM for media time `at`."""
        ...

    def media_time(self) -> float:
        """Now on the peer's media timeline."""
        ...

    async def close(self) -> None:
        """Close the peer and free its sockets; idempotent."""
        ...


class ServerTransport(Protocol):
    """Makes server peers and holds what they share."""

    @property
    def ice_servers(self) -> Sequence[IceServer]: ...

    def create_peer(
        self,
        stream_id: str,
        options: PeerOptions,
        report: ReportCallback,
        on_message: MessageCallback | None = None,
    ) -> ServerPeer:
        """A peer for `stream_id`; `on_message` hears every text the client sends on a data channel (binary
        messages decoded as UTF-8 with replacement), from the backend's callbacks: it must only queue."""
        ...

    @property
    def live_peers(self) -> int:
        """Peers made and not yet closed (for operators, and for tests of leaks)."""
        ...

    async def aclose(self) -> None: ...


class StreamQuota(Protocol):
    """Who may hold another live stream: per key and in all, counted here or shared by several servers
    (`engine.service.LocalQuota` in this process; `adapters.server.redis_state`'s across a cluster)."""

    async def acquire(self, owner: str, stream_id: str) -> None:
        """Count `stream_id` against `owner`'s and the total quota, or raise (429 over a quota, 503 when the
        shared state cannot be reached) and count nothing."""
        ...

    async def release(self, owner: str, stream_id: str) -> None:
        """`stream_id` is closed: it no longer counts. Never raises (a shared count it cannot reach frees
        the stream when its lease runs out)."""
        ...


class ServiceObserver(Protocol):
    """What a stream service reports as it works, for metrics. Every method is called on the event loop and
    must return at once."""

    def connected(self, seconds: float) -> None:
        """A stream connected, `seconds` after its create."""

    def first_frame(self, seconds: float) -> None:
        """A talk's first frame left, `seconds` after the talk was asked for."""

    def frame_sent(self) -> None:
        """One video frame left."""

    def talk_ended(self, outcome: Literal["done", "interrupted", "error", "rejected"]) -> None:
        """A talk ended so."""

    def error(self, kind: str) -> None:
        """A client was told of an error of this kind (an answer or a ``stream/error``)."""


@attrs.frozen
class Mouth:
    """How one frame articulates: `open` from shut (0) to wide open (1); `wide` from rounded (-1, as for o,
    u, w) through neutral (0) to spread (+1, as for i, e); `bite` how far the lower lip rests under the upper
    teeth (1 for f, v); `press` how firmly the lips meet (1 for m, b, p: a photo that shows its teeth closes
    its lips); `stress` a stressed syllable (the brows lift with it), all as the speech has them."""

    open: float = 0.0
    wide: float = 0.0
    bite: float = 0.0
    press: float = 0.0
    stress: float = 0.0

    @property
    def at_rest(self) -> bool:
        return self == _REST


_REST = Mouth()
SHAPE_CHANNELS = ("wide", "bite", "press", "stress")  # a Speech's `shape` columns, after `openness`


@attrs.frozen(eq=False)
class Speech:
    """A stretch of a talk: `pcm` (48 kHz mono int16) and one mouth openness in [0, 1] per 40 ms frame;
    `shape`, when the speech knows more than loudness, one row per frame of `SHAPE_CHANNELS` (see `Mouth`).

    Within a talk, every stretch but the last holds exactly ``frames * 1920`` samples, so that stretches
    played one after another keep sound and frames on one timeline.
    """

    pcm: PCM
    openness: npt.NDArray[np.float32]
    shape: npt.NDArray[np.float32] | None = None

    def __attrs_post_init__(self) -> None:
        if self.shape is not None and self.shape.shape != (len(self.openness), len(SHAPE_CHANNELS)):
            raise ValueError(f"shape must be (frames, {len(SHAPE_CHANNELS)}), not {self.shape.shape}")

    @property
    def duration(self) -> float:
        return len(self.pcm) / AUDIO_RATE

    @property
    def frames(self) -> int:
        return len(self.openness)

    def mouth(self, frame: int) -> Mouth:
        """Frame `frame`'s articulation (shut past the end)."""
        if frame >= len(self.openness):
            return Mouth()
        if self.shape is None:
            return Mouth(float(self.openness[frame]))
        wide, bite, press, stress = (float(v) for v in self.shape[frame])
        return Mouth(float(self.openness[frame]), wide, bite, press, stress)


class SpeechStream(Protocol):
    """A talk's speech, made while it plays: stretches one after another, a few seconds ahead at most, so a
    talk costs the same memory however long it is."""

    @property
    def duration(self) -> float:
        """The talk's length in seconds: exact once known, until then an estimate."""
        ...

    async def next(self) -> Speech | None:
        """The next stretch, or None when the talk has ended. One call at a time."""
        ...

    async def aclose(self) -> None:
        """Stop making stretches and free what that needs (idempotent)."""
        ...


class PreparedSpeech:
    """A `SpeechStream` of stretches made beforehand (a warm-up's silence, a test's speech)."""

    def __init__(self, *stretches: Speech) -> None:
        self._stretches = list(stretches)
        self._next = 0

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self._stretches)

    async def next(self) -> Speech | None:
        if self._next >= len(self._stretches):
            return None
        self._next += 1
        return self._stretches[self._next - 1]

    async def aclose(self) -> None:
        self._next = len(self._stretches)


class Face(Protocol):
    """One stream's animated face: frames at a fixed size."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def frame(
        self,
        mouth: Mouth | float,
        at: float | None = None,
        *,
        out: VideoFrame | None = None,
        motion: float = 1.0,
    ) -> VideoFrame:
        """A frame: the `mouth` as given (a bare number is its openness in [0, 1]), the head, eyelids and
        breath as the face has them `at` seconds into a talk (None: at rest, the photo itself where the mouth
        is shut); drawn into `out` (a frame this face made before) when given, else into a new array. The
        face schedules its own blinks. `motion` scales the head's sway and turn (1 while speaking, less for
        a fluent stream's idle between talks)."""
        ...


class SpeechFeed(Protocol):
    """Speech made from raw sound as it arrives (a WebSocket's PCM chunks): bytes in, whole frames out."""

    def feed(self, data: bytes) -> Speech:
        """The whole frames `data` completes (possibly none); a sample split between two calls is kept."""
        ...

    def finish(self) -> Speech:
        """The rest, its last frame padded with silence."""
        ...


class Studio(Protocol):
    """Makes a stream's face from its create request, and a talk's speech from its script or its sound."""

    async def face(self, request: CreateStreamRequest) -> Face: ...

    async def speech(self, script: TextScript | AudioScript, *, pad_audio: float) -> SpeechStream: ...

    def pcm_feed(self, sample_rate: int) -> SpeechFeed:
        """Speech from 16-bit little-endian mono PCM at `sample_rate`, fed as it arrives."""
        ...


# -- the client's side ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HttpRequest:
    """One protocol request: method, path under the API's base URL, JSON body (None: no body)."""

    method: str
    path: str
    body: Any = None


@attrs.frozen(kw_only=True)
class HttpResponse:
    """The answer: status, parsed JSON body (or text, or None; the bytes of a video), headers with lower-case
    names."""

    status: int
    body: Any
    headers: Mapping[str, str] = attrs.field(factory=dict)


class HttpPort(Protocol):
    """Sends protocol requests. Network failures become `ConnectionFailedError` or `TimeoutError_`;
    every answer, error statuses included, comes back as an `HttpResponse`."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...

    async def aclose(self) -> None: ...


MessageCallback = Callable[[str], None]


@runtime_checkable
class MessagePort(Protocol):
    """An `HttpPort` that also sends D-ID's WebSocket messages (`adapters.http.websocket.WebSocketAdapter`):
    streamed talks need one."""

    async def message(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``{"type": kind, "payload": payload}``; return its answer, or raise its error."""
        ...


class Sink(Protocol):
    """Where a client peer delivers the media it receives; each transport takes its own kind of sink
    (`transports.sink.MediaSink` for aiortc, `transports.memory.MemorySink` for the fake) and refuses others
    with a TypeError. The engine reads only how much has arrived."""

    @property
    def frames(self) -> int:
        """Video frames received so far."""
        ...

    @property
    def samples(self) -> int:
        """Audio samples received so far."""
        ...


class ClientPeer(Protocol):
    """The client's side of one stream's peer connection."""

    async def answer(self, offer_sdp: str) -> str:
        """Apply the server's offer, open ``JanusDataChannel``, and return the answer's SDP."""
        ...

    def candidates(self) -> list[tuple[str, str | None, int | None]]:
        """The local candidates gathered for the answer: (candidate line, sdpMid, sdpMLineIndex)."""
        ...

    def send_message(self, text: str) -> bool:
        """Send `text` to the server on the data channel; False when no channel is open (nothing sent)."""
        ...

    async def close(self) -> None: ...


class ClientTransport(Protocol):
    """Makes client peers. `sink` (the transport's own kind, or None) receives the media."""

    def create_peer(
        self,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
    ) -> ClientPeer:
        """A peer for `stream_id`, using the ICE servers the server handed out (none for a local one)."""
        ...

    async def aclose(self) -> None: ...
