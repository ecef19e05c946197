"""What the benchmarks and the tests share: `talkstream serve` in a process of its own (`served`, `serving`),
a free port and waiting for one, a local media server, WAV files, and the machine's description.

Whoever measures or tests the server from outside starts it here, so the client in this process never
shares an event loop (or a core's time slice) with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import io
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np
import numpy.typing as npt
from aiohttp import web

__all__ = [
    "Served",
    "bench_main",
    "encode_wav",
    "free_port",
    "machine",
    "media_server",
    "port_open",
    "served",
    "serving",
]

RESULTS = Path(__file__).parent / "results"


class Served(NamedTuple):
    base: str  # http://127.0.0.1:port
    key: str
    pid: int  # the server process, for its CPU and memory
    process: Any = None  # its asyncio.subprocess.Process (`served`) or subprocess.Popen (`serving`)


def machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: How `talkstream serve` is started: this interpreter's module, unless a caller names a command.
SERVE = (sys.executable, "-m", "talkstream.adapters.cli")


def _serve_command(
    port: int, extra: Sequence[str], rate_limited: bool, talkstream: Sequence[str]
) -> list[str]:
    command = [*talkstream, "serve", "--port", str(port)]
    if not rate_limited:  # benchmarks measure speed, not the request-rate limit
        command += ["--requests-per-second", "1000000"]
    return [*command, *extra]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def served(*extra: str, log: Path | None = None, rate_limited: bool = False) -> AsyncIterator[Served]:
    """Run `talkstream serve` on a free 127.0.0.1 port with a fresh key; its output goes to `log` if given."""
    port, key = free_port(), f"bench:{secrets.token_urlsafe(12)}"
    # opening a local log file does not block the loop for long enough to matter
    with open(log, "wb") if log is not None else contextlib.nullcontext() as out:  # noqa: ASYNC230
        server = await asyncio.create_subprocess_exec(
            *_serve_command(port, extra, rate_limited, SERVE),
            env={**os.environ, "TALKSTREAM_API_KEYS": key},
            stdout=out or subprocess.DEVNULL,
            stderr=out or subprocess.DEVNULL,
        )
        try:
            for _ in range(400):
                if port_open(port) or server.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            yield Served(f"http://127.0.0.1:{port}", key, server.pid, server)
        finally:
            if server.returncode is None:
                server.terminate()
            await server.wait()


@contextlib.contextmanager
def serving(
    *extra: str,
    log: Path,
    rate_limited: bool = True,
    preexec_fn: Callable[[], object] | None = None,
    talkstream: Sequence[str] = SERVE,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Served]:
    """`served` for synchronous callers (test fixtures), output always to `log`; it waits for the process
    to end on leaving, so the log is complete then. `talkstream`: the command to run (an installed
    console script, say), `cwd` and `env` where and with what."""
    port, key = free_port(), f"test:{secrets.token_urlsafe(12)}"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            _serve_command(port, extra, rate_limited, talkstream),
            env={**(os.environ if env is None else env), "TALKSTREAM_API_KEYS": key},
            stdout=out,
            stderr=out,
            preexec_fn=preexec_fn,
            cwd=cwd,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_open(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"talkstream serve did not start: {log.read_text()[-2000:]}")
                time.sleep(0.05)  # a synchronous fixture waiting on another process: real time, no loop
            yield Served(f"http://127.0.0.1:{port}", key, server.pid, server)
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait(timeout=30)


@contextlib.asynccontextmanager
async def media_server(files: Mapping[str, bytes]) -> AsyncIterator[str]:
    """Serve `files` (name -> WAV bytes) on a free 127.0.0.1 port; yield the base URL (no trailing slash)."""
    app = web.Application()
    for name, body in files.items():

        async def handler(request: web.Request, body: bytes = body) -> web.Response:
            return web.Response(body=body, content_type="audio/wav")

        app.router.add_get(f"/{name}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def encode_wav(pcm: npt.NDArray[Any], rate: int = 16_000) -> bytes:
    """Mono samples (any numeric type, in int16's range) as a 16-bit WAV file, written by PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        samples = pcm.astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


Outcome = dict[str, Any]


def bench_main(
    name: str,
    doc: str | None,
    options: Callable[[argparse.ArgumentParser], object],
    run: Callable[[argparse.Namespace], Outcome | Awaitable[Outcome]],
    report: Callable[[Outcome], str],
) -> None:
    """A benchmark's command line: its options and `--json`, then run, write results/<name>.json, report."""
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    options(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / f"{name}.json")
    arguments = parser.parse_args()
    outcome = run(arguments)
    if inspect.isawaitable(outcome):
        outcome = asyncio.run(_awaited(outcome))
    assert isinstance(outcome, dict)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(outcome, indent=2) + "\n")
    print(report(outcome))
    print(f"  (written to {arguments.json})")


async def _awaited(outcome: Awaitable[Outcome]) -> Outcome:
    return await outcome
