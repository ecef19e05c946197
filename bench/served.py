"""What the benchmarks share: `talkstream serve` in a process of its own, and the machine's description.

Benchmarks that measure the server from outside start it with `served()`, so the client they run in this
process never shares an event loop (or a core's time slice) with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

__all__ = ["machine", "served"]


def machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served(*extra: str) -> AsyncIterator[tuple[str, str]]:
    """Run `talkstream serve` on a free 127.0.0.1 port with a fresh key; yield (base URL, key)."""
    port, key = _free_port(), f"bench:{secrets.token_urlsafe(12)}"
    command: Sequence[str] = [
        sys.executable,
        "-m",
        "talkstream.adapters.cli",
        "serve",
        "--port",
        str(port),
        *extra,
    ]
    server = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "TALKSTREAM_API_KEYS": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.terminate()
        await server.wait()
