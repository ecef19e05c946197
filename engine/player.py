"""Plays talks on a stream's peer: every 40 ms one frame from the face and two 20 ms audio frames on one
timeline, in real time on the engine's clock, each stretch of speech asked for while the one before it plays,
each frame drawn into the stream's one canvas.

Two ways: `play` gives each talk its own timeline and ends on the face at rest, after which nothing is sent
(D-ID's streams); a `FluentPlayer` keeps one timeline for the stream's whole life and fills the time between
talks with idle frames and silence, the head's motion easing between idle and speaking (fluent streams).
Either stops a talk when its `stopped` says so (an interrupt): the frame waiting to leave is drawn again
without the talk, the sound fades out within 5 ms and the lips close over the next frames.

What it must never do: send a frame ahead of its time, hold more than one stretch of speech ahead, or send
anything of a talk after the first frame time that follows its stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import attrs
import numpy as np

from .clock import Clock
from .ports import (
    AUDIO_FRAME_SAMPLES,
    AUDIO_RATE,
    FRAME_SECONDS,
    PCM,
    SAMPLES_PER_VIDEO_FRAME,
    VIDEO_FPS,
    Face,
    Mouth,
    PreparedSpeech,
    ServerPeer,
    Speech,
    SpeechStream,
    VideoFrame,
)

__all__ = [
    "CLOSE_FRAMES",
    "IDLE_MOTION",
    "WARMUP_FRAMES",
    "WARMUP_SECONDS",
    "Canvas",
    "FluentPlayer",
    "Timeline",
    "play",
    "warmup",
]

WARMUP_SECONDS = 2.0  # D-ID's stream_warmup: idle frames before stream/ready
WARMUP_FRAMES = round(WARMUP_SECONDS * VIDEO_FPS)
AUDIO_PER_VIDEO = SAMPLES_PER_VIDEO_FRAME // AUDIO_FRAME_SAMPLES  # two 20 ms audio frames per video frame
IDLE_MOTION = 0.6  # a fluent stream's head between talks moves this much of what it does while speaking
BLEND_SECONDS = 0.4  # how long the motion takes to ease between idle and speaking
CLOSE_FRAMES = 3  # an interrupted talk's lips close over this many frames (120 ms)
DECLICK_SAMPLES = 240  # an interrupted talk's sound fades to silence over 5 ms instead of a click

Stopped = Callable[[], bool]


def _never() -> bool:
    return False


@attrs.define(eq=False)
class Canvas:
    """The frame array a stream's player draws into, again and again (None while the stream is idle), and
    `on_frame`, called as each frame has left (for metrics: it must return at once)."""

    frame: VideoFrame | None = None
    on_frame: Callable[[], None] | None = None


def warmup() -> PreparedSpeech:
    """The warm-up's speech: silence, the face at rest."""
    silence = Speech(
        pcm=np.zeros(WARMUP_FRAMES * SAMPLES_PER_VIDEO_FRAME, np.int16),
        openness=np.zeros(WARMUP_FRAMES, np.float32),
    )
    return PreparedSpeech(silence)


@attrs.define(eq=False)
class Timeline:
    """Frame `k` leaves at `start_clock + k * 40 ms` on the clock, stamped `start_media + k * 40 ms`."""

    clock: Clock
    peer: ServerPeer
    start_clock: float
    start_media: float
    k: int = 0
    on_frame: Callable[[], None] | None = None

    @classmethod
    def starting_now(cls, clock: Clock, peer: ServerPeer, canvas: Canvas | None = None) -> Timeline:
        """A timeline from now; `canvas`'s `on_frame` hears each frame it sends."""
        return cls(clock, peer, clock.now(), peer.media_time(), on_frame=canvas.on_frame if canvas else None)

    @property
    def at(self) -> float:
        """Seconds from the timeline's start to the next frame."""
        return self.k * FRAME_SECONDS

    async def wait(self) -> None:
        """Until the next frame's time (at once when the loop is behind: it catches up)."""
        delay = self.start_clock + self.k * FRAME_SECONDS - self.clock.now()
        if delay > 0:
            await self.clock.sleep(delay)

    async def send(self, frame: VideoFrame, pcm: PCM | None) -> None:
        """Send the next frame and, when given, its sound (one or two whole 20 ms audio frames)."""
        at = self.start_media + self.k * FRAME_SECONDS
        self.k += 1
        await self.peer.send_video(frame, at)
        if self.on_frame is not None:
            self.on_frame()
        if pcm is None:
            return
        for a in range(len(pcm) // AUDIO_FRAME_SAMPLES):
            chunk = pcm[a * AUDIO_FRAME_SAMPLES : (a + 1) * AUDIO_FRAME_SAMPLES]
            await self.peer.send_audio(chunk, at + a * AUDIO_FRAME_SAMPLES / AUDIO_RATE)


def _frame_pcm(stretch: Speech, j: int) -> PCM | None:
    """`stretch`'s sound for its frame `j`, its last 20 ms audio frame padded with silence; None past its
    end."""
    pcm = stretch.pcm[j * SAMPLES_PER_VIDEO_FRAME : (j + 1) * SAMPLES_PER_VIDEO_FRAME]
    if len(pcm) == 0:
        return None
    short = -len(pcm) % AUDIO_FRAME_SAMPLES
    return np.concatenate([pcm, np.zeros(short, np.int16)]) if short else pcm


def _faded(pcm: PCM) -> PCM:
    """`pcm`'s first 5 ms fading to nothing, then silence: how a cut talk's sound ends."""
    out = np.zeros(len(pcm), np.int16)
    n = min(DECLICK_SAMPLES, len(pcm))
    out[:n] = (pcm[:n] * np.linspace(1.0, 0.0, n, endpoint=False)).astype(np.int16)
    return out


def _closing(mouth: Mouth) -> list[Mouth]:
    """The mouths of the frames after a cut: `mouth` easing shut over `CLOSE_FRAMES` frames."""
    steps = []
    for i in range(1, CLOSE_FRAMES + 1):
        keep = 0.5 + 0.5 * np.cos(np.pi * i / (CLOSE_FRAMES + 1))  # 1 -> 0, smoothly
        steps.append(
            Mouth(
                mouth.open * keep,
                mouth.wide * keep,
                mouth.bite * keep,
                mouth.press * keep,
                mouth.stress * keep,
            )
        )
    return steps


@attrs.define(eq=False)
class _Cut:
    """What a stopped talk leaves for the frames after it: its sound's fade and its lips closing."""

    sound: PCM | None
    mouths: list[Mouth]


async def _talk(
    speech: SpeechStream,
    face: Face,
    canvas: Canvas,
    timeline: Timeline,
    stopped: Stopped,
    motion: Callable[[], float],
) -> _Cut | None:
    """Play `speech` on `timeline`; return None when it played to its end, or what its cut leaves."""
    mouth = Mouth()
    making: asyncio.Future[Speech | None] = asyncio.ensure_future(speech.next())
    try:
        while (stretch := await making) is not None:
            making = asyncio.ensure_future(speech.next())
            audio_frames = -(-len(stretch.pcm) // AUDIO_FRAME_SAMPLES)
            video_frames = max(stretch.frames, -(-audio_frames // AUDIO_PER_VIDEO))
            for j in range(video_frames):
                if stopped():
                    return _Cut(None, _closing(mouth))
                # Draw first, then wait for the frame's time: the drawing fills time the loop would spend
                # waiting anyway, and the frame leaves on time when the loop is busy.
                mouth = stretch.mouth(j)
                canvas.frame = face.frame(mouth, timeline.at, out=canvas.frame, motion=motion())
                await timeline.wait()
                pcm = _frame_pcm(stretch, j)
                if stopped():
                    # Cut while this frame waited: it leaves without the talk.
                    return _Cut(_faded(pcm) if pcm is not None else None, _closing(mouth))
                await timeline.send(canvas.frame, pcm)
    finally:
        if not making.done():
            making.cancel()
        await asyncio.gather(making, return_exceptions=True)
    return None


async def play(
    speech: SpeechStream,
    peer: ServerPeer,
    face: Face,
    clock: Clock,
    canvas: Canvas,
    stopped: Stopped = _never,
) -> bool:
    """Play `speech` to `peer` on a timeline of its own, then send the face at rest; return False when
    `stopped` cut it short (its lips close over the frames before the rest frame)."""
    timeline = Timeline.starting_now(clock, peer, canvas)
    cut = await _talk(speech, face, canvas, timeline, stopped, lambda: 1.0)
    if cut is not None:
        sound = cut.sound
        for mouth in cut.mouths:
            canvas.frame = face.frame(mouth, timeline.at, out=canvas.frame)
            await timeline.wait()
            await timeline.send(canvas.frame, sound)
            sound = None
    # End on the face at rest (mouth closed, head home): clients keep showing the last frame.
    await timeline.wait()
    canvas.frame = face.frame(0.0, out=canvas.frame)
    await timeline.send(canvas.frame, None)
    canvas.frame = None  # an idle stream holds no frame
    return cut is None


class FluentPlayer:
    """A fluent stream's media from connect to close: one timeline, idle frames with silence between talks
    (the face breathes, blinks and sways at `IDLE_MOTION`), talks on the same timeline with the motion eased
    in and out over `BLEND_SECONDS`. The canvas stays allocated while the stream lives."""

    def __init__(self, peer: ServerPeer, face: Face, clock: Clock, canvas: Canvas) -> None:
        self.face = face
        self.canvas = canvas
        self.timeline = Timeline.starting_now(clock, peer, canvas)
        self.motion = IDLE_MOTION
        self._silence = np.zeros(SAMPLES_PER_VIDEO_FRAME, np.int16)
        self._cut = _Cut(None, [])

    def _ease(self, target: float) -> float:
        step = (1.0 - IDLE_MOTION) * FRAME_SECONDS / BLEND_SECONDS
        self.motion += min(max(target - self.motion, -step), step)
        return self.motion

    async def idle(self) -> None:
        """Send the next idle frame at its time (an interrupted talk's closing lips first)."""
        cut = self._cut
        mouth = cut.mouths.pop(0) if cut.mouths else Mouth()
        self.canvas.frame = self.face.frame(
            mouth, self.timeline.at, out=self.canvas.frame, motion=self._ease(IDLE_MOTION)
        )
        await self.timeline.wait()
        sound, cut.sound = (cut.sound if cut.sound is not None else self._silence), None
        await self.timeline.send(self.canvas.frame, sound)

    async def talk(self, speech: SpeechStream, stopped: Stopped = _never) -> bool:
        """Play `speech` from the next frame on; return False when `stopped` cut it short."""
        self._cut = _Cut(None, [])
        cut = await _talk(speech, self.face, self.canvas, self.timeline, stopped, lambda: self._ease(1.0))
        if cut is not None:
            self._cut = cut
        return cut is None
