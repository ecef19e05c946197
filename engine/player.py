"""Plays a talk's speech on a stream's peer: every 40 ms one frame from the face and two 20 ms audio frames
on one timeline, in real time on the engine's clock, each stretch of speech asked for while the one before
it plays, each frame drawn into the stream's one canvas; then the face at rest.

What it must never do: send a frame ahead of its time, or hold more than one stretch of speech ahead.
"""

from __future__ import annotations

import asyncio

import attrs
import numpy as np

from .clock import Clock
from .ports import (
    AUDIO_FRAME_SAMPLES,
    AUDIO_RATE,
    FRAME_SECONDS,
    SAMPLES_PER_VIDEO_FRAME,
    VIDEO_FPS,
    Face,
    PreparedSpeech,
    ServerPeer,
    Speech,
    SpeechStream,
    VideoFrame,
)

__all__ = ["WARMUP_SECONDS", "Canvas", "play", "warmup"]

WARMUP_SECONDS = 2.0  # D-ID's stream_warmup: idle frames before stream/ready
AUDIO_PER_VIDEO = SAMPLES_PER_VIDEO_FRAME // AUDIO_FRAME_SAMPLES  # two 20 ms audio frames per video frame


@attrs.define(eq=False)
class Canvas:
    """The frame array a stream's player draws into, again and again; None while the stream is idle."""

    frame: VideoFrame | None = None


def warmup() -> PreparedSpeech:
    """The warm-up's speech: silence, the face at rest."""
    frames = round(WARMUP_SECONDS * VIDEO_FPS)
    silence = Speech(
        pcm=np.zeros(frames * SAMPLES_PER_VIDEO_FRAME, np.int16), openness=np.zeros(frames, np.float32)
    )
    return PreparedSpeech(silence)


async def play(speech: SpeechStream, peer: ServerPeer, face: Face, clock: Clock, canvas: Canvas) -> None:
    """Play `speech` to `peer` with `face`'s frames; return once the last frame (the face at rest) is sent."""
    start_clock = clock.now()
    start_media = peer.media_time()
    k = 0  # frames sent so far in this talk
    making: asyncio.Future[Speech | None] = asyncio.ensure_future(speech.next())
    try:
        while (stretch := await making) is not None:
            making = asyncio.ensure_future(speech.next())
            pcm = stretch.pcm
            audio_frames = -(-len(pcm) // AUDIO_FRAME_SAMPLES)
            video_frames = max(stretch.frames, -(-audio_frames // AUDIO_PER_VIDEO))
            for j in range(video_frames):
                # Draw first, then wait for the frame's time: the drawing fills time the loop would spend
                # waiting anyway, and the frame leaves on time when the loop is busy.
                canvas.frame = face.frame(stretch.mouth(j), k * FRAME_SECONDS, out=canvas.frame)
                delay = start_clock + k * FRAME_SECONDS - clock.now()
                if delay > 0:
                    await clock.sleep(delay)
                at = start_media + k * FRAME_SECONDS
                await peer.send_video(canvas.frame, at)
                for a in range(AUDIO_PER_VIDEO):
                    index = j * AUDIO_PER_VIDEO + a
                    if index >= audio_frames:
                        break
                    chunk = pcm[index * AUDIO_FRAME_SAMPLES : (index + 1) * AUDIO_FRAME_SAMPLES]
                    if len(chunk) < AUDIO_FRAME_SAMPLES:
                        chunk = np.concatenate([chunk, np.zeros(AUDIO_FRAME_SAMPLES - len(chunk), np.int16)])
                    await peer.send_audio(chunk, at + a * AUDIO_FRAME_SAMPLES / AUDIO_RATE)
                k += 1
    finally:
        if not making.done():
            making.cancel()
        await asyncio.gather(making, return_exceptions=True)
    # End on the face at rest (mouth closed, head home): clients keep showing the last frame.
    delay = start_clock + k * FRAME_SECONDS - clock.now()
    if delay > 0:
        await clock.sleep(delay)
    canvas.frame = face.frame(0.0, out=canvas.frame)
    await peer.send_video(canvas.frame, start_media + k * FRAME_SECONDS)
    canvas.frame = None  # an idle stream holds no frame
