"""One contract for every transport: the same protocol, the same state sequences on both sides.

Worlds: memory WebRTC with in-process HTTP on the virtual clock (plain, and through the recording
adapter and transport), aiortc with in-process HTTP, and aiortc over TCP on 127.0.0.1, all with the real
server app. Every world must walk the server's and the client's sessions through exactly the same inputs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import attrs
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.cassette import Recorder
from talkstream.adapters.http.inprocess import InProcessAdapter
from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.client import StreamClient
from talkstream.engine.clock import VirtualClock
from talkstream.engine.events import SessionEvent
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import CloseReason, Input, State
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.memory import MemoryClientPeer, MemoryNetwork, MemorySink, NetworkKnobs
from talkstream.transports.sink import MediaSink

from .conftest import KEY

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")


@attrs.define
class World:
    client: StreamClient
    server_events: list[SessionEvent]
    virtual: VirtualClock | None
    sink: Any
    network: MemoryNetwork | None = None

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await, letting virtual time jump while the protocol waits (real time just passes)."""
        if self.virtual is not None:
            return await self.virtual.run(awaitable)
        return await awaitable

    def server_inputs(self) -> list[Input]:
        return [e.input for e in self.server_events if hasattr(e, "input")]


@pytest_asyncio.fixture(params=["memory-inprocess", "memory-recorded", "aiortc-inprocess", "aiortc-aiohttp"])
async def world(request: Any, settings: ServerSettings) -> AsyncIterator[World]:
    events: list[SessionEvent] = []
    if request.param in ("memory-inprocess", "memory-recorded"):
        clock = VirtualClock()
        network = MemoryNetwork(clock, NetworkKnobs(delay=0.02))
        app = build_app(settings, clock=clock, transport=network.server_transport())
        http = InProcessAdapter(app, KEY)
        await http.start()  # the app's service exists once the app has started
        port: Any = http
        transport: Any = network.client_transport()
        if request.param == "memory-recorded":  # through the recording adapter and transport
            recorder = Recorder(http, transport, clock)
            port, transport = recorder.http, recorder.transport
        client = StreamClient(port, transport, clock=clock, retry=RetryPolicy.none())
        app[SERVICE].engine.subscribe(events.append)
        yield World(client, events, clock, MemorySink(), network)
        await client.aclose()
    elif request.param == "aiortc-inprocess":
        app = build_app(settings)
        http = InProcessAdapter(app, KEY)
        await http.start()
        app[SERVICE].engine.subscribe(events.append)
        client = StreamClient(http, AiortcClientTransport(), retry=RetryPolicy.none())
        yield World(client, events, None, MediaSink())
        await client.aclose()
    else:
        app = build_app(settings)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        app[SERVICE].engine.subscribe(events.append)
        base = str(server.make_url("")).rstrip("/")
        client = StreamClient(AiohttpAdapter(base, KEY), AiortcClientTransport(), retry=RetryPolicy.none())
        yield World(client, events, None, MediaSink())
        await client.aclose()
        await server.close()


async def test_same_sequences_on_every_transport(world: World) -> None:
    stream = await world.client.create("bundled:astronaut", sink=world.sink, output_resolution=160)
    await world.run(stream.connected())
    # One talk after the other: in real time a second talk asked at once may be requested before or
    # after the first one starts, and the contract is about sequences both worlds must share.
    first = await stream.talk(text="One two.")
    await world.run(first.done())
    second = await stream.talk(text="Three four.")
    await world.run(second.done())
    assert await stream.close() is CloseReason.DELETED
    client_inputs = [e.input for e in stream.session.history]
    candidates = len(stream.peer.candidates())
    # The candidates trickle while the connectivity checks run: over real WebRTC ICE may connect before
    # the last of them (or the end marker) is posted. Where the first one goes is the client's choice.
    assert client_inputs.index(Input.CANDIDATE_SENT) == client_inputs.index(Input.ANSWER_SENT) + 1
    assert client_inputs.count(Input.CANDIDATE_SENT) == candidates + 1
    assert [i for i in client_inputs if i is not Input.CANDIDATE_SENT] == [
        Input.OFFER_RECEIVED,
        Input.ANSWER_SENT,
        Input.ICE_CONNECTED,
        *[Input.TALK_REQUESTED, Input.TALK_STARTED, Input.LAST_TALK_FINISHED] * 2,
        Input.DELETE_REQUESTED,
    ]
    server = world.server_inputs()
    assert [i for i in server if i is not Input.CANDIDATE_RECEIVED] == [
        Input.OFFER_SENT,
        Input.ANSWER_RECEIVED,
        Input.ICE_CONNECTED,
        *[Input.TALK_REQUESTED, Input.TALK_STARTED, Input.LAST_TALK_FINISHED] * 2,
        Input.DELETE_REQUESTED,
    ]
    assert server.count(Input.CANDIDATE_RECEIVED) == candidates + 1
    assert world.sink.frames > 10


async def test_a_fluent_stream_interrupted_mid_talk_walks_the_same_sequences_on_every_transport(
    world: World,
) -> None:
    stream = await world.client.create(
        "bundled:astronaut", sink=world.sink, output_resolution=160, fluent=True
    )
    await world.run(stream.connected())
    first = await stream.talk(text="A long sentence that will not get to its end, because we stop it.")
    await world.run(first.started)  # (over real WebRTC a second talk asked at once may come before or after)
    second = await stream.talk(text="And this one never starts.")
    assert await world.run(stream.interrupt(within=15)) is first  # the server confirmed: first is over
    assert first.interrupted and second.interrupted
    last = await stream.talk(text="Then one more.")
    await world.run(last.done())
    frames = world.sink.frames
    await world.run(world.client.clock.sleep(0.5))
    assert world.sink.frames > frames, "idle video flows after the talks"
    assert await stream.close() is CloseReason.DELETED
    talking = [Input.TALK_REQUESTED, Input.TALK_STARTED, Input.TALK_REQUESTED]
    ending = [Input.TALK_REQUESTED, Input.TALK_STARTED, Input.LAST_TALK_FINISHED, Input.DELETE_REQUESTED]
    skip = (Input.CANDIDATE_SENT, Input.CANDIDATE_RECEIVED, Input.OFFER_SENT, Input.OFFER_RECEIVED)
    client_inputs = [e.input for e in stream.session.history if e.input not in skip]
    assert client_inputs[-8:] == [*talking, Input.INTERRUPT_SENT, *ending]
    server = [i for i in world.server_inputs() if i not in skip]
    assert server[-8:] == [*talking, Input.INTERRUPT_RECEIVED, *ending]
    subjects = [text.split(":", 1)[0] for _, text in stream.messages]
    assert subjects == [
        *[
            "stream/started",
            "stream-video/started",
            "stream-video/rejected",
            "stream/done",
            "stream-video/done",
        ],
        *["stream/started", "stream-video/started", "stream/done", "stream-video/done"],
    ]


async def test_a_five_minute_expiry_replays_instantly_on_the_virtual_clock(world: World) -> None:
    if world.virtual is None:
        pytest.skip("real time: the expiry itself is covered on the virtual clock")
    stream = await world.client.create("bundled:astronaut", output_resolution=160)
    await world.run(stream.connected())
    await world.virtual.advance(299.9)
    before = stream.session.close_reason
    await world.virtual.advance(0.1)
    assert (before, stream.session.close_reason) == (None, CloseReason.EXPIRED)
    assert world.server_inputs()[-1] is Input.IDLE_EXPIRED
    assert world.network is not None
    await world.run(stream.close())
    assert world.network.live_peers == 0


async def test_ice_failure_closes_both_sides(settings: ServerSettings) -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock, NetworkKnobs(ice_fails=True))
    app = build_app(settings, clock=clock, transport=network.server_transport())
    async with StreamClient(InProcessAdapter(app, KEY), network.client_transport(), clock=clock) as client:
        stream = await client.create("bundled:astronaut", output_resolution=160)
        with pytest.raises(Exception, match="closed before connecting"):
            await clock.run(stream.connected())
        assert stream.session.close_reason is CloseReason.ICE_FAILED
        assert len(app[SERVICE]) == 0


async def test_a_client_vanishing_mid_talk_is_reaped_when_it_falls_silent(settings: ServerSettings) -> None:
    # Over aiortc, test_soak.py kills real client processes; here the same on the virtual clock, exactly.
    clock = VirtualClock()
    network = MemoryNetwork(clock, NetworkKnobs(silence_timeout=15))
    app = build_app(settings, clock=clock, transport=network.server_transport())
    async with StreamClient(InProcessAdapter(app, KEY), network.client_transport(), clock=clock) as client:
        stream = await client.create("bundled:astronaut", output_resolution=160)
        await clock.run(stream.connected())
        await stream.talk(text="A sentence its listener will not hear the end of.")
        await clock.advance(0.5)
        service = app[SERVICE]
        (served,) = service.streams()
        assert served.session.state is State.TALKING
        assert isinstance(stream.peer, MemoryClientPeer)
        network.vanish(stream.peer)  # no DELETE, no goodbye
        vanished = clock.now()
        await clock.advance(14.9)
        before = served.session.close_reason
        assert len(service) == 1
        await clock.advance(0.1)
        await clock.run(served.wait_closed())
        assert (before, served.session.close_reason) == (None, CloseReason.TRANSPORT_CLOSED)
        assert served.session.history[-1].at == pytest.approx(vanished + 15)
        assert len(service) == 0 and len(service.engine) == 0 and network.live_peers == 0
