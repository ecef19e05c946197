"""The in-memory WebRTC fake on its own: pairing, ICE after the delay, and each fault knob."""

from __future__ import annotations

import numpy as np
import pytest

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import BadRequestError
from talkstream.engine.ports import PeerOptions
from talkstream.engine.states import Input
from talkstream.transports.memory import MemoryNetwork, MemorySink, NetworkKnobs


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[Input, str]] = []
        self.messages: list[str] = []

    def report(self, inp: Input, detail: str) -> None:
        self.reports.append((inp, detail))


async def pair(knobs: NetworkKnobs | None = None):  # type: ignore[no-untyped-def]
    clock = VirtualClock()
    network = MemoryNetwork(clock, knobs)
    server_side, client_side = Recorder(), Recorder()
    sink = MemorySink()
    server = network.server_transport().create_peer(
        "strm_1", PeerOptions(video_codec="h264"), server_side.report, server_side.messages.append
    )
    client = network.client_transport().create_peer(
        "strm_1", client_side.report, client_side.messages.append, sink
    )
    answer = await client.answer(await server.make_offer())
    await server.apply_answer(answer)
    return clock, network, server, client, server_side, client_side, sink


async def test_ice_connects_on_both_sides_after_the_delay() -> None:
    clock, _, server, _, server_side, client_side, _ = await pair(NetworkKnobs(delay=0.5))
    assert "H264" in await server.make_offer()
    await clock.advance(0.49)
    assert server_side.reports == client_side.reports == []
    await clock.advance(0.01)
    assert server_side.reports == client_side.reports == [(Input.ICE_CONNECTED, "completed")]
    assert await server.ready(1.0)


async def test_an_answer_to_another_offer_is_refused() -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    one = network.server_transport().create_peer("a", PeerOptions(), lambda i, d: None)
    two = network.server_transport().create_peer("b", PeerOptions(), lambda i, d: None)
    client = network.client_transport().create_peer("a", lambda i, d: None, lambda m: None, None)
    answer = await client.answer(await one.make_offer())
    with pytest.raises(BadRequestError):
        await two.apply_answer(answer)
    with pytest.raises(BadRequestError):
        await one.apply_answer("v=0\r\n")
    await one.apply_answer(answer)
    with pytest.raises(BadRequestError, match="already"):
        await one.apply_answer(answer)
    with pytest.raises(BadRequestError):
        await one.add_candidate("garbage", "0", 0)


async def test_ice_failure_knob() -> None:
    clock, _, server, _, server_side, client_side, _ = await pair(NetworkKnobs(ice_fails=True))
    await clock.advance(1)
    assert server_side.reports == client_side.reports == [(Input.ICE_FAILED, "failed")]
    assert not await server.ready(1.0)
    assert server.send_message("stream/started") == 0


async def test_messages_arrive_in_order_except_the_lost_ones() -> None:
    clock, _, server, _, _, client_side, _ = await pair(NetworkKnobs(lose_messages=frozenset({1})))
    await clock.advance(1)
    for text in ("stream/started", "stream/done", "stream/started", "stream/done"):
        assert server.send_message(text) == 1
    await clock.advance(1)
    assert client_side.messages == ["stream/started", "stream/started", "stream/done"]


async def test_the_client_talks_back_once_connected_and_not_after_close() -> None:
    clock, _, server, client, server_side, _, _ = await pair(NetworkKnobs(delay=0.2))
    assert client.send_message("too early") is False  # no data channel before ICE and DTLS
    await clock.advance(0.2)
    assert client.send_message('{"type":"stream/interrupt"}') is True
    await clock.advance(0.19)
    assert server_side.messages == []
    await clock.advance(0.01)
    assert server_side.messages == ['{"type":"stream/interrupt"}']
    await server.close()
    client.send_message("after")  # on its way as the server goes: never heard
    await clock.advance(1)
    assert server_side.messages == ['{"type":"stream/interrupt"}']


async def test_a_bounded_sink_keeps_the_latest_and_counts_all() -> None:
    sink = MemorySink(keep=2)
    for i in range(5):
        sink.add_video(i * 0.04, np.full((2, 2), i, np.uint8))
        sink.add_audio(i * 0.02, np.zeros(960, np.int16))
    assert (sink.frames, sink.samples) == (5, 5 * 960)
    assert [at for at, _ in sink.video] == [0.12, 0.16] and len(sink.audio) == 2


async def test_media_reaches_the_sink_and_nothing_after_close() -> None:
    clock, network, server, client, server_side, client_side, sink = await pair()
    await clock.advance(1)
    await server.send_video(np.zeros((6, 4), np.uint8), 0.0)
    await server.send_audio(np.zeros(960, np.int16), 0.0)
    await clock.advance(1)
    assert (sink.frames, sink.samples) == (1, 960)
    await client.close()
    await clock.advance(1)
    assert server_side.reports[-1] == (Input.TRANSPORT_CLOSED, "peer closed")
    assert client_side.reports == [(Input.ICE_CONNECTED, "completed")]
    server.send_message("late")
    await server.send_video(np.zeros((6, 4), np.uint8), 1.0)
    await clock.advance(1)
    assert client_side.messages == [] and sink.frames == 1
    assert network.live_peers == 1


async def test_a_connected_peer_that_vanishes_is_noticed_after_the_silence_timeout() -> None:
    clock, network, server, client, server_side, client_side, _ = await pair(NetworkKnobs(silence_timeout=8))
    await clock.advance(1)
    network.vanish(client)  # killed: no goodbye
    await clock.advance(7.99)
    assert server_side.reports == [(Input.ICE_CONNECTED, "completed")]
    await clock.advance(0.01)
    assert server_side.reports[-1] == (Input.TRANSPORT_CLOSED, "peer silent for 8 s")
    assert server.send_message("stream/done") == 1 and client_side.messages == []  # nobody hears it


async def test_a_peer_that_vanishes_before_ice_completes_never_connects() -> None:
    clock, network, server, client, server_side, client_side, _ = await pair(NetworkKnobs(delay=0.5))
    network.vanish(client)
    await clock.advance(60)
    assert server_side.reports == [] and client_side.reports == []
    assert not await server.ready(1.0)
