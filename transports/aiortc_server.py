"""Real WebRTC for the server side, with aiortc (implements `engine.ports.ServerTransport`): one
`RTCPeerConnection` per stream with a send-only Opus track, a send-only VP8 (or H264) track and a data
channel; answers checked before aiortc sees them; browsers' mDNS candidates dropped; events sent once, on the
client's own channel when it opened one; a watchdog for peers gone silent.

What it must never do: ask a STUN server nobody configured (peers always get an explicit ICE server list),
allocate on a TURN server (those are for the clients), resolve `.local` names (multicast), or run engine
logic inside aiortc's event handlers (they only report).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import random
from collections.abc import Callable, Sequence

import aiortc.sdp
import attrs
import av
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from talkstream.engine.errors import BadRequestError, TransportError
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import (
    AUDIO_FRAME_SAMPLES,
    AUDIO_RATE,
    MessageCallback,
    PeerOptions,
    ReportCallback,
)
from talkstream.engine.states import Input

from .aiortc_common import BAD_SDP, ice_state_input, rtc_ice_servers
from .aiortc_patches import (
    IDLE_REPORT_SECONDS,
    encode_timing,
    install_aiortc_patches,
    note_peer_packets,
    offered_host_addresses,
    paced_reports,
    release_late_sockets,
)

__all__ = ["DEFAULT_SILENCE_TIMEOUT", "AiortcServerPeer", "AiortcServerTransport", "without_turn"]

_log = logging.getLogger(__name__)


def _check_answer(sdp: str) -> None:
    """Refuse, with a reason, an answer aiortc would trip over rather than reject.

    aiortc parses first and checks afterwards: a media section without ``a=setup`` has no DTLS parameters
    at all and its own check fails with an AttributeError on ``None``; one without ``a=fingerprint`` is
    accepted and the DTLS handshake then fails later, out of the request's sight.
    """
    try:
        parsed = aiortc.sdp.SessionDescription.parse(sdp)
    except BAD_SDP as exc:
        raise BadRequestError(f"invalid answer: the SDP does not parse ({exc})") from exc
    if not parsed.media:
        raise BadRequestError("invalid answer: it has no media sections")
    for index, media in enumerate(parsed.media):
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadRequestError(
                f"invalid answer: media section {index} ({media.kind}) lacks its DTLS parameters: "
                "it needs an a=fingerprint and an a=setup of active or passive"
            )


def without_turn(servers: Sequence[IceServer]) -> tuple[IceServer, ...]:
    """`servers` less their ``turn:`` and ``turns:`` URLs (an entry left with none is dropped): what the
    server's own peers use. The server has a host candidate on an address clients reach (`host_addresses`);
    a client's relayed address reaches it as a peer-reflexive candidate, so a relay of its own only adds
    allocations, and TURN credentials are the clients'."""
    kept = []
    for server in servers:
        urls = tuple(url for url in server.url_list if not url.lower().startswith(("turn:", "turns:")))
        if urls:
            kept.append(server if urls == server.url_list else attrs.evolve(server, urls=urls))
    return tuple(kept)


VIDEO_CLOCK = 90_000
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
_AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
_QUEUE_FRAMES = 8  # frames a track may hold ahead of the encoder: bounds latency, gives back-pressure

# -- media ------------------------------------------------------------------------------------------------


class _QueuedTrack(MediaStreamTrack):
    """A track whose frames are pushed by the talk player; with no talk, `recv` waits and nothing is sent."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.VideoFrame | av.AudioFrame | None] = asyncio.Queue(_QUEUE_FRAMES)

    async def put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if self.readyState != "live":
            return
        await self._queue.put(frame)

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class _VideoOut(_QueuedTrack):
    kind = "video"


class _AudioOut(_QueuedTrack):
    kind = "audio"


class AiortcServerPeer:
    """One stream's `RTCPeerConnection` (implements `engine.ports.ServerPeer`)."""

    def __init__(
        self,
        transport: AiortcServerTransport,
        stream_id: str,
        options: PeerOptions,
        report: ReportCallback,
        on_message: MessageCallback | None = None,
    ) -> None:
        install_aiortc_patches()
        self._transport = transport
        self.stream_id = stream_id
        self._options = options
        self._report = report
        self._on_message = on_message
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=rtc_ice_servers(transport.peer_ice_servers)))
        self._video = _VideoOut()
        self._audio = _AudioOut()
        # Events go to one channel: the client's own when it opened one (D-ID's clients open
        # JanusDataChannel before answering and listen there), else the one the offer created.
        self._own_channel: RTCDataChannel | None = None
        self._client_channels: list[RTCDataChannel] = []
        self._unsent: list[str] = []  # messages sent before any channel was open
        self._ready = asyncio.Event()  # DTLS up and a data channel open: media and messages flow
        self._pending: list[tuple[str, str | None, int | None]] = []
        self._pending_end = False
        self.mdns_dropped = 0  # browsers' .local candidates left unresolved
        self._remote_candidates = 0  # in the answer and trickled: an end marker before any waits for one
        self._end_deferred = False
        self._answered = False
        self._closed = False
        self._connected_reported = False
        self._epoch = asyncio.get_running_loop().time()
        self._media_sent_at = float("-inf")  # loop time of the last frame handed to a track
        self.heard_at: float | None = None  # loop time of the peer's last packet, from the answer on
        self._silence_reported = False
        self._pc.on("datachannel", self._on_datachannel)
        self._pc.on("iceconnectionstatechange", self._on_ice_state)
        self._pc.on("connectionstatechange", self._on_connection_state)

    # -- reports (pyee handlers: report only) --------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        _log.debug("%s: client opened data channel %r", self.stream_id, channel.label)
        self._client_channels.append(channel)
        self._add_channel(channel)

    def _add_channel(self, channel: RTCDataChannel) -> None:
        channel.on("message", self._message)
        if channel.readyState == "open":
            self._channel_open()
        else:
            channel.once("open", self._channel_open)

    def _message(self, message: str | bytes) -> None:
        if self._on_message is not None and not self._closed:
            self._on_message(message if isinstance(message, str) else message.decode("utf-8", "replace"))

    def _channel_open(self) -> None:
        self._ready.set()
        unsent, self._unsent = self._unsent, []
        for text in unsent:
            self.send_message(text)

    def _on_ice_state(self) -> None:
        state = self._pc.iceConnectionState
        inp = ice_state_input(state, connected_reported=self._connected_reported, closing=self._closed)
        if inp is not None:
            self._connected_reported |= inp is Input.ICE_CONNECTED
            self._report(inp, state)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "failed":
            self._report(Input.ICE_FAILED, f"connection {state}")
        elif state == "closed" and not self._closed:
            self._report(Input.TRANSPORT_CLOSED, f"connection {state}")

    # -- negotiation --------------------------------------------------------------------------------------

    async def make_offer(self) -> str:
        pc = self._pc
        pc.addTransceiver(self._audio, direction="sendonly")
        video = pc.addTransceiver(self._video, direction="sendonly")
        wanted = f"video/{self._options.video_codec}".lower()
        codecs = RTCRtpSender.getCapabilities("video").codecs
        preferred = [c for c in codecs if c.mimeType.lower() == wanted]
        if preferred:
            video.setCodecPreferences(preferred + [c for c in codecs if c.mimeType.lower() == "video/rtx"])
        self._own_channel = pc.createDataChannel(self._options.channel_label)
        self._add_channel(self._own_channel)
        try:
            addresses = self._transport.host_addresses
            with offered_host_addresses(addresses) if addresses is not None else contextlib.nullcontext():
                await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:
            raise TransportError(f"could not create the offer: {exc}") from exc
        finally:
            if self._closed:
                await release_late_sockets(pc)
        if self._closed:
            raise TransportError("the peer was closed while its offer was made")
        return str(pc.localDescription.sdp)

    async def apply_answer(self, sdp: str) -> None:
        if self._answered:
            raise BadRequestError("the answer was already applied")
        sdp = self._without_mdns(sdp)
        _check_answer(sdp)
        try:
            # the senders start in a task made here
            with paced_reports(self._report_pace), encode_timing(self._transport.encode_observer):
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except BAD_SDP as exc:
            # aiortc's OperationError/InvalidAccessError here mean the answer does not fit the offer
            raise BadRequestError(f"invalid answer: {exc}") from exc
        except Exception as exc:
            raise TransportError(f"could not apply the answer: {exc}") from exc
        self._answered = True
        self._remote_candidates += sum(line.startswith("a=candidate:") for line in sdp.splitlines())
        self._listen_for_the_peer()
        pending, self._pending = self._pending, []
        for candidate, mid, index in pending:
            await self._add(candidate, mid, index)
        if self._pending_end:
            await self._add_end()

    def _listen_for_the_peer(self) -> None:
        """From the answer on, `heard_at` is the time of the peer's last packet (the silence watchdog's
        reading)."""
        loop = asyncio.get_running_loop()
        self.heard_at = loop.time()

        def heard() -> None:
            self.heard_at = loop.time()

        note_peer_packets(self._pc, heard)

    def silent_for(self, now: float) -> float | None:
        """Seconds since the peer last sent anything, once ICE connected (None before, or once closing)."""
        if not self._connected_reported or self._closed or self.heard_at is None:
            return None
        return now - self.heard_at

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_m_line_index: int | None
    ) -> None:
        if candidate is None:
            if self._answered:
                await self._add_end()
            else:
                self._pending_end = True
            return
        line = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(line)
        except (AssertionError, ValueError, IndexError) as exc:
            raise BadRequestError(f"invalid candidate: {candidate[:100]!r}") from exc
        if parsed.ip.endswith(".local"):
            # Resolving it means a multicast query and a fixed 1 s wait in aioice; the peer's checks
            # reach our candidates anyway and it is learnt as peer-reflexive.
            _log.debug("%s: dropped mDNS candidate %s", self.stream_id, parsed.ip)
            self.mdns_dropped += 1
            return
        if not self._answered:
            self._pending.append((line, sdp_mid, sdp_m_line_index))
            return
        await self._add(line, sdp_mid, sdp_m_line_index)

    async def _add(self, line: str, mid: str | None, index: int | None) -> None:
        parsed = candidate_from_sdp(line)
        parsed.sdpMid = mid
        parsed.sdpMLineIndex = index if index is not None or mid is not None else 0
        try:
            await self._pc.addIceCandidate(parsed)
        except ValueError as exc:
            raise BadRequestError(f"invalid candidate: {exc}") from exc
        self._remote_candidates += 1
        if self._end_deferred:
            self._end_deferred = False
            await self._add_end()

    async def _add_end(self) -> None:
        if self._remote_candidates == 0:
            # An end marker before any remote candidate (posted before the answer, say, by a client that
            # trickles): aioice would fail at once with no pairs to check. It waits for a candidate; the
            # session's connect timeout bounds the wait.
            self._end_deferred = True
            return
        if self.mdns_dropped:
            # The peer hid addresses behind names we do not resolve; its checks will reveal them as
            # peer-reflexive candidates. Telling aioice "no more candidates" now would let it declare
            # failure before those checks arrive; the session's connect timeout bounds the wait instead.
            return
        with contextlib.suppress(ValueError):  # a second end-of-candidates is harmless
            await self._pc.addIceCandidate(None)

    def _without_mdns(self, sdp: str) -> str:
        """The answer without `.local` candidates (and without its end-of-candidates if any went)."""
        lines = sdp.splitlines()
        kept = []
        for line in lines:
            if line.startswith("a=candidate:"):
                bits = line.split()
                if len(bits) > 4 and bits[4].endswith(".local"):
                    self.mdns_dropped += 1
                    continue
            kept.append(line)
        if self.mdns_dropped:
            kept = [line for line in kept if line != "a=end-of-candidates"]
        return "\r\n".join(kept) + "\r\n" if len(kept) != len(lines) else sdp

    # -- media and messages ---------------------------------------------------------------------------------

    def _event_channel(self) -> RTCDataChannel | None:
        """The channel events go out on: the client's first open one, else ours if open.

        Our own channel opens when the client acknowledges it (DCEP ACK), and a client that opened a channel
        before answering sent its own DCEP OPEN before that ACK, so by the time any channel is open here the
        client's is known if it has one.
        """
        for channel in self._client_channels:
            if channel.readyState == "open":
                return channel
        own = self._own_channel
        return own if own is not None and own.readyState == "open" else None

    def send_message(self, text: str) -> int:
        channel = self._event_channel()
        if channel is not None:
            channel.send(text)
            return 1
        if not self._closed and len(self._unsent) < 64:
            self._unsent.append(text)  # delivered when the first channel opens
        return 0

    async def ready(self, within: float) -> bool:
        """Wait (at most `within` seconds) until a data channel is open, so DTLS is up and media flows."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within)
        return self._ready.is_set()

    def media_time(self) -> float:
        return asyncio.get_running_loop().time() - self._epoch

    def _report_pace(self) -> float:
        """aiortc's report interval is `0.5 + this`: its own while media flows, about 5 s while idle."""
        if asyncio.get_running_loop().time() - self._media_sent_at < 2 * IDLE_REPORT_SECONDS:
            return random.random()
        return IDLE_REPORT_SECONDS - 0.5 + random.random()

    async def send_video(self, frame: npt.NDArray[np.uint8], at: float) -> None:
        video = av.VideoFrame.from_ndarray(frame, format="yuv420p")
        video.pts = round(at * VIDEO_CLOCK)
        video.time_base = _VIDEO_TIME_BASE
        self._media_sent_at = asyncio.get_running_loop().time()
        await self._video.put(video)

    async def send_audio(self, pcm: npt.NDArray[np.int16], at: float) -> None:
        audio = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        audio.sample_rate = AUDIO_RATE
        audio.pts = round(at * AUDIO_RATE)
        audio.time_base = _AUDIO_TIME_BASE
        assert pcm.shape[-1] == AUDIO_FRAME_SAMPLES
        await self._audio.put(audio)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._video.stop()
        self._audio.stop()
        try:
            await asyncio.shield(self._pc.close())  # see AiortcClientPeer.close
        except Exception:  # pragma: no cover - closing must not fail the caller
            _log.exception("%s: error while closing the peer", self.stream_id)
        self._transport._peers.discard(self)


#: A connected peer that sends nothing for this long is gone. ICE agents check consent every 4-6 s (RFC 7675)
#: and receivers send RTCP while media flows, so a live peer is never this quiet; aiortc itself would wait
#: for six failed consent checks, about 30 s, while the stream holds its slot and plays to nobody.
DEFAULT_SILENCE_TIMEOUT = 15.0


class AiortcServerTransport:
    """aiortc peers for the server (implements `engine.ports.ServerTransport`).

    `ice_servers`: what clients are handed (`ice_servers`); the server's own peers use only their STUN URLs
    (`peer_ice_servers`, see `without_turn`).
    `host_addresses`: the addresses offered (default loopback only; None: aioice's own choice).
    `silence_timeout`: a connected peer silent this long (no STUN check, no packet) is reported closed, by
    one watchdog task for all peers that looks every `silence_timeout / 5` seconds.
    `encode_observer`: hears each video frame's encode time, in seconds, from the thread that encoded it.
    """

    def __init__(
        self,
        *,
        ice_servers: Sequence[IceServer] = (),
        host_addresses: Sequence[str] | None = ("127.0.0.1",),
        silence_timeout: float = DEFAULT_SILENCE_TIMEOUT,
        encode_observer: Callable[[float], None] | None = None,
    ) -> None:
        self.encode_observer = encode_observer
        self.ice_servers = tuple(ice_servers)
        self.peer_ice_servers = without_turn(self.ice_servers)
        self.host_addresses: tuple[str, ...] | None = (
            tuple(host_addresses) if host_addresses is not None else None
        )
        self.silence_timeout = silence_timeout
        self._peers: set[AiortcServerPeer] = set()
        self._watchdog: asyncio.Task[None] | None = None

    def create_peer(
        self,
        stream_id: str,
        options: PeerOptions,
        report: ReportCallback,
        on_message: MessageCallback | None = None,
    ) -> AiortcServerPeer:
        peer = AiortcServerPeer(self, stream_id, options, report, on_message)
        self._peers.add(peer)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch_for_silence())
        return peer

    async def _watch_for_silence(self) -> None:
        """Report peers gone silent as closed; runs while there are peers."""
        loop = asyncio.get_running_loop()
        while self._peers:
            await asyncio.sleep(self.silence_timeout / 5)
            now = loop.time()
            for peer in tuple(self._peers):
                silent = peer.silent_for(now)
                if silent is not None and silent > self.silence_timeout and not peer._silence_reported:
                    peer._silence_reported = True
                    _log.info("%s: the peer has sent nothing for %.1f s: gone", peer.stream_id, silent)
                    peer._report(Input.TRANSPORT_CLOSED, f"peer silent for {silent:.0f} s")

    @property
    def live_peers(self) -> int:
        return len(self._peers)

    async def aclose(self) -> None:
        await asyncio.gather(*(peer.close() for peer in tuple(self._peers)))
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
