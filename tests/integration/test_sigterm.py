"""SIGTERM on `talkstream serve`: every client hears stream/error, then the process exits cleanly within 5 s.

(A client notices the peer itself closing only when aiortc does, so the test checks the server's side of
the promise: the message to every client, and a clean, prompt exit.)"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from served import served

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient, TalkFailedError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import State
from talkstream.transports.aiortc_client import AiortcClientTransport

pytestmark = pytest.mark.timeout(90)


async def test_sigterm_drains_streams_and_exits_cleanly() -> None:
    async with served(rate_limited=True) as server:
        client = StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        )
        async with client:
            talking = await client.create("bundled:astronaut", output_resolution=160)
            idle = await client.create("bundled:astronaut", output_resolution=160)
            await talking.connected(within=20)
            await idle.connected(within=20)
            talk = await talking.talk(text="This talk will be cut short by the server shutting down. " * 3)
            await asyncio.wait_for(asyncio.shield(talk.started), 20)
            sent = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(server.process.wait(), 10)
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
