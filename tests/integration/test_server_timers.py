"""The server's own timers on the virtual clock: idle expiry and the connect timeout free everything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.clock import VirtualClock
from talkstream.engine.states import CloseReason
from talkstream.transports.aiortc_patches import offered_host_addresses

from .conftest import Api

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def timed(settings: ServerSettings) -> AsyncIterator[tuple[Api, Any, VirtualClock]]:
    clock = VirtualClock()
    app = build_app(settings, clock=clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/")), app[SERVICE], clock
    await server.close()


async def test_idle_stream_expires_at_its_session_timeout(timed: tuple[Api, Any, VirtualClock]) -> None:
    api, service, clock = timed
    status, created, _ = await api.call(
        "POST", "/talks/streams", {"source_url": "bundled:astronaut", "session_timeout": 60}
    )
    assert status == 201
    (stream,) = service.streams()
    session = stream.session
    await clock.advance(30)
    status, _, _ = await api.call(
        "POST", f"/talks/streams/{created['id']}/ice", {"session_id": created["session_id"]}
    )
    assert status == 200  # a message: the deadline moves to t=90
    await clock.advance(59.9)
    assert len(service) == 1
    await clock.advance(0.1)
    assert session.close_reason is CloseReason.EXPIRED and session.history[-1].at == 90
    await stream.wait_closed()
    assert len(service) == 0 and service.transport.live_peers == 0
    status, body, _ = await api.call(
        "POST", f"/talks/streams/{created['id']}/ice", {"session_id": created["session_id"]}
    )
    assert status == 404 and body["kind"] == "NotFound"


async def test_no_ice_connection_within_30_s_of_the_answer_closes_the_stream(
    timed: tuple[Api, Any, VirtualClock],
) -> None:
    api, service, clock = timed
    status, created, _ = await api.call("POST", "/talks/streams", {"source_url": "bundled:astronaut"})
    assert status == 201
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await client.setRemoteDescription(RTCSessionDescription(created["offer"]["sdp"], "offer"))
    with offered_host_addresses(["127.0.0.1"]):
        await client.setLocalDescription(await client.createAnswer())
    answer = client.localDescription.sdp
    await client.close()  # the client vanishes: ICE will never connect
    status, body, _ = await api.call(
        "POST",
        f"/talks/streams/{created['id']}/sdp",
        {"answer": {"type": "answer", "sdp": answer}, "session_id": created["session_id"]},
    )
    assert status == 200, body
    (stream,) = service.streams()
    session = stream.session
    await clock.advance(29.9)
    assert len(service) == 1
    await clock.advance(0.1)
    await stream.wait_closed()
    assert session.close_reason is CloseReason.CONNECT_TIMEOUT
    assert len(service) == 0 and service.transport.live_peers == 0
