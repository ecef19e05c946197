"""Churn: clients cycling create -> connect -> talk -> delete for minutes; what the server holds meanwhile.

    .venv/bin/python bench/churn.py [--minutes 5] [--clients 8] [--idle-minutes 1] [--json PATH]

`talkstream serve` runs in its own process (its log kept beside the results); this process runs `--clients`
clients at once, each repeating: create a stream on the bundled photo (512 px), connect over aiortc, speak
one short sentence, wait for `stream/done`, delete. Every 5 s it reads the server process's resident memory
(RSS as the operating system reports it: nothing trimmed, nothing collected on the server's behalf), open
descriptors and threads; then it stops the clients and keeps reading for `--idle-minutes` to see what is
given back. Errors are the clients' failed cycles plus the server log's ERROR lines and tracebacks.

Targets: RSS stays <= 450 MB with 8 churning clients; a 30-minute run (`--minutes 30`) ends within 5 % of
its minute-5 RSS (each the mean of a minute's readings; the least-squares trend from minute 5 on is
reported too). Writes churn.json, churn.png (RSS, threads and descriptors over time) and churn-serve.log
(the server's log), or the same names after --json's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import matplotlib
import psutil
from served import bench_main, machine, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MB = 1_000_000
SAMPLE_SECONDS = 5.0
RSS_LIMIT_MB = 450.0
FLAT_WITHIN = 0.05
TEXT = "Hello there. This is one more short talk from the churn benchmark."


class Sampler:
    """Reads the server process every few seconds: (seconds since start, RSS MB, fds, threads)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, int, int]] = []
        self.started = time.monotonic()

    def read(self) -> None:
        with self.process.oneshot():
            self.samples.append(
                (
                    round(time.monotonic() - self.started, 1),
                    round(self.process.memory_info().rss / MB, 1),
                    self.process.num_fds(),
                    self.process.num_threads(),
                )
            )

    async def run(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(SAMPLE_SECONDS)


async def churn(base: str, key: str, clients: int, until: float, errors: collections.Counter[str]) -> int:
    """Run `clients` cycling clients until the monotonic time `until`; return the cycles completed."""
    done = 0

    async def one_client() -> None:
        nonlocal done
        client = StreamClient(AiohttpAdapter(base, key), AiortcClientTransport(), retry=RetryPolicy.none())
        async with client:
            while time.monotonic() < until:
                try:
                    stream = await client.create("bundled:astronaut", sink=MediaSink())
                    try:
                        await stream.connected(within=30)
                        talk = await stream.talk(text=TEXT)
                        await talk.done(within=60)
                    finally:
                        await stream.close()
                    done += 1
                except Exception as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(1.0)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return done


def minute_means(samples: list[tuple[float, float, int, int]], seconds: float) -> list[float]:
    """Mean RSS of each whole minute (samples every 5 s; RSS saws up and down by ~60 MB between keeper runs,
    so single readings say little)."""
    out = []
    for minute in range(int(seconds // 60)):
        values = [s[1] for s in samples if 60 * minute <= s[0] < 60 * (minute + 1)]
        if values:
            out.append(round(sum(values) / len(values), 1))
    return out


def rss_trend(samples: list[tuple[float, float, int, int]], seconds: float) -> dict[str, float | None]:
    """The last whole minute's mean RSS against minute 5's, and the least-squares slope from minute 5 on."""
    means = minute_means(samples, seconds)
    if len(means) < 6:
        return {"end_vs_minute5": None, "slope": None}
    minute5, last = means[4], means[-1]
    xs = list(range(4, len(means)))
    ys = means[4:]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return {"end_vs_minute5": round((last - minute5) / minute5, 4), "slope": round(slope, 2)}


def server_errors(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))


def plot(samples: list[tuple[float, float, int, int]], churn_seconds: float, path: Path) -> None:
    minutes = [s[0] / 60 for s in samples]
    fig, (rss, counts) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    rss.plot(minutes, [s[1] for s in samples], "-", color="tab:blue")
    rss.axhline(RSS_LIMIT_MB, color="tab:red", ls=":", lw=1, label=f"target {RSS_LIMIT_MB:.0f} MB")
    rss.axvline(churn_seconds / 60, color="grey", ls="--", lw=0.8, label="clients stop")
    rss.set(ylabel="server RSS, MB", title="talkstream serve under churn")
    rss.legend(loc="lower right")
    counts.plot(minutes, [s[3] for s in samples], "-", label="threads")
    counts.plot(minutes, [s[2] for s in samples], "-", label="open descriptors")
    counts.axvline(churn_seconds / 60, color="grey", ls="--", lw=0.8)
    counts.set(xlabel="minutes", ylabel="count")
    counts.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    log = args.json.with_name(args.json.stem + "-serve.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    errors: collections.Counter[str] = collections.Counter()
    async with served(log=log) as server:
        sampler = Sampler(server.pid)
        sampler.read()
        sampling = asyncio.ensure_future(sampler.run())
        churn_seconds = args.minutes * 60
        cycles = await churn(server.base, server.key, args.clients, time.monotonic() + churn_seconds, errors)
        churn_seconds = time.monotonic() - sampler.started
        await asyncio.sleep(args.idle_minutes * 60)
        sampler.read()
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
    samples = sampler.samples
    during = [s for s in samples if s[0] <= churn_seconds]
    plot_path = args.json.with_suffix(".png")
    plot(samples, churn_seconds, plot_path)
    peak_rss = max(s[1] for s in during)
    trend = rss_trend(during, churn_seconds)
    return {
        "benchmark": "churn",
        "machine": machine(),
        "clients": args.clients,
        "minutes": args.minutes,
        "cycles": cycles,
        "cycles_per_minute": round(cycles / (churn_seconds / 60), 1),
        "client_errors": dict(errors),
        "server_log_errors": server_errors(log),
        "rss_mb": {
            "start": samples[0][1],
            "per_minute": minute_means(during, churn_seconds),
            "peak": peak_rss,
            "after_idle": samples[-1][1],
        },
        "threads": {"start": samples[0][3], "peak": max(s[3] for s in during), "after_idle": samples[-1][3]},
        "fds": {"start": samples[0][2], "peak": max(s[2] for s in during), "after_idle": samples[-1][2]},
        "samples": samples,
        "plot": str(plot_path),
        "targets": {
            "rss_limit_mb": RSS_LIMIT_MB,
            "rss_met": peak_rss <= RSS_LIMIT_MB,
            "end_vs_minute5": trend["end_vs_minute5"],
            "slope_mb_per_minute": trend["slope"],
            "flat_met": None
            if trend["end_vs_minute5"] is None
            else abs(trend["end_vs_minute5"]) <= FLAT_WITHIN,
        },
    }


def report(r: dict[str, Any]) -> str:
    rss, t = r["rss_mb"], r["targets"]
    flat = (
        "n/a (run --minutes 30)"
        if t["flat_met"] is None
        else f"last minute {t['end_vs_minute5'] * 100:+.1f} % vs minute 5 "
        f"({'met' if t['flat_met'] else 'MISSED'}), trend {t['slope_mb_per_minute']:+.2f} MB/min"
    )
    return "\n".join(
        [
            f"churn: {r['clients']} clients x {r['minutes']} min: {r['cycles']} cycles "
            f"({r['cycles_per_minute']}/min), client errors {r['client_errors'] or 0}, "
            f"server log errors {r['server_log_errors']}",
            f"  RSS MB, mean of each minute: {rss['per_minute']}",
            f"  RSS peak {rss['peak']} MB (target <= {t['rss_limit_mb']:.0f}: "
            f"{'met' if t['rss_met'] else 'MISSED'}); end {flat}; after idle {rss['after_idle']} MB",
            f"  threads start/peak/after idle {r['threads']['start']}/{r['threads']['peak']}/"
            f"{r['threads']['after_idle']}; "
            f"fds {r['fds']['start']}/{r['fds']['peak']}/{r['fds']['after_idle']}",
            f"  plot: {r['plot']}",
        ]
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the clients churn (default 5)")
    parser.add_argument("--clients", type=int, default=8, help="clients cycling at once (default 8)")
    parser.add_argument(
        "--idle-minutes", type=float, default=1.0, help="minutes to watch after they stop (default 1)"
    )


if __name__ == "__main__":
    bench_main("churn", __doc__, options, main, report)
