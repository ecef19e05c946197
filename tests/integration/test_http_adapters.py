"""One contract for every HTTP adapter: the same requests get the same answers in-process and over TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.http.inprocess import InProcessAdapter
from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.client import StreamClient
from talkstream.engine.errors import ConnectionFailedError
from talkstream.engine.ports import HttpPort, HttpRequest
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import CloseReason
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

from .conftest import KEY

pytestmark = pytest.mark.timeout(90)


@pytest_asyncio.fixture(params=["inprocess", "aiohttp"])
async def adapter(request: Any, settings: ServerSettings) -> AsyncIterator[HttpPort]:
    app = build_app(settings)
    if request.param == "inprocess":
        port: HttpPort = InProcessAdapter(app, KEY)
        yield port
        await port.aclose()
    else:
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        port = AiohttpAdapter(str(server.make_url("")).rstrip("/"), KEY)
        yield port
        await port.aclose()
        await server.close()


async def test_the_protocol_answers_alike(adapter: HttpPort) -> None:
    created = await adapter.send(
        HttpRequest(method="POST", path="/talks/streams", body={"source_url": "bundled:astronaut"})
    )
    assert created.status == 201 and created.body["offer"]["type"] == "offer"
    stream_id, session_id = created.body["id"], created.body["session_id"]
    end = await adapter.send(
        HttpRequest(method="POST", path=f"/talks/streams/{stream_id}/ice", body={"session_id": session_id})
    )
    assert (end.status, end.body) == (200, {"status": "success"})
    early = await adapter.send(
        HttpRequest(
            method="POST",
            path=f"/talks/streams/{stream_id}",
            body={"script": {"type": "text", "input": "hey"}, "session_id": session_id},
        )
    )
    assert early.status == 409 and early.body["kind"] == "NotReadyError"
    bad = await adapter.send(HttpRequest(method="POST", path="/talks/streams", body={"source_url": 3}))
    assert bad.status == 400 and bad.body["details"] == {"body.source_url": "must be a string"}
    gone = await adapter.send(
        HttpRequest(method="DELETE", path=f"/talks/streams/{stream_id}", body={"session_id": session_id})
    )
    assert gone.status == 200
    again = await adapter.send(
        HttpRequest(method="DELETE", path=f"/talks/streams/{stream_id}", body={"session_id": session_id})
    )
    assert again.status == 404 and again.body["kind"] == "NotFound"
    assert again.headers["content-type"].startswith("application/json")


async def test_the_client_works_through_either_adapter(adapter: HttpPort) -> None:
    sink = MediaSink()
    async with StreamClient(adapter, AiortcClientTransport(), retry=RetryPolicy.none()) as client:
        stream = await client.create("bundled:astronaut", sink=sink, output_resolution=192)
        await stream.connected(within=20)
        talk = await stream.talk(text="Either way.")
        await talk.done(within=20)
        assert await stream.close() is CloseReason.DELETED
    assert sink.frames > 10


async def test_aiohttp_adapter_turns_a_refused_connection_into_a_typed_error() -> None:
    adapter = AiohttpAdapter("http://127.0.0.1:1", KEY)  # nothing listens on port 1
    with pytest.raises(ConnectionFailedError):
        await adapter.send(HttpRequest(method="POST", path="/talks/streams", body={}))
    await adapter.aclose()
