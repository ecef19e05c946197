"""Talks rendered to a file (D-ID's asynchronous ``/talks``): `FileRenderer` draws each frame with the face
and encodes H.264 video and AAC audio into an MP4 (or MOV) with PyAV, on threads of its own.

What it must never do: draw or encode on the event loop, run more renders at once than it has threads, or
leave a half-written file behind (the caller removes it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fractions
import threading
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from talkstream.engine.errors import TalkstreamError
from talkstream.engine.ports import (
    AUDIO_RATE,
    FRAME_SECONDS,
    SAMPLES_PER_VIDEO_FRAME,
    VIDEO_FPS,
    Face,
    Speech,
    SpeechStream,
    VideoFrame,
)

__all__ = ["FileRenderer"]


class _Cancelled(TalkstreamError):
    kind = "Cancelled"
    default_description = "the talk was deleted while it was rendered"


class _Writer:
    """One file being written; its methods hold a lock, so a render abandoned while a stretch is still
    being written on another thread waits for that stretch (PyAV's objects are not for two threads)."""

    def __init__(self, path: Path, container: str, width: int, height: int) -> None:
        self.lock = threading.Lock()
        self.output = av.open(str(path), "w", format="mov" if container == "mov" else "mp4")
        self.video = self.output.add_stream("libx264", rate=VIDEO_FPS)
        self.video.width, self.video.height = width - width % 2, height - height % 2
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"preset": "veryfast", "crf": "23", "bf": "0"}
        self.audio = self.output.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
        self.frames = 0
        self.samples = 0
        self.canvas: VideoFrame | None = None

    def write(self, face: Face, stretch: Speech) -> None:
        with self.lock:
            self._write(face, stretch)

    def _write(self, face: Face, stretch: Speech) -> None:
        audio_frames = -(-len(stretch.pcm) // SAMPLES_PER_VIDEO_FRAME)
        for j in range(max(stretch.frames, audio_frames)):
            self.canvas = face.frame(stretch.mouth(j), self.frames * FRAME_SECONDS, out=self.canvas)
            picture = av.VideoFrame.from_ndarray(self.canvas, format="yuv420p")
            picture.pts = self.frames
            for packet in self.video.encode(picture):
                self.output.mux(packet)
            self.frames += 1
            pcm = stretch.pcm[j * SAMPLES_PER_VIDEO_FRAME : (j + 1) * SAMPLES_PER_VIDEO_FRAME]
            if len(pcm) < SAMPLES_PER_VIDEO_FRAME:  # a frame's sound in full, so that sound and picture agree
                pcm = np.concatenate([pcm, np.zeros(SAMPLES_PER_VIDEO_FRAME - len(pcm), np.int16)])
            sound = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            sound.sample_rate = AUDIO_RATE
            for out in self.resampler.resample(sound):
                out.pts, out.time_base = self.samples, fractions.Fraction(1, AUDIO_RATE)
                self.samples += out.samples
                for packet in self.audio.encode(out):
                    self.output.mux(packet)

    def finish(self) -> None:
        with self.lock:
            for packet in self.video.encode(None):
                self.output.mux(packet)
            for packet in self.audio.encode(None):
                self.output.mux(packet)
            self.output.close()

    def abandon(self) -> None:
        with self.lock, contextlib.suppress(Exception):  # it may be half closed already
            self.output.close()


class FileRenderer:
    """Renders talks on `workers` threads of its own (implements `engine.talks.Renderer`)."""

    def __init__(self, workers: int = 1) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="talk-render")

    async def render(
        self,
        face: Face,
        speech: SpeechStream,
        path: Path,
        *,
        container: str,
        cancelled: Callable[[], bool],
    ) -> float:
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(self._pool, _Writer, path, container, face.width, face.height)
        try:
            while (stretch := await speech.next()) is not None:
                if cancelled():
                    raise _Cancelled()
                await loop.run_in_executor(self._pool, writer.write, face, stretch)
            await loop.run_in_executor(self._pool, writer.finish)
        except BaseException:
            await asyncio.shield(loop.run_in_executor(self._pool, writer.abandon))
            raise
        return writer.frames * FRAME_SECONDS

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
