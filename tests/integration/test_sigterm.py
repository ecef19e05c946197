"""Stopping `talkstream serve`: SIGINT (or a drain cut short) ends every stream at once, each client hearing
stream/error, then its peer closing, and the process exits within 5 s; SIGTERM drains first: not ready, no
new streams or talks, the talks playing finish (within --drain-timeout), then the same."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from served import Served, served

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import ClientStream, ClientTalk, StreamClient, TalkFailedError
from talkstream.engine.errors import ServiceUnavailableError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import Input, State
from talkstream.transports.aiortc_client import AiortcClientTransport

pytestmark = pytest.mark.timeout(90)


def _client(server: Served) -> StreamClient:
    return StreamClient(
        AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
    )


async def _connected(client: StreamClient) -> ClientStream:
    stream = await client.create("bundled:astronaut", output_resolution=160)
    await stream.connected(within=20)
    return stream


async def _heard_shutting_down(stream: ClientStream) -> None:
    """`stream`'s only message is the server's goodbye (it may arrive a moment after the process ended)."""
    for _ in range(200):
        if stream.messages:
            break
        await asyncio.sleep(0.01)
    assert [m for _, m in stream.messages] == [
        'stream/error:{"kind":"ServiceUnavailable","description":"server shutting down"}'
    ]


async def _talking(client: StreamClient, text: str) -> tuple[ClientStream, ClientTalk]:
    """A connected stream whose talk of `text` has started."""
    stream = await _connected(client)
    talk = await stream.talk(text=text)
    await asyncio.wait_for(asyncio.shield(talk.started), 20)
    return stream, talk


async def test_sigint_ends_streams_at_once_and_exits_cleanly() -> None:
    async with served(rate_limited=True) as server:
        async with _client(server) as client:
            idle = await _connected(client)
            talking, talk = await _talking(
                client, "This talk will be cut short by the server shutting down. " * 3
            )
            sent = time.monotonic()
            server.process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(server.process.wait(), 10)
            took = time.monotonic() - sent
            with pytest.raises(TalkFailedError, match="shutting down"):
                await talk.done(within=10)
            assert [m.split(":")[0] for _, m in talking.messages][:2] == ["stream/started", "stream/error"]
            await _heard_shutting_down(idle)
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


async def _get(base: str, path: str, key: str | None = None) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    headers = {"Authorization": f"Basic {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.get(base + path, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def test_sigterm_drains_the_talk_playing_then_exits() -> None:
    async with served(rate_limited=True) as server:
        assert (await _get(server.base, "/readyz"))[0] == 200
        async with _client(server) as client:
            idle = await _connected(client)
            # about 9 s: the signal lands while it plays, however late the client hears it start
            _, talk = await _talking(client, "This talk goes on to its end while the server drains. " * 3)
            server.process.send_signal(signal.SIGTERM)
            for _ in range(200):  # the signal arrives; the worker says so to its proxy's check
                status, body, _ = await _get(server.base, "/readyz")
                if status == 503:
                    break
                await asyncio.sleep(0.01)
            assert (status, body["status"]) == (503, "draining"), (status, body)
            assert (await _get(server.base, "/healthz"))[0] == 200  # alive all the same
            with pytest.raises(ServiceUnavailableError) as refused:
                await client.create("bundled:astronaut", output_resolution=160)
            assert refused.value.retry_after == 1
            with pytest.raises(ServiceUnavailableError, match="shutting down"):
                await idle.talk(text="Too late for this one.")
            await talk.done(within=30)  # the talk ends as it would have: whole
            assert not talk.interrupted
            code = await asyncio.wait_for(server.process.wait(), 10)
            await _heard_shutting_down(idle)
        assert code == 0


async def test_a_drain_ends_at_its_bound() -> None:
    async with served("--drain-timeout", "1", rate_limited=True) as server:
        async with _client(server) as client:
            _, talk = await _talking(client, "A talk far longer than the drain may wait for it to end. " * 8)
            sent = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(server.process.wait(), 15)
            took = time.monotonic() - sent
            with pytest.raises(TalkFailedError, match="shutting down"):
                await talk.done(within=10)
        # the bound, then closing; never the talk's own 30-odd seconds
        assert code == 0 and 1 <= took < 6, (code, took)
