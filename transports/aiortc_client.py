"""Real WebRTC for the client side, with aiortc (implements `engine.ports.ClientTransport`): a peer that
answers a server's offer with every candidate inline (also listed by `candidates()` for servers that want
them trickled), opens ``JanusDataChannel`` as D-ID's clients do, and hands what it receives to a `MediaSink`.
Host addresses: loopback only by default; ``host_addresses=None`` for aioice's own choice (a remote server).

What it must never do: run client logic inside aiortc's callbacks (they only report), or let an aiortc
exception escape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from talkstream.engine.errors import BadRequestError, TransportError
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import MessageCallback, ReportCallback, Sink
from talkstream.engine.states import Input

from .aiortc_common import BAD_SDP, ice_state_input, rtc_ice_servers
from .aiortc_patches import install_aiortc_patches, offered_host_addresses, release_late_sockets
from .sink import MediaSink

__all__ = ["AiortcClientPeer", "AiortcClientTransport"]

_log = logging.getLogger(__name__)


class AiortcClientPeer:
    def __init__(
        self,
        transport: AiortcClientTransport,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: MediaSink | None,
        ice_servers: Sequence[IceServer],
    ) -> None:
        install_aiortc_patches()
        self._transport = transport
        self.stream_id = stream_id
        self._report = report
        self._on_message = on_message
        self._sink = sink
        servers = rtc_ice_servers((*transport.ice_servers, *ice_servers))
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._connected = False
        self._answer_sdp = ""
        self.channel_open = asyncio.Event()  # set when JanusDataChannel opens
        self._channel = channel = self._pc.createDataChannel("JanusDataChannel")
        channel.on("message", self._message)
        channel.on("open", self.channel_open.set)
        self._pc.on("track", self._track)
        self._pc.on("iceconnectionstatechange", self._ice_state)

    @property
    def sink(self) -> MediaSink | None:
        return self._sink

    def _message(self, message: str | bytes) -> None:
        self._on_message(message if isinstance(message, str) else message.decode("utf-8", "replace"))

    def _ice_state(self) -> None:
        state = self._pc.iceConnectionState
        inp = ice_state_input(state, connected_reported=self._connected, closing=self._closed)
        if inp is not None:
            self._connected |= inp is Input.ICE_CONNECTED
            self._report(inp, state)

    def _track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pump(track)))

    async def _pump(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame: Any = await track.recv()
            except MediaStreamError:
                return
            if self._sink is not None:
                if track.kind == "video":
                    self._sink.add_video(frame)
                else:
                    self._sink.add_audio(frame)

    async def answer(self, offer_sdp: str) -> str:
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            addresses = self._transport.host_addresses
            with offered_host_addresses(addresses) if addresses is not None else contextlib.nullcontext():
                await self._pc.setLocalDescription(await self._pc.createAnswer())
        except BAD_SDP as exc:
            raise BadRequestError(f"the server's offer could not be used: {exc}") from exc
        except Exception as exc:
            raise TransportError(f"could not answer the offer: {exc}") from exc
        finally:
            if self._closed:
                await release_late_sockets(self._pc)
        if self._closed:
            raise TransportError("the peer was closed while its answer was made")
        self._answer_sdp = str(self._pc.localDescription.sdp)
        return self._answer_sdp

    def candidates(self) -> list[tuple[str, str | None, int | None]]:
        found: list[tuple[str, str | None, int | None]] = []
        mid: str | None = None
        index = -1
        for line in self._answer_sdp.splitlines():
            if line.startswith("m="):
                index += 1
                mid = None
            elif line.startswith("a=mid:"):
                mid = line[len("a=mid:") :]
            elif line.startswith("a=candidate:"):
                found.append((line[2:], mid, index))
        return found

    def send_message(self, text: str) -> bool:
        if self._closed or self._channel.readyState != "open":
            return False
        try:
            self._channel.send(text)
        except Exception as exc:  # aiortc raises InvalidStateError when the channel closes under us
            _log.debug("%s: could not send on the data channel: %s", self.stream_id, exc)
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            # Shielded: cancelling our caller must not cancel aiortc's own close, which it may be
            # running already (it closes itself when DTLS ends) and would then fail to finish.
            await asyncio.shield(self._pc.close())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._transport._peers.discard(self)


class AiortcClientTransport:
    """aiortc peers for the client; `host_addresses` as for the server transport."""

    def __init__(
        self,
        *,
        ice_servers: Sequence[IceServer] = (),
        host_addresses: Sequence[str] | None = ("127.0.0.1",),
    ) -> None:
        self.ice_servers = tuple(ice_servers)
        self.host_addresses = tuple(host_addresses) if host_addresses is not None else None
        self._peers: set[AiortcClientPeer] = set()

    def create_peer(
        self,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
    ) -> AiortcClientPeer:
        if sink is not None and not isinstance(sink, MediaSink):
            raise TypeError("the aiortc client transport delivers media to a MediaSink")
        peer = AiortcClientPeer(self, stream_id, report, on_message, sink, ice_servers)
        self._peers.add(peer)
        return peer

    async def aclose(self) -> None:
        await asyncio.gather(*(peer.close() for peer in tuple(self._peers)))
