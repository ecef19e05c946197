"""Record a session once, replay it with no server: same requests, same state sequence, same talk ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkstream.adapters.cassette import (
    CassetteMismatchError,
    Recorder,
    ReplayAdapter,
    ReplayTransport,
    load_cassette,
)
from talkstream.adapters.http.inprocess import InProcessAdapter
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.client import StreamClient
from talkstream.engine.clock import VirtualClock
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import CloseReason
from talkstream.transports.memory import MemoryNetwork

from .conftest import KEY

pytestmark = pytest.mark.timeout(60)


async def session(client: StreamClient, clock: VirtualClock, text: str = "Recorded once.") -> list[str]:
    stream = await clock.run(client.create("bundled:astronaut", output_resolution=160))
    await clock.run(stream.connected())
    talk = await clock.run(stream.talk(text=text))
    await clock.run(talk.done())
    await clock.run(stream.close())
    assert stream.session.close_reason is CloseReason.DELETED
    return [e.input.value for e in stream.session.history]


async def test_record_then_replay_without_a_server(settings: ServerSettings, tmp_path: Path) -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    app = build_app(settings, clock=clock, transport=network.server_transport())
    recorder = Recorder(InProcessAdapter(app, KEY), network.client_transport(), clock)
    async with StreamClient(
        recorder.http, recorder.transport, clock=clock, retry=RetryPolicy.none()
    ) as client:
        recorded = await session(client, clock)
    cassette = tmp_path / "session.json"
    recorder.save(cassette)
    assert KEY not in cassette.read_text()

    data = load_cassette(cassette)
    replay_clock = VirtualClock()
    adapter = ReplayAdapter(data)
    async with StreamClient(adapter, ReplayTransport(data, replay_clock), clock=replay_clock) as client:
        replayed = await session(client, replay_clock)
    assert replayed == recorded
    assert adapter.finished


async def test_a_request_off_the_recording_is_refused(settings: ServerSettings, tmp_path: Path) -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    app = build_app(settings, clock=clock, transport=network.server_transport())
    recorder = Recorder(InProcessAdapter(app, KEY), network.client_transport(), clock)
    async with StreamClient(
        recorder.http, recorder.transport, clock=clock, retry=RetryPolicy.none()
    ) as client:
        await session(client, clock)
    recorder.save(tmp_path / "s.json")
    data = load_cassette(tmp_path / "s.json")
    replay_clock = VirtualClock()
    async with StreamClient(
        ReplayAdapter(data), ReplayTransport(data, replay_clock), clock=replay_clock
    ) as client:
        with pytest.raises(CassetteMismatchError) as caught:
            await session(client, replay_clock, text="Something else entirely.")
    assert caught.value.details["recorded"]["body"]["script"]["input"] == "Recorded once."


async def interrupted(client: StreamClient, clock: VirtualClock) -> list[str]:
    stream = await clock.run(client.create("bundled:astronaut", output_resolution=160, fluent=True))
    await clock.run(stream.connected())
    talk = await clock.run(stream.talk(text="A recorded talk that is cut short in its middle."))
    await clock.run(talk.started)
    await clock.run(clock.sleep(0.5))
    await clock.run(stream.interrupt())
    await clock.run(talk.done())
    await clock.run(stream.close())
    return [e.input.value for e in stream.session.history]


async def test_an_interrupt_is_recorded_and_replayed(settings: ServerSettings, tmp_path: Path) -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    app = build_app(settings, clock=clock, transport=network.server_transport())
    recorder = Recorder(InProcessAdapter(app, KEY), network.client_transport(), clock)
    async with StreamClient(
        recorder.http, recorder.transport, clock=clock, retry=RetryPolicy.none()
    ) as client:
        recorded = await interrupted(client, clock)
    assert "interrupt_sent" in recorded
    recorder.save(tmp_path / "cut.json")
    data = load_cassette(tmp_path / "cut.json")
    assert len(data["peers"][0]["sent"]) == 1
    replay_clock = VirtualClock()
    async with StreamClient(
        ReplayAdapter(data), ReplayTransport(data, replay_clock), clock=replay_clock
    ) as client:
        assert await interrupted(client, replay_clock) == recorded
    # A replay that sends a message the recording did not is off the recording.
    del data["peers"][0]["sent"]
    replay_clock = VirtualClock()
    async with StreamClient(
        ReplayAdapter(data), ReplayTransport(data, replay_clock), clock=replay_clock
    ) as client:
        with pytest.raises(CassetteMismatchError, match="not recorded"):
            await interrupted(client, replay_clock)
