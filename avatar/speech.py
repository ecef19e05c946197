"""Speech for a talk, made while it plays: `SpeechStream`s of 48 kHz mono PCM with one mouth openness per
40 ms video frame (`MouthTracker`), from text (`TextToSpeech`; espeak-ng through the optional `tts` extra)
or from an audio file (decoded with PyAV from a whitelist of formats).

What it must never do: decode a format outside the whitelist, make a whole long talk at once, or hold the
event loop for a synthesis.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import html
import io
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Protocol

import attrs
import av
import numpy as np
import numpy.typing as npt

from talkstream.engine.errors import BadRequestError, UnsupportedMediaTypeError
from talkstream.engine.ports import AUDIO_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_FPS, Speech

__all__ = [
    "MAX_AUDIO_BYTES",
    "MAX_SPEECH_SECONDS",
    "EspeakTTS",
    "Speech",
    "Synthesis",
    "TextToSpeech",
    "Viseme",
    "decode_audio",
    "default_tts",
    "mouth_track",
    "sniff_audio_format",
    "speech_from_pcm",
    "speech_track",
    "ssml_segments",
    "viseme",
    "viseme_openness",
]

MAX_AUDIO_BYTES = 15 * 1024 * 1024  # D-ID's limit for audio scripts
MAX_SPEECH_SECONDS = 600.0

PCM = npt.NDArray[np.int16]


@attrs.frozen
class Viseme:
    """The mouth one phoneme asks for: at most this `open` (its loudness may open it less), this `wide`
    (-1 rounded .. +1 spread) and this `bite` (lower lip to the upper teeth)."""

    open: float
    wide: float = 0.0
    bite: float = 0.0


# What each kind of sound does with the mouth (espeak-ng's phoneme mnemonics, stress marks removed).
_VISEME_GROUPS: tuple[tuple[frozenset[str], Viseme], ...] = (
    (frozenset({"p", "b", "m"}), Viseme(0.0)),  # the lips meet
    (frozenset({"f", "v"}), Viseme(0.1, bite=1.0)),  # lower lip to the upper teeth
    (frozenset({"w"}), Viseme(0.15, wide=-1.0)),  # rounded tight
    (frozenset({"u", "U", "u:", "U@", "uw"}), Viseme(0.35, wide=-1.0)),  # rounded
    (frozenset({"o", "O", "O:", "oU", "O@", "OI", "0", "Q", "o@"}), Viseme(0.65, wide=-0.7)),  # rounded, open
    (frozenset({"S", "Z", "tS", "dZ"}), Viseme(0.3, wide=-0.6)),  # lips pushed out
    (frozenset({"r", "r-", "3", "3:", "@r"}), Viseme(0.4, wide=-0.35)),
    (frozenset({"i", "I", "i:", "i@", "I2", "I#", "j"}), Viseme(0.4, wide=0.9)),  # spread
    (frozenset({"e", "E", "eI", "e@", "e#", "E2", "E@"}), Viseme(0.65, wide=0.6)),  # spread, half open
    (frozenset({"a", "A", "A:", "aI", "aU", "V", "a#", "A@", "aa", "a2"}), Viseme(1.0, wide=0.1)),  # open
    (frozenset({"@", "@L", "@2", "@5", "I@", "a@"}), Viseme(0.6)),  # neutral vowels
)
_VISEMES = {name: viseme for names, viseme in _VISEME_GROUPS for name in names}
_PAUSE = Viseme(0.0)
_OTHER = Viseme(0.35)  # other consonants: tongue and teeth, jaw half open


def viseme(phoneme: str) -> Viseme:
    """The mouth shape for one espeak-ng phoneme (stress marks ignored)."""
    name = phoneme.strip("'\",%=")
    if not name or name.startswith("_"):
        return _PAUSE
    return _VISEMES.get(name, _OTHER)


def viseme_openness(phoneme: str) -> float:
    """The most the mouth opens for one phoneme (its loudness may open it less)."""
    return viseme(phoneme).open


def _stressed(phoneme: str) -> bool:
    return phoneme.startswith("'")


_HALF = SAMPLES_PER_VIDEO_FRAME // 2
_SILENT_REFERENCE = 30.0  # a talk whose loud parts are quieter than this is silence: the mouth stays shut
_REFERENCE_FRAMES = 750  # the running loudness reference looks back 30 s


def _frame_rms(windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    squares: npt.NDArray[np.float64] = (windows.astype(np.float64) ** 2).mean(axis=1)
    return np.sqrt(squares + 1e-9)


_LOW_BAND = (250.0, 1000.0)  # Hz: the first formant, and a rounded vowel's low second formant
_HIGH_BAND = (1500.0, 3500.0)  # a spread vowel's high second formant
_CUE_FRAMES = 250  # the speaker's own range of the spectral cue: the last 10 s of voiced frames
_LOOKAHEAD = 0.06  # seconds: the lips start to take the next sound's shape this early
_QUIET_DB = -30.0  # quieter than this under the talk's loud parts: a pause
_PAUSE_PRESS = 0.6  # how firmly the lips meet in a pause


class MouthTracker:
    """The mouth per video frame from speech fed in pieces, as `Speech` stretches of whole frames.

    Frame k is shown from k/25 s and takes the loudness of the 40 ms of samples centred there, not the 40 ms
    after it, so the mouth is never a whole frame ahead of the sound (a burst starting anywhere in a frame's
    display time is within 20 ms of the frame that first shows it). Loudness is RMS in dB relative to the
    talk's loud parts (the 95th percentile: the whole talk's when `reference` is given, else the last 30 s
    heard so far), mapped so that silence (40 dB under) is closed and loud speech wide open.

    With phoneme timings (`(seconds from the talk's start, phoneme)`, text talks), each frame takes its
    phoneme's viseme: it opens no more than the viseme allows (the lips close on m, b and p however loud
    they are), rounds or spreads as it says, blended with the next sound's shape, tucks the lower lip for f
    and v, and a loud stressed vowel lifts the brows. Without them (audio talks), a cheap spectral cue
    stands in: the balance of energy between 1.5-3.5 kHz (a spread vowel's second formant) and 250-1000 Hz
    (a rounded one's), against the middle of the speaker's own range so far, rounds or spreads the lips;
    loud peaks lift the brows. A pause after sound (quieter than 30 dB under the loud parts) brings the
    lips together until the sound comes back, as a speaker's meet between words, even on a photo that
    shows its teeth; the face is the photo again when the talk ends. Then smoothing with a fast attack and
    a slower release, as jaws move. State carries from piece to piece, so cutting a talk anywhere changes
    nothing.

    It holds at most one frame and a half of samples back (a frame's window reaches 20 ms past it).
    """

    def __init__(self, *, reference: float | None = None) -> None:
        self._reference = reference
        self._levels: collections.deque[float] = collections.deque(maxlen=_REFERENCE_FRAMES)
        self._cues: collections.deque[float] = collections.deque(maxlen=_CUE_FRAMES)
        self._before = np.zeros(_HALF, np.int16)  # the last half frame already sent, for centred windows
        self._pending = np.zeros(0, np.int16)  # samples not sent yet; they start on a frame boundary
        self._frame = 0  # the index of the next frame
        self._current = 0.0
        self._shape = np.zeros(4)  # wide, bite, press, stress as the last frame had them
        self._phonemes: list[tuple[float, Viseme, bool]] = []  # (start, viseme, stressed), last one kept
        self._spoken = False  # phoneme timings have come: shapes follow them, not the spectrum
        self._heard = False  # some sound has come: pauses after it close the lips

    def feed(self, pcm: PCM, phonemes: Sequence[tuple[float, str]] = ()) -> Speech:
        """The whole frames that `pcm` completes (possibly none)."""
        if phonemes:
            self._spoken = True
        self._phonemes += [(t, viseme(p), _stressed(p)) for t, p in phonemes]
        self._pending = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        return self._emit(len(self._pending) // SAMPLES_PER_VIDEO_FRAME, final=False)

    def finish(self) -> Speech:
        """The rest: the last (partial) frame, its window padded with silence. At least one frame in all."""
        frames = -(-len(self._pending) // SAMPLES_PER_VIDEO_FRAME)
        if self._frame == 0:
            frames = max(frames, 1)
        return self._emit(frames, final=True)

    def _emit(self, frames: int, *, final: bool) -> Speech:
        if frames <= 0:
            return Speech(pcm=np.zeros(0, np.int16), openness=np.zeros(0, np.float32))
        length = frames * SAMPLES_PER_VIDEO_FRAME
        body = np.zeros(_HALF + length + _HALF, np.float32)
        body[:_HALF] = self._before
        ahead = self._pending[: length + _HALF]
        body[_HALF : _HALF + len(ahead)] = ahead
        windows = body[: _HALF + length - _HALF].reshape(frames, SAMPLES_PER_VIDEO_FRAME)
        openness, shape = self._track(windows)
        sent = self._pending[:length] if not final else self._pending
        if not final:
            self._before = self._pending[length - _HALF : length].copy()
            self._pending = self._pending[length:].copy()
        else:
            self._pending = np.zeros(0, np.int16)
        return Speech(pcm=np.ascontiguousarray(sent), openness=openness, shape=shape)

    def _track(
        self, windows: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        rms = _frame_rms(windows)
        frames = len(rms)
        if self._reference is not None:
            loud = self._reference
        else:
            self._levels.extend(float(x) for x in rms)
            loud = float(np.percentile(np.fromiter(self._levels, np.float64), 95))
        silent = loud < _SILENT_REFERENCE
        level = 20.0 * np.log10(rms / max(loud, 1e-9))
        target = np.zeros(frames) if silent else np.clip((level + 40.0) / 34.0, 0.0, 1.0) ** 1.5
        closing = np.zeros(frames, bool)
        shapes = np.zeros((frames, 4))  # targets: wide, bite, press, stress
        if self._phonemes:
            shown = (self._frame + np.arange(frames)) / VIDEO_FPS  # the instants the frames are shown
            starts = np.array([t for t, _, _ in self._phonemes])
            visemes = [v for _, v, _ in self._phonemes]
            opens = np.array([v.open for v in visemes])
            wides = np.array([v.wide for v in visemes])
            bites = np.array([v.bite for v in visemes])
            stressed = np.array([s for _, _, s in self._phonemes])
            silent_pause = np.array([v is _PAUSE for v in visemes])  # a pause lets the lips rest
            now = np.searchsorted(starts, shown, side="right") - 1
            soon = np.searchsorted(starts, shown + _LOOKAHEAD, side="right") - 1
            held = now >= 0
            now_i, soon_i = np.clip(now, 0, None), np.clip(soon, 0, None)
            allowed = np.where(held, opens[now_i], 0.0)
            closing = allowed < 0.05  # lips pressed together close fast, not with the jaw's slow fall
            target = np.minimum(target, allowed)
            shapes[:, 0] = np.where(held, 0.65 * wides[now_i] + 0.35 * wides[soon_i], 0.0)
            shapes[:, 1] = np.where(held, bites[now_i], 0.0)
            emphasis = np.clip((level + 4.0) / 4.0, 0.0, 1.0)
            shapes[:, 2] = np.where(held & (allowed < 0.05) & ~silent_pause[now_i], 1.0, 0.0)
            shapes[:, 3] = np.where(held & stressed[now_i], emphasis, 0.0)
            last_start = int(np.searchsorted(starts, shown[-1], side="right")) - 1
            del self._phonemes[: max(last_start, 0)]  # keep the one in force and those still to come
        elif not self._spoken and not silent:
            shapes[:, 0] = self._spectral_wideness(windows, level)
            shapes[:, 3] = np.clip((level + 4.0) / 4.0, 0.0, 1.0)
        openness = np.empty(frames, np.float32)
        shape = np.empty((frames, 4), np.float32)
        current, (wide, bite, press, stress) = self._current, self._shape
        quiet = level < _QUIET_DB if not silent else np.ones(frames, bool)
        for i in range(frames):
            # A pause after sound closes the lips and keeps them closed until the sound comes back (lips
            # that reopened in silence, on a photo that shows its teeth, moved with no sound); the face
            # returns to the photo when the talk ends.
            if quiet[i] and self._heard:
                shapes[i, 2] = max(shapes[i, 2], _PAUSE_PRESS)
            self._heard = self._heard or not quiet[i]
            value = target[i]
            current += (value - current) * (0.75 if value > current else (0.8 if closing[i] else 0.45))
            wide += (shapes[i, 0] - wide) * 0.5
            bite += (shapes[i, 1] - bite) * (0.8 if shapes[i, 1] > bite else 0.6)
            press += (shapes[i, 2] - press) * (0.8 if shapes[i, 2] > press else 0.3)
            stress += (shapes[i, 3] - stress) * (0.5 if shapes[i, 3] > stress else 0.15)
            openness[i] = current
            shape[i] = (wide, bite, press, stress)
        self._current, self._shape = current, np.array([wide, bite, press, stress])
        self._frame += frames
        return openness, shape

    def _spectral_wideness(
        self, windows: npt.NDArray[np.float32], level: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """-1 (rounded) .. +1 (spread) per frame, from where the voice's energy sits against the speaker's
        own median; 0 where it is too quiet to tell."""
        spectrum = np.abs(np.fft.rfft(windows * _HANN, axis=1)) ** 2
        step = AUDIO_RATE / windows.shape[1]
        low = spectrum[:, int(_LOW_BAND[0] / step) : int(_LOW_BAND[1] / step)].sum(axis=1)
        high = spectrum[:, int(_HIGH_BAND[0] / step) : int(_HIGH_BAND[1] / step)].sum(axis=1)
        cue = np.log10((high + 1e-3) / (low + 1e-3))
        voiced = level > -25.0
        self._cues.extend(float(c) for c in cue[voiced])
        if len(self._cues) < 5:
            return np.zeros(len(cue))
        # Against the middle of the speaker's own range (not the median: a talk of mostly one vowel would
        # then read as neutral throughout), scaled by that range.
        low_cue, high_cue = np.percentile(np.fromiter(self._cues, np.float64), [15, 85])
        middle, half_range = (low_cue + high_cue) / 2, max((high_cue - low_cue) / 2, 0.25)
        wide: npt.NDArray[np.float64] = np.where(voiced, np.clip((cue - middle) / half_range, -1.0, 1.0), 0.0)
        return wide


_HANN = np.hanning(SAMPLES_PER_VIDEO_FRAME).astype(np.float32)


def loudness_reference(pcm: PCM) -> float:
    """The 95th percentile of a whole talk's per-frame loudness (what `MouthTracker` compares against)."""
    frames = max(1, -(-len(pcm) // SAMPLES_PER_VIDEO_FRAME))
    body = np.zeros(frames * SAMPLES_PER_VIDEO_FRAME, np.float32)
    part = pcm[: len(body) - _HALF]
    body[_HALF : _HALF + len(part)] = part
    return float(np.percentile(_frame_rms(body.reshape(frames, -1)), 95))


def mouth_track(pcm: PCM, phonemes: Sequence[tuple[float, str]] = ()) -> npt.NDArray[np.float32]:
    """Mouth openness per video frame for a whole talk at once (see `MouthTracker`)."""
    return speech_track(pcm, phonemes).openness


def speech_track(pcm: PCM, phonemes: Sequence[tuple[float, str]] = ()) -> Speech:
    """The whole talk's `Speech`, mouth shapes and all, at once (see `MouthTracker`)."""
    tracker = MouthTracker(reference=loudness_reference(pcm))
    first, rest = tracker.feed(pcm, phonemes), tracker.finish()
    shapes = [part.shape for part in (first, rest) if part.shape is not None]
    return Speech(
        pcm=np.concatenate([first.pcm, rest.pcm]),
        openness=np.concatenate([first.openness, rest.openness]),
        shape=np.concatenate(shapes) if shapes else None,
    )


def speech_from_pcm(
    pcm: PCM, *, pad_seconds: float = 0.0, phonemes: Sequence[tuple[float, str]] = ()
) -> Speech:
    """A `Speech` from 48 kHz mono samples (and phoneme timings, if known), with trailing silence."""
    if pad_seconds > 0:
        pcm = np.concatenate([pcm, np.zeros(round(pad_seconds * AUDIO_RATE), np.int16)])
    return speech_track(pcm, phonemes)


# -- speech made while it plays -----------------------------------------------------------------------------


class ThreadedSpeech:
    """A `SpeechStream` whose stretches come from a blocking iterator, each made in a worker thread when
    asked for: the player asks for the next while the current one plays, so production runs one stretch
    ahead and no further. `duration` asks `estimate`, which the iterator's owner keeps current."""

    def __init__(self, stretches: Iterator[Speech], estimate: Callable[[], float]) -> None:
        self._stretches = stretches
        self._estimate = estimate
        self._primed: list[Speech] = []
        self._making: asyncio.Future[Speech | None] | None = None
        self._closed = False

    @property
    def duration(self) -> float:
        return self._estimate()

    async def prime(self) -> None:
        """Make the first stretch now: a talk that cannot start fails before it is accepted."""
        first = await self._make()
        if first is not None:
            self._primed.append(first)

    async def next(self) -> Speech | None:
        if self._primed:
            return self._primed.pop()
        if self._closed:
            return None
        return await self._make()

    async def _make(self) -> Speech | None:
        # The thread cannot be cancelled: keep its future so that aclose can wait for it to end.
        self._making = asyncio.ensure_future(asyncio.to_thread(next, self._stretches, None))
        try:
            return await asyncio.shield(self._making)
        finally:
            if self._making.done():
                self._making = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._primed.clear()
        if self._making is not None:
            await asyncio.gather(self._making, return_exceptions=True)
        close = getattr(self._stretches, "close", None)
        if close is not None:
            close()  # a generator's finally blocks run: files and decoders are let go


#: How many characters of text one stretch speaks at most (about 6 s at espeak-ng's default rate): text is
#: cut at sentence ends, then at commas and the like, then between words.
MAX_PIECE_CHARS = 100
_SENTENCE_END = re.compile(r"(?<=[.!?;:…])\s+")
_CLAUSE_END = re.compile(r"(?<=[,)\u2013\u2014])\s+")  # commas, brackets, en and em dashes
CHARS_PER_SECOND = 15.0  # espeak-ng's default rate, for estimates before any of a text is spoken


def _cut(text: str, limit: int) -> Iterator[str]:
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= limit:
            yield sentence
            continue
        piece = ""
        for clause in _CLAUSE_END.split(sentence):
            for word in clause.split(" ") if len(clause) > limit else [clause]:
                if piece and len(piece) + 1 + len(word) > limit:
                    yield piece
                    piece = ""
                piece = f"{piece} {word}" if piece else word
        if piece:
            yield piece


def speech_pieces(text: str, *, ssml: bool = False, limit: int = MAX_PIECE_CHARS) -> list[str | float]:
    """What a text talk says, in the order it says it: pieces of at most about `limit` characters, and
    pauses in seconds (SSML breaks; other tags are stripped)."""
    out: list[str | float] = []
    for segment in ssml_segments(text) if ssml else [text]:
        if isinstance(segment, float):
            out.append(segment)
        else:
            out += [piece for piece in (p.strip() for p in _cut(segment.strip(), limit)) if piece]
    return out


class _TextProgress:
    """What a text talk has spoken so far, for its duration estimate."""

    def __init__(self, pieces: Sequence[str | float], pad_seconds: float) -> None:
        self.chars_left = sum(len(p) for p in pieces if isinstance(p, str))
        self.pauses_left = sum(p for p in pieces if isinstance(p, float))
        self.pad = pad_seconds
        self.spoken_chars = 0
        self.spoken_seconds = 0.0  # of speech for those characters
        self.made_seconds = 0.0  # everything made so far, pauses included
        self.finished = False

    def estimate(self) -> float:
        if self.finished:
            return self.made_seconds
        per_char = self.spoken_seconds / self.spoken_chars if self.spoken_chars else 1.0 / CHARS_PER_SECOND
        return self.made_seconds + self.chars_left * per_char + self.pauses_left + self.pad


def text_speech(
    tts: TextToSpeech, text: str, *, voice: str | None = None, ssml: bool = False, pad_seconds: float = 0.0
) -> ThreadedSpeech:
    """A text talk spoken piece by piece as it plays (call `prime` before accepting it)."""
    pieces = speech_pieces(text, ssml=ssml)
    progress = _TextProgress(pieces, pad_seconds)

    def stretches() -> Iterator[Speech]:
        tracker = MouthTracker()
        offset = 0.0
        for piece in pieces:
            if isinstance(piece, float):
                pcm, phonemes = np.zeros(round(piece * AUDIO_RATE), np.int16), [(offset, "_")]
                progress.pauses_left -= piece
            else:
                synthesis = tts.synthesize(piece, voice=voice)
                pcm = synthesis.pcm
                phonemes = [(offset + t, name) for t, name in synthesis.phonemes]
                progress.chars_left -= len(piece)
                progress.spoken_chars += len(piece)
                progress.spoken_seconds += len(pcm) / AUDIO_RATE
            offset += len(pcm) / AUDIO_RATE
            progress.made_seconds = offset
            stretch = tracker.feed(pcm, phonemes)
            if stretch.frames:
                yield stretch
        if pad_seconds > 0:
            pad = np.zeros(round(pad_seconds * AUDIO_RATE), np.int16)
            progress.made_seconds += len(pad) / AUDIO_RATE
            stretch = tracker.feed(pad)
            if stretch.frames:
                yield stretch
        progress.finished = True
        yield tracker.finish()

    return ThreadedSpeech(stretches(), progress.estimate)


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


def _open_audio(data: bytes) -> av.container.InputContainer:
    if len(data) > MAX_AUDIO_BYTES:
        raise BadRequestError(f"audio is larger than {MAX_AUDIO_BYTES} bytes")
    fmt = _FORMATS[sniff_audio_format(data)]
    try:
        container = av.open(io.BytesIO(data), mode="r", format=fmt)
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise UnsupportedMediaTypeError(f"audio could not be decoded: {exc}") from exc
    if not container.streams.audio:
        container.close()
        raise UnsupportedMediaTypeError("the file has no audio stream")
    return container


def _decoded(
    container: av.container.InputContainer, max_seconds: float, chunk_seconds: float
) -> Generator[PCM, None, None]:
    """48 kHz mono int16 in chunks of about `chunk_seconds`, decoded as they are asked for; the container
    is closed when this ends, however it ends."""
    limit, chunk = int(max_seconds * AUDIO_RATE), int(chunk_seconds * AUDIO_RATE)
    total, held = 0, 0
    parts: list[PCM] = []
    try:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames, None)
                resampled = resampler.resample(frame)  # None: what the resampler still holds
            except (av.FFmpegError, ValueError, IndexError) as exc:
                raise UnsupportedMediaTypeError(f"audio could not be decoded: {exc}") from exc
            for out in resampled:
                samples = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                total += len(samples)
                if total > limit:
                    raise BadRequestError(f"audio is longer than {max_seconds:g} s")
                parts.append(samples)
                held += len(samples)
            if parts and (frame is None or held >= chunk):
                yield np.concatenate(parts)
                parts, held = [], 0
            if frame is None:
                return
    finally:
        container.close()


def decoded_audio(
    data: bytes, *, max_seconds: float = MAX_SPEECH_SECONDS, chunk_seconds: float = 1.0
) -> tuple[float | None, Generator[PCM, None, None]]:
    """An audio file's length in seconds as its container states it (None if it does not), and its samples
    as 48 kHz mono int16 chunks decoded on demand. Format sniffed and whitelisted; size and length capped
    (a stated length over the cap is refused at once, a file that runs over it fails as it gets there)."""
    container = _open_audio(data)
    duration = None if container.duration is None else container.duration / av.time_base
    if duration is not None and duration > max_seconds + 0.5:
        container.close()
        raise BadRequestError(f"audio is longer than {max_seconds:g} s")
    return duration, _decoded(container, max_seconds, chunk_seconds)


def audio_speech(data: bytes, *, pad_seconds: float = 0.0) -> ThreadedSpeech:
    """An audio talk decoded second by second as it plays (call `prime` before accepting it)."""
    stated, chunks = decoded_audio(data)
    made = [0.0, 0.0]  # seconds made, and 1.0 once finished

    def estimate() -> float:
        return made[0] if made[1] else max(stated or 0.0, made[0]) + pad_seconds

    def stretches() -> Iterator[Speech]:
        tracker = MouthTracker()
        try:
            for pcm in chunks:
                made[0] += len(pcm) / AUDIO_RATE
                stretch = tracker.feed(pcm)
                if stretch.frames:
                    yield stretch
        finally:
            chunks.close()
        if pad_seconds > 0:
            pad = np.zeros(round(pad_seconds * AUDIO_RATE), np.int16)
            made[0] += len(pad) / AUDIO_RATE
            stretch = tracker.feed(pad)
            if stretch.frames:
                yield stretch
        made[1] = 1.0
        yield tracker.finish()

    return ThreadedSpeech(stretches(), estimate)


class PcmFeed:
    """Speech from raw 16-bit little-endian mono PCM as it arrives (implements `engine.ports.SpeechFeed`):
    resampled to 48 kHz by one resampler for the whole talk (no seams between chunks) and tracked by one
    `MouthTracker` (its loudness reference is the talk's loud parts so far)."""

    def __init__(self, sample_rate: int) -> None:
        if not 8000 <= sample_rate <= 48000:
            raise BadRequestError(f"PCM sample rate {sample_rate} Hz: 8000 to 48000 Hz are taken")
        self.sample_rate = sample_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        self._tracker = MouthTracker()
        self._odd = b""  # a byte of a sample whose other byte is in the next chunk
        self.seconds = 0.0  # of sound fed so far

    def feed(self, data: bytes) -> Speech:
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if whole == 0:
            return self._tracker.feed(np.zeros(0, np.int16))
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        self.seconds += len(pcm) / self.sample_rate
        return self._tracker.feed(self._resampled(pcm))

    def finish(self) -> Speech:
        tail = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        if tail:
            rest = self._tracker.feed(np.concatenate(tail).astype(np.int16, copy=False))
            last = self._tracker.finish()
            return _joined(rest, last)
        return self._tracker.finish()

    def _resampled(self, pcm: PCM) -> PCM:
        if self.sample_rate == AUDIO_RATE:
            return pcm
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


def _joined(first: Speech, second: Speech) -> Speech:
    """Two stretches of one tracker as one (either may be empty)."""
    if not first.frames:
        return second
    if not second.frames:
        return first
    assert first.shape is not None and second.shape is not None  # a tracker's frames always have shapes
    return Speech(
        pcm=np.concatenate([first.pcm, second.pcm]),
        openness=np.concatenate([first.openness, second.openness]),
        shape=np.concatenate([first.shape, second.shape]),
    )


def decode_audio(data: bytes, *, max_seconds: float = MAX_SPEECH_SECONDS) -> PCM:
    """A whole audio file as 48 kHz mono int16 (format sniffed and whitelisted, length capped)."""
    chunks = list(decoded_audio(data, max_seconds=max_seconds)[1])
    if not chunks:
        raise UnsupportedMediaTypeError("audio holds no samples")
    return np.concatenate(chunks)


def resample(pcm: PCM, rate: int) -> PCM:
    """Mono int16 at `rate` to 48 kHz, with PyAV's (ffmpeg's) resampler."""
    if rate == AUDIO_RATE:
        return pcm
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
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
                out.append(np.zeros(round(piece * AUDIO_RATE), np.int16))
                phonemes.append((offset, "_"))
            else:
                pcm, timings = self._speak(piece, voice)
                out.append(resample(pcm, self._rate))
                phonemes += [(offset + sample / self._rate, name) for sample, name in timings]
            offset += len(out[-1]) / AUDIO_RATE
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
