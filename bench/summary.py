"""The benchmarks' summary table and plots, from what they wrote to bench/results/*.json.

    .venv/bin/python bench/summary.py [--results DIR]

Prints one Markdown table (measure, talkstream, floor or target, verdict) for every benchmark that has run,
and writes PNG plots beside the JSON: concurrency.png (fps and CPU per stream against N, with the floor),
lipsync.png (the offsets over the talk, and their spread), latency.png (connect and talk latency p50/p95
beside their floors and targets). `make bench` runs it last.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

Row = tuple[str, str, str, str]


def _verdict(met: bool) -> str:
    return "met" if met else "**MISSED**"


def _engine(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    return [
        (
            "engine inputs/s (vs bare transitions)",
            f"{r['engine_inputs_per_s']:,}",
            f"{r['bare_inputs_per_s']:,} (>= 0.8x)",
            _verdict(t["rate_met"]),
        ),
        ("engine bytes/session", f"{r['engine_bytes_per_session']:,}", "< 8,192", _verdict(t["memory_met"])),
    ]


def _animation(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    limit = t.get("animate_512_ms_max", 5.0)
    rows = r["rows"]
    at_512 = [row for row in rows if row["size"] == 512]
    out: list[Row] = [
        (
            f"animate 512 px, ms/frame ({row.get('portrait', 'bundled')})",
            f"{row['animate_ms']:.2f}",
            f"<= {limit:g}",
            _verdict(row["animate_ms"] <= limit),
        )
        for row in at_512
    ]
    if r.get("setup"):
        worst = max(r["setup"].values())
        out.append(
            ("new photo set-up, ms (worst)", f"{worst:.1f}", "<= 150", _verdict(t.get("setup_met", False)))
        )
    first = rows[0].get("portrait")
    for row in rows:
        if row.get("portrait") == first:
            out.append(
                (
                    f"VP8 / H264 encode {row['size']} px, ms/frame",
                    f"{row['vp8_ms']:.2f} / {row['h264_ms']:.2f}",
                    "",
                    "",
                )
            )
    return out


def _connect(r: dict[str, Any]) -> list[Row]:
    ours, floor = r["talkstream"], r["floor"]
    return [
        (
            "connect: create -> data channel p50 / p95, ms",
            f"{ours['channel_ms']['p50']} / {ours['channel_ms']['p95']}",
            f"floor {floor['channel_ms']['p50']} / {floor['channel_ms']['p95']} (<= 1.5x)",
            _verdict(r["targets"]["met"]),
        ),
        (
            "connect: create -> first frame p50, ms",
            f"{ours['first_frame_ms']['p50']}",
            f"floor {floor['first_frame_ms']['p50']}",
            "",
        ),
    ]


def _browser(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"Chromium: create -> first frame p50 / p95, ms ({label})",
            f"{r[way]['first_frame_ms']['p50']} / {r[way]['first_frame_ms']['p95']}",
            "<= 400 p50",
            _verdict(r[way]["first_frame_ms"]["p50"] <= r["targets"]["first_frame_p50_max_ms"]),
        )
        for way, label in (("raw", "raw addresses"), ("mdns", ".local candidates"))
    ]


def _talk(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    return [
        (
            f"talk -> first video frame p50 / p95, ms ({kind})",
            f"{r[kind]['first_video_ms']['p50']} / {r[kind]['first_video_ms']['p95']}",
            f"<= {t[f'{kind}_p50_max_ms']} p50",
            _verdict(t[f"{kind}_met"]),
        )
        for kind in ("text", "audio")
    ]


def _lip_tracking(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    return [
        (
            f"lips a face tracker sees ({name}): opening range % of face, r with loudness, lag",
            f"{p['opening_pct']['range']} %, r {p['correlation']}, {p['lag_ms']} ms",
            f">= {t['range_pct_min']} %, r >= {t['correlation_min']}, <= {t['lag_ms_max']} ms",
            _verdict(
                p["opening_pct"]["range"] >= t["range_pct_min"]
                and p["correlation"] >= t["correlation_min"]
                and abs(p["lag_ms"]) <= t["lag_ms_max"]
            ),
        )
        for name, p in r["portraits"].items()
    ]


def _interrupt(r: dict[str, Any]) -> list[Row]:
    sound, mouth, done = r["last_talk_sound_ms"], r["last_open_mouth_ms"], r["server_confirmed_ms"]
    return [
        (
            "interrupt -> last talk sound / open mouth at the receiver p50 / p95, ms",
            f"{sound['p50']} / {sound['p95']}; {mouth['p50']} / {mouth['p95']} (stream/done {done['p50']})",
            f"<= {r['targets']['sound_p95_max_ms']} p95",
            _verdict(r["targets"]["met"]),
        )
    ]


def _websocket(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    return [
        (
            f"WebSocket: first {name} chunk -> first talking frame p50 / p95, ms",
            f"{r[key]['p50']} / {r[key]['p95']}",
            f"<= {t[f'{kind}_p50_max_ms']} p50",
            _verdict(t[f"{kind}_met"]),
        )
        for name, kind, key in (("text", "text", "text_first_chunk_ms"), ("PCM", "pcm", "pcm_first_chunk_ms"))
    ]


def _lipsync(r: dict[str, Any]) -> list[Row]:
    o = r["offset_ms"]
    return [
        (
            f"lip sync |offset| p50 / p95, ms ({r['seconds']:g} s talk)",
            f"{o['p50']} / {o['p95']}",
            "<= 40 p95",
            _verdict(o["p95"] <= r["targets"]["p95_max_ms"]),
        ),
        (
            "lip sync drift, last fifth vs first, ms",
            f"{r['drift_ms']}",
            "about 0",
            _verdict(abs(r["drift_ms"]) <= 40),
        ),
    ]


def _concurrency(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    best = r["max_streams_at_24fps"]
    row = next((x for x in r["rows"] if x["streams"] == best), None)
    out = [("streams at >= 24 fps, 512 px", f"{best}", ">= 10", _verdict(t["streams_met"]))]
    if row is not None:
        out.append(
            (
                f"server CPU per talking stream at N={best}, cores",
                f"{row['talkstream']['sender_core_per_stream']:.3f}",
                f"floor {row['floor']['sender_core_per_stream']:.3f} (<= 1.3x: {row['cost_to_floor']}x)",
                _verdict(t["cost_met"]),
            )
        )
    return out


def _idle(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['streams']} idle streams: server CPU, % of a core",
            f"{r['server_cpu_percent_of_core']}",
            "<= 5",
            _verdict(r["targets"]["met"]),
        ),
        ("memory per idle stream, KiB", f"{r['memory_per_idle_stream_kib']}", "", ""),
    ]


def _churn(r: dict[str, Any]) -> list[Row]:
    rss, t = r["rss_mb"], r["targets"]
    rows = [
        (
            f"churn: {r['clients']} clients x {r['minutes']:g} min, server RSS peak, MB",
            f"{rss['peak']}",
            f"<= {t['rss_limit_mb']:.0f}",
            _verdict(t["rss_met"]),
        ),
        (
            "churn: cycles / errors (client, server log)",
            f"{r['cycles']} / {sum(r['client_errors'].values())}, {r['server_log_errors']}",
            "0 errors",
            _verdict(not r["client_errors"] and not r["server_log_errors"]),
        ),
        (
            "churn: threads peak, RSS after idle, MB",
            f"{r['threads']['peak']}, {rss['after_idle']}",
            "",
            "",
        ),
    ]
    if t["flat_met"] is not None:
        rows.append(
            (
                "churn: RSS at the end vs minute 5",
                f"{t['end_vs_minute5'] * 100:+.1f} %",
                "within 5 %",
                _verdict(t["flat_met"]),
            )
        )
    return rows


def _cluster(r: dict[str, Any]) -> list[Row]:
    t, c, shared = r["targets"], r["connect"], r["redis"]
    quick = " (--quick)" if r.get("quick") else ""
    creates = " / ".join(f"{row['creates_per_s']}" for row in r["creates"])
    latency = "; ".join(f"{row['create_ms']['p50']} / {row['create_ms']['p95']}" for row in r["creates"])
    one, two = (f"{s['max_streams_at_24fps']}" + ("+" if s["sweep_top"] else "") for s in r["talking"])
    return [
        (
            f"cluster{quick}: connect p50 through HAProxy vs straight to a worker, ms",
            f"{c['proxied']['channel_ms']['p50']} vs {c['direct']['channel_ms']['p50']}"
            f" ({c['overhead_ms']['channel_ms']:+})",
            f"<= +{t['connect_overhead_ms_max']:g}",
            _verdict(t["connect_met"]),
        ),
        (
            f"cluster{quick}: creates/s through HAProxy, 1 / 2 workers (p50 / p95 ms)",
            f"{creates} ({latency})",
            "",
            "",
        ),
        (
            f"cluster{quick}: streams at >= 24 fps, 512 px, 1 / 2 workers on the same cores",
            f"{one} / {two}",
            "2 workers >= 1",
            _verdict(t["talking_met"]),
        ),
        (
            f"cluster{quick}: Redis commands per stream lifecycle (sent by workers / in Lua)",
            f"{shared['commands_per_lifecycle']} ({shared['sent_per_lifecycle']}"
            f" / {shared['scripted_per_lifecycle']})",
            "",
            "",
        ),
    ]


def _replay(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"scenario suite ({r[t]['scenarios']} scenarios, {t}), s",
            f"{r[t]['suite_s']}",
            "",
            "met" if not r[t]["failed"] else "**FAILED**",
        )
        for t in ("memory", "aiortc")
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "connect": _connect,
    "browser_connect": _browser,
    "talk_latency": _talk,
    "lipsync": _lipsync,
    "lip_tracking": _lip_tracking,
    "interrupt": _interrupt,
    "websocket": _websocket,
    "concurrency": _concurrency,
    "idle": _idle,
    "churn": _churn,
    "cluster": _cluster,
    "engine": _engine,
    "replay_suite": _replay,
    "animation": _animation,
}


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| measure | talkstream | floor / target | verdict |", "|---|---|---|---|"]
    for name, section in SECTIONS.items():
        if name in results:
            lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in section(results[name])]
    return "\n".join(lines)


def plot_concurrency(r: dict[str, Any], path: Path) -> None:
    counts = [row["streams"] for row in r["rows"]]
    fig, (fps, cpu) = plt.subplots(1, 2, figsize=(10, 3.6))
    for side, style in (("talkstream", "o-"), ("floor", "s--")):
        fps.plot(counts, [row[side]["fps_min"] for row in r["rows"]], style, label=side)
        cpu.plot(counts, [row[side]["sender_core_per_stream"] for row in r["rows"]], style, label=side)
    fps.axhline(24, color="grey", lw=0.8, ls=":")
    fps.set(xlabel="talking streams (512x512)", ylabel="slowest stream, fps", title="frames received")
    cpu.set(
        xlabel="talking streams (512x512)", ylabel="sender CPU per stream, cores", title="cost per stream"
    )
    fps.legend()
    cpu.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lipsync(r: dict[str, Any], path: Path) -> None:
    offsets, onsets = r["offsets_ms"], r["audio_onsets_s"][: len(r["offsets_ms"])]
    fig, (over_time, spread) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    over_time.plot(onsets, offsets, ".", ms=4)
    over_time.axhspan(-40, 40, color="green", alpha=0.08)
    over_time.set(xlabel="talk time, s", ylabel="mouth - sound onset, ms", title="offset per burst")
    spread.hist(offsets, bins=range(-60, 62, 4))
    spread.set(xlabel="offset, ms", ylabel="bursts", title=f"p95 |offset| {r['offset_ms']['p95']} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(results: dict[str, dict[str, Any]], path: Path) -> None:
    bars: list[tuple[str, float, float, str]] = []
    if "connect" in results:
        c = results["connect"]
        for side, label in (("floor", "bare aiortc"), ("talkstream", "talkstream")):
            row = c[side]["first_frame_ms"]
            bars.append(
                (f"connect, {label}", row["p50"], row["p95"], "tab:grey" if side == "floor" else "tab:blue")
            )
    if "browser_connect" in results:
        b = results["browser_connect"]
        for way in ("raw", "mdns"):
            row = b[way]["first_frame_ms"]
            bars.append(
                (f"Chromium, {'.local' if way == 'mdns' else 'raw'}", row["p50"], row["p95"], "tab:orange")
            )
    if "talk_latency" in results:
        t = results["talk_latency"]
        for kind in ("text", "audio"):
            row = t[kind]["first_video_ms"]
            bars.append((f"talk ({kind}) to video", row["p50"], row["p95"], "tab:green"))
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.2))
    names = [b[0] for b in bars]
    ax.barh(names, [b[2] for b in bars], color=[b[3] for b in bars], alpha=0.35, label="p95")
    ax.barh(names, [b[1] for b in bars], color=[b[3] for b in bars], label="p50")
    ax.invert_yaxis()
    ax.set(xlabel="ms", title="latency to first frame (p50 solid, p95 pale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = {p.stem: json.loads(p.read_text()) for p in sorted(args.results.glob("*.json"))}
    print(table(results))
    if "concurrency" in results:
        plot_concurrency(results["concurrency"], args.results / "concurrency.png")
    if "lipsync" in results and results["lipsync"].get("offsets_ms"):
        plot_lipsync(results["lipsync"], args.results / "lipsync.png")
    plot_latency(results, args.results / "latency.png")
    print(f"\n(plots written to {args.results})")


if __name__ == "__main__":
    main()
