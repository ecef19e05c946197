"""Lip sync: how far the mouth's opening in the received video is from the speech in the received audio.

    .venv/bin/python bench/lipsync.py [--seconds 300] [--json PATH]

`talkstream serve` runs in its own process; the client connects (head still: ``bank://stiff``) and asks for
one audio talk of `--seconds` seconds: bursts of a voiced buzz (0.2-0.6 s) between silences (0.3-0.5 s),
served from a local fixture. Everything received is kept with its RTP media time. For each burst, the offset
is the time the mouth region of the video starts moving minus the time the audio's energy rises, both read
from what arrived. Video frames are 40 ms apart, so an offset is known to about one frame.

Targets (issue 6): p95 of |offset| <= 40 ms, and no drift: the offsets of the last fifth of the talk match the
first fifth's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import web
from served import machine, served  # bench/served.py, beside this file

from talkstream.adapters.http_client import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

RATE = 16_000
MOUTH = (slice(136, 166), slice(196, 252))  # the bundled portrait's mouth at 512x512, stitched


def script(seconds: float, seed: int = 7) -> tuple[bytes, list[float]]:
    """A WAV of bursts and silences, and the bursts' start times."""
    rng = np.random.default_rng(seed)
    parts, starts, at = [], [], 0.5
    parts.append(np.zeros(int(0.5 * RATE)))
    while at < seconds - 1:
        length = rng.uniform(0.2, 0.6)
        t = np.arange(int(length * RATE)) / RATE
        starts.append(at)
        parts.append((np.sign(np.sin(2 * np.pi * 150 * t)) * 0.4 + np.sin(2 * np.pi * 700 * t) * 0.3) * 20000)
        gap = rng.uniform(0.3, 0.5)
        parts.append(np.zeros(int(gap * RATE)))
        at += length + gap
    pcm = np.concatenate(parts).astype(np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue(), starts


def onsets(times: np.ndarray, values: np.ndarray, threshold: float, min_gap: float = 0.2) -> list[float]:
    """Times where `values` rises through `threshold` after at least `min_gap` s below it."""
    found: list[float] = []
    below_since: float | None = float(times[0]) - min_gap
    for t, v in zip(times, values, strict=True):
        if v >= threshold and below_since is not None and t - below_since >= min_gap:
            found.append(float(t))
            below_since = None
        elif v < threshold and below_since is None:
            below_since = float(t)
    return found


def analyse(sink: MediaSink) -> dict[str, Any]:
    video = sorted(sink.video, key=lambda f: f.time or 0.0)
    frames = [f.to_ndarray(format="gray") for f in video]
    rest = frames[-1][MOUTH].astype(np.int16)  # the talk ends on the face at rest
    motion = np.array([np.abs(f[MOUTH].astype(np.int16) - rest).mean() for f in frames])
    v_times = np.array([f.time or 0.0 for f in video])
    audio = sorted(sink.audio, key=lambda f: f.time or 0.0)
    energy = np.array([np.sqrt((f.to_ndarray().astype(np.float64) ** 2).mean()) for f in audio])
    a_times = np.array([f.time or 0.0 for f in audio])
    audio_onsets = onsets(a_times, energy, threshold=float(energy.max()) * 0.25)
    video_onsets = onsets(v_times, motion, threshold=float(np.percentile(motion, 90)) * 0.3)
    offsets = []
    for a in audio_onsets:
        candidates = [v - a for v in video_onsets if abs(v - a) < 0.25]
        if candidates:
            offsets.append(min(candidates, key=abs) * 1000)
    fifth = max(1, len(offsets) // 5)
    return {
        "bursts": len(audio_onsets),
        "matched": len(offsets),
        "offset_ms": {
            "p50": round(float(np.percentile(np.abs(offsets), 50)), 1),
            "p95": round(float(np.percentile(np.abs(offsets), 95)), 1),
            "mean_signed": round(float(np.mean(offsets)), 1),
        },
        "drift_ms": round(float(np.mean(offsets[-fifth:]) - np.mean(offsets[:fifth])), 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    body, _ = script(args.seconds)
    media = web.Application()

    async def serve_wav(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="audio/wav")

    media.router.add_get("/bursts.wav", serve_wav)
    runner = web.AppRunner(media, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/bursts.wav"
    try:
        async with served("--allow-local-urls") as (base, key):
            sink = MediaSink(keep=True)
            client = StreamClient(
                AiohttpAdapter(base, key), AiortcClientTransport(), retry=RetryPolicy.none()
            )
            async with client:
                stream = await client.create("bundled:astronaut", sink=sink, driver_url="bank://stiff")
                await stream.connected(within=30)
                talk = await stream.talk(audio_url=url)
                await talk.done(within=args.seconds + 60)
                await asyncio.sleep(0.5)  # the last frames in flight
                await stream.close()
    finally:
        await runner.cleanup()
    result = analyse(sink)
    p95 = result["offset_ms"]["p95"]
    result.update(
        {
            "benchmark": "lipsync",
            "seconds": args.seconds,
            "machine": machine(),
            "targets": {"p95_max_ms": 40, "met": p95 <= 40 and abs(result["drift_ms"]) <= 40},
        }
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "lipsync.json")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(outcome, indent=2) + "\n")
    o = outcome["offset_ms"]
    verdict = "met" if outcome["targets"]["met"] else "MISSED"
    matched = f"{outcome['matched']}/{outcome['bursts']}"
    print(f"lip sync over a {outcome['seconds']:g} s talk: {matched} bursts matched")
    print(
        f"  |offset| p50 {o['p50']} ms, p95 {o['p95']} ms (target <= 40), mean signed {o['mean_signed']} ms"
    )
    print(f"  drift last fifth vs first fifth: {outcome['drift_ms']} ms: {verdict}")
    print(f"  (written to {arguments.json})")
