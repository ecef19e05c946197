"""Everything talkstream changes or reaches inside aiortc and aioice, in one place.

Each item names the internals it touches and checks they exist before touching them, so an upgrade that
renames one fails at install or in `tests/integration/test_aiortc_patches.py`, never silently. The versions
CI has tested are pyproject's bounds for aiortc and aioice.

What it must never do: change aiortc's behaviour for peers that did not ask for it (the hooks answer from a
context variable set only around talkstream's own peers), or at import (only `install_aiortc_patches` and
the context managers install anything).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import aioice.ice
import aiortc.rtcrtpsender
from aiortc import RTCPeerConnection

__all__ = [
    "IDLE_REPORT_SECONDS",
    "encode_timing",
    "install_aiortc_patches",
    "note_peer_packets",
    "offered_host_addresses",
    "paced_reports",
    "release_late_sockets",
]

_log = logging.getLogger(__name__)

_CONNECT = "_RTCPeerConnection__connect"
_IS_CLOSED = "_RTCPeerConnection__isClosed"
_PATCHED = "_talkstream_patched"


# -- 1. the host addresses aioice offers (aioice.ice.get_host_addresses) ---------------------------------
# aioice never offers 127.0.0.1; serving locally needs it, and a server on a known address wants only that.

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "talkstream_host_addresses", default=None
)
_original_get_host_addresses: Any = None


def _install_host_address_hook() -> None:
    global _original_get_host_addresses
    if _original_get_host_addresses is not None:
        return
    original = aioice.ice.get_host_addresses
    _original_get_host_addresses = original

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _HOST_ADDRESSES.get()
        if chosen is None:
            return list(original(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def offered_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block (and tasks started in it), ICE gathering offers exactly `addresses`."""
    _install_host_address_hook()
    token = _HOST_ADDRESSES.set(tuple(addresses))
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


# -- 2. the senders' report interval (the `random` module inside aiortc.rtcrtpsender) ---------------------
#
# aiortc sends a sender report (RTCP SR) from every sender every 0.5-1.5 s, whether or not it sends media. An
# idle stream sends none, yet its two report timers wake the event loop twice a second: with 200 idle
# streams that was most of the idle server's CPU (bench/idle.py, py-spy). RFC 3550 (6.2) recommends at
# least 5 s between reports; while media flows, receivers want them often to line audio up with video.
# aiortc's only use of `random` in its sender module is that interval (`0.5 + random.random()` seconds), so
# a stand-in for the module there asks the context the report task runs in: a sender started under
# `paced_reports` waits `0.5 + pace()` instead. Everything else keeps aiortc's own pacing.

IDLE_REPORT_SECONDS = 5.0
_REPORT_PACE: contextvars.ContextVar[Callable[[], float] | None] = contextvars.ContextVar(
    "talkstream_report_pace", default=None
)


class _PacedRandom:
    """Stands in for the `random` module inside `aiortc.rtcrtpsender` (see above)."""

    def random(self) -> float:
        pace = _REPORT_PACE.get()
        return random.random() if pace is None else pace()

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)


def _install_report_pacing() -> None:
    namespace = vars(aiortc.rtcrtpsender)
    if not isinstance(namespace["random"], _PacedRandom):
        namespace["random"] = _PacedRandom()


@contextlib.contextmanager
def paced_reports(pace: Callable[[], float]) -> Iterator[None]:
    """Senders started within this block (and tasks started in it) wait `0.5 + pace()` s between reports."""
    _install_report_pacing()
    token = _REPORT_PACE.set(pace)
    try:
        yield
    finally:
        _REPORT_PACE.reset(token)


# -- 3. a closed peer's connect task (RTCPeerConnection.__connect) ----------------------------------------


def _quiet_connect_after_close() -> None:
    """The connect task of a closed peer ends quietly.

    ``setRemoteDescription`` starts ``__connect`` as a task nobody awaits: it starts ICE, then DTLS, then the
    media and SCTP of each transport in turn. A peer closed in between (a DELETE right after ICE connects,
    before DTLS is up) makes its next step raise ``InvalidStateError('RTCIceTransport is closed')`` (or a
    DTLS ``ConnectionError``), which asyncio then reports as a task exception never retrieved. Once the
    peer is closed nothing that task was doing matters; while it is open, its errors still surface.
    """
    original: Callable[[RTCPeerConnection], Coroutine[Any, Any, None]] = getattr(RTCPeerConnection, _CONNECT)
    if getattr(original, _PATCHED, False):
        return

    async def connect(self: RTCPeerConnection) -> None:
        try:
            await original(self)
        except Exception as exc:
            if getattr(self, _IS_CLOSED) is None:
                raise
            _log.debug("connect of a closed peer connection ended: %r", exc)

    setattr(connect, _PATCHED, True)
    setattr(RTCPeerConnection, _CONNECT, connect)


def install_aiortc_patches() -> None:
    """Install the process-wide patch (3) (idempotent; 1 and 2 install when first used). Raises
    AttributeError if aiortc no longer has what it patches."""
    if not hasattr(RTCPeerConnection, _CONNECT):
        raise AttributeError(f"aiortc's RTCPeerConnection has no {_CONNECT} any more: review aiortc_patches")
    _quiet_connect_after_close()


# -- 4. reaching a peer connection's ICE connections (RTCIceGatherer._connection) --------------------------


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections under `pc`'s transports (one when bundled), each once."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    connections = {id(c): c for c in (t.transport.iceGatherer._connection for t in transports)}
    return list(connections.values())


async def release_late_sockets(pc: RTCPeerConnection) -> None:
    """Close the ICE sockets a gathering opened after its peer connection was closed.

    Gathering (inside ``setLocalDescription``) opens one UDP socket per address and component, awaiting
    each. A ``close()`` that lands in between (a shutdown, or a client giving up, while an offer or answer
    is being made) closes the sockets made so far; the rest stayed open until the garbage collector found
    them: 3 per peer here, each a ResourceWarning. aioice's ``Connection.close`` may run again: it closes
    whatever sockets the connection holds now. Call it once the gathering has returned.
    """
    for connection in _ice_connections(pc):
        await connection.close()


def note_peer_packets(pc: RTCPeerConnection, heard: Callable[[], None]) -> None:
    """Call `heard()` for every datagram the remote peer sends: its STUN checks and its DTLS, SRTP and SCTP
    packets. aioice hands each to its connection's `request_received` or `data_received`; those two are
    wrapped on `pc`'s own connections only. Call it once the answer is applied."""
    for connection in _ice_connections(pc):
        for name in ("request_received", "data_received"):
            original = getattr(connection, name)

            def wrapped(*args: Any, _original: Any = original) -> Any:
                heard()
                return _original(*args)

            setattr(connection, name, wrapped)


# -- 5. how long each frame's encode takes (aiortc.rtcrtpsender.get_encoder) ------------------------------
# aiortc encodes every frame in the loop's executor, out of reach: for metrics, a sender started inside
# `encode_timing` gets its encoder wrapped so that each `encode` call is timed (in the executor's thread).

_ENCODE_OBSERVER: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "talkstream_encode_observer", default=None
)


class _TimedEncoder:
    def __init__(self, encoder: Any, observe: Callable[[float], None]) -> None:
        self._encoder = encoder
        self._observe = observe

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._encoder.encode(*args, **kwargs)
        finally:
            self._observe(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._encoder, name, value)  # target_bitrate, set by the sender's congestion control


def _install_encode_timing() -> None:
    namespace = vars(aiortc.rtcrtpsender)
    original = namespace["get_encoder"]
    if getattr(original, _PATCHED, False):
        return

    def get_encoder(codec: Any) -> Any:
        encoder = original(codec)
        observe = _ENCODE_OBSERVER.get()
        video = str(getattr(codec, "mimeType", "")).lower().startswith("video/")
        return _TimedEncoder(encoder, observe) if observe is not None and video else encoder

    setattr(get_encoder, _PATCHED, True)
    namespace["get_encoder"] = get_encoder


@contextlib.contextmanager
def encode_timing(observe: Callable[[float], None] | None) -> Iterator[None]:
    """Video senders started within this block (and tasks started in it) report each frame's encode time,
    in seconds, to `observe`, from the thread that encoded it. None: nothing is timed."""
    if observe is None:
        yield
        return
    _install_encode_timing()
    token = _ENCODE_OBSERVER.set(observe)
    try:
        yield
    finally:
        _ENCODE_OBSERVER.reset(token)
