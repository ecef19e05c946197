"""Speech made while it plays: stretches of whole frames, cut anywhere with the same result, made one
stretch ahead of playing and no further, and let go of when a talk ends early."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from served import encode_wav

from talkstream.avatar.speech import (
    MAX_PIECE_CHARS,
    MouthTracker,
    Synthesis,
    ThreadedSpeech,
    audio_speech,
    decoded_audio,
    loudness_reference,
    mouth_track,
    speech_pieces,
    text_speech,
)
from talkstream.engine.errors import BadRequestError
from talkstream.engine.ports import AUDIO_RATE as RATE
from talkstream.engine.ports import Speech

FRAME = RATE // 25


def talk_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of a voiced buzz and silences of random lengths, like speech."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * RATE:
        n = int(rng.uniform(0.05, 0.6) * RATE)
        t = np.arange(n) / RATE
        loud = rng.uniform(2000, 20000) * np.sin(2 * np.pi * rng.uniform(100, 300) * t)
        parts.append(loud if rng.random() < 0.6 else np.zeros(n))
        total += n
    return np.concatenate(parts)[: int(seconds * RATE)].astype(np.int16)


@pytest.mark.parametrize("cuts", [[1], [959, 961], [1919, 1920, 1921], [7, 48_000, 50_001], [333] * 40])
def test_cutting_a_talk_anywhere_changes_nothing(cuts: list[int]) -> None:
    pcm = talk_like(3.3)
    phonemes = [(0.0, "A:"), (0.8, "m"), (1.0, "e"), (2.0, "p"), (2.1, "aI")]
    whole = mouth_track(pcm, phonemes)
    tracker = MouthTracker(reference=loudness_reference(pcm))
    stretches: list[Speech] = []
    start, at = 0, 0
    for size in cuts:
        at = min(len(pcm), at + size)
        known = [p for p in phonemes if start / RATE <= p[0] < at / RATE]  # each piece brings its own
        stretches.append(tracker.feed(pcm[start:at], known))
        start = at
    stretches.append(tracker.feed(pcm[start:], [p for p in phonemes if p[0] >= start / RATE]))
    stretches.append(tracker.finish())
    for stretch in stretches[:-1]:
        assert len(stretch.pcm) == stretch.frames * FRAME  # whole frames until the last
    assert np.array_equal(np.concatenate([s.pcm for s in stretches]), pcm)
    assert np.allclose(np.concatenate([s.openness for s in stretches]), whole, atol=1e-6)


def test_a_long_talk_keeps_opening_and_closing_with_a_running_reference() -> None:
    pcm = talk_like(90.0, seed=3)
    tracker = MouthTracker()  # no whole-talk reference: the last 30 s heard
    openness = np.concatenate(
        [tracker.feed(pcm[i : i + RATE]).openness for i in range(0, len(pcm), RATE)]
        + [tracker.finish().openness]
    )
    loud = np.abs(pcm[: len(openness) * FRAME].reshape(-1, FRAME)).max(axis=1) > 1000
    assert openness[loud].mean() > 0.4 and openness[~loud].mean() < openness[loud].mean() / 2
    assert len(tracker._levels) <= 750  # what it remembers does not grow with the talk


def test_text_is_cut_at_sentences_then_clauses_then_words() -> None:
    text = (
        "Short one. "
        + "A long sentence, with clauses, " * 6
        + "that goes on! "
        + "word " * 60
        + "end? <break time='1s'/> After."
    )
    pieces = speech_pieces(text, ssml=True)
    words = [w for p in pieces if isinstance(p, str) for w in p.split()]
    assert words == text.replace("<break time='1s'/>", "").split()
    assert pieces[0] == "Short one."
    assert 1.0 in pieces and pieces[-1] == "After."
    assert all(len(p) <= MAX_PIECE_CHARS for p in pieces if isinstance(p, str))


class CountingTTS:
    """A stand-in speech engine: 20 ms of tone per character, and a count of what it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis:
        self.calls.append(text)
        t = np.arange(len(text) * RATE // 50) / RATE
        return Synthesis(pcm=(np.sin(2 * np.pi * 200 * t) * 10000).astype(np.int16), phonemes=((0.0, "a"),))


async def test_a_long_text_is_spoken_one_piece_ahead_of_playing() -> None:
    tts = CountingTTS()
    text = "This is one sentence of a very long talk, said again and again. " * 600  # 39,000 characters
    speech = text_speech(tts, text)
    await speech.prime()
    assert len(tts.calls) == 1  # answered after its first piece, not its 38 minutes
    estimate = speech.duration
    played, samples = 1, 0
    while (stretch := await speech.next()) is not None:
        samples += len(stretch.pcm)
        # each stretch asked for made at most the piece it needed: never more than one ahead of playing
        assert len(tts.calls) <= played + 1
        played += 1
        if played > 30:
            break
    await speech.aclose()
    assert len(tts.calls) <= 32
    assert estimate == pytest.approx(len(text) * 0.02, rel=0.05)


async def test_a_short_text_knows_its_duration_exactly() -> None:
    speech = text_speech(CountingTTS(), "Hello there.", pad_seconds=0.5)
    await speech.prime()
    assert speech.duration == pytest.approx(len("Hello there.") * 0.02 + 0.5)


async def test_closing_waits_for_the_stretch_being_made_and_lets_go_of_the_source() -> None:
    entered, release, finished = threading.Event(), threading.Event(), []

    def stretches() -> Iterator[Speech]:
        try:
            entered.set()
            release.wait(10)
            yield Speech(pcm=np.zeros(FRAME, np.int16), openness=np.zeros(1, np.float32))
            yield Speech(pcm=np.zeros(FRAME, np.int16), openness=np.zeros(1, np.float32))
        finally:
            finished.append(True)

    speech = ThreadedSpeech(stretches(), lambda: 0.08)
    making = asyncio.ensure_future(speech.next())
    await asyncio.to_thread(entered.wait, 10)
    making.cancel()  # the player stopped; the worker thread has not
    closing = asyncio.ensure_future(speech.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # it waits for the thread, or closing the generator would fail
    release.set()
    await closing
    assert finished == [True]
    assert await speech.next() is None


def test_audio_is_decoded_as_it_is_asked_for() -> None:
    data = encode_wav(talk_like(5.0).astype(np.int16)[::6], 8000)
    stated, chunks = decoded_audio(data, chunk_seconds=1.0)
    assert stated == pytest.approx(5.0, abs=0.05)
    first = next(chunks)
    assert 0.9 * RATE <= len(first) <= 1.5 * RATE  # a second or so, not the file
    rest = list(chunks)
    assert sum(len(c) for c in [first, *rest]) == pytest.approx(5.0 * RATE, rel=0.01)


def test_audio_longer_than_the_cap_is_refused_before_decoding() -> None:
    data = encode_wav(np.zeros(8000 * 601, np.int16), 8000)  # 601 s stated in its header
    with pytest.raises(BadRequestError, match="longer than 600 s"):
        decoded_audio(data)


async def test_an_audio_talk_states_its_length_once_primed() -> None:
    speech = audio_speech(encode_wav(talk_like(4.0)[::6], 8000), pad_seconds=1.0)
    await speech.prime()
    assert speech.duration == pytest.approx(5.0, abs=0.05)
    total = 0.0
    while (stretch := await speech.next()) is not None:
        total += stretch.duration
    assert total == pytest.approx(5.0, abs=0.05)
