"""A server that sends no data-channel events: the client follows the talk by its video instead."""

from __future__ import annotations

import pytest

from talkstream.adapters.http.inprocess import InProcessAdapter
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.client import StreamClient
from talkstream.engine.clock import VirtualClock
from talkstream.engine.states import Input, State
from talkstream.transports.memory import MemoryNetwork, MemorySink, NetworkKnobs

from .conftest import KEY

pytestmark = pytest.mark.timeout(60)


async def test_talks_start_and_end_with_the_video_when_no_event_arrives(settings: ServerSettings) -> None:
    clock = VirtualClock()
    silent = NetworkKnobs(lose_messages=frozenset(range(1000)))  # every data-channel message is lost
    network = MemoryNetwork(clock, silent)
    app = build_app(settings, clock=clock, transport=network.server_transport())
    sink = MemorySink()
    async with StreamClient(InProcessAdapter(app, KEY), network.client_transport(), clock=clock) as client:
        stream = await clock.run(client.create("bundled:astronaut", sink=sink, output_resolution=160))
        await clock.run(stream.connected())
        for text in ("The first talk.", "And a second one."):
            talk = await clock.run(stream.talk(text=text))
            await clock.run(talk.done())
            assert stream.state is State.CONNECTED
        assert stream.messages == []
        inputs = [e.input for e in stream.session.history]
        assert inputs.count(Input.TALK_STARTED) == 2 and inputs.count(Input.LAST_TALK_FINISHED) == 2
        assert sink.frames > 30
