"""Scenario replay: how long the whole suite in specs/scenarios takes, on each transport.

    .venv/bin/python bench/replay_suite.py [--repeats 3] [--json PATH]

Every scenario runs in this process against the in-process server: on the in-memory transport (virtual clock,
so timers and waits cost no wall time) and on real aiortc peers over 127.0.0.1 (system clock). The median of
`--repeats` runs of the whole suite, and the slowest scenarios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from served import bench_main, machine  # bench/served.py, beside this file

from talkstream.adapters.scenarios import Outcome, run_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "specs" / "scenarios"


async def suite(transport: str) -> tuple[float, list[Outcome]]:
    started = time.perf_counter()
    outcomes = [await run_scenario(path, transport=transport) for path in sorted(SCENARIOS.glob("*.yaml"))]
    return time.perf_counter() - started, outcomes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "replay_suite", "machine": machine(), "repeats": args.repeats}
    for transport in ("memory", "aiortc"):
        runs = [await suite(transport) for _ in range(args.repeats)]
        outcomes = runs[-1][1]
        slowest = sorted(outcomes, key=lambda o: o.seconds, reverse=True)[:3]
        result[transport] = {
            "scenarios": len(outcomes),
            "passed": sum(o.status == "passed" for o in outcomes),
            "skipped": sum(o.status == "skipped" for o in outcomes),
            "failed": [o.name for o in outcomes if o.status == "failed"],
            "suite_s": round(statistics.median(seconds for seconds, _ in runs), 2),
            "slowest": [{"name": o.name, "s": round(o.seconds, 2)} for o in slowest],
        }
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"scenario replay: specs/scenarios, median of {result['repeats']} runs"]
    for transport in ("memory", "aiortc"):
        r = result[transport]
        failed = f", FAILED: {', '.join(r['failed'])}" if r["failed"] else ""
        lines.append(
            f"  {transport:<7} {r['suite_s']:>6} s for {r['scenarios']} scenarios"
            f" ({r['passed']} passed, {r['skipped']} skipped{failed})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main(
        "replay_suite", __doc__, lambda p: p.add_argument("--repeats", type=int, default=3), main, report
    )
