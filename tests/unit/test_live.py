"""Streamed input on its own: `PhraseSplitter` (text chunks into phrases), `LiveSpeech` (a talk's speech fed
while it plays) on the virtual clock, and `avatar.speech.PcmFeed` (raw PCM chunks into speech)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from talkstream.avatar.speech import PcmFeed
from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import BadRequestError
from talkstream.engine.live import LiveSpeech, PhraseSplitter
from talkstream.engine.ports import SAMPLES_PER_VIDEO_FRAME, Speech


def test_phrases_end_at_sentences_and_breaks_never_inside_a_tag() -> None:
    splitter = PhraseSplitter()
    got = []
    for chunk in ["This", "is", "a", "demo", "of", "the", "API.", "Real-time", "is", "<break", "time="]:
        got += splitter.feed(chunk + " ")
    assert got == ["This is a demo of the API."]
    got += splitter.feed('"1.5s" /> easy, right? And')
    assert got == ["This is a demo of the API.", 'Real-time is <break time= "1.5s" />', "easy, right?"]
    assert splitter.flush() == "And" and splitter.flush() == ""


def test_long_text_without_a_full_stop_is_cut_at_a_comma_or_after_thirty_words() -> None:
    splitter = PhraseSplitter(long_words=8, max_words=30)
    assert splitter.feed("one two three, four five six seven eight nine, ten ") == [
        "one two three, four five six seven eight nine,"
    ]
    assert splitter.pending == "ten "
    words = " ".join(f"w{i}" for i in range(40)) + " "
    cut = PhraseSplitter().feed(words)
    assert cut == [" ".join(f"w{i}" for i in range(30))]
    # No space after the full stop yet: the sentence may go on ("3.5"), so it waits.
    assert PhraseSplitter().feed("It costs 3.") == []


def speech(frames: int, level: int = 1000) -> Speech:
    return Speech(
        pcm=np.full(frames * SAMPLES_PER_VIDEO_FRAME, level, np.int16),
        openness=np.full(frames, 0.5, np.float32),
    )


async def test_live_speech_fills_a_gap_with_silence_and_ends_when_told() -> None:
    clock = VirtualClock()
    live = LiveSpeech(clock)
    await live.put(speech(5))
    first = await live.next()
    assert first is not None and first.frames == 5 and live.spoken == pytest.approx(0.2)

    async def waited() -> Speech | None:
        return await live.next()

    # Nothing more yet: the player gets one frame of silence once the last stretch has played.
    got = asyncio.ensure_future(clock.run(waited()))
    await asyncio.sleep(0)
    gap = await got
    assert gap is not None and gap.frames == 1 and not gap.pcm.any()
    assert clock.now() == pytest.approx(0.16)  # the 5-frame stretch's time, less the frame asked ahead
    await live.put(speech(2))
    assert (await live.next()).frames == 2  # type: ignore[union-attr]
    live.end()
    assert await live.next() is None
    await live.put(speech(1))  # after the end: ignored
    assert await live.next() is None


async def test_live_speech_holds_its_feeder_back_and_gives_up_on_a_quiet_source() -> None:
    clock = VirtualClock()
    live = LiveSpeech(clock, ahead=0.5, give_up=1.0)
    for _ in range(3):
        await live.put(speech(5))  # 0.6 s queued: over `ahead`
    blocked = asyncio.ensure_future(live.put(speech(5)))
    await asyncio.sleep(0)
    assert not blocked.done()
    await live.next()
    await asyncio.sleep(0)
    assert blocked.done()
    for _ in range(3):
        await live.next()
    gaps = 0
    while (stretch := await clock.run(live.next())) is not None:  # as the player: each takes its time
        gaps += 1
        assert not stretch.pcm.any() and gaps < 100
        await clock.advance(stretch.duration)
    assert live.ended and 1.0 / 0.04 <= gaps <= 1.0 / 0.04 + 2
    await live.aclose()
    assert live.closed and await live.next() is None


def test_pcm_chunks_split_anywhere_make_the_same_speech() -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000 * (t > 0.3)).astype("<i2").tobytes()
    whole = PcmFeed(rate)
    one = [whole.feed(pcm), whole.finish()]
    pieces = PcmFeed(rate)
    many = [pieces.feed(pcm[i : i + 777]) for i in range(0, len(pcm), 777)] + [pieces.finish()]
    joined = np.concatenate([s.pcm for s in many])
    assert np.array_equal(np.concatenate([s.pcm for s in one]), joined)  # odd splits lose no sample
    assert abs(len(joined) - 48_000) <= SAMPLES_PER_VIDEO_FRAME
    openness = np.concatenate([s.openness for s in many])
    assert openness[: round(0.25 * 25)].max() < 0.05 and openness[round(0.5 * 25) :].mean() > 0.3
    assert pieces.seconds == pytest.approx(1.0)
    with pytest.raises(BadRequestError):
        PcmFeed(4000)


def test_text_with_no_space_is_cut_rather_than_held() -> None:
    splitter = PhraseSplitter(max_chars=1000)
    assert splitter.feed("x" * 999) == []
    (cut,) = splitter.feed("x" * 600)
    assert cut == "x" * 1000 and splitter.pending == "x" * 599
    spaced = PhraseSplitter(max_chars=20, max_words=99).feed("aaaa bbbb cccc dddd eeee")
    assert spaced == ["aaaa bbbb cccc dddd"]  # at the last space within the 20 characters
