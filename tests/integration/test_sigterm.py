"""SIGTERM on `talkstream serve`: every client hears stream/error, then the process exits cleanly within 5 s.

(A client notices the peer itself closing only when aiortc does, so the test checks the server's side of
the promise: the message to every client, and a clean, prompt exit.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from talkstream.adapters.http_client import AiohttpAdapter
from talkstream.engine.client import StreamClient, TalkFailedError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import State
from talkstream.transports.aiortc_client import AiortcClientTransport

pytestmark = pytest.mark.timeout(90)

KEY = "sigterm:secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_drains_streams_and_exits_cleanly() -> None:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "talkstream.adapters.cli",
        "serve",
        "--port",
        str(port),
        env={**os.environ, "TALKSTREAM_API_KEYS": KEY},
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
        client = StreamClient(
            AiohttpAdapter(f"http://127.0.0.1:{port}", KEY), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            talking = await client.create("bundled:astronaut", output_resolution=160)
            idle = await client.create("bundled:astronaut", output_resolution=160)
            await talking.connected(within=20)
            await idle.connected(within=20)
            talk = await talking.talk(text="This talk will be cut short by the server shutting down. " * 3)
            await asyncio.wait_for(asyncio.shield(talk.started), 20)
            sent = time.monotonic()
            server.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(server.wait(), 10)
            took = time.monotonic() - sent
            with pytest.raises(TalkFailedError, match="shutting down"):
                await talk.done(within=10)
            assert [m.split(":")[0] for _, m in talking.messages][:2] == ["stream/started", "stream/error"]
            for _ in range(200):
                if idle.messages:
                    break
                await asyncio.sleep(0.01)
            assert [m for _, m in idle.messages] == [
                'stream/error:{"kind":"ServiceUnavailable","description":"server shutting down"}'
            ]
            assert talking.state is State.CONNECTED  # the talk ended in error; the stream is the server's
        assert code == 0 and took < 5, (code, took)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
