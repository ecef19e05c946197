"""The benchmarks' command lines still run: `make bench` is not part of `make test`, so without this a
broken import or option in bench/ would only show at the next full benchmark run.

Only the quick ones run, with tiny sizes, and nothing here reads a figure: speed is the benchmarks' own
business. Each writes its JSON where `--json` says, and the summary turns those into a table and a plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.timeout(300)


def bench(script: str, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(
    ("name", "arguments", "keys"),
    [
        (
            "engine",
            ["--sessions", "50", "--rounds", "1", "--repeats", "1"],
            {"engine_inputs_per_s", "bare_inputs_per_s", "targets"},
        ),
        ("animation", ["--frames", "3"], {"rows", "targets"}),
        (
            "churn",
            ["--minutes", "0.15", "--clients", "2", "--idle-minutes", "0.05"],
            {"cycles", "rss_mb", "threads", "fds", "targets"},
        ),
    ],
)
def test_a_benchmark_writes_its_json_and_reports(
    tmp_path: Path, name: str, arguments: list[str], keys: set[str]
) -> None:
    out = tmp_path / f"{name}.json"
    printed = bench(f"{name}.py", *arguments, "--json", str(out))
    result = json.loads(out.read_text())
    assert keys <= result.keys(), sorted(result)
    assert result["benchmark"] == name and result["machine"]["python"] == sys.version.split()[0]
    assert f"(written to {out})" in printed


def test_the_summary_tabulates_what_it_finds(tmp_path: Path) -> None:
    bench(
        "engine.py",
        "--sessions",
        "50",
        "--rounds",
        "1",
        "--repeats",
        "1",
        "--json",
        str(tmp_path / "engine.json"),
    )
    printed = bench("summary.py", "--results", str(tmp_path))
    assert "engine" in printed.lower() and f"(plots written to {tmp_path})" in printed
    assert not (tmp_path / "latency.png").exists()  # no latency results, so no latency plot
