"""What the aiortc server and client transports share: aiortc's ICE states as engine inputs, the ICE
server type converted, and the exceptions aiortc raises for SDP it cannot use."""

from __future__ import annotations

from collections.abc import Sequence

from aiortc import RTCIceServer
from aiortc.exceptions import InvalidAccessError, OperationError

from talkstream.engine.messages import IceServer
from talkstream.engine.states import Input

__all__ = ["BAD_SDP", "ice_state_input", "rtc_ice_servers"]

#: What aiortc raises for an SDP it cannot parse or apply (it parses first and checks afterwards).
BAD_SDP = (
    StopIteration,  # an a=fmtp with no a=rtpmap: aiortc's codec lookup runs out
    ValueError,
    AssertionError,
    AttributeError,
    KeyError,
    IndexError,
    TypeError,
    OperationError,
    InvalidAccessError,
)


def rtc_ice_servers(servers: Sequence[IceServer]) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=list(s.url_list), username=s.username, credential=s.credential) for s in servers
    ]


def ice_state_input(state: str, *, connected_reported: bool, closing: bool) -> Input | None:
    """The engine input an aiortc ICE connection state means, if any (both roles share this).

    aiortc goes from checking to completed (browsers pass through connected): either is "connected",
    reported once. A close we started ourselves is not news.
    """
    if state in ("connected", "completed"):
        return None if connected_reported else Input.ICE_CONNECTED
    if state == "failed":
        return Input.ICE_FAILED
    if state == "closed" and not closing:
        return Input.TRANSPORT_CLOSED
    return None
