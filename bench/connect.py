"""Connect latency: create → ICE connected → data channel open, beside two bare aiortc peers, same run.

    .venv/bin/python bench/connect.py [--streams 50] [--json PATH]

talkstream: `talkstream serve` runs in a separate process on 127.0.0.1; this process is the client
(talkstream's `StreamClient` over aiohttp and aiortc) and creates `--streams` streams one after the other,
timing create → ICE connected → data channel open → first video frame of a warm-up (``stream_warmup``).
The floor: two bare aiortc peers in two processes doing the same offer/answer over a pipe (the offer with
an audio and a video track and a data channel, loopback only), timed from the offer's creation to the
data channel open and the first video frame.

Target: talkstream's p50 within 1.5x the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from served import bench_main, machine, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

FLOOR_PEER = r"""
import asyncio, json, sys, fractions, numpy as np, av
from aiortc import RTCPeerConnection, RTCConfiguration, RTCSessionDescription, VideoStreamTrack
from talkstream.transports.aiortc_patches import offered_host_addresses

class Frames(VideoStreamTrack):
    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(Frames())
    pc.createDataChannel("JanusDataChannel")
    with offered_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
    loop = asyncio.get_running_loop()
    answer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await loop.run_in_executor(None, sys.stdin.readline)  # the other side is done
    await pc.close()

asyncio.run(main())
"""


async def floor_once() -> dict[str, float]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from talkstream.transports.aiortc_patches import offered_host_addresses

    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOR_PEER, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    offer = json.loads(await proc.stdout.readline())
    offered = time.perf_counter()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    marks: dict[str, float] = {}
    first_frame = asyncio.Event()
    channel_open = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    @pc.on("datachannel")
    def on_channel(channel: Any) -> None:
        marks["channel"] = time.perf_counter()
        channel_open.set()

    @pc.on("iceconnectionstatechange")
    def on_ice() -> None:
        if pc.iceConnectionState in ("connected", "completed"):
            marks.setdefault("ice", time.perf_counter())

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def first() -> None:
            await track.recv()
            marks["frame"] = time.perf_counter()
            first_frame.set()

        tasks.append(asyncio.ensure_future(first()))

    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    with offered_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createAnswer())
    proc.stdin.write((json.dumps({"sdp": pc.localDescription.sdp}) + "\n").encode())
    await proc.stdin.drain()
    await asyncio.wait_for(asyncio.gather(first_frame.wait(), channel_open.wait()), 30)
    proc.stdin.write(b"done\n")
    await proc.stdin.drain()
    await pc.close()
    await proc.wait()
    return {
        "ice_ms": (marks["ice"] - offered) * 1000,
        "channel_ms": (marks["channel"] - offered) * 1000,
        "first_frame_ms": (marks["frame"] - offered) * 1000,
        "with_process_start_ms": (marks["frame"] - started) * 1000,
    }


async def talkstream_once(client: StreamClient) -> dict[str, float]:
    sink = MediaSink()
    started = time.perf_counter()
    stream = await client.create("bundled:astronaut", sink=sink, stream_warmup=True, output_resolution=256)
    created = time.perf_counter()
    await stream.connected(within=30)
    connected = time.perf_counter()
    await stream.peer.channel_open.wait()  # type: ignore[attr-defined]
    channel = time.perf_counter()
    await sink.first_video.wait()
    frame = time.perf_counter()
    await stream.close()
    return {
        "create_ms": (created - started) * 1000,
        "ice_ms": (connected - started) * 1000,
        "channel_ms": (channel - started) * 1000,
        "first_frame_ms": (frame - started) * 1000,
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(float(np.percentile(ordered, 95)), 1),
        "min": round(ordered[0], 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ours: list[dict[str, float]] = []
    floors: list[dict[str, float]] = []
    async with served() as server:
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            await talkstream_once(client)  # warm the server's portrait cache and the code paths
            await floor_once()
            for _ in range(args.streams):
                ours.append(await talkstream_once(client))
                floors.append(await floor_once())
    result: dict[str, Any] = {
        "benchmark": "connect",
        "machine": machine(),
        "streams": args.streams,
        "talkstream": {k: summary([r[k] for r in ours]) for k in ours[0]},
        "floor": {k: summary([r[k] for r in floors]) for k in floors[0]},
    }
    ratio = result["talkstream"]["channel_ms"]["p50"] / result["floor"]["channel_ms"]["p50"]
    result["targets"] = {"channel_p50_to_floor": round(ratio, 2), "max": 1.5, "met": ratio <= 1.5}
    return result


def report(result: dict[str, Any]) -> str:
    ours, floor = result["talkstream"], result["floor"]
    lines = [f"connect benchmark: {result['streams']} streams, one at a time, on 127.0.0.1 (ms)"]
    lines.append(f"  {'':28} {'p50':>8} {'p95':>8}")
    for name in ("create_ms", "ice_ms", "channel_ms", "first_frame_ms"):
        lines.append(f"  talkstream {name:<17} {ours[name]['p50']:>8} {ours[name]['p95']:>8}")
    for name in ("ice_ms", "channel_ms", "first_frame_ms"):
        lines.append(f"  bare aiortc {name:<16} {floor[name]['p50']:>8} {floor[name]['p95']:>8}")
    t = result["targets"]
    verdict = "met" if t["met"] else "MISSED"
    lines.append(
        f"  create->channel open p50 / floor: {t['channel_p50_to_floor']}x (target <= 1.5x): {verdict}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main("connect", __doc__, lambda p: p.add_argument("--streams", type=int, default=50), main, report)
