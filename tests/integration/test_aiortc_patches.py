"""The aiortc patches (transports/aiortc_patches.py): each still finds what it patches and still fixes it.

The first tests read the very internals each patch relies on, so an aiortc or aioice upgrade that moves one
fails here by name; the later ones show the fixes still work on real peers.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging

import aioice.ice
import aiortc.rtcrtpsender
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from talkstream.transports import aiortc_patches
from talkstream.transports.aiortc_patches import offered_host_addresses

from ..conftest import ASYNCIO_REPORTS


def test_the_patched_internals_still_exist() -> None:
    aiortc_patches.install_aiortc_patches()
    connect = getattr(RTCPeerConnection, aiortc_patches._CONNECT)
    assert getattr(connect, aiortc_patches._PATCHED, False)
    assert hasattr(RTCPeerConnection(RTCConfiguration(iceServers=[])), aiortc_patches._IS_CLOSED)


def test_aioice_still_asks_get_host_addresses_by_the_same_name() -> None:
    """Patch 1 replaces `aioice.ice.get_host_addresses`; aioice must still call it, with these arguments."""
    parameters = list(inspect.signature(aioice.ice.get_host_addresses).parameters)
    assert parameters == ["use_ipv4", "use_ipv6"]
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


def test_the_senders_report_interval_still_comes_from_random_random() -> None:
    """Patch 2 stands in for `random` inside aiortc.rtcrtpsender: the interval must still be drawn there."""
    source = inspect.getsource(aiortc.rtcrtpsender)
    assert "asyncio.sleep(0.5 + random.random())" in source
    assert "random" in vars(aiortc.rtcrtpsender)


async def test_a_peer_connection_still_reaches_its_ice_connections() -> None:
    """Items 4 (late sockets, packets heard) walk transceivers to `iceGatherer._connection` and wrap the
    connection's `request_received` and `data_received`."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.createDataChannel("events")
        connections = aiortc_patches._ice_connections(pc)
        assert connections and all(isinstance(c, aioice.ice.Connection) for c in connections)
        for name in ("request_received", "data_received", "close"):
            assert callable(getattr(connections[0], name))
        heard: list[int] = []
        aiortc_patches.note_peer_packets(pc, lambda: heard.append(1))
        assert connections[0].data_received.__name__ == "wrapped"
    finally:
        await pc.close()


async def _close_as_ice_completes(steps: int) -> None:
    """Two peers on loopback; the offerer closes `steps` loop steps after its ICE completes (DTLS not up)."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offerer.addTransceiver("audio", direction="sendonly")
    offerer.addTransceiver("video", direction="sendonly")
    offerer.createDataChannel("events")
    closing: list[asyncio.Task[None]] = []

    async def close_later() -> None:
        for _ in range(steps):
            await asyncio.sleep(0)
        await offerer.close()

    @offerer.on("iceconnectionstatechange")
    def _state() -> None:
        if offerer.iceConnectionState == "completed" and not closing:
            closing.append(asyncio.ensure_future(close_later()))

    with offered_host_addresses(["127.0.0.1"]):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
    for _ in range(200):
        if closing:
            break
        await asyncio.sleep(0.05)
    assert closing, "ICE never completed"
    await closing[0]
    await answerer.close()
    await asyncio.sleep(0.1)  # let the connect tasks finish


@pytest.mark.asyncio_reports_expected  # checked here, so that the failure says what the patch is for
async def test_a_peer_closed_as_ice_completes_leaves_no_exception(caplog: pytest.LogCaptureFixture) -> None:
    aiortc_patches.install_aiortc_patches()
    start = len(ASYNCIO_REPORTS.reports)
    with caplog.at_level(logging.DEBUG, logger=aiortc_patches.__name__):
        for steps in range(13):  # the connect task meets the closed peer after about 4 to 8 steps here
            await _close_as_ice_completes(steps)
    gc.collect()
    assert ASYNCIO_REPORTS.reports[start:] == []
    # the race was really run: the connect task met the closed peer and ended quietly
    assert "connect of a closed peer connection ended" in caplog.text
