"""Speech for a talk: 48 kHz mono PCM and, on the same timeline, how open the mouth is in each video frame.

Why it exists: a talk is either text (spoken by a local text-to-speech engine) or an audio file the caller
names. Both end as one `Speech`: the samples the audio track sends, and one mouth openness per 40 ms video
frame computed from the very samples sent, so the mouth and the sound cannot drift apart.

* Audio files are decoded with PyAV from the downloaded bytes, with the container format chosen from a
  whitelist by sniffing the bytes (mp3, wav, flac, m4a/mp4): ffmpeg is never handed a URL or left to guess.
  Durations and sizes are capped.
* Text goes through a `TextToSpeech` provider. The bundled one drives espeak-ng through the library that
  the `espeakng-loader` wheel ships (no apt, no network), with phoneme events (through the legacy
  `espeak_Initialize` entry point, the one that reports them), so the lips close on m, b and p.
  espeak-ng is GPL-3.0, so it is the optional extra ``talkstream[tts]``: without it a text talk is
  refused with a clear error. SSML: ``<break time="..."/>``
  becomes silence and every other tag is stripped.

What it must never do: decode a format outside the whitelist, or hold the event loop for a long synthesis
(callers run `synthesize` in a thread; the espeak library is global, so a lock serialises it).
"""

from __future__ import annotations

import ctypes
import html
import io
import re
import threading
from collections.abc import Sequence
from typing import Protocol

import attrs
import av
import numpy as np
import numpy.typing as npt

from talkstream.engine.errors import BadRequestError, UnsupportedMediaTypeError
from talkstream.engine.ports import Speech

__all__ = [
    "MAX_AUDIO_BYTES",
    "MAX_SPEECH_SECONDS",
    "RATE",
    "VIDEO_FPS",
    "EspeakTTS",
    "Speech",
    "Synthesis",
    "TextToSpeech",
    "decode_audio",
    "default_tts",
    "mouth_track",
    "sniff_audio_format",
    "speech_from_pcm",
    "ssml_segments",
    "viseme_openness",
]

RATE = 48_000
VIDEO_FPS = 25
SAMPLES_PER_VIDEO_FRAME = RATE // VIDEO_FPS  # 1920
MAX_AUDIO_BYTES = 15 * 1024 * 1024  # D-ID's limit for audio scripts
MAX_SPEECH_SECONDS = 600.0

PCM = npt.NDArray[np.int16]


# How open each kind of sound holds the mouth (espeak-ng's phoneme mnemonics, stress marks removed).
_CLOSED = frozenset({"p", "b", "m"})  # the lips meet
_NEARLY_CLOSED = frozenset({"f", "v", "w"})  # lip to teeth, or rounded tight
_OPEN_VOWELS = frozenset({"a", "A", "aI", "aU", "V", "0", "O", "Q", "A:", "a#", "O:", "OI", "e@", "A@", "O@"})
_MID_VOWELS = frozenset({"e", "E", "@", "3", "3:", "eI", "oU", "o", "@L", "@2", "@5", "I@", "U@", "e#"})
_CLOSE_VOWELS = frozenset({"i", "I", "i:", "u", "U", "u:", "i@", "I2", "I#"})


def viseme_openness(phoneme: str) -> float:
    """The most the mouth opens for one phoneme (its loudness may open it less)."""
    name = phoneme.strip("'\",%=")
    if not name or name.startswith("_"):
        return 0.0  # a pause
    if name in _CLOSED:
        return 0.0
    if name in _NEARLY_CLOSED:
        return 0.15
    if name in _OPEN_VOWELS:
        return 1.0
    if name in _MID_VOWELS:
        return 0.75
    if name in _CLOSE_VOWELS:
        return 0.45
    return 0.35  # other consonants: tongue and teeth, jaw half open


def mouth_track(pcm: PCM, phonemes: Sequence[tuple[float, str]] = ()) -> npt.NDArray[np.float32]:
    """Mouth openness per video frame from the samples that play around that frame's time, and the phonemes.

    Loudness: RMS over the 40 ms centred on each frame's time, in dB relative to the talk's loud parts (95th
    percentile), mapped so that silence (40 dB under) is closed and loud speech wide open. When the speech
    engine reported phoneme timings (`(seconds, phoneme)` from the start), each frame may open no more than
    its phoneme allows: the lips close on m, b and p however loud they are. Then smoothing with a fast
    attack and a slower release, as jaws move.
    """
    frames = max(1, -(-len(pcm) // SAMPLES_PER_VIDEO_FRAME))
    # Frame k is shown from k/25 s: it takes the 40 ms of samples centred there, not the 40 ms after, so the
    # mouth is never a whole frame ahead of the sound (a burst starting anywhere in a frame's display time
    # is within 20 ms of the frame that first shows it).
    half = SAMPLES_PER_VIDEO_FRAME // 2
    padded = np.zeros(frames * SAMPLES_PER_VIDEO_FRAME, np.float32)
    body = pcm[: len(padded) - half]
    padded[half : half + len(body)] = body
    rms = np.sqrt((padded.reshape(frames, -1) ** 2).mean(axis=1) + 1e-9)
    loud = float(np.percentile(rms, 95))
    if loud < 30.0:  # near digital silence: keep the mouth closed
        return np.zeros(frames, np.float32)
    level = 20.0 * np.log10(rms / loud)
    target = np.clip((level + 40.0) / 34.0, 0.0, 1.0) ** 1.5
    closing = np.zeros(frames, bool)
    if phonemes:
        centres = np.arange(frames) / VIDEO_FPS  # the instants the frames are shown
        starts = np.array([t for t, _ in phonemes])
        shapes = np.array([viseme_openness(p) for _, p in phonemes], np.float32)
        index = np.searchsorted(starts, centres, side="right") - 1
        allowed = np.where(index >= 0, shapes[np.clip(index, 0, None)], 0.0)
        closing = allowed < 0.05  # lips pressed together close fast, not with the jaw's slow fall
        target = np.minimum(target, allowed)
    out = np.empty(frames, np.float32)
    current = 0.0
    for i, value in enumerate(target):
        rate = 0.75 if value > current else (0.8 if closing[i] else 0.45)
        current += (value - current) * rate
        out[i] = current
    return out


def speech_from_pcm(
    pcm: PCM, *, pad_seconds: float = 0.0, phonemes: Sequence[tuple[float, str]] = ()
) -> Speech:
    """A `Speech` from 48 kHz mono samples (and phoneme timings, if known), with trailing silence."""
    if pad_seconds > 0:
        pcm = np.concatenate([pcm, np.zeros(round(pad_seconds * RATE), np.int16)])
    return Speech(pcm=pcm, openness=mouth_track(pcm, phonemes))


# -- audio files --------------------------------------------------------------------------------------------

_FORMATS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "mp4": "mp4"}


def sniff_audio_format(data: bytes) -> str:
    """The container of an audio file from its first bytes (mp3, wav, flac, mp4); 415 otherwise."""
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"fLaC"):
        return "flac"
    if data[4:8] == b"ftyp":
        return "mp4"  # m4a and mp4 alike
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    raise UnsupportedMediaTypeError("audio is not mp3, wav, m4a, flac or mp4")


def decode_audio(data: bytes, *, max_seconds: float = MAX_SPEECH_SECONDS) -> PCM:
    """Decode an audio file's bytes to 48 kHz mono int16 (format sniffed and whitelisted, length capped)."""
    if len(data) > MAX_AUDIO_BYTES:
        raise BadRequestError(f"audio is larger than {MAX_AUDIO_BYTES} bytes")
    fmt = _FORMATS[sniff_audio_format(data)]
    chunks: list[PCM] = []
    total = 0
    limit = int(max_seconds * RATE)
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
            if not container.streams.audio:
                raise UnsupportedMediaTypeError("the file has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                    chunks.append(samples)
                    total += len(samples)
                    if total > limit:
                        raise BadRequestError(f"audio is longer than {max_seconds:g} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
    except (BadRequestError, UnsupportedMediaTypeError):
        raise
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise UnsupportedMediaTypeError(f"audio could not be decoded: {exc}") from exc
    if not chunks:
        raise UnsupportedMediaTypeError("audio holds no samples")
    return np.concatenate(chunks)


def resample(pcm: PCM, rate: int) -> PCM:
    """Mono int16 at `rate` to 48 kHz, with PyAV's (ffmpeg's) resampler."""
    if rate == RATE:
        return pcm
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


# -- text ---------------------------------------------------------------------------------------------------

_BREAK = re.compile(r"<\s*break\b([^>]*)/?\s*>", re.IGNORECASE)
_TIME = re.compile(r"""time\s*=\s*["']?\s*([0-9]*\.?[0-9]+)\s*(ms|s)?""", re.IGNORECASE)
_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.75, "x-strong": 1.2}
_TAG = re.compile(r"<[^>]*>")


def ssml_segments(text: str) -> list[str | float]:
    """Split SSML into text pieces and pauses (seconds): breaks honoured, other tags stripped."""
    out: list[str | float] = []
    position = 0
    for match in _BREAK.finditer(text):
        piece = html.unescape(_TAG.sub(" ", text[position : match.start()])).strip()
        if piece:
            out.append(piece)
        attrs_text = match.group(1)
        timing = _TIME.search(attrs_text)
        if timing:
            value = float(timing.group(1))
            seconds = value / 1000.0 if (timing.group(2) or "ms").lower() == "ms" else value
        else:
            strength = re.search(r"strength\s*=\s*[\"']?([a-z-]+)", attrs_text, re.IGNORECASE)
            seconds = _STRENGTH.get(strength.group(1).lower(), 0.4) if strength else 0.4
        out.append(min(max(seconds, 0.0), 10.0))  # SSML caps a break at 10 s
        position = match.end()
    tail = html.unescape(_TAG.sub(" ", text[position:])).strip()
    if tail:
        out.append(tail)
    return out


@attrs.frozen(eq=False)
class Synthesis:
    """A speech engine's output: 48 kHz mono PCM, and `(seconds, phoneme)` timings when it knows them."""

    pcm: PCM
    phonemes: tuple[tuple[float, str], ...] = ()


class TextToSpeech(Protocol):
    """A speech engine: text in, `Synthesis` out. `voice` is the provider's voice id, if any."""

    name: str

    def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis: ...


_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7


class _Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h (the union `id` read as its 8-byte string member)."""

    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    )


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakTTS:
    """espeak-ng through the library in the `espeakng-loader` wheel (optional extra, GPL-3.0)."""

    name = "espeak-ng"
    _lock = threading.Lock()

    def __init__(self, voice: str = "en-us") -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise RuntimeError(
                "text-to-speech needs the optional extra: pip install 'talkstream[tts]'"
            ) from exc
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._chunks: list[PCM] = []
        self._phonemes: list[tuple[int, str]] = []  # (sample at the engine's rate, phoneme)

        def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]) -> int:
            if count > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
            if events:
                i = 0
                while events[i].type != _EVENT_LIST_TERMINATED:
                    if events[i].type == _EVENT_PHONEME:
                        self._phonemes.append((events[i].sample, events[i].id.decode("ascii", "replace")))
                    i += 1
            return 0

        self._callback = _CALLBACK(collect)  # keep a reference: the library calls it later
        with self._lock:
            self._rate = int(
                self._lib.espeak_Initialize(
                    _SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _PHONEME_EVENTS
                )
            )
            if self._rate <= 0:
                raise RuntimeError("espeak-ng failed to initialise")
            self._lib.espeak_SetSynthCallback(self._callback)
        self.default_voice = voice

    def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis:
        pieces: list[str | float] = ssml_segments(text) if ssml else [text]
        out: list[PCM] = []
        phonemes: list[tuple[float, str]] = []
        offset = 0.0
        for piece in pieces:
            if isinstance(piece, float):
                out.append(np.zeros(round(piece * RATE), np.int16))
                phonemes.append((offset, "_"))
            else:
                pcm, timings = self._speak(piece, voice)
                out.append(resample(pcm, self._rate))
                phonemes += [(offset + sample / self._rate, name) for sample, name in timings]
            offset += len(out[-1]) / RATE
        pcm = np.concatenate(out) if out else np.zeros(0, np.int16)
        return Synthesis(pcm=pcm, phonemes=tuple(phonemes))

    def _speak(self, text: str, voice: str | None) -> tuple[PCM, list[tuple[int, str]]]:
        data = text.encode("utf-8")
        with self._lock:
            self._chunks = []
            self._phonemes = []
            chosen = (voice or self.default_voice).encode()
            if self._lib.espeak_SetVoiceByName(chosen) != 0:
                self._lib.espeak_SetVoiceByName(self.default_voice.encode())
            if (
                self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                != 0
            ):
                raise RuntimeError("espeak-ng failed to synthesise")
            chunks, self._chunks = self._chunks, []
            timings, self._phonemes = self._phonemes, []
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), timings


def default_tts() -> TextToSpeech | None:
    """The bundled engine when its optional extra is installed, else None."""
    try:
        return EspeakTTS()
    except (RuntimeError, OSError):
        return None
