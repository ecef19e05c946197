"""The mouth moves with the sound, frame for frame, as the server sends them.

The real stream service plays a real audio talk (a WAV decoded and tracked by `avatar.speech`) to a memory
client on the virtual clock. The face is a stand-in that paints each frame with the openness it is asked
for, so what the client receives says which openness each frame carried, at which media time, beside the
audio chunks and theirs. Each opening and each closing of the mouth must come within one frame (40 ms) of
the sound's own edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from served import encode_wav

from talkstream.avatar.speech import PcmFeed, audio_speech
from talkstream.engine.clock import VirtualClock
from talkstream.engine.messages import CreateStreamRequest, SdpRequest, TalkRequest
from talkstream.engine.ports import Face, Mouth, SpeechStream, VideoFrame
from talkstream.engine.service import StreamService
from talkstream.engine.session import SessionEngine
from talkstream.transports.memory import MemoryNetwork, MemorySink

RATE = 16_000
FRAME = 0.04
# (start, end) of each burst of sound in the talk, in seconds; the edges fall anywhere within frames.
BURSTS = ((0.513, 1.291), (2.107, 2.655), (3.38, 4.02))
TALK_SECONDS = 4.6


def buzz_wav() -> bytes:
    pcm = np.zeros(round(TALK_SECONDS * RATE))
    for start, end in BURSTS:
        t = np.arange(round((end - start) * RATE)) / RATE
        at = round(start * RATE)
        voiced = np.sign(np.sin(2 * np.pi * 140 * t)) * 8000 + np.sin(2 * np.pi * 700 * t) * 6000
        pcm[at : at + len(t)] = voiced
    return encode_wav(pcm, RATE)


class PaintedFace:
    """A face whose whole picture is the openness it is asked for (0..200 in every pixel)."""

    width = height = 16

    def frame(
        self,
        mouth: Mouth | float,
        at: float | None = None,
        *,
        out: VideoFrame | None = None,
        motion: float = 1.0,
    ) -> VideoFrame:
        openness = mouth.open if isinstance(mouth, Mouth) else mouth
        canvas = out if out is not None else np.zeros((24, 16), np.uint8)
        canvas[:] = round(openness * 200)
        return canvas


class Studio:
    def __init__(self) -> None:
        self.wav = buzz_wav()

    async def face(self, request: CreateStreamRequest) -> Face:
        return PaintedFace()

    async def speech(self, script: Any, *, pad_audio: float) -> SpeechStream:
        speech = audio_speech(self.wav, pad_seconds=pad_audio)
        await speech.prime()
        return speech

    def pcm_feed(self, sample_rate: int) -> PcmFeed:
        return PcmFeed(sample_rate)


def sound_edges(audio: list[tuple[float, npt.NDArray[np.int16]]]) -> list[tuple[float, float]]:
    """(start, end) media times of each stretch of sound, to the sample."""
    audio = sorted(audio, key=lambda a: a[0])
    start = audio[0][0]
    pcm = np.concatenate([chunk for _, chunk in audio])
    loud = np.abs(pcm.astype(np.int32)) > 500
    # Close the gaps inside one burst (the buzz crosses zero) by 5 ms either way.
    wide = np.convolve(loud, np.ones(241), mode="same") > 0
    changes = np.flatnonzero(np.diff(wide.astype(np.int8)))
    edges = [start + (i + 1) / 48_000 for i in changes]
    # The widening moved each edge by 120 samples outwards.
    return [(a + 120 / 48_000, b - 120 / 48_000) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def mouth_edges(video: list[tuple[float, npt.NDArray[np.uint8]]]) -> list[tuple[float, float]]:
    """(opening, closing) media times: the first frame the mouth is open past a third, and the first
    frame after that from which it falls."""
    video = sorted(video, key=lambda v: v[0])
    at = np.array([t for t, _ in video])
    openness = np.array([float(frame[0, 0]) / 200 for _, frame in video])
    edges = []
    k = 0
    while k < len(openness):
        if openness[k] > 0.33:
            opened = k
            while k + 1 < len(openness) and openness[k + 1] >= openness[k] - 0.05:
                k += 1
            edges.append((at[opened], at[k + 1] if k + 1 < len(at) else at[k]))
            while k < len(openness) and openness[k] > 0.33:
                k += 1
        k += 1
    return edges


async def test_the_mouth_opens_and_closes_within_a_frame_of_the_sound() -> None:
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    service = StreamService(
        engine=SessionEngine(clock=clock), transport=network.server_transport(), studio=Studio()
    )
    sink = MemorySink()

    async def talk() -> None:
        created = await service.create("key", CreateStreamRequest.from_json({"source_url": "bundled:x"}))
        client = network.client_transport().create_peer(created.id, lambda i, d: None, lambda m: None, sink)
        answer = await client.answer(created.offer.sdp)
        body = {"answer": {"type": "answer", "sdp": answer}, "session_id": created.session_id}
        await service.answer("key", created.id, SdpRequest.from_json(body))
        await clock.sleep(1.0)
        script = {"type": "audio", "audio_url": "https://example.invalid/buzz.wav"}
        said = await service.talk(
            "key", created.id, TalkRequest.from_json({"script": script, "session_id": created.session_id})
        )
        await clock.sleep((said.duration or TALK_SECONDS) + 1.0)
        await client.close()

    try:
        await clock.run(talk())
    finally:
        await service.aclose()
    sounds = sound_edges(list(sink.audio))
    mouths = mouth_edges(list(sink.video))
    assert len(sounds) == len(BURSTS), sounds
    assert len(mouths) == len(BURSTS), (mouths, sounds)
    for (sound_on, sound_off), (mouth_on, mouth_off) in zip(sounds, mouths, strict=True):
        assert abs(mouth_on - sound_on) <= FRAME, ("opens", mouth_on, sound_on)
        assert abs(mouth_off - sound_off) <= FRAME, ("closes", mouth_off, sound_off)
