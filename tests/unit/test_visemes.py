"""Mouth shapes from speech: visemes from espeak-ng's phonemes for text, a spectral cue for audio."""

from __future__ import annotations

import numpy as np
import pytest

from talkstream.avatar.speech import MouthTracker, speech_track, viseme
from talkstream.engine.ports import SHAPE_CHANNELS, Mouth, Speech

RATE = 48_000


def voiced(seconds: float, formants: tuple[float, ...], level: float = 12000.0) -> np.ndarray:
    """A buzz at 120 Hz shaped by formant-like resonances: harmonics near `formants` are loud."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = np.zeros_like(t)
    for k in range(1, 40):
        f = 120.0 * k
        gain = sum(np.exp(-(((f - formant) / 120.0) ** 2)) for formant in formants) + 0.02
        wave += gain * np.sin(2 * np.pi * f * t)
    out: np.ndarray = (wave / np.abs(wave).max() * level).astype(np.int16)
    return out


def test_the_viseme_classes() -> None:
    assert viseme("m") == viseme("b") == viseme("p") and viseme("m").open == 0.0
    assert viseme("f").bite == viseme("v").bite == 1.0 and viseme("f").open < 0.2
    assert viseme("u:").wide < -0.5 and viseme("'oU").wide < -0.5 and viseme("w").wide < -0.5
    assert viseme("i:").wide > 0.5 and viseme("E").wide > 0.3
    assert viseme("'aI").open == 1.0 and abs(viseme("'aI").wide) < 0.2
    assert viseme("_:").open == 0.0 and viseme("k").open == pytest.approx(0.35)


def test_text_shapes_follow_the_phonemes() -> None:
    loud = voiced(2.0, (700.0, 1200.0))
    phonemes = [(0.0, "'A:"), (0.4, "f"), (0.6, "'u:"), (1.0, "'i:"), (1.4, "m"), (1.6, "A:")]
    speech = speech_track(loud, phonemes)
    assert speech.shape is not None and speech.shape.shape == (speech.frames, len(SHAPE_CHANNELS))
    wide, bite, press, stress = (speech.shape[:, k] for k in range(4))
    assert bite[12:15].max() > 0.7 and bite[:9].max() < 0.05, "f and v bring the lip to the teeth"
    assert wide[19:24].min() < -0.6, "u is rounded"
    assert wide[29:34].max() > 0.6, "i is spread"
    assert speech.openness[36:39].max() < 0.1 and press[36:39].min() > 0.7, "m shuts the lips"
    assert press[:34].max() < 0.05
    assert stress[3:8].max() > 0.5 and stress[47:50].max() < 0.15, "only stressed vowels lift the brows"
    # The lips anticipate: rounding starts before the u does.
    assert wide[14] < wide[12] - 0.1


def test_audio_shapes_come_from_the_spectrum() -> None:
    rounded = voiced(1.5, (300.0, 800.0))  # u: both formants low
    spread = voiced(1.5, (300.0, 2400.0))  # i: a high second formant
    pcm = np.concatenate([rounded, spread, rounded, spread])
    tracker = MouthTracker()
    parts = [tracker.feed(pcm[i : i + 9600]) for i in range(0, len(pcm), 9600)] + [tracker.finish()]
    wide = np.concatenate([p.shape[:, 0] for p in parts if p.shape is not None])
    assert np.median(wide[45:70]) > 0.3 and np.median(wide[85:110]) < -0.3, "spread, then rounded"
    assert np.median(wide[120:145]) > 0.3
    # Silence says nothing about the lips' shape.
    quiet = MouthTracker().feed(np.zeros(RATE, np.int16))
    assert quiet.shape is not None and not quiet.shape.any()


def test_a_speech_hands_out_mouths() -> None:
    speech = Speech(
        pcm=np.zeros(3840, np.int16),
        openness=np.array([0.5, 0.0], np.float32),
        shape=np.array([[-1.0, 0.0, 0.0, 0.3], [0.0, 1.0, 0.5, 0.0]], np.float32),
    )
    first = speech.mouth(0)
    assert (first.open, first.wide, first.bite) == (0.5, -1.0, 0.0) and first.stress == pytest.approx(0.3)
    assert speech.mouth(1) == Mouth(0.0, 0.0, 1.0, 0.5, 0.0)
    assert speech.mouth(2) == Mouth() and Mouth().at_rest
    assert Speech(pcm=np.zeros(1920, np.int16), openness=np.ones(1, np.float32)).mouth(0) == Mouth(1.0)
    with pytest.raises(ValueError, match="shape"):
        Speech(
            pcm=np.zeros(1920, np.int16), openness=np.ones(1, np.float32), shape=np.zeros((2, 3), np.float32)
        )


def test_a_pause_after_sound_brings_the_lips_together_until_the_sound_returns() -> None:
    silence = np.zeros(RATE, np.int16)
    pcm = np.concatenate(
        [silence[: RATE // 2], voiced(0.6, (700.0, 1200.0)), silence, voiced(0.4, (700.0, 1200.0))]
    )
    speech = speech_track(pcm)
    assert speech.shape is not None
    press = speech.shape[:, 2]
    assert press[:12].max() == 0.0, "before any sound, nothing to close"
    assert press[30:53].min() > 0.5, "through the whole pause the lips stay together, never reopening"
    assert press[60:64].max() < 0.1, "with the sound back they part"
