"""Cluster (issue 16): what HAProxy and the shared Redis cost, and what a second worker buys, on this machine.

    .venv/bin/python bench/cluster.py [--quick] [--connects 30] [--create-seconds 10] [--clients 4]
        [--counts 4,6,8,10,12,14] [--window 10] [--lifecycles 15] [--json PATH]

Every cluster is `talkstream.adapters.cluster.Cluster`: Redis, HAProxy and N `talkstream serve --worker-id wN
--redis URL` workers from deploy/ (no coturn), each in its own process on 127.0.0.1, with its logs in a
temporary folder; this process is the client. A cluster of 1 worker and one of 2 workers run side by side
throughout (the one not being measured idles: its upkeep is a few Redis commands every 5 s).

1. Connect (2 workers): create -> ICE connected -> data channel open, timed as bench/connect.py times it
   (talkstream's StreamClient over aiohttp and aiortc), through HAProxy and straight to a worker (w1, w2 in
   turn), interleaved, `--connects` of each. Target: HAProxy adds <= 5 ms to the p50.
2. Creates (1 and 2 workers): `--clients` clients (raw aiohttp, one connection each) POST /talks/streams
   through HAProxy and DELETE each stream again, for `--create-seconds`: creates per second (each with its
   delete), and the creates' p50/p95 latency.
3. Talking streams (1 and 2 workers): the sweep of bench/concurrency.py through HAProxy: N streams at
   512x512 talk an audio file at once, 3 s to warm, then `--window` s counted; the largest N at which every
   stream receives >= 24 fps; N by N, the 1-worker cluster then the 2-worker one, so that the machine's
   other load weighs on both alike; each stops at its first N that misses. Everything shares the machine's
   cores (2 where this was written): the workers, HAProxy, Redis and this process's receivers, which decode
   every stream and take a large share themselves; so a second worker process brings no core of its own.
   Target: 2 workers hold no fewer streams than 1.
4. Redis per stream lifecycle (2 workers): `--lifecycles` full lifecycles one after the other through HAProxy
   (create, SDP answer, ICE, connected, one short text talk, delete), counted by Redis itself (INFO stats and
   commandstats before and after), less the background over an idle stretch as long right after (each
   worker's upkeep every lease/3 s, 5 s at the default lease of 15 s: INFO server, its heartbeat). A MONITOR
   connection tells the commands the workers send from those their Lua scripts run; HAProxy's statistics
   the HTTP requests. Lease renewals while a stream lives and the key lookups (once per worker per 10 s)
   are in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import redis.asyncio as redis
from concurrency import MIN_FPS, WARM_SECONDS  # bench/concurrency.py: the same sweep's constants
from connect import summary, talkstream_once  # bench/connect.py: the same connect timing
from lipsync import script  # bench/lipsync.py: the same voiced bursts and silences
from served import bench_main, machine, media_server  # bench/served.py, beside this file

from talkstream.adapters.cluster import Cluster, ClusterPlan, missing_programs
from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.adapters.server import redis_state
from talkstream.engine.client import ClientStream, StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.session import worker_of
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

CONNECT_OVERHEAD_MAX_MS = 5.0
LIMITS = 500  # live streams per key and per worker: the benchmark measures speed, not the quotas
SERVE_ARGS = (
    "--max-streams-per-key", str(LIMITS),
    "--max-streams", str(LIMITS),
    "--requests-per-second", "1000000",
    "--allow-local-urls",  # the talks' audio comes from this process's media server
)  # fmt: skip
SOURCE = "bundled:astronaut"

DEFAULTS: dict[str, Any] = {
    "connects": 30,
    "create_seconds": 10.0,
    "clients": 4,
    "counts": [4, 6, 8, 10, 12, 14],
    "window": 10.0,
    "lifecycles": 15,
}
QUICK: dict[str, Any] = {
    "connects": 6,
    "create_seconds": 3.0,
    "clients": 4,
    "counts": [4, 8],
    "window": 4.0,
    "lifecycles": 4,
}


@contextlib.contextmanager
def cluster_of(workers: int, root: Path) -> Iterator[Cluster]:
    """A running cluster of `workers` workers, its folder under `root`; on leaving it stops, and any
    traceback in a worker's log is told."""
    plan = ClusterPlan(
        workers=workers, port=0, turn=False, folder=root / f"workers{workers}", serve_args=SERVE_ARGS
    )
    print(f"  starting a cluster of {workers} worker(s)", flush=True)
    with Cluster(plan).running() as cluster:
        yield cluster
    for worker in plan.worker_ids():
        if "Traceback" in cluster.log(worker).read_text(errors="replace"):
            print(f"  WARNING: {worker} logged a traceback (see {cluster.log(worker)})", flush=True)


def _client(base: str, key: str) -> StreamClient:
    return StreamClient(AiohttpAdapter(base, key), AiortcClientTransport(), retry=RetryPolicy.none())


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
    }


class Cores:
    """Cores each group of processes spends from `start` on: the cluster's workers, HAProxy, Redis, and
    this process (`here`: the receivers, or the creating clients)."""

    def __init__(self, cluster: Cluster, here: str) -> None:
        self.groups = {
            "workers": [psutil.Process(cluster.processes[w].pid) for w in cluster.plan.worker_ids()],
            "haproxy": [psutil.Process(cluster.processes["haproxy"].pid)],
            "redis": [psutil.Process(cluster.processes["redis"].pid)],
            here: [psutil.Process()],
        }
        self.start()

    def _times(self) -> dict[str, float]:
        return {name: sum(sum(p.cpu_times()[:2]) for p in group) for name, group in self.groups.items()}

    def start(self) -> None:
        self.began, self.at = self._times(), time.monotonic()

    def spent(self) -> dict[str, float]:
        now, elapsed = self._times(), time.monotonic() - self.at
        return {name: round((now[name] - self.began[name]) / elapsed, 3) for name in now}


# -- 1. connect through HAProxy vs straight to a worker --


async def connect_overhead(cluster: Cluster, rounds: int) -> dict[str, Any]:
    key = cluster.plan.key
    workers = cluster.plan.worker_ids()
    proxied: list[dict[str, float]] = []
    direct: list[dict[str, float]] = []
    async with contextlib.AsyncExitStack() as stack:
        via = await stack.enter_async_context(_client(cluster.url, key))
        straight = [await stack.enter_async_context(_client(cluster.worker_url(w), key)) for w in workers]
        for client in straight:  # each worker's portrait cache and code paths, warm
            await talkstream_once(client)
        for _ in workers:
            await talkstream_once(via)
        for n in range(rounds):
            pair = [("proxied", via), ("direct", straight[n % len(straight)])]
            if n % 2:
                pair.reverse()  # neither way always goes first
            for way, client in pair:
                (proxied if way == "proxied" else direct).append(await talkstream_once(client))
    result: dict[str, Any] = {
        "rounds": rounds,
        "proxied": {k: summary([r[k] for r in proxied]) for k in proxied[0]},
        "direct": {k: summary([r[k] for r in direct]) for k in direct[0]},
    }
    result["overhead_ms"] = {
        k: round(result["proxied"][k]["p50"] - result["direct"][k]["p50"], 1)
        for k in ("create_ms", "channel_ms")
    }
    return result


# -- 2. creates per second through HAProxy --


async def create_rate(cluster: Cluster, clients: int, seconds: float) -> dict[str, Any]:
    url = cluster.url + "/talks/streams"
    headers = {"Authorization": f"Basic {cluster.plan.key}"}
    latencies: list[float] = []
    landed: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()

    async def cycle(http: aiohttp.ClientSession, counted: bool) -> None:
        started = time.perf_counter()
        async with http.post(url, json={"source_url": SOURCE}, headers=headers) as response:
            status, worker = response.status, response.headers.get("X-Talkstream-Worker", "?")
            body = await response.json(content_type=None)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 201:
            failures[f"create {status}"] += 1
            return
        async with http.delete(
            f"{url}/{body['id']}", json={"session_id": body["session_id"]}, headers=headers
        ) as response:
            await response.read()
            if response.status != 200:
                failures[f"delete {response.status}"] += 1
        if counted:
            latencies.append(elapsed)
            landed[worker] += 1

    async def one_client(deadline: float) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
            while time.perf_counter() < deadline:
                await cycle(http, counted=True)

    async with aiohttp.ClientSession() as http:  # warm every worker
        for _ in range(2 * cluster.plan.workers):
            await cycle(http, counted=False)
    cores = Cores(cluster, "clients")
    started = time.perf_counter()
    await asyncio.gather(*(one_client(started + seconds) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    spent = cores.spent()
    return {
        "workers": cluster.plan.workers,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "creates": len(latencies),
        "creates_per_s": round(len(latencies) / elapsed, 1),
        "create_ms": _percentiles(latencies),
        "per_worker": dict(sorted(landed.items())),
        "failures": dict(failures),
        "cores": spent,
    }


# -- 3. talking streams at >= 24 fps --


async def measure(sinks: Sequence[MediaSink], cores: Cores, seconds: float) -> dict[str, Any]:
    """Each stream's received fps, and each group of processes' cores, over `seconds`."""
    cores.start()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    spent, ended = cores.spent(), time.monotonic()
    fps = [sum(1 for at, _ in s.video_times if started <= at < ended) / (ended - started) for s in sinks]
    return {"fps_min": round(min(fps), 2), "fps_mean": round(float(np.mean(fps)), 2), "cores": spent}


async def talking_at(cluster: Cluster, count: int, window: float, audio_url: str) -> dict[str, Any]:
    async with _client(cluster.url, cluster.plan.key) as client:
        sinks = [MediaSink() for _ in range(count)]
        streams: list[ClientStream] = []
        for sink in sinks:
            stream = await client.create(SOURCE, sink=sink, output_resolution=512)
            await stream.connected(within=30)
            streams.append(stream)
        await asyncio.gather(*(stream.talk(audio_url=audio_url) for stream in streams))
        await asyncio.sleep(WARM_SECONDS)
        result = await measure(sinks, Cores(cluster, "receivers"), window)
        result["streams"] = count
        result["per_worker"] = dict(
            sorted(collections.Counter(str(worker_of(s.stream_id)) for s in streams).items())
        )
        await asyncio.gather(*(stream.close() for stream in streams))
    return result


async def talking_sweep(
    clusters: Sequence[Cluster], counts: Sequence[int], window: float, audio_url: str
) -> list[dict[str, Any]]:
    """The sweep for each cluster, N by N in turn (the machine's other load then weighs on both alike);
    a cluster's sweep stops at its first N that misses."""
    rows: list[list[dict[str, Any]]] = [[] for _ in clusters]
    for count in counts:
        for cluster, done in zip(clusters, rows, strict=True):
            if done and done[-1]["fps_min"] < MIN_FPS:
                continue
            row = await talking_at(cluster, count, window, audio_url)
            done.append(row)
            cores = ", ".join(f"{name} {value:.2f}" for name, value in row["cores"].items())
            print(
                f"  {cluster.plan.workers} worker(s), N={count:>3}: min {row['fps_min']:5.1f} fps,"
                f" mean {row['fps_mean']:5.1f}; cores: {cores}; streams per worker {row['per_worker']}",
                flush=True,
            )
            await asyncio.sleep(1.0)  # the closed streams' peers wind down
    sweeps = []
    for cluster, done in zip(clusters, rows, strict=True):
        passing = [r["streams"] for r in done if r["fps_min"] >= MIN_FPS]
        best = passing[-1] if passing else 0
        sweeps.append(
            {
                "workers": cluster.plan.workers,
                "rows": done,
                "max_streams_at_24fps": best,
                "sweep_top": best == counts[-1],  # every N held: the true figure may be higher
            }
        )
    return sweeps


# -- 4. Redis commands per stream lifecycle --


class Tally:
    """Redis' own count of the commands it ran (INFO stats and commandstats), and a MONITOR connection's
    record of who sent each: a worker, or a Lua script ("lua"). This tally's own INFO calls are the marks
    between which the record is read, and are left out of every figure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[bool, str, str]] = []  # (this tally's own, "lua" or "tcp", command)
        self.unparsed = 0
        self._own_address = ""
        self._stats: Any = None  # the connection whose INFO calls are the marks

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Tally]:
        async with (
            redis.Redis.from_url(self.url, single_connection_client=True, decode_responses=True) as stats,
            redis.Redis.from_url(self.url, decode_responses=True) as watcher,
            watcher.monitor() as monitor,
        ):
            self._stats = stats
            self._own_address = str((await stats.client_info())["addr"])
            listener = asyncio.ensure_future(self._listen(monitor))
            try:
                yield self
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, monitor: Any) -> None:
        while True:
            try:
                event = await monitor.next_command()
            except (AttributeError, ValueError):  # a line redis-py cannot parse
                self.unparsed += 1
                continue
            own = f"{event['client_address']}:{event['client_port']}" == self._own_address
            name = str(event["command"]).split(" ", 1)[0].lower()
            self.events.append((own, str(event["client_type"]), name))

    async def mark(self) -> tuple[dict[str, int], int, int]:
        """Redis' counts now: (calls per command, total commands, where the MONITOR record stands)."""
        mine = sum(1 for own, _, _ in self.events if own) + 1  # counted before MONITOR can report it
        info = await self._stats.execute_command("INFO", "stats", "commandstats")
        deadline = time.monotonic() + 10
        while sum(1 for own, _, _ in self.events if own) < mine:  # the record has reached this mark
            if time.monotonic() > deadline:
                raise RuntimeError("MONITOR did not report the tally's own INFO")
            await asyncio.sleep(0.01)
        own_at = [i for i, (own, _, _) in enumerate(self.events) if own][-1]
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in info.items()
            if name.startswith("cmdstat_")
        }
        return calls, int(info["total_commands_processed"]), own_at

    def between(
        self, first: tuple[dict[str, int], int, int], last: tuple[dict[str, int], int, int]
    ) -> dict[str, Any]:
        """What Redis ran between two marks, less the first mark's own INFO."""
        calls = {name: n - first[0].get(name, 0) for name, n in last[0].items()}
        calls["info"] = calls.get("info", 0) - 1
        sent: collections.Counter[str] = collections.Counter()
        scripted: collections.Counter[str] = collections.Counter()
        for own, kind, name in self.events[first[2] + 1 : last[2]]:
            if not own:
                (scripted if kind == "lua" else sent)[name] += 1
        return {
            "total": last[1] - first[1] - 1,
            "calls": {name: n for name, n in calls.items() if n},
            "sent": dict(sent),
            "scripted": dict(scripted),
        }


async def http_requests(cluster: Cluster) -> int:
    """Requests HAProxy's API frontend has taken so far (its statistics; health checks are not among them)."""
    async with aiohttp.ClientSession() as http, http.get(f"{cluster.stats_url};csv") as response:
        rows = (await response.text()).splitlines()
    header = rows[0].lstrip("# ").split(",")
    for row in rows[1:]:
        fields = dict(zip(header, row.split(","), strict=False))
        if fields.get("pxname") == "api" and fields.get("svname") == "FRONTEND":
            return int(fields["req_tot"] or 0)
    raise RuntimeError("HAProxy's statistics lack the api frontend")


async def lifecycle(client: StreamClient) -> None:
    stream = await client.create(SOURCE, sink=MediaSink(), output_resolution=160)
    await stream.connected(within=30)
    talk = await stream.talk(text="Hello.")
    await talk.done(within=30)
    await stream.close()


def _per(window: dict[str, Any], idle: dict[str, Any], part: str, count: int) -> dict[str, float]:
    names = sorted(set(window[part]) | set(idle[part]))
    net = {name: (window[part].get(name, 0) - idle[part].get(name, 0)) / count for name in names}
    return {name: round(value, 2) for name, value in sorted(net.items(), key=lambda kv: -kv[1]) if value}


async def redis_cost(cluster: Cluster, lifecycles: int) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(_client(cluster.url, cluster.plan.key))
        shared = await stack.enter_async_context(redis.Redis.from_url(cluster.redis_url))
        # The workers' Lua scripts (the module's texts that call Redis), loaded now: no first use (a
        # NOSCRIPT answer, then SCRIPT LOAD) falls in a window.
        for name, text in vars(redis_state).items():
            if not name.startswith("__") and isinstance(text, str) and "redis.call(" in text:
                await shared.script_load(text)
        for _ in cluster.plan.worker_ids():
            await lifecycle(client)  # each worker's key lookup, portrait and code paths, warm
        tally = await stack.enter_async_context(Tally(cluster.redis_url).watching())
        requests_before = await http_requests(cluster)
        start = await tally.mark()
        started = time.monotonic()
        for _ in range(lifecycles):
            await lifecycle(client)
        elapsed = time.monotonic() - started
        end = await tally.mark()
        requests = await http_requests(cluster) - requests_before  # the statistics page is not the api
        idle_start = await tally.mark()
        await asyncio.sleep(elapsed)
        idle_end = await tally.mark()
        window, idle = tally.between(start, end), tally.between(idle_start, idle_end)
    sent = _per(window, idle, "sent", lifecycles)
    scripted = _per(window, idle, "scripted", lifecycles)
    return {
        "lifecycles": lifecycles,
        "seconds": round(elapsed, 2),
        "lease_s": cluster.plan.lease,
        "http_requests_per_lifecycle": round(requests / lifecycles, 2),
        "commands_per_lifecycle": round((window["total"] - idle["total"]) / lifecycles, 2),
        "per_command": _per(window, idle, "calls", lifecycles),
        "sent_per_lifecycle": round(sum(sent.values()), 2),
        "scripted_per_lifecycle": round(sum(scripted.values()), 2),
        "sent": sent,
        "scripted": scripted,
        "background": {"seconds": round(elapsed, 2), "total": idle["total"], "calls": idle["calls"]},
        "monitor_unparsed": tally.unparsed,
    }


# -- the whole run --


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else DEFAULTS
    return {
        name: getattr(args, name) if getattr(args, name) is not None else value
        for name, value in base.items()
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    missing = missing_programs(["redis-server", "haproxy"])
    if missing:
        raise SystemExit(f"bench/cluster.py needs {', '.join(missing)} (make cluster-deps)")
    settings = _settings(args)
    body, _ = script(WARM_SECONDS + settings["window"] + 30)
    with (
        tempfile.TemporaryDirectory(prefix="talkstream-bench-cluster-") as folder,
        cluster_of(1, Path(folder)) as one_worker,
        cluster_of(2, Path(folder)) as two_workers,
    ):
        # Both clusters run throughout; the one not measured idles (its upkeep: a few Redis commands in 5 s).
        connect = await connect_overhead(two_workers, settings["connects"])
        print(f"  connect overhead through HAProxy: {connect['overhead_ms']['channel_ms']} ms", flush=True)
        shared = await redis_cost(two_workers, settings["lifecycles"])
        print(f"  Redis: {shared['commands_per_lifecycle']} commands per lifecycle", flush=True)
        creates = []
        for cluster in (one_worker, two_workers):
            creates.append(await create_rate(cluster, settings["clients"], settings["create_seconds"]))
            print(f"  {cluster.plan.workers} worker(s): {creates[-1]['creates_per_s']} creates/s", flush=True)
        async with media_server({"speech.wav": body}) as media:
            talking = await talking_sweep(
                [one_worker, two_workers], settings["counts"], settings["window"], f"{media}/speech.wav"
            )
    one, two = (t["max_streams_at_24fps"] for t in talking)
    overhead = connect["overhead_ms"]["channel_ms"]
    return {
        "benchmark": "cluster",
        "machine": machine(),
        "quick": bool(args.quick),
        "settings": settings,
        "connect": connect,
        "creates": creates,
        "talking": talking,
        "redis": shared,
        "targets": {
            "connect_overhead_ms_max": CONNECT_OVERHEAD_MAX_MS,
            "connect_met": overhead <= CONNECT_OVERHEAD_MAX_MS,
            "talking_met": two >= one,
        },
    }


def report(result: dict[str, Any]) -> str:
    t = result["targets"]
    c = result["connect"]
    proxied, direct = c["proxied"], c["direct"]
    lines = [
        "cluster benchmark: workers behind HAProxy, shared state in Redis, all on 127.0.0.1"
        + (" (--quick: a smoke test, not figures to quote)" if result["quick"] else ""),
        f"  connect (create -> data channel open), {c['rounds']} each way, interleaved, p50 / p95 ms:",
        f"    through HAProxy {proxied['channel_ms']['p50']} / {proxied['channel_ms']['p95']},"
        f" straight to a worker {direct['channel_ms']['p50']} / {direct['channel_ms']['p95']}"
        f" (create alone: {proxied['create_ms']['p50']} vs {direct['create_ms']['p50']})",
        f"    HAProxy's overhead at p50: {c['overhead_ms']['channel_ms']} ms"
        f" (target <= {t['connect_overhead_ms_max']:g} ms): " + ("met" if t["connect_met"] else "MISSED"),
        "  creates through HAProxy (each stream deleted again):",
    ]
    for row in result["creates"]:
        failures = f", failures {row['failures']}" if row["failures"] else ""
        lines.append(
            f"    {row['workers']} worker(s): {row['creates_per_s']} creates/s with {row['clients']} clients,"
            f" latency p50 {row['create_ms']['p50']} / p95 {row['create_ms']['p95']} ms,"
            f" per worker {row['per_worker']}{failures}; cores: "
            + ", ".join(f"{name} {value:.2f}" for name, value in row["cores"].items())
        )
    lines.append(
        "  talking streams with every one >= 24 fps at 512x512 through HAProxy (workers, HAProxy, Redis and"
        " this process's receivers share the machine's cores):"
    )
    for sweep in result["talking"]:
        top = "the sweep's largest N, more may hold; " if sweep["sweep_top"] else ""
        by_n = ", ".join(f"{row['streams']}: {row['fps_min']:.1f}" for row in sweep["rows"])
        lines.append(
            f"    {sweep['workers']} worker(s): {sweep['max_streams_at_24fps']}"
            f" ({top}the slowest stream's fps at each N: {by_n})"
        )
    one, two = (s["max_streams_at_24fps"] for s in result["talking"])
    lines.append(
        f"    2 workers {two} vs 1 worker {one} (target: no fewer): "
        + ("met" if t["talking_met"] else "MISSED")
    )
    r = result["redis"]
    lines += [
        f"  Redis per stream lifecycle ({r['lifecycles']} through HAProxy,"
        f" {r['http_requests_per_lifecycle']} HTTP requests each; less {r['background']['total']}"
        f" background commands in an idle {r['seconds']} s):",
        f"    {r['commands_per_lifecycle']} commands: {r['sent_per_lifecycle']} sent by the workers,"
        f" {r['scripted_per_lifecycle']} run inside their Lua scripts",
        "    per command: " + ", ".join(f"{name} {n:g}" for name, n in r["per_command"].items()),
        "    sent by the workers: " + ", ".join(f"{name} {n:g}" for name, n in r["sent"].items()),
    ]
    return "\n".join(lines)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test (about 2 minutes)")
    parser.add_argument("--connects", type=int, help="connects each way (default 30; quick 6)")
    parser.add_argument(
        "--create-seconds", type=float, help="seconds of creates per cluster (default 10; quick 3)"
    )
    parser.add_argument("--clients", type=int, help="parallel clients creating (default 4)")
    parser.add_argument(
        "--counts",
        type=lambda s: [int(n) for n in s.split(",")],
        help="talking streams (default 4,6,8,10,12,14; quick 4,8)",
    )
    parser.add_argument("--window", type=float, help="seconds counted at each N (default 10; quick 4)")
    parser.add_argument(
        "--lifecycles", type=int, help="stream lifecycles counted in Redis (default 15; quick 4)"
    )


if __name__ == "__main__":
    bench_main("cluster", __doc__, _options, main, report)
