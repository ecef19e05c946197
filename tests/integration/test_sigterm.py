"""SIGTERM on `talkstream serve`: every client hears stream/error, then its peer closing, and the process
exits cleanly within 5 s."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from served import served

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient, TalkFailedError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import Input, State
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
            # The talk ended in error (back to connected), then the server closed the peer with a goodbye
            # the client hears at once. (Before, shutdown returned before the peers had finished closing,
            # the process exited mid-close, and clients learned nothing until their consent checks failed.)
            for _ in range(300):
                if talking.state is State.CLOSED:
                    break
                await asyncio.sleep(0.01)
            last = [(e.source, e.input) for e in talking.session.history][-2:]
            assert last == [
                (State.TALKING, Input.LAST_TALK_FINISHED),
                (State.CONNECTED, Input.TRANSPORT_CLOSED),
            ], last
        assert code == 0 and took < 5, (code, took)
