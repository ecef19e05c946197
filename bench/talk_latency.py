"""Talk latency: the talk request → the first talking video frame and the first audio at the client.

    .venv/bin/python bench/talk_latency.py [--talks 30] [--json PATH]

`talkstream serve` runs in its own process on 127.0.0.1 (allowed to fetch from loopback); this process
connects one stream with talkstream's client and asks for `--talks` text talks (espeak-ng included in the
time) and as many audio talks (a WAV served by a local fixture server, so its fetch and decoding count),
one after the other, timing from sending the request to the first video frame and the first audio frame of
that talk arriving over WebRTC. There are no frames between talks, so the first frame after a request is
the talk's.

Targets: p50 <= 150 ms for text, <= 100 ms for audio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import numpy as np
from served import bench_main, encode_wav, machine, media_server, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

SENTENCES = [
    "Hello there, how are you today?",
    "The weather is lovely this morning.",
    "Streaming faces in real time is fun.",
]


def wav(seconds: float = 1.5, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return encode_wav(
        (np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) * 20000).astype(np.int16), rate
    )


async def quiet(sink: MediaSink, gap: float = 0.3) -> None:
    """Wait until no frame has arrived for `gap` seconds: the last talk's frames are all in."""
    count, since = sink.frames, time.perf_counter()
    while time.perf_counter() - since < gap:
        await asyncio.sleep(0.01)
        if sink.frames != count:
            count, since = sink.frames, time.perf_counter()


async def measure(stream: Any, sink: MediaSink, **talk: Any) -> tuple[float, float]:
    await quiet(sink)
    frames, audio = sink.frames, len(sink.audio_times)
    started = time.perf_counter()
    spoken = await stream.talk(**talk)
    first_video = first_audio = None
    while first_video is None or first_audio is None:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        if first_video is None and sink.frames > frames:
            first_video = now
        if first_audio is None and len(sink.audio_times) > audio:
            first_audio = now
    await spoken.done(within=60)
    return (first_video - started) * 1000, (first_audio - started) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p95": round(float(np.percentile(values, 95)), 1)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with media_server({"speech.wav": wav()}) as media, served("--allow-local-urls") as server:
        audio_url = f"{media}/speech.wav"
        sink = MediaSink()
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            stream = await client.create("bundled:astronaut", sink=sink)
            await stream.connected(within=30)
            await measure(stream, sink, text="Warming up.")
            text = [await measure(stream, sink, text=SENTENCES[i % 3]) for i in range(args.talks)]
            audio = [await measure(stream, sink, audio_url=audio_url) for _ in range(args.talks)]
            await stream.close()
    result: dict[str, Any] = {
        "benchmark": "talk_latency",
        "machine": machine(),
        "talks": args.talks,
        "text": {
            "first_video_ms": summary([v for v, _ in text]),
            "first_audio_ms": summary([a for _, a in text]),
        },
        "audio": {
            "first_video_ms": summary([v for v, _ in audio]),
            "first_audio_ms": summary([a for _, a in audio]),
        },
    }
    text_p50 = result["text"]["first_video_ms"]["p50"]
    audio_p50 = result["audio"]["first_video_ms"]["p50"]
    result["targets"] = {
        "text_p50_max_ms": 150,
        "audio_p50_max_ms": 100,
        "text_met": text_p50 <= 150,
        "audio_met": audio_p50 <= 100,
    }
    return result


def report(result: dict[str, Any]) -> str:
    t = result["targets"]
    lines = [f"talk latency: {result['talks']} talks of each kind, request -> first frame at the client (ms)"]
    lines.append(f"  {'':10} {'video p50':>10} {'video p95':>10} {'audio p50':>10} {'audio p95':>10}  target")
    for kind, limit, met in (("text", 150, t["text_met"]), ("audio", 100, t["audio_met"])):
        v, a = result[kind]["first_video_ms"], result[kind]["first_audio_ms"]
        verdict = "met" if met else "MISSED"
        row = f"  {kind:10} {v['p50']:>10} {v['p95']:>10} {a['p50']:>10} {a['p95']:>10}"
        lines.append(f"{row}  <= {limit} ms: {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main(
        "talk_latency", __doc__, lambda p: p.add_argument("--talks", type=int, default=30), main, report
    )
