"""What a client receives: `MediaSink` counts frames and samples with their arrival and media times, keeps
them if asked, and writes them to an MP4.

What it must never do: block the transport's receive loop, or hold frames it was not asked to keep.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path
from typing import Any

import av

from talkstream.engine.ports import AUDIO_RATE

__all__ = ["MediaSink"]


class MediaSink:
    """Receives decoded frames from a client transport. `keep=True` keeps them for `write_mp4`."""

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.video_times: list[tuple[float, float]] = []  # (arrival, media seconds)
        self.audio_times: list[tuple[float, float, int]] = []  # (arrival, media seconds, samples)
        self.video: list[av.VideoFrame] = []
        self.audio: list[av.AudioFrame] = []
        self.size: tuple[int, int] | None = None
        self.first_video = asyncio.Event()  # set when the first video frame arrives

    def add_video(self, frame: av.VideoFrame) -> None:
        self.video_times.append((time.monotonic(), float(frame.time) if frame.time is not None else 0.0))
        self.size = (frame.width, frame.height)
        self.first_video.set()
        if self.keep:
            self.video.append(frame)

    def add_audio(self, frame: av.AudioFrame) -> None:
        media = float(frame.time) if frame.time is not None else 0.0
        self.audio_times.append((time.monotonic(), media, frame.samples))
        if self.keep:
            self.audio.append(frame)

    @property
    def frames(self) -> int:
        return len(self.video_times)

    @property
    def samples(self) -> int:
        return sum(n for _, _, n in self.audio_times)

    def write_mp4(self, path: Path) -> dict[str, Any]:
        """Encode the kept frames to `path` (H.264 + AAC, timestamps from the stream); return a summary."""
        if not self.video:
            raise ValueError("no video frames were kept")
        start = min(f.time for f in self.video if f.time is not None)
        if self.audio:
            start = min(start, min(f.time for f in self.audio if f.time is not None))
        width, height = self.video[0].width, self.video[0].height
        with av.open(str(path), "w", format="mp4") as container:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height = width - width % 2, height - height % 2
            video.pix_fmt = "yuv420p"
            # Frames keep the times they were sent with (talks leave gaps): a 90 kHz time base, and no
            # B-frames, so that decode order equals presentation order whatever the spacing.
            video.time_base = fractions.Fraction(1, 90000)
            video.codec_context.time_base = fractions.Fraction(1, 90000)
            video.options = {"preset": "veryfast", "crf": "23", "bf": "0"}
            audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            last_pts = -1
            for frame in self.video:
                image = frame.to_ndarray(format="yuv420p")
                out = av.VideoFrame.from_ndarray(image, format="yuv420p")
                pts = round(((frame.time or 0.0) - start) * 90000)
                if pts <= last_pts:
                    continue
                out.pts, out.time_base, last_pts = pts, video.time_base, pts
                for packet in video.encode(out):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
            if self.audio:
                resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
                cursor: int | None = None
                for received in self.audio:
                    for out_frame in resampler.resample(received):
                        if cursor is None:  # the audio starts where the stream's clock says it did
                            cursor = max(0, round(((received.time or 0.0) - start) * AUDIO_RATE))
                        out_frame.pts, out_frame.time_base = cursor, fractions.Fraction(1, AUDIO_RATE)
                        cursor += out_frame.samples
                        for packet in audio.encode(out_frame):
                            container.mux(packet)
                for packet in audio.encode(None):
                    container.mux(packet)
        return {
            "path": str(path),
            "frames": len(self.video),
            "audio_frames": len(self.audio),
            "size": (width, height),
        }
