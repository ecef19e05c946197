"""Fixes to aiortc's own behaviour that talkstream needs, installed once per process.

Each patch names the aiortc internals it touches, checks they exist before touching them (an upgrade that
renames one fails loudly at install, and its test fails), and changes nothing else.

What it must never do: change aiortc's behaviour for a peer connection that is still open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection

__all__ = ["install_aiortc_patches"]

_log = logging.getLogger(__name__)

_CONNECT = "_RTCPeerConnection__connect"
_IS_CLOSED = "_RTCPeerConnection__isClosed"
_PATCHED = "_talkstream_patched"


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
    """Install every patch (idempotent). Raises AttributeError if aiortc no longer has what one patches."""
    if not hasattr(RTCPeerConnection, _CONNECT):
        raise AttributeError(f"aiortc's RTCPeerConnection has no {_CONNECT} any more: review aiortc_patches")
    _quiet_connect_after_close()
