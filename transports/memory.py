"""An in-memory WebRTC fake for tests and fast replays: server and client peers paired through a
`MemoryNetwork` on the engine's clock, with knobs for delay, ICE failure, lost messages and vanished peers.

What it must never do: succeed where real WebRTC would not, or deliver anything after a peer closed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from talkstream.engine.clock import Clock
from talkstream.engine.errors import BadRequestError
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import (
    MessageCallback,
    PeerOptions,
    ReportCallback,
    Sink,
)
from talkstream.engine.states import Input

__all__ = ["MemoryClientPeer", "MemoryNetwork", "MemoryServerPeer", "MemorySink", "NetworkKnobs"]

_ids = itertools.count(1)
_TAG = "a=x-talkstream-memory:"


@attrs.define(kw_only=True)
class NetworkKnobs:
    """Faults and delays. `lose_messages`: indexes (0-based, per server peer) of data-channel messages
    that never arrive."""

    delay: float = 0.01
    ice_fails: bool = False
    lose_messages: frozenset[int] = frozenset()
    # How long a connected side takes to notice that its peer vanished without a word: the aiortc server
    # transport's silence watchdog (its `silence_timeout`, 15 s by default) does the same over real wires.
    silence_timeout: float = 15.0


class MemorySink:
    """What a memory client peer received: video frames and audio chunks with their media times.

    `keep` bounds how many of each it holds (the latest; None: all): a fluent stream sends frames for as long
    as it lives. `frames` and `samples` count everything that arrived.
    """

    def __init__(self, keep: int | None = None) -> None:
        self.video: collections.deque[tuple[float, npt.NDArray[np.uint8]]] = collections.deque(maxlen=keep)
        self.audio: collections.deque[tuple[float, npt.NDArray[np.int16]]] = collections.deque(maxlen=keep)
        self._frames = 0
        self._samples = 0

    def add_video(self, at: float, frame: npt.NDArray[np.uint8]) -> None:
        self._frames += 1
        self.video.append((at, frame))

    def add_audio(self, at: float, pcm: npt.NDArray[np.int16]) -> None:
        self._samples += len(pcm)
        self.audio.append((at, pcm))

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def samples(self) -> int:
        return self._samples


class MemoryNetwork:
    """The wire between memory peers; makes the server's and the client's transports."""

    def __init__(self, clock: Clock, knobs: NetworkKnobs | None = None) -> None:
        self.clock = clock
        self.knobs = knobs or NetworkKnobs()
        self._servers: dict[str, MemoryServerPeer] = {}
        self._clients: dict[str, MemoryClientPeer] = {}

    def server_transport(self) -> MemoryServerTransport:
        return MemoryServerTransport(self)

    def client_transport(self) -> MemoryClientTransport:
        return MemoryClientTransport(self)

    def later(self, action: Callable[[], None]) -> None:
        self.clock.call_later(self.knobs.delay, action)

    def vanish(self, peer: _MemoryPeer, *, goodbye: bool = False) -> None:
        """The peer disappears.

        With `goodbye` (a peer closing: DTLS close_notify, SCTP abort) the other side hears it after the
        network's delay. Without (a killed process, a pulled cable) nothing more arrives from it: a connected
        other side reports the transport closed once it has heard nothing for `knobs.silence_timeout`, and
        one still connecting never connects (its own connect timeout ends it).
        """
        other = peer.partner
        peer._dead = True
        if other is None or other._dead:
            return
        if goodbye:
            self.later(lambda: other._report_once(Input.TRANSPORT_CLOSED, "peer closed"))
        elif other.connected.is_set():
            silence = self.knobs.silence_timeout
            detail = f"peer silent for {silence:g} s"
            self.clock.call_later(silence, lambda: other._report_once(Input.TRANSPORT_CLOSED, detail))

    @property
    def live_peers(self) -> int:
        return sum(not p._dead for p in self._servers.values()) + sum(
            not p._dead for p in self._clients.values()
        )


class _MemoryPeer:
    def __init__(self, network: MemoryNetwork, report: ReportCallback) -> None:
        self.network = network
        self.id = f"mem{next(_ids)}"
        self._report = report
        self._dead = False
        self._reported: set[Input] = set()
        self.partner: _MemoryPeer | None = None
        self.connected = asyncio.Event()

    def _report_once(self, inp: Input, detail: str) -> None:
        if not self._dead and inp not in self._reported:
            self._reported.add(inp)
            if inp is Input.ICE_CONNECTED:
                self.connected.set()
            self._report(inp, detail)

    async def close(self) -> None:
        if not self._dead:
            self.network.vanish(self, goodbye=True)  # the other side hears the close, as over a real wire


class MemoryServerPeer(_MemoryPeer):
    """The server's side (implements `engine.ports.ServerPeer`)."""

    def __init__(
        self,
        network: MemoryNetwork,
        stream_id: str,
        options: PeerOptions,
        report: ReportCallback,
        on_message: MessageCallback | None = None,
    ) -> None:
        super().__init__(network, report)
        self.stream_id = stream_id
        self.options = options
        self.on_message = on_message
        self.sent_messages = 0
        self.pending_candidates: list[str | None] = []
        self._epoch = network.clock.now()
        network._servers[self.id] = self

    async def make_offer(self) -> str:
        codec = "H264" if self.options.video_codec == "h264" else "VP8"
        return (
            "v=0\r\ns=talkstream-memory\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
            f"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 {codec}/90000\r\n"
            f"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n{_TAG}{self.id}\r\n"
        )

    async def apply_answer(self, sdp: str) -> None:
        client_id = _tag(sdp)
        client = self.network._clients.get(client_id or "")
        if client is None or client.offer_from != self.id:
            raise BadRequestError("invalid answer: not an answer to this offer")
        if self.partner is not None:
            raise BadRequestError("the answer was already applied")
        self.partner, client.partner = client, self
        knobs = self.network.knobs
        outcome = Input.ICE_FAILED if knobs.ice_fails else Input.ICE_CONNECTED

        def settle() -> None:
            if self._dead or client._dead:
                return  # a side gone before the checks completed: ICE never connects
            detail = "failed" if knobs.ice_fails else "completed"
            self._report_once(outcome, detail)
            client._report_once(outcome, detail)

        self.network.later(settle)

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_m_line_index: int | None
    ) -> None:
        if candidate is not None and not candidate.startswith("candidate:"):
            raise BadRequestError(f"invalid candidate: {candidate[:100]!r}")
        self.pending_candidates.append(candidate)

    def send_message(self, text: str) -> int:
        index = self.sent_messages
        self.sent_messages += 1
        client = self.partner
        if self._dead or not isinstance(client, MemoryClientPeer) or not self.connected.is_set():
            return 0
        if index not in self.network.knobs.lose_messages:
            self.network.later(lambda: None if client._dead else client._on_message(text))
        return 1

    async def ready(self, within: float) -> bool:
        return self.connected.is_set()

    def media_time(self) -> float:
        return self.network.clock.now() - self._epoch

    async def send_video(self, frame: npt.NDArray[np.uint8], at: float) -> None:
        client = self.partner
        if client is not None and not self._dead and isinstance(client, MemoryClientPeer) and client.sink:
            sink = client.sink
            kept = frame.copy()  # the server draws its next frame into the same array
            self.network.later(lambda: None if client._dead else sink.add_video(at, kept))

    async def send_audio(self, pcm: npt.NDArray[np.int16], at: float) -> None:
        client = self.partner
        if client is not None and not self._dead and isinstance(client, MemoryClientPeer) and client.sink:
            sink = client.sink
            self.network.later(lambda: None if client._dead else sink.add_audio(at, pcm))


class MemoryServerTransport:
    """Memory peers for the server (implements `engine.ports.ServerTransport`)."""

    ice_servers: Sequence[IceServer] = ()

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def create_peer(
        self,
        stream_id: str,
        options: PeerOptions,
        report: ReportCallback,
        on_message: MessageCallback | None = None,
    ) -> MemoryServerPeer:
        return MemoryServerPeer(self.network, stream_id, options, report, on_message)

    @property
    def live_peers(self) -> int:
        return sum(not p._dead for p in self.network._servers.values())

    async def aclose(self) -> None:
        for peer in list(self.network._servers.values()):
            await peer.close()


class MemoryClientPeer(_MemoryPeer):
    """The client's side (implements `engine.ports.ClientPeer`)."""

    def __init__(
        self,
        network: MemoryNetwork,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: MemorySink | None,
    ) -> None:
        super().__init__(network, report)
        self._on_message = on_message
        self.sink = sink
        self.offer_from: str | None = None
        network._clients[self.id] = self

    async def answer(self, offer_sdp: str) -> str:
        server_id = _tag(offer_sdp)
        if server_id is None or server_id not in self.network._servers:
            raise BadRequestError("the server's offer is not a memory-network offer")
        self.offer_from = server_id
        candidate = f"a=candidate:1 1 udp 1 {self.id} 1 typ host"
        return f"v=0\r\ns=talkstream-memory-answer\r\n{_TAG}{self.id}\r\n{candidate}\r\n"

    def candidates(self) -> list[tuple[str, str | None, int | None]]:
        return [(f"candidate:1 1 udp 1 {self.id} 1 typ host", "0", 0)]

    def send_message(self, text: str) -> bool:
        """To the server after the network's delay, once connected (as a data channel opens with DTLS)."""
        server = self.partner
        if self._dead or not isinstance(server, MemoryServerPeer) or not self.connected.is_set():
            return False
        deliver = server.on_message
        if deliver is not None:
            self.network.later(lambda: None if server._dead else deliver(text))
        return True


class MemoryClientTransport:
    """Memory peers for the client (implements `engine.ports.ClientTransport`)."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def create_peer(
        self,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
    ) -> MemoryClientPeer:
        if sink is not None and not isinstance(sink, MemorySink):
            raise TypeError("the memory transport delivers media to a MemorySink")
        return MemoryClientPeer(self.network, report, on_message, sink)

    async def aclose(self) -> None:
        for peer in list(self.network._clients.values()):
            await peer.close()


def _tag(sdp: str) -> str | None:
    for line in sdp.splitlines():
        if line.startswith(_TAG):
            return line[len(_TAG) :].strip()
    return None
