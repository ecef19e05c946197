"""WebSocket streaming: the first chunk sent → the first talking frame received, for text and for PCM.

    .venv/bin/python bench/websocket.py [--talks 20] [--json PATH]

`talkstream serve` runs in its own process; this process connects one stream over D-ID's WebSocket API
with talkstream's `WebSocketAdapter` and real WebRTC, and `--talks` times streams a talk in: text as an
LLM would write it (a word every 50 ms; the first sentence, "Hello there.", is complete at its second
chunk, and espeak-ng speaks it), and PCM at 16 kHz in 0.25 s chunks sent in real time. Timed from sending
the first chunk to the first frame of the talk's sound arriving (an audio frame over -40 dBFS: the talk
itself, not the silence a live talk plays while its first phrase is being spoken; its video frame leaves
with it), and for text also from the chunk that completed the first phrase.

Targets: first chunk -> first frame p50 <= 250 ms for text (two chunks at 50 ms apart included), <= 150 ms
for PCM.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
from served import bench_main, machine, served  # bench/served.py, beside this file

from talkstream.adapters.http.websocket import WebSocketAdapter
from talkstream.engine.client import ClientStream, StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

WORDS = ["Hello", "there.", "I", "am", "answering", "you", "word", "by", "word,", "as", "a", "language"]
PHRASE_DONE = 1  # the index of the chunk that completes the first phrase ("there.")


async def quiet(sink: MediaSink, gap: float = 0.4) -> None:
    count, since = sink.frames, time.perf_counter()
    while time.perf_counter() - since < gap:
        await asyncio.sleep(0.01)
        if sink.frames != count:
            count, since = sink.frames, time.perf_counter()


class Heard(MediaSink):
    """Also notes when each audio frame arrived and whether it carried sound (over -40 dBFS)."""

    def __init__(self) -> None:
        super().__init__()
        self.sounds: list[float] = []  # arrival times of audible audio frames
        self.heard = asyncio.Event()

    def add_audio(self, frame: av.AudioFrame) -> None:
        super().add_audio(frame)
        samples = frame.to_ndarray().astype(np.float64).reshape(-1)
        if float(np.sqrt((samples**2).mean())) > 32768 * 0.01:
            self.sounds.append(time.perf_counter())
            self.heard.set()


async def first_sound(sink: Heard) -> float:
    sink.heard.clear()
    await sink.heard.wait()
    return sink.sounds[-1]


async def text_talk(stream: ClientStream, sink: Heard) -> tuple[float, float]:
    await quiet(sink)
    sent: list[float] = []

    async def words() -> AsyncIterator[str]:
        for word in WORDS:
            sent.append(time.perf_counter())
            yield word + " "
            await asyncio.sleep(0.05)

    arrival = asyncio.ensure_future(first_sound(sink))
    talk = await stream.stream_text(words())
    at = await arrival
    assert talk is not None
    await talk.done(within=60)
    return (at - sent[0]) * 1000, (at - sent[PHRASE_DONE]) * 1000


async def pcm_talk(stream: ClientStream, sink: Heard, pcm: bytes) -> float:
    await quiet(sink)
    sent: list[float] = []

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 8000):
            sent.append(time.perf_counter())
            yield pcm[at : at + 8000]
            await asyncio.sleep(0.25)

    arrival = asyncio.ensure_future(first_sound(sink))
    talk = await stream.stream_audio(pieces())
    at = await arrival
    assert talk is not None
    await talk.done(within=60)
    return (at - sent[0]) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p95": round(float(np.percentile(values, 95)), 1)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rate = 16_000
    t = np.arange(rate * 2) / rate
    voice = np.sign(np.sin(2 * np.pi * 140 * t)) * 0.5 + np.sin(2 * np.pi * 700 * t) * 0.3
    pcm = (voice * (0.7 + 0.3 * np.sin(2 * np.pi * 4 * t)) * 20000).astype("<i2").tobytes()
    async with served() as server:
        sink = Heard()
        adapter = WebSocketAdapter(server.base, server.key)
        async with StreamClient(adapter, AiortcClientTransport(), retry=RetryPolicy.none()) as client:
            stream = await client.create("bundled:astronaut", sink=sink)
            await stream.connected(within=30)
            await text_talk(stream, sink)  # warm-up: the voice and the encoder
            text = [await text_talk(stream, sink) for _ in range(args.talks)]
            audio = [await pcm_talk(stream, sink, pcm) for _ in range(args.talks)]
            await stream.close()
    result: dict[str, Any] = {
        "benchmark": "websocket",
        "machine": machine(),
        "talks": args.talks,
        "text_first_chunk_ms": summary([a for a, _ in text]),
        "text_phrase_complete_ms": summary([b for _, b in text]),
        "pcm_first_chunk_ms": summary(audio),
    }
    result["targets"] = {
        "text_p50_max_ms": 250,
        "pcm_p50_max_ms": 150,
        "text_met": result["text_first_chunk_ms"]["p50"] <= 250,
        "pcm_met": result["pcm_first_chunk_ms"]["p50"] <= 150,
    }
    return result


def report(result: dict[str, Any]) -> str:
    t = result["targets"]
    lines = [
        f"websocket: {result['talks']} streamed talks of each kind, first chunk -> first talking frame (ms)"
    ]
    lines.append(f"  {'':34} {'p50':>7} {'p95':>7}  target")
    rows = (
        (
            "text, from the first chunk",
            result["text_first_chunk_ms"],
            f"<= {t['text_p50_max_ms']} p50",
            t["text_met"],
        ),
        ("text, from the phrase's last chunk", result["text_phrase_complete_ms"], "", None),
        (
            "PCM, from the first chunk",
            result["pcm_first_chunk_ms"],
            f"<= {t['pcm_p50_max_ms']} p50",
            t["pcm_met"],
        ),
    )
    for name, s, target, met in rows:
        verdict = "" if met is None else (": met" if met else ": MISSED")
        lines.append(f"  {name:34} {s['p50']:>7} {s['p95']:>7}  {target}{verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main("websocket", __doc__, lambda p: p.add_argument("--talks", type=int, default=20), main, report)
