"""Interrupt: the client's `stream/interrupt` → the last of the talk at the receiver, sound and mouth.

    .venv/bin/python bench/interrupt.py [--trials 20] [--json PATH]

`talkstream serve` runs in its own process; this process opens one fluent stream over real WebRTC with
talkstream's client and, `--trials` times, asks for a 6 s talk of loud buzzing speech (a WAV from a local
fixture server: loud in every frame, so any frame of it is recognisable), lets it play for a random 1.0 to
2.5 s and interrupts it, timing from just before the interrupt leaves to:
- the last audio frame of the talk to arrive (loudness above -30 dB of full scale; the idle stream's
  silence after it is far below);
- the last video frame with the mouth open to arrive, judged by a face mesh run on every frame received in
  the 1.5 s around the interrupt (inner-lip opening more than 1.5 % of the face's height above the photo's).

Also timed: the server's `stream/done` for the cut talk (the data channel's round trip plus the wait for the
next frame). The server stops a talk at the frame after it hears the interrupt (its sound fades over 5 ms,
its lips close over three more frames: idle frames, not the talk's); at the receiver this adds the data
channel's trip and the media's own way through the network and the receiver's jitter buffer, which every
frame pays. Target: p95 of the last talk sound <= 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from served import bench_main, encode_wav, machine, media_server, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.avatar.landmarks import find_face
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

LOUD_DB = -30.0  # dBFS: the buzz is about -9, Opus-decoded silence below -80
OPEN_MARGIN = 0.015  # of the face's height, over the photo's own inner-lip opening


def buzz(seconds: float = 6.0, rate: int = 16_000) -> bytes:
    """Speech-like buzz, loud throughout: a 140 Hz voice with a 700 Hz formant, syllables every 200 ms."""
    t = np.arange(int(seconds * rate)) / rate
    voice = np.sign(np.sin(2 * np.pi * 140 * t)) * 0.5 + np.sin(2 * np.pi * 700 * t) * 0.3
    syllables = 0.75 + 0.25 * np.sin(2 * np.pi * 5 * t)
    return encode_wav(voice * syllables * 20000, rate)


class Arrivals(MediaSink):
    """Arrival times (perf_counter) of audio frames with their level, and of video frames with their
    pictures while `keeping` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.levels: list[tuple[float, float]] = []  # (arrival, dBFS)
        self.pictures: list[tuple[float, npt.NDArray[np.uint8]]] = []
        self.keeping = False

    def add_video(self, frame: av.VideoFrame) -> None:
        super().add_video(frame)
        if self.keeping:
            self.pictures.append(
                (time.perf_counter(), np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
            )

    def add_audio(self, frame: av.AudioFrame) -> None:
        super().add_audio(frame)
        samples = frame.to_ndarray().astype(np.float64).reshape(-1)
        rms = float(np.sqrt((samples**2).mean())) / 32768.0
        self.levels.append((time.perf_counter(), 20 * np.log10(rms + 1e-9)))


def opening(picture: npt.NDArray[np.uint8], hint: Any) -> tuple[float, Any] | None:
    found = find_face(picture, hint=hint)
    if found is None:
        return None
    p = found.points
    x0, y0 = p.min(axis=0)
    x1, y1 = p.max(axis=0)
    return float(p[14, 1] - p[13, 1]) / float(p[152, 1] - p[10, 1]), (
        int(x0),
        int(y0),
        int(x1 - x0),
        int(y1 - y0),
    )


def last_open(pictures: list[tuple[float, npt.NDArray[np.uint8]]], closed: float) -> float | None:
    """Arrival time of the last picture whose mouth is open past the margin (None: none was)."""
    last, hint = None, None
    for arrived, picture in pictures:
        measured = opening(picture, hint)
        if measured is None:
            continue
        value, hint = measured
        if value > closed + OPEN_MARGIN:
            last = arrived
    return last


async def trial(stream: Any, sink: Arrivals, audio_url: str, closed_hint: list[float]) -> dict[str, float]:
    talk = await stream.talk(audio_url=audio_url)
    await talk.started
    await asyncio.sleep(random.uniform(1.0, 2.5))
    sink.pictures.clear()
    sink.keeping = True
    await asyncio.sleep(0.4)  # pictures of the talk before the interrupt, for the mouth's baseline
    sent = time.perf_counter()
    await stream.interrupt(within=5)
    confirmed = time.perf_counter()
    await asyncio.sleep(1.1)
    sink.keeping = False
    loud = [arrived for arrived, db in sink.levels if arrived > sent - 1.0 and db > LOUD_DB]
    pictures = list(sink.pictures)
    closed = closed_hint[0]
    mouth = await asyncio.to_thread(last_open, pictures, closed)
    return {
        "confirmed_ms": (confirmed - sent) * 1000,
        "sound_ms": (max(loud) - sent) * 1000 if loud else float("nan"),
        "mouth_ms": (mouth - sent) * 1000 if mouth is not None else float("nan"),
    }


def summary(values: list[float]) -> dict[str, float]:
    kept = [v for v in values if v == v]
    return {
        "p50": round(statistics.median(kept), 1),
        "p95": round(float(np.percentile(kept, 95)), 1),
        "max": round(max(kept), 1),
        "n": len(kept),
    }


async def closed_opening(stream: Any, sink: Arrivals) -> float:
    """The inner-lip opening of the idle stream (the photo's own, breathing and swaying)."""
    sink.pictures.clear()
    sink.keeping = True
    await asyncio.sleep(1.0)
    sink.keeping = False
    values = []
    hint = None
    for _, picture in sink.pictures[::5]:
        measured = await asyncio.to_thread(opening, picture, hint)
        if measured is not None:
            values.append(measured[0])
            hint = measured[1]
    return float(np.median(values))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    random.seed(7)
    async with media_server({"buzz.wav": buzz()}) as media, served("--allow-local-urls") as server:
        sink = Arrivals()
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            stream = await client.create("bundled:astronaut", sink=sink, fluent=True)
            await stream.connected(within=30)
            await asyncio.sleep(1.0)
            closed = [await closed_opening(stream, sink)]
            trials = [await trial(stream, sink, f"{media}/buzz.wav", closed) for _ in range(args.trials)]
            await stream.close()
    sound = summary([t["sound_ms"] for t in trials])
    mouth = summary([t["mouth_ms"] for t in trials])
    confirmed = summary([t["confirmed_ms"] for t in trials])
    return {
        "benchmark": "interrupt",
        "machine": machine(),
        "trials": args.trials,
        "closed_opening_pct": round(closed[0] * 100, 2),
        "server_confirmed_ms": confirmed,
        "last_talk_sound_ms": sound,
        "last_open_mouth_ms": mouth,
        "per_trial": trials,
        "targets": {"sound_p95_max_ms": 150, "met": sound["p95"] <= 150},
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"interrupt: {result['trials']} talks cut mid-sentence on a fluent stream, interrupt sent -> the last"
        " of the talk to arrive (ms)"
    ]
    lines.append(f"  {'':24} {'p50':>7} {'p95':>7} {'max':>7}")
    for name, key in (
        ("stream/done (interrupted)", "server_confirmed_ms"),
        ("last talk sound", "last_talk_sound_ms"),
        ("last open mouth", "last_open_mouth_ms"),
    ):
        s = result[key]
        lines.append(f"  {name:24} {s['p50']:>7} {s['p95']:>7} {s['max']:>7}   ({s['n']} measured)")
    t = result["targets"]
    lines.append(f"  target: sound p95 <= {t['sound_p95_max_ms']} ms: {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main("interrupt", __doc__, lambda p: p.add_argument("--trials", type=int, default=20), main, report)
