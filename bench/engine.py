"""Engine throughput and memory beside a bare `transitions` machine, measured in the same run.

    .venv/bin/python bench/engine.py [--sessions 10000] [--rounds 3] [--repeats 5] [--json PATH]

Both sides use the same class (`AsyncMachine`) with the same states and transitions (the engine's own
`build_machine`). The bare side registers plain models with `add_model` and awaits their trigger methods;
the engine side opens `StreamSession`s on a `SessionEngine` (real `SystemClock`: every session holds a live
idle timer) and applies inputs through `StreamSession.apply` (turn-taking, table check, talk-queue guard,
history, idle deadline, event publication).

Workload: every session is brought to ``connected`` (offer, 3 candidates, answer, ICE connected), then
each round applies a talk cycle (requested, started, last finished) and one late candidate to every
session, sessions interleaved as a server would see them. Throughput is inputs per second over the talk
rounds; the median of `--repeats` runs, bare and engine alternating so both see the same machine load.
Memory is what tracemalloc sees allocated per session/model after the whole workload (history full).

Targets: engine >= 80 % of the bare rate; < 8 KB per session.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any

from served import bench_main  # bench/served.py, beside this file

from talkstream.engine import Input, SessionEngine, StreamSession
from talkstream.engine.machine import build_machine

SETUP = [Input.OFFER_SENT, *[Input.CANDIDATE_RECEIVED] * 3, Input.ANSWER_RECEIVED, Input.ICE_CONNECTED]
ROUND = [Input.TALK_REQUESTED, Input.TALK_STARTED, Input.LAST_TALK_FINISHED, Input.CANDIDATE_RECEIVED]


class BareModel:
    """A plain model for the bare machine (transitions binds its triggers onto it)."""


async def run_bare(sessions: int, rounds: int) -> tuple[float, int]:
    machine = build_machine("bare")
    models = [BareModel() for _ in range(sessions)]
    for model in models:
        machine.add_model(model)
    for inp in SETUP:
        name = inp.value
        for model in models:
            await getattr(model, name)()
    start = time.perf_counter()
    for _ in range(rounds):
        for inp in ROUND:
            name = inp.value
            for model in models:
                await getattr(model, name)()
    elapsed = time.perf_counter() - start
    return sessions * rounds * len(ROUND) / elapsed, len(models)


async def run_engine(sessions: int, rounds: int, *, subscribers: bool = False) -> tuple[float, int]:
    engine = SessionEngine()
    seen = [0]
    if subscribers:

        def count(_event: object) -> None:
            seen[0] += 1

        engine.subscribe(count)
    live: list[StreamSession] = [engine.open("bench") for _ in range(sessions)]
    for inp in SETUP:
        for session in live:
            await session.apply(inp)
    start = time.perf_counter()
    for _ in range(rounds):
        for inp in ROUND:
            for session in live:
                await session.apply(inp)
    elapsed = time.perf_counter() - start
    await engine.close_all()
    return sessions * rounds * len(ROUND) / elapsed, len(live)


async def bytes_per_bare(sessions: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    machine = build_machine("bare")
    models = [BareModel() for _ in range(sessions)]
    for model in models:
        machine.add_model(model)
    for inp in SETUP + ROUND * 8:
        for model in models:
            await getattr(model, inp.value)()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / sessions


async def bytes_per_session(sessions: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = SessionEngine()
    live = [engine.open("bench") for _ in range(sessions)]
    for inp in SETUP + ROUND * 8:  # 38 inputs: more than the history keeps
        for session in live:
            await session.apply(inp)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await engine.close_all()
    return (after - before) / sessions


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bare_rates: list[float] = []
    engine_rates: list[float] = []
    for _ in range(args.repeats):
        gc.collect()
        bare_rates.append((await run_bare(args.sessions, args.rounds))[0])
        gc.collect()
        engine_rates.append((await run_engine(args.sessions, args.rounds))[0])
    with_sub = (await run_engine(args.sessions, args.rounds, subscribers=True))[0]
    bare_rate = statistics.median(bare_rates)
    engine_rate = statistics.median(engine_rates)
    bare_bytes = await bytes_per_bare(args.sessions)
    engine_bytes = await bytes_per_session(args.sessions)
    ratio = engine_rate / bare_rate
    return {
        "benchmark": "engine",
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "sessions": args.sessions,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "bare_inputs_per_s": round(bare_rate),
        "engine_inputs_per_s": round(engine_rate),
        "engine_with_subscriber_inputs_per_s": round(with_sub),
        "engine_to_bare": round(ratio, 3),
        "bare_bytes_per_model": round(bare_bytes),
        "engine_bytes_per_session": round(engine_bytes),
        "targets": {
            "engine_to_bare_min": 0.8,
            "bytes_per_session_max": 8192,
            "rate_met": ratio >= 0.8,
            "memory_met": engine_bytes < 8192,
        },
        "runs": {"bare": [round(r) for r in bare_rates], "engine": [round(r) for r in engine_rates]},
    }


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def report(result: dict[str, Any]) -> str:
    t = result["targets"]
    rows = [
        (
            "bare transitions AsyncMachine",
            f"{result['bare_inputs_per_s']:,} inputs/s",
            f"{result['bare_bytes_per_model']:,} B/model",
            "",
        ),
        (
            "talkstream engine",
            f"{result['engine_inputs_per_s']:,} inputs/s",
            f"{result['engine_bytes_per_session']:,} B/session",
            "",
        ),
        (
            "engine, one engine-wide subscriber",
            f"{result['engine_with_subscriber_inputs_per_s']:,} inputs/s",
            "",
            "",
        ),
        (
            "engine / bare",
            f"{result['engine_to_bare']:.0%}",
            "target >= 80%",
            "met" if t["rate_met"] else "MISSED",
        ),
        (
            "bytes per session",
            f"{result['engine_bytes_per_session']:,} B",
            "target < 8,192 B",
            "met" if t["memory_met"] else "MISSED",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"engine benchmark: {result['sessions']:,} live sessions, median of {result['repeats']} runs"]
    lines += [f"  {a:<{width}}  {b:>20}  {c:>18}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)


if __name__ == "__main__":
    bench_main("engine", __doc__, _options, main, report)
