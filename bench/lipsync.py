"""Lip sync: how far the mouth's opening in the received video is from the speech in the received audio.

    .venv/bin/python bench/lipsync.py [--seconds 300] [--json PATH]

`talkstream serve` runs in its own process; the client connects (head still: ``bank://stiff``) and asks for
one audio talk of `--seconds` seconds: bursts of a voiced buzz (0.2-0.6 s) between silences (0.3-0.5 s),
served from a local fixture. Everything received is kept with its RTP media time. For each burst, the offset
is the time the first frame showing the mouth moving is due on screen minus the time the audio's energy rises
(placed to 2 ms), both read from what arrived. Video frames are 40 ms apart: a perfect player's offsets
spread over +-20 ms, as the sound can start anywhere within a frame's display time.

Targets: p95 of |offset| <= 40 ms, and no drift: the offsets of the last fifth of the talk match the
first fifth's.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from served import bench_main, encode_wav, machine, media_server, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

RATE = 16_000
ENVELOPE_STEP = 96  # samples at 48 kHz: 2 ms
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
    return encode_wav(np.concatenate(parts).astype(np.int16), RATE), starts


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


class Traces(MediaSink):
    """A sink that keeps only what the analysis needs: the mouth region of each frame, the audio's envelope.

    (Keeping every decoded frame of a 5-minute talk would take gigabytes.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.mouths: list[tuple[float, npt.NDArray[np.uint8]]] = []
        self.envelope: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []  # (times, rms)

    def add_video(self, frame: av.VideoFrame) -> None:
        super().add_video(frame)
        gray = np.asarray(frame.to_ndarray(format="gray"), np.uint8)
        self.mouths.append((float(frame.time or 0.0), gray[MOUTH].copy()))

    def add_audio(self, frame: av.AudioFrame) -> None:
        super().add_audio(frame)
        # The envelope in 2 ms steps (an Opus frame is 20 ms: too coarse to place an onset).
        samples = frame.to_ndarray().astype(np.float64).reshape(-1, len(frame.layout.channels))[:, 0]
        steps = len(samples) // ENVELOPE_STEP
        windows = samples[: steps * ENVELOPE_STEP].reshape(steps, ENVELOPE_STEP)
        times = float(frame.time or 0.0) + np.arange(steps) * ENVELOPE_STEP / frame.sample_rate
        self.envelope.append((times, np.sqrt((windows**2).mean(axis=1))))


def analyse(sink: Traces) -> dict[str, Any]:
    mouths = sorted(sink.mouths, key=lambda m: m[0])
    rest = mouths[-1][1].astype(np.int16)  # the talk ends on the face at rest
    motion = np.array([np.abs(m.astype(np.int16) - rest).mean() for _, m in mouths])
    v_times = np.array([t for t, _ in mouths])
    envelope = sorted(sink.envelope, key=lambda e: float(e[0][0]) if len(e[0]) else 0.0)
    a_times = np.concatenate([t for t, _ in envelope])
    energy = np.concatenate([e for _, e in envelope])
    audio_onsets = onsets(a_times, energy, threshold=float(energy.max()) * 0.25)
    # The mouth closes more slowly than sound stops, so its openings are found near each sound's onset: the
    # first frame within 120 ms before to 200 ms after it where the motion rises through the threshold.
    threshold = float(np.percentile(motion, 90)) * 0.3
    rising = np.flatnonzero((motion[1:] >= threshold) & (motion[:-1] < threshold)) + 1
    offsets = []
    for a in audio_onsets:
        near = [float(v_times[i]) - a for i in rising if -0.12 <= v_times[i] - a <= 0.2]
        if near:
            offsets.append(near[0] * 1000)
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
        "offsets_ms": [round(o, 1) for o in offsets],
        "audio_onsets_s": [round(a, 3) for a in audio_onsets],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    body, _ = script(args.seconds)
    async with media_server({"bursts.wav": body}) as media, served("--allow-local-urls") as server:
        sink = Traces()
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            stream = await client.create("bundled:astronaut", sink=sink, driver_url="bank://stiff")
            await stream.connected(within=30)
            talk = await stream.talk(audio_url=f"{media}/bursts.wav")
            await talk.done(within=args.seconds + 60)
            await asyncio.sleep(0.5)  # the last frames in flight
            await stream.close()
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


def report(outcome: dict[str, Any]) -> str:
    o = outcome["offset_ms"]
    verdict = "met" if outcome["targets"]["met"] else "MISSED"
    matched = f"{outcome['matched']}/{outcome['bursts']}"
    return "\n".join(
        [
            f"lip sync over a {outcome['seconds']:g} s talk: {matched} bursts matched",
            f"  |offset| p50 {o['p50']} ms, p95 {o['p95']} ms (target <= 40), "
            f"mean signed {o['mean_signed']} ms",
            f"  drift last fifth vs first fifth: {outcome['drift_ms']} ms: {verdict}",
        ]
    )


if __name__ == "__main__":
    bench_main(
        "lipsync", __doc__, lambda p: p.add_argument("--seconds", type=float, default=300.0), main, report
    )
