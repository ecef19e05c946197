"""Fluent streams and interrupts, through the real app and client on memory WebRTC and the virtual clock.

The face is a stand-in that paints each frame with the openness it is asked for and notes the time and
motion it was drawn with, and the talks are a continuous buzz, so what the client receives says, frame by
frame and sample by sample, what the server sent and when: whether video ever paused, how the motion eased,
and how soon after an interrupt reached the server the talk's sound and mouth were gone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import numpy as np
import pytest
import pytest_asyncio
from served import encode_wav

from talkstream.adapters.http.inprocess import InProcessAdapter
from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.speech import PcmFeed, audio_speech
from talkstream.engine.client import ClientStream, StreamClient, TalkFailedError
from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import ServiceUnavailableError
from talkstream.engine.events import InputApplied, SessionEvent, StateChanged
from talkstream.engine.player import CLOSE_FRAMES, DECLICK_SAMPLES, IDLE_MOTION
from talkstream.engine.ports import Mouth, SpeechStream, VideoFrame
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.service import StreamService
from talkstream.engine.states import Input, State
from talkstream.transports.memory import MemoryNetwork, MemoryServerPeer, MemorySink, NetworkKnobs

from .conftest import KEY

pytestmark = pytest.mark.timeout(120)

FRAME = 0.04
BUZZ = "https://media.example/buzz.wav"  # the stand-in studio never fetches it


class PaintedFace:
    """Paints the openness it is asked for (0..200) into every pixel; notes (at, motion) of every frame."""

    width = height = 16

    def __init__(self) -> None:
        self.drawn: list[tuple[float | None, float]] = []

    def frame(
        self,
        mouth: Mouth | float,
        at: float | None = None,
        *,
        out: VideoFrame | None = None,
        motion: float = 1.0,
    ) -> VideoFrame:
        self.drawn.append((at, motion))
        openness = mouth.open if isinstance(mouth, Mouth) else mouth
        canvas = out if out is not None else np.zeros((24, 16), np.uint8)
        canvas[:] = round(openness * 200)
        return canvas


class BuzzStudio:
    """Every talk is `seconds` of loud buzz, the mouth open throughout."""

    def __init__(self, seconds: float = 3.0) -> None:
        rate = 16_000
        t = np.arange(round(seconds * rate)) / rate
        self.wav = encode_wav(
            np.sign(np.sin(2 * np.pi * 140 * t)) * 9000 + np.sin(2 * np.pi * 700 * t) * 5000, rate
        )
        self.faces: list[PaintedFace] = []

    async def face(self, request: Any) -> PaintedFace:
        self.faces.append(PaintedFace())
        return self.faces[-1]

    async def speech(self, script: Any, *, pad_audio: float) -> SpeechStream:
        speech = audio_speech(self.wav, pad_seconds=pad_audio)
        await speech.prime()
        return speech

    def pcm_feed(self, sample_rate: int) -> PcmFeed:
        return PcmFeed(sample_rate)


@attrs.define
class World:
    clock: VirtualClock
    client: StreamClient
    service: StreamService
    studio: BuzzStudio
    server_events: list[SessionEvent]

    async def run(self, awaitable: Any) -> Any:
        return await self.clock.run(awaitable)

    async def idle(self, seconds: float) -> None:
        await self.clock.run(self.clock.sleep(seconds))

    def server_peer(self) -> MemoryServerPeer:
        (stream,) = self.service.streams()
        assert isinstance(stream.peer, MemoryServerPeer)
        return stream.peer

    def server_inputs(self, inp: Input) -> list[float]:
        """When the server applied `inp` (clock times)."""
        return [
            e.at for e in self.server_events if isinstance(e, (InputApplied, StateChanged)) and e.input is inp
        ]


@pytest_asyncio.fixture
async def world(settings: ServerSettings) -> AsyncIterator[World]:
    clock = VirtualClock()
    network = MemoryNetwork(clock, NetworkKnobs(delay=0.01))
    studio = BuzzStudio()
    app = build_app(settings, clock=clock, transport=network.server_transport(), wrap_studio=lambda _: studio)
    http = InProcessAdapter(app, KEY)
    await http.start()
    events: list[SessionEvent] = []
    app[SERVICE].engine.subscribe(events.append)
    client = StreamClient(http, network.client_transport(), clock=clock, retry=RetryPolicy.none())
    yield World(clock, client, app[SERVICE], studio, events)
    await client.aclose()


async def connected(world: World, sink: MemorySink, **options: Any) -> ClientStream:
    stream = await world.client.create("bundled:astronaut", sink=sink, **options)
    await world.run(stream.connected())
    return stream


def subjects(stream: ClientStream) -> list[str]:
    return [text.split(":", 1)[0] for _, text in stream.messages]


def payloads(stream: ClientStream, subject: str) -> list[Any]:
    return [
        json.loads(text.split(":", 1)[1]) for _, text in stream.messages if text.split(":", 1)[0] == subject
    ]


# -- fluent: the video never stops -------------------------------------------------------------------------


async def test_a_fluent_stream_sends_video_and_silence_from_connect_to_close_with_the_motion_eased(
    world: World,
) -> None:
    sink = MemorySink()
    stream = await connected(world, sink, fluent=True)
    assert (stream.fluent, stream.interrupt_enabled) == (True, True)
    await world.idle(2.0)
    talk = await stream.talk(audio_url=BUZZ)
    await world.run(talk.done())
    await world.idle(2.0)
    await stream.close()

    times = np.array([at for at, _ in sink.video])
    assert len(times) > (2.0 + 3.0 + 2.0) / FRAME * 0.95
    assert np.allclose(np.diff(times), FRAME), "a frame every 40 ms, from connect to close"
    audio = np.array(sorted(at for at, _ in sink.audio))
    assert np.allclose(np.diff(audio), 0.02), "sound (or silence) every 20 ms"
    assert audio[0] == pytest.approx(times[0]) and audio[-1] == pytest.approx(times[-1] + 0.02)
    openness = np.array([frame[0, 0] / 200 for _, frame in sink.video])
    assert openness[: round(1.5 / FRAME)].max() == 0 and openness[-round(1.5 / FRAME) :].max() == 0
    assert openness.max() > 0.5, "the talk opened the mouth"
    # The face was asked for one timeline (head motion and blinks continue through the talk), the motion
    # easing from idle to speaking and back, never in a jump.
    (face,) = world.studio.faces
    at = np.array([a for a, _ in face.drawn], dtype=float)
    motion = np.array([m for _, m in face.drawn])
    assert np.allclose(np.diff(at), FRAME)
    assert motion[0] == pytest.approx(IDLE_MOTION) and motion[-1] == pytest.approx(IDLE_MOTION)
    assert motion.max() == pytest.approx(1.0)
    assert np.abs(np.diff(motion)).max() <= (1 - IDLE_MOTION) * FRAME / 0.4 + 1e-9
    assert subjects(stream) == ["stream/started", "stream-video/started", "stream/done", "stream-video/done"]
    assert payloads(stream, "stream/done") == [{"metadata": {"videoId": talk.video_id}}]


async def test_a_fluent_stream_warms_up_on_idle_video_before_stream_ready(world: World) -> None:
    sink = MemorySink()
    stream = await connected(world, sink, fluent=True, stream_warmup=True)
    talk = await stream.talk(audio_url=BUZZ)  # asked during the warm-up: it waits for it
    await world.run(talk.done())
    assert subjects(stream)[:2] == ["stream/ready", "stream/started"]
    openness = [frame[0, 0] for _, frame in sink.video]
    assert max(openness[: round(2.0 / FRAME)]) == 0, "2 s of idle video first"


# -- interrupt -------------------------------------------------------------------------------------------


def after_interrupt(world: World, sink: MemorySink) -> tuple[float, float, list[tuple[float, Any]]]:
    """The media time the server heard the interrupt at, that of the first frame it sent after, and the
    audio sent with that frame and later ones (a frame carries 40 ms of sound: the one sent before the
    interrupt still plays for a moment after it)."""
    (heard,) = world.server_inputs(Input.INTERRUPT_RECEIVED)
    media = heard - world.server_peer()._epoch
    following = min(at for at, _ in sink.video if at >= media - 1e-9)
    assert following <= media + FRAME + 1e-9
    return (
        media,
        following,
        sorted(((at, pcm) for at, pcm in sink.audio if at >= following - 1e-9), key=lambda c: c[0]),
    )


@pytest.mark.parametrize("fluent", [True, False])
async def test_an_interrupt_stops_the_talk_within_a_frame_and_drops_the_queue(
    world: World, fluent: bool
) -> None:
    sink = MemorySink()
    stream = await connected(world, sink, fluent=fluent)
    first = await stream.talk(audio_url=BUZZ)
    second = await stream.talk(audio_url=BUZZ)
    await world.run(first.started)
    await world.idle(1.0)
    stopped = await world.run(stream.interrupt())
    assert stopped is first
    assert first.interrupted and second.interrupted and first.error is None
    assert stream.state is State.CONNECTED and stream.session.talks_pending == 0
    (server,) = world.service.streams()
    assert server.session.state is State.CONNECTED and server.session.talks_pending == 0 and not server.talks
    await world.idle(1.0)

    heard, following, later = after_interrupt(world, sink)
    # The sound: loud up to the interrupt; the next frame (within a frame time) carries at most the 5 ms
    # fade, and nothing after it.
    before = [pcm for at, pcm in sink.audio if heard - 0.5 <= at < heard - FRAME]
    assert before and all(np.abs(pcm).max() > 1000 for pcm in before)
    loud = [(at, int(np.count_nonzero(pcm))) for at, pcm in later if np.count_nonzero(pcm)]
    assert sum(n for _, n in loud) <= DECLICK_SAMPLES, loud
    assert all(at == pytest.approx(following) for at, _ in loud), loud
    # The mouth: closed within CLOSE_FRAMES frames after that frame, closing all the way.
    frames = sorted(((at, frame[0, 0] / 200) for at, frame in sink.video if at >= heard - 1e-9))
    closing = [o for at, o in frames if at <= heard + FRAME * (1 + CLOSE_FRAMES)]
    assert all(b <= a for a, b in itertools.pairwise(closing)), closing
    assert all(o == 0 for at, o in frames if at > heard + FRAME * (1 + CLOSE_FRAMES)), frames
    if fluent:
        assert frames[-1][0] > heard + 0.9, "a fluent stream's video goes on"
        assert subjects(stream) == [
            "stream/started",
            "stream-video/started",
            "stream-video/rejected",
            "stream/done",
            "stream-video/done",
        ]
    else:
        assert frames[-1][0] <= heard + FRAME * (2 + CLOSE_FRAMES), "then the rest frame, and nothing"
        assert subjects(stream) == ["stream/started", "stream-video/rejected", "stream/done"]
    assert payloads(stream, "stream/done") == [{"metadata": {"videoId": first.video_id}, "interrupted": True}]
    assert payloads(stream, "stream-video/rejected")[0] == {
        "metadata": {"videoId": second.video_id},
        "reason": "interrupted",
    }
    # And the stream takes talks as before.
    third = await stream.talk(audio_url=BUZZ)
    await world.run(third.done())
    assert not third.interrupted and stream.state is State.CONNECTED


async def test_a_talk_that_reaches_the_server_before_the_interrupt_is_dropped_with_it(world: World) -> None:
    """Talks go by HTTP, interrupts by the data channel: a talk asked right after an interrupt that does not
    wait for the server can land first, and is then dropped with the queue; the client hears that."""
    stream = await connected(world, MemorySink(keep=4), fluent=True)
    first = await stream.talk(audio_url=BUZZ)
    await world.run(first.started)
    await stream.interrupt(within=None)
    hasty = await stream.talk(audio_url=BUZZ)  # in-process HTTP: here before the data channel's 10 ms
    with pytest.raises(TalkFailedError, match="interrupted"):
        await world.run(hasty.done())
    assert stream.state is State.CONNECTED and stream.session.talks_pending == 0
    (server,) = world.service.streams()
    assert server.session.state is State.CONNECTED
    calm = await stream.talk(audio_url=BUZZ)
    await world.run(calm.done())


async def test_an_interrupt_when_nothing_plays_sends_nothing_and_a_late_one_changes_nothing(
    world: World,
) -> None:
    stream = await connected(world, MemorySink(keep=4), fluent=True)
    assert await stream.interrupt() is None
    talk = await stream.talk(audio_url=BUZZ)
    await world.run(talk.done())
    # Too late: the talk is over. Connected, the server takes it as a message (the idle deadline moves).
    (server,) = world.service.streams()
    await world.idle(1.0)
    deadline = server.session.idle_deadline
    stream.peer.send_message(json.dumps({"type": "stream/interrupt", "videoId": talk.video_id}))
    await world.idle(0.1)
    (heard,) = world.server_inputs(Input.INTERRUPT_RECEIVED)
    assert server.session.state is State.CONNECTED
    assert server.session.idle_deadline == heard + server.session.idle_timeout > deadline
    # Meant for a talk that is over while another plays: the one playing goes on.
    playing = await stream.talk(audio_url=BUZZ)
    await world.run(playing.started)
    stream.peer.send_message(json.dumps({"type": "stream/interrupt", "videoId": talk.video_id}))
    await world.run(playing.done())
    assert not playing.interrupted
    assert world.server_inputs(Input.INTERRUPT_RECEIVED)[-1] < world.server_inputs(Input.TALK_STARTED)[-1]


@pytest.mark.parametrize(
    "message",
    [
        "hello",
        "",
        "[1, 2]",
        '{"type": "stream/resume"}',
        '{"type": "stream/interrupt"}',
        '{"type": "stream/interrupt", "videoId": 42}',
        '{"type": "stream/interrupt", "videoId": "tlk_nobody"}',
        json.dumps({"type": "stream/interrupt", "videoId": "x" * 5000}),
        "\x00\udcff",
    ],
)
async def test_client_messages_that_are_not_an_interrupt_change_nothing(world: World, message: str) -> None:
    stream = await connected(world, MemorySink(keep=4), fluent=True)
    talk = await stream.talk(audio_url=BUZZ)
    await world.run(talk.started)
    stream.peer.send_message(message)
    await world.run(talk.done())
    assert not talk.interrupted and talk.error is None
    assert world.server_inputs(Input.INTERRUPT_RECEIVED) == []
    (server,) = world.service.streams()
    assert server.session.state is State.CONNECTED


async def test_the_cut_talks_late_done_does_not_end_the_next_one(world: World) -> None:
    """Events name their talk: the interrupted talk's stream/done, arriving after the next talk was asked
    for (an interrupt not waited for), must not end that next talk."""
    stream = await connected(world, MemorySink(keep=4), fluent=True)
    first = await stream.talk(audio_url=BUZZ)
    await world.run(first.started)
    await world.idle(0.5)
    await stream.interrupt(within=None)
    await world.idle(0.02)  # the interrupt has reached the server; its stream/done is not back yet
    second = await stream.talk(audio_url=BUZZ)
    assert not any(t.startswith("stream/done") for _, t in stream.messages)
    for _ in range(5):
        await world.idle(0.02)
    assert any(t.startswith("stream/done") for _, t in stream.messages), "the cut talk's end came"
    assert not second.finished.done(), "and did not end the talk asked after it"
    await world.run(second.done())
    assert not second.interrupted and second.error is None


# -- draining (what SIGTERM does first), on the virtual clock ------------------------------------------------


async def test_a_drain_refuses_new_work_and_waits_for_the_talk_playing(world: World) -> None:
    sink = MemorySink()
    stream = await connected(world, sink)
    talk = await stream.talk(text="buzz")  # 3 s of it
    await world.run(talk.started)
    started = world.clock.now()
    draining = asyncio.ensure_future(world.service.drain(within=30))
    await world.idle(0.5)
    assert world.service.draining and not draining.done()
    with pytest.raises(ServiceUnavailableError, match="shutting down") as refused:
        await world.client.create("bundled:astronaut")
    assert refused.value.retry_after == 1
    with pytest.raises(ServiceUnavailableError):
        await stream.talk(text="buzz")
    assert await world.run(draining) == 0
    assert 2.9 <= world.clock.now() - started < 3.5  # when the 3 s talk ended, not at the bound
    await world.run(talk.done())
    assert not talk.interrupted


async def test_a_drain_gives_up_at_its_bound(world: World) -> None:
    stream = await connected(world, MemorySink())
    talk = await stream.talk(text="buzz")
    await world.run(talk.started)
    started = world.clock.now()
    assert await world.run(world.service.drain(within=1.0)) == 1  # one stream still talking
    assert 1.0 <= world.clock.now() - started < 1.1


async def test_the_observer_hears_connects_first_frames_and_outcomes(world: World) -> None:
    heard: list[tuple[str, Any]] = []

    class Ears:
        def connected(self, seconds: float) -> None:
            heard.append(("connected", seconds))

        def first_frame(self, seconds: float) -> None:
            heard.append(("first_frame", seconds))

        def frame_sent(self) -> None:
            heard.append(("frame", None))

        def talk_ended(self, outcome: str) -> None:
            heard.append(("ended", outcome))

        def error(self, kind: str) -> None:
            heard.append(("error", kind))

    world.service.observer = Ears()
    stream = await connected(world, MemorySink())
    for _ in range(2):
        await world.run((await stream.talk(text="buzz")).done())
    kinds = [kind for kind, _ in heard]
    assert kinds.count("connected") == 1 and kinds.count("first_frame") == 2
    assert [value for kind, value in heard if kind == "ended"] == ["done", "done"]
    frames = kinds.count("frame")
    assert 2 * 75 <= frames <= 2 * 78  # 3 s at 25 fps each, and the rest frames
    # the first frame of each talk, on the virtual clock: the request's way over the in-process HTTP and
    # the speech's preparation, then the first frame time; well under a frame's 40 ms here
    assert all(0 <= value < 0.04 for kind, value in heard if kind == "first_frame"), heard[:3]
