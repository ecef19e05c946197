"""Concurrency: how many streams talk at once at 512x512 and 25 fps, and what each costs the server.

    .venv/bin/python bench/concurrency.py [--counts 4,8,10,12,14,16] [--window 10] [--json PATH]

For each N: `talkstream serve` runs in its own process; this process holds the receivers (talkstream's
client over aiortc, decoding everything). It creates N streams at 512x512 (the default talking motion),
starts an audio talk on every one at once, waits 3 s, then counts over `--window` seconds the video frames
each stream receives and the CPU time the server process spends. The floor, at the same N, in the same
run: a process of N bare aiortc peers whose tracks send pre-rendered frames of the same talking face (and
the same audio), to the same receivers; its CPU time over the same window.

Targets: every stream receives >= 24 fps at N >= 10; the server's CPU per stream within 1.3x the
floor's. The sweep stops at the first N where talkstream misses 24 fps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from lipsync import script  # bench/lipsync.py: the same voiced bursts and silences
from served import bench_main, machine, media_server, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import ClientStream, StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

WARM_SECONDS = 3.0
MIN_FPS = 24.0

# The floor: N bare aiortc peers in one process, offers out on stdout, answers in on stdin.
FLOOR_PEERS = r"""
import asyncio, fractions, json, sys, time
import av, numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from talkstream.avatar.animator import Animator
from talkstream.avatar.portrait import bundled_portrait_bytes, load_portrait
from talkstream.avatar.speech import decode_audio, mouth_track
from talkstream.transports.aiortc_patches import offered_host_addresses

count, wav_path = int(sys.argv[1]), sys.argv[2]
pcm = decode_audio(open(wav_path, "rb").read())
openness = mouth_track(pcm)
face = Animator(load_portrait(bundled_portrait_bytes()), resolution=512)
FRAMES = [face.frame(float(o), k / 25) for k, o in enumerate(openness[:250])]  # 10 s, pre-rendered

class Paced(MediaStreamTrack):
    def __init__(self, kind, period):
        super().__init__()
        self.kind, self.period, self.start, self.count = kind, period, None, 0
    async def wait(self):
        if self.start is None:
            self.start = time.monotonic()
        delay = self.start + self.count * self.period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.count += 1
        return self.count - 1

class Video(Paced):
    def __init__(self):
        super().__init__("video", 0.04)
    async def recv(self):
        k = await self.wait()
        frame = av.VideoFrame.from_ndarray(FRAMES[k % len(FRAMES)], format="yuv420p")
        frame.pts, frame.time_base = k * 3600, fractions.Fraction(1, 90000)
        return frame

class Audio(Paced):
    def __init__(self):
        super().__init__("audio", 0.02)
    async def recv(self):
        k = await self.wait()
        at = (k * 960) % (len(pcm) - 960)
        frame = av.AudioFrame.from_ndarray(pcm[at : at + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        return frame

async def main():
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(count):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(Audio())
        pc.addTrack(Video())
        pc.createDataChannel("JanusDataChannel")
        with offered_host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        answer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        peers.append(pc)
    print(json.dumps({"ready": True}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the receivers are done
    for pc in peers:
        await pc.close()

asyncio.run(main())
"""


class Window:
    """Frames received per stream and CPU seconds per process over one measuring window."""

    def __init__(self, sinks: Sequence[MediaSink], processes: dict[str, psutil.Process]) -> None:
        self.sinks, self.processes = sinks, processes

    def _cpu(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.processes.items()}

    async def measure(self, seconds: float) -> dict[str, Any]:
        cpu_before, started = self._cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_after, ended = self._cpu(), time.monotonic()
        elapsed = ended - started
        fps = [
            sum(1 for arrival, _ in s.video_times if started <= arrival < ended) / elapsed for s in self.sinks
        ]
        cores = {name: (cpu_after[name] - cpu_before[name]) / elapsed for name in cpu_before}
        return {
            "fps_min": round(min(fps), 2),
            "fps_mean": round(float(np.mean(fps)), 2),
            "cores": {name: round(value, 3) for name, value in cores.items()},
            "sender_core_per_stream": round(cores["sender"] / len(self.sinks), 4),
        }


async def talkstream_at(count: int, window: float, audio_url: str) -> dict[str, Any]:
    limits = ("--max-streams-per-key", str(count), "--max-streams", str(count))
    async with served("--allow-local-urls", *limits) as server:
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            sinks = [MediaSink() for _ in range(count)]
            streams: list[ClientStream] = []
            for sink in sinks:
                stream = await client.create("bundled:astronaut", sink=sink, output_resolution=512)
                await stream.connected(within=30)
                streams.append(stream)
            await asyncio.gather(*(stream.talk(audio_url=audio_url) for stream in streams))
            await asyncio.sleep(WARM_SECONDS)
            processes = {"sender": psutil.Process(server.pid), "receivers": psutil.Process()}
            result = await Window(sinks, processes).measure(window)
            for stream in streams:
                await stream.close()
    return result


async def floor_at(count: int, window: float, wav_path: Path) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOOR_PEERS,
        str(count),
        str(wav_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    sinks = [MediaSink() for _ in range(count)]
    peers: list[RTCPeerConnection] = []
    readers: list[asyncio.Task[None]] = []

    async def read(track: Any, sink: MediaSink) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                (sink.add_video if track.kind == "video" else sink.add_audio)(frame)

    from talkstream.transports.aiortc_patches import offered_host_addresses

    try:
        for sink in sinks:
            offer = json.loads(await proc.stdout.readline())
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.on("track", lambda track, sink=sink: readers.append(asyncio.ensure_future(read(track, sink))))
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            with offered_host_addresses(["127.0.0.1"]):
                await pc.setLocalDescription(await pc.createAnswer())
            proc.stdin.write((json.dumps({"sdp": pc.localDescription.sdp}) + "\n").encode())
            await proc.stdin.drain()
            peers.append(pc)
        await proc.stdout.readline()  # ready
        await asyncio.sleep(WARM_SECONDS)
        processes = {"sender": psutil.Process(proc.pid), "receivers": psutil.Process()}
        result = await Window(sinks, processes).measure(window)
    finally:
        proc.stdin.write(b"done\n")
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        for pc in peers:
            await pc.close()
        for task in readers:
            task.cancel()
        await proc.wait()
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    body, _ = script(WARM_SECONDS + args.window + 30)
    wav_path = args.json.parent / "concurrency-speech.wav"
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    wav_path.write_bytes(body)
    rows = []
    async with media_server({"speech.wav": body}) as media:
        for count in args.counts:
            ours = await talkstream_at(count, args.window, f"{media}/speech.wav")
            floor = await floor_at(count, args.window, wav_path)
            ratio = ours["sender_core_per_stream"] / floor["sender_core_per_stream"]
            rows.append(
                {"streams": count, "talkstream": ours, "floor": floor, "cost_to_floor": round(ratio, 2)}
            )
            mine, bare = ours["sender_core_per_stream"], floor["sender_core_per_stream"]
            print(
                f"  N={count:>3}: talkstream min {ours['fps_min']:5.1f} fps, {mine:.3f} core/stream;"
                f" floor min {floor['fps_min']:5.1f} fps, {bare:.3f} core/stream; ratio {ratio:.2f}",
                flush=True,
            )
            if ours["fps_min"] < MIN_FPS:
                break
    wav_path.unlink()
    passing = [r for r in rows if r["talkstream"]["fps_min"] >= MIN_FPS]
    best = passing[-1] if passing else None
    result: dict[str, Any] = {
        "benchmark": "concurrency",
        "machine": machine(),
        "resolution": 512,
        "window_s": args.window,
        "rows": rows,
        "max_streams_at_24fps": best["streams"] if best else 0,
    }
    result["targets"] = {
        "min_streams": 10,
        "cost_to_floor_max": 1.3,
        "streams_met": result["max_streams_at_24fps"] >= 10,
        "cost_met": bool(best) and best["cost_to_floor"] <= 1.3,  # type: ignore[index]
    }
    return result


def report(result: dict[str, Any]) -> str:
    t = result["targets"]
    best = result["max_streams_at_24fps"]
    row = next((r for r in result["rows"] if r["streams"] == best), None)
    lines = [
        f"concurrency: largest N with every stream >= 24 fps at 512x512: {best} (target >= 10): "
        + ("met" if t["streams_met"] else "MISSED")
    ]
    if row is not None:
        lines.append(
            f"  at N={best}: server {row['talkstream']['sender_core_per_stream']:.3f} core/stream,"
            f" floor {row['floor']['sender_core_per_stream']:.3f}: {row['cost_to_floor']}x (target <= 1.3x): "
            + ("met" if t["cost_met"] else "MISSED")
        )
    return "\n".join(lines)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--counts", type=lambda s: [int(n) for n in s.split(",")], default=[4, 8, 10, 12, 14, 16]
    )
    parser.add_argument("--window", type=float, default=10.0)


if __name__ == "__main__":
    bench_main("concurrency", __doc__, _options, main, report)
