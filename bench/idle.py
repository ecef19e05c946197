"""Idle streams: what 200 connected streams that say nothing cost the server, in CPU and memory.

    .venv/bin/python bench/idle.py [--streams 200] [--window 20] [--json PATH]

`talkstream serve` runs in its own process; this process creates `--streams` streams one after the other
and connects each over aiortc (the server's offer at 256x256, no warm-up), then leaves them idle: no talks,
so no frames; only ICE consent checks and RTCP go back and forth. Over `--window` seconds it reads the
server process's CPU time, and its resident memory before the first stream and with all of them connected.

Target: server CPU <= 5 % of one core with 200 idle streams; memory per idle stream reported.

With `--fluent` the streams are fluent (at the default 512 px): between talks they send idle video and
silence, so each costs about what a talking stream does; it reports CPU per stream, against concurrency.py's
figure for a talking one (results/idle_fluent.json).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil
from served import bench_main, machine, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import ClientStream, StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

MIB = 1024 * 1024


async def main(args: argparse.Namespace) -> dict[str, Any]:
    limits = ("--max-streams-per-key", str(args.streams), "--max-streams", str(args.streams))
    async with served(*limits) as server:
        process = psutil.Process(server.pid)
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            # One stream first, closed again: the portrait is decoded and cached, the code paths warm.
            warm = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=256)
            await warm.connected(within=30)
            await warm.close()
            await asyncio.sleep(1.0)
            rss_before = process.memory_info().rss
            streams: list[ClientStream] = []
            started = time.monotonic()
            size = {"fluent": True} if args.fluent else {"output_resolution": 256}
            for _ in range(args.streams):
                stream = await client.create("bundled:astronaut", sink=MediaSink(), **size)
                await stream.connected(within=30)
                streams.append(stream)
            connect_seconds = time.monotonic() - started
            await asyncio.sleep(3.0)  # the last connections settle
            before, t0 = process.cpu_times(), time.monotonic()
            threads_before = {t.id: t.user_time + t.system_time for t in process.threads()}
            await asyncio.sleep(args.window)
            after, t1 = process.cpu_times(), time.monotonic()
            threads = {
                t.id: t.user_time + t.system_time - threads_before.get(t.id, 0.0) for t in process.threads()
            }
            rss_after = process.memory_info().rss
            live = sum(1 for s in streams if not s.session.closed)
            for stream in streams:
                await stream.close()
    elapsed = t1 - t0
    user, system = (after.user - before.user) / elapsed * 100, (after.system - before.system) / elapsed * 100
    cpu_percent = user + system
    busy_threads = sorted((round(v / elapsed * 100, 2) for v in threads.values() if v > 0), reverse=True)
    per_stream = (rss_after - rss_before) / args.streams
    if args.fluent:
        return {
            "benchmark": "idle_fluent",
            "machine": machine(),
            "streams": args.streams,
            "still_connected": live,
            "window_s": args.window,
            "server_cpu_percent_of_core": round(cpu_percent, 2),
            "server_core_per_stream": round(cpu_percent / 100 / args.streams, 3),
            "memory_per_stream_kib": round(per_stream / 1024, 1),
            "targets": {"met": live == args.streams},
        }
    return {
        "benchmark": "idle",
        "machine": machine(),
        "streams": args.streams,
        "still_connected": live,
        "connect_all_s": round(connect_seconds, 1),
        "window_s": args.window,
        "server_cpu_percent_of_core": round(cpu_percent, 2),
        "server_cpu_user_system_percent": [round(user, 2), round(system, 2)],
        "server_threads_busy_percent": busy_threads[:5],
        "server_rss_mib": {"before": round(rss_before / MIB, 1), "with_streams": round(rss_after / MIB, 1)},
        "memory_per_idle_stream_kib": round(per_stream / 1024, 1),
        "targets": {"cpu_percent_max": 5.0, "met": cpu_percent <= 5.0 and live == args.streams},
    }


def report(result: dict[str, Any]) -> str:
    if result["benchmark"] == "idle_fluent":
        return (
            f"idle fluent: {result['streams']} fluent streams sending idle video, {result['still_connected']}"
            f" still connected: server {result['server_cpu_percent_of_core']} % of one core,"
            f" {result['server_core_per_stream']} core per stream, {result['memory_per_stream_kib']} KiB each"
        )
    verdict = "met" if result["targets"]["met"] else "MISSED"
    rss = result["server_rss_mib"]
    return "\n".join(
        [
            f"idle: {result['streams']} connected idle streams ({result['still_connected']} still connected"
            f" after the window)",
            f"  server CPU {result['server_cpu_percent_of_core']} % of one core (target <= 5 %): {verdict}",
            f"  server memory {rss['before']} -> {rss['with_streams']} MiB:"
            f" {result['memory_per_idle_stream_kib']} KiB per idle stream",
        ]
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--fluent", action="store_true", help="fluent streams (idle video) at 512 px")


if __name__ == "__main__":
    import sys

    bench_main("idle_fluent" if "--fluent" in sys.argv else "idle", __doc__, _options, main, report)
