"""adapters/serving.py on its own: the accept-error log throttle, the connection budget, the memory keeper,
and the process tuning (in a child process: it changes process-wide settings)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import weakref
from typing import Any

import pytest

from talkstream.adapters.server.serving import (
    ACCEPT_FAILED,
    AcceptErrorThrottle,
    MemoryKeeper,
    default_max_connections,
)


class FakeLoop:
    def __init__(self) -> None:
        self.default: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.default.append(context)


def test_accept_failures_are_logged_once_per_interval_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = AcceptErrorThrottle(interval=10.0, clock=lambda: now[0])
    loop = FakeLoop()
    with caplog.at_level(logging.ERROR, logger="talkstream.serving"):
        for _ in range(5000):  # a flood within one second
            throttle(loop, {"message": ACCEPT_FAILED, "exception": OSError(24, "Too many open files")})  # type: ignore[arg-type]
            now[0] += 0.0002
        now[0] += 10.0
        throttle(loop, {"message": ACCEPT_FAILED, "exception": OSError(24, "Too many open files")})  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("accept() failed 1 times") and lines[1].startswith(
        "accept() failed 5000 times"
    )
    assert throttle.failures == 5001 and loop.default == []
    other = {"message": "something else"}
    throttle(loop, other)  # type: ignore[arg-type]
    assert loop.default == [other]


def test_the_connection_budget_leaves_the_streams_their_sockets() -> None:
    assert default_max_connections(1024, 100) == 1024 - 400 - 64
    assert default_max_connections(100, 100) == 16  # never none at all
    assert default_max_connections(1_000_000, 100) == 4096


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_the_keeper_frees_cycles_of_closed_streams_when_streams_close() -> None:
    closed = [0]
    keeper = MemoryKeeper(lambda: closed[0], interval=0.01)
    gc.disable()  # only the keeper collects here
    try:
        garbage = Cycle()
        gone = weakref.ref(garbage)
        del garbage
        keeper.start()
        await asyncio.sleep(0.1)
        assert gone() is not None and keeper.runs == 0  # nothing closed: nothing to do
        closed[0] += 1
        for _ in range(500):
            if keeper.runs:
                break
            await asyncio.sleep(0.01)
        assert gone() is None and keeper.runs == 1
    finally:
        gc.enable()
        await keeper.aclose()


TUNED = """
import fractions, os, sys
import av, numpy as np
from talkstream.adapters.server.serving import tune_process
done = tune_process() if sys.argv[1] == "tuned" else {}
resamplers = []
for _ in range(4):  # what four streams' Opus encoders do
    r = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
    f = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    f.sample_rate, f.pts, f.time_base = 48000, 0, fractions.Fraction(1, 48000)
    r.resample(f)
    resamplers.append(r)
print(len(os.listdir("/proc/self/task")), done)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_tuning_bounds_ffmpeg_threads_and_malloc_arenas() -> None:
    def threads(mode: str) -> tuple[int, str]:
        out = subprocess.run(
            [sys.executable, "-c", TUNED, mode], capture_output=True, text=True, check=True
        ).stdout.split(maxsplit=1)
        return int(out[0]), out[1]

    tuned, done = threads("tuned")
    assert "'arena_max': True" in done and "'ffmpeg_threads': True" in done
    assert tuned <= 3  # measured 2: four filter graphs no longer start four pools of threads
    untuned, _ = threads("untuned")
    if (os.cpu_count() or 1) > 1:
        assert untuned > tuned  # measured 10 on 2 cores
