"""D-ID's WebSocket API against a real server on 127.0.0.1: raw sockets (aiohttp's client, not talkstream's)
for the protocol, D-ID's demo flow message for message, and talkstream's `WebSocketAdapter` for streamed
talks over real WebRTC. Every answer is checked against specs/websocket.schema.json."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import numpy as np
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.http.websocket import WebSocketAdapter
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.client import StreamClient
from talkstream.engine.errors import TalkstreamError, ValidationError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import Input, State
from talkstream.specs import WEBSOCKET_SCHEMA
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

from .conftest import KEY, OTHER_KEY

pytestmark = pytest.mark.timeout(120)

SCHEMA = json.loads(WEBSOCKET_SCHEMA.read_text())


def answer_in_spec(answer: dict[str, Any]) -> dict[str, Any]:
    jsonschema.validate(answer, {**SCHEMA, "$ref": "#/$defs/server_message"})
    return answer


class Socket:
    """A raw WebSocket to the server (aiohttp's client): send a message, read its one answer."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def ask(self, kind: str, payload: Any) -> dict[str, Any]:
        await self.ws.send_str(json.dumps({"type": kind, "payload": payload}))
        return await self.answer()

    async def send_raw(self, text: str) -> dict[str, Any]:
        await self.ws.send_str(text)
        return await self.answer()

    async def answer(self) -> dict[str, Any]:
        message = await self.ws.receive(timeout=30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return answer_in_spec(json.loads(message.data))


@pytest_asyncio.fixture
async def base(settings: ServerSettings) -> AsyncIterator[str]:
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest_asyncio.fixture
async def socket(base: str) -> AsyncIterator[Socket]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            base.replace("http", "ws") + "/ws", params={"authorization": f"Basic {KEY}"}
        ) as ws,
    ):
        yield Socket(ws)


async def test_the_key_is_checked_before_the_upgrade_in_dids_shape(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for params in ({}, {"authorization": "Basic nobody:nothing"}):
            async with session.get(base + "/ws", params=params) as refused:
                assert refused.status == 401
                assert (await refused.json())["kind"] == "AuthorizationError"
        # The key in a header works too (for clients that can set one), and at / as D-ID's demo connects.
        for path, params, headers in (
            ("/ws", {}, {"Authorization": f"Basic {OTHER_KEY}"}),
            ("/", {"authorization": f"Basic {KEY}"}, {}),
        ):
            async with session.ws_connect(
                base.replace("http", "ws") + path, params=params, headers=headers
            ) as ws:
                answer = await Socket(ws).ask("delete-stream", {"stream_id": "strm_none", "session_id": "x"})
                assert answer["kind"] == "NotFound" and answer["status"] == 404
        async with session.get(base + "/") as page:  # without an upgrade, / is still the demo page
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]


@pytest.mark.parametrize(
    ("raw", "kind", "path"),
    [
        ("not json", "ValidationError", "message"),
        ("[1, 2]", "ValidationError", "message"),
        ('{"type": "fly", "payload": {}}', "ValidationError", "message.type"),
        ('{"type": "sdp"}', "ValidationError", "message.payload"),
        ('{"type": "sdp", "payload": {}}', "NotFound", None),  # no stream on this socket to mean
        ('{"type": "init-stream", "payload": {}}', "ValidationError", "body.source_url"),
        ('{"type": "init-stream", "payload": {"source_url": 7}}', "ValidationError", "body.source_url"),
        (
            '{"type": "stream-text", "payload": {"script": {"type": "text", "input": 5}}}',
            "ValidationError",
            None,
        ),
        (
            '{"type": "stream-audio", "payload": {"script": {"type": "audio", "input": [256]}}}',
            "ValidationError",
            None,
        ),
        (
            '{"type": "stream-audio", "payload": {"script": {"type": "audio", "input": "%%%"}}}',
            "ValidationError",
            None,
        ),
    ],
)
async def test_a_malformed_message_gets_an_error_in_dids_shape_and_the_socket_stays(
    socket: Socket, raw: str, kind: str, path: str | None
) -> None:
    answer = await socket.send_raw(raw)
    assert answer["messageType"] == "error" and answer["kind"] == kind, answer
    if path is not None:
        assert path in answer["details"], answer
    # The socket goes on: the next message is answered as usual.
    created = await socket.ask("init-stream", {"source_url": "bundled:astronaut", "output_resolution": 160})
    assert created["messageType"] == "init-stream" and created["offer"]["type"] == "offer"


async def test_binary_frames_are_refused_and_too_many_refusals_close_with_a_reason(socket: Socket) -> None:
    await socket.ws.send_bytes(b"\x00\x01")
    answer = await socket.answer()
    assert answer["kind"] == "ValidationError" and "binary" in answer["details"]["message"]
    for _ in range(19):
        await socket.ws.send_str("{")
        await socket.answer()
    closing = await socket.ws.receive(timeout=10)
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (1008, "20 refused messages in a row")


async def test_a_message_over_the_limit_closes_with_1009(socket: Socket) -> None:
    await socket.ws.send_str(json.dumps({"type": "stream-text", "payload": {"pad": "x" * 600_000}}))
    closing = await socket.ws.receive(timeout=10)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1009, closing


async def test_a_quiet_socket_is_closed_with_a_reason(tmp_path: Any) -> None:
    settings = ServerSettings(keys=(KEY,), media_root=tmp_path, idle_timeout=0.5)
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("/ws")).replace("http", "ws")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, params={"authorization": f"Basic {KEY}"}) as ws,
        ):
            closing = await ws.receive(timeout=10)
            assert (closing.type, closing.data, closing.extra) == (
                aiohttp.WSMsgType.CLOSE,
                1000,
                "no message for 0.5 s",
            )
    finally:
        await server.close()


async def test_dids_demo_flow_message_for_message(socket: Socket) -> None:
    """What streaming-client-api-ws.js sends: init-stream with presenter_type, sdp and candidates without a
    stream_id (found by session_id), the end of candidates with one, word chunks with an index ending in
    " ", delete-stream; each answered with its messageType."""
    transport = AiortcClientTransport()
    reports: list[tuple[Input, str]] = []
    messages: list[str] = []
    try:
        created = await socket.ask(
            "init-stream",
            {
                "presenter_id": "v2_public_alex@qcvo4gupoy",
                "driver_id": "e3nbserss8",
                "presenter_type": "clip",
            },
        )
        stream_id, session_id = created["id"], created["session_id"]
        peer = transport.create_peer(stream_id, lambda i, d: reports.append((i, d)), messages.append, None)
        answer = await peer.answer(created["offer"]["sdp"])
        sdp = await socket.ask(
            "sdp",
            {"answer": {"type": "answer", "sdp": answer}, "session_id": session_id, "presenter_type": "clip"},
        )
        assert sdp == {"messageType": "sdp", "status": "success"}
        for candidate, mid, index in peer.candidates():
            ice = await socket.ask(
                "ice",
                {
                    "session_id": session_id,
                    "candidate": candidate,
                    "sdpMid": mid,
                    "sdpMLineIndex": index,
                    "presenter_type": "clip",
                },
            )
            assert ice == {"messageType": "ice", "status": "success"}
        end = await socket.ask(
            "ice", {"stream_id": stream_id, "session_id": session_id, "presenter_type": "clip"}
        )
        assert end["status"] == "success"
        for _ in range(200):
            if any(i is Input.ICE_CONNECTED for i, _ in reports):
                break
            await asyncio.sleep(0.05)
        words = [
            *["This", "is", "a", "demo", "of", "the", "WebSocket", "API", "with", "text", "chunks."],
            '<break time="1s" />',
            "Easy.",
            "",
        ]
        statuses = []
        for index, word in enumerate(words):
            chunk = await socket.ask(
                "stream-text",
                {
                    "script": {
                        "type": "text",
                        "input": word + " ",
                        "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural"},
                        "ssml": True,
                    },
                    "config": {"stitch": True},
                    "apiKeysExternal": {"elevenlabs": {"key": ""}},
                    "background": {"color": "#FFFFFF"},
                    "index": index,
                    "session_id": session_id,
                    "stream_id": stream_id,
                    "presenter_type": "clip",
                },
            )
            assert chunk["messageType"] == "stream-text" and chunk["index"] == index
            statuses.append(chunk["status"])
        # Buffered until the first sentence ended ("chunks."), which started the talk; streaming after.
        started = statuses.index("started")
        assert statuses[:started] == ["buffered"] * started and words[started].endswith(".")
        assert set(statuses[started + 1 : -1]) == {"streaming"} and statuses[-1] == "ended"
        for _ in range(600):
            if any(m.startswith("stream/done") for m in messages):
                break
            await asyncio.sleep(0.05)
        assert [m.split(":")[0] for m in messages] == ["stream/started", "stream/done"]
        deleted = await socket.ask(
            "delete-stream", {"session_id": session_id, "stream_id": stream_id, "presenter_type": "clip"}
        )
        assert deleted == {"messageType": "delete-stream", "status": "success"}
    finally:
        await transport.aclose()


@pytest_asyncio.fixture
async def client(base: str) -> AsyncIterator[StreamClient]:
    async with StreamClient(
        WebSocketAdapter(base, KEY), AiortcClientTransport(), retry=RetryPolicy.none()
    ) as made:
        yield made


async def test_streamed_text_speaks_its_first_phrase_before_the_last_chunk(
    client: StreamClient, base: str
) -> None:
    stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=256)
    await stream.connected(within=30)
    first_started = asyncio.Event()

    async def chunks() -> AsyncIterator[str]:
        for word in ["The", "first", "sentence", "is", "short."]:
            yield word + " "
        # Wait until the first phrase plays: the server must not wait for the end of the text.
        for _ in range(400):
            if any(m.startswith("stream/started") for _, m in stream.messages):
                first_started.set()
                break
            await asyncio.sleep(0.025)
        for word in ["And", "the", "second", "one", "follows", "it", "on", "the", "same", "talk."]:
            yield word + " "

    talk = await stream.stream_text(chunks())
    assert first_started.is_set() and talk is not None
    await talk.done(within=60)
    subjects = [m.split(":")[0] for _, m in stream.messages]
    assert subjects == ["stream/started", "stream/done"], "one talk, both phrases"
    inputs = [e.input for e in stream.session.history]
    assert Input.CHUNK_SENT in inputs and inputs.count(Input.TALK_REQUESTED) == 1


async def test_streamed_pcm_plays_as_it_arrives_and_an_interrupt_drops_the_rest(client: StreamClient) -> None:
    stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=256, fluent=True)
    await stream.connected(within=30)
    rate = 16_000
    t = np.arange(rate * 10) / rate
    pcm = (np.sign(np.sin(2 * np.pi * 140 * t)) * 9000).astype("<i2").tobytes()
    answers: list[str] = []
    adapter = client.http
    assert isinstance(adapter, WebSocketAdapter)

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 8000):  # 0.25 s each, sent in real time
            yield pcm[at : at + 8000]
            if at == 8000 * 4:
                for _ in range(400):  # the talk plays before the sound is all here
                    if any(m.startswith("stream/started") for _, m in stream.messages):
                        break
                    await asyncio.sleep(0.025)
                assert any(m.startswith("stream/started") for _, m in stream.messages)
                stopped = await stream.interrupt()
                assert stopped is not None and stopped.interrupted
            await asyncio.sleep(0.25)

    original = adapter.message

    async def recording(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await original(kind, payload)
        answers.append(answer["status"])
        return answer

    adapter.message = recording  # type: ignore[method-assign]
    talk = await stream.stream_audio(pieces())
    assert talk is not None and talk.interrupted
    assert answers[0] == "started" and "dropped" in answers and answers[-1] == "dropped"
    assert stream.state is State.CONNECTED
    (served,) = [s for s in client.streams()]
    assert served.session.talks_pending == 0


async def test_a_socket_closing_ends_its_talk_and_leaves_the_stream(
    base: str, settings: ServerSettings
) -> None:
    adapter = WebSocketAdapter(base, KEY)
    async with StreamClient(adapter, AiortcClientTransport(), retry=RetryPolicy.none()) as client:
        stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
        await stream.connected(within=30)
        answer = await adapter.message(
            "stream-text",
            {
                "script": {"type": "text", "input": "Half a sentence that never"},
                "index": 0,
                "stream_id": stream.stream_id,
                "session_id": stream.session.session_id,
            },
        )
        assert answer["status"] == "buffered"
        ws = adapter._ws
        assert ws is not None
        await ws.close()
        # The server speaks what came and the stream lives on (its own idle timeout ends it).
        for _ in range(400):
            if any(m.startswith("stream/done") for _, m in stream.messages):
                break
            await asyncio.sleep(0.05)
        assert [m.split(":")[0] for _, m in stream.messages] == ["stream/started", "stream/done"]


async def test_a_text_without_a_sentence_end_starts_with_its_end_chunk(client: StreamClient) -> None:
    stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
    await stream.connected(within=30)
    adapter = client.http
    assert isinstance(adapter, WebSocketAdapter)
    ref = {"stream_id": stream.stream_id, "session_id": stream.session.session_id}
    first = await adapter.message(
        "stream-text", {"script": {"type": "text", "input": "Hi there"}, "index": 0, **ref}
    )
    assert first["status"] == "buffered" and "video_id" not in first
    end = await adapter.message("stream-text", {"script": {"type": "text", "input": " "}, "index": 1, **ref})
    assert end["status"] == "started" and end["video_id"].startswith("tlk_")
    again = await adapter.message(
        "stream-text", {"script": {"type": "text", "input": "late"}, "index": 1, **ref}
    )
    assert again["status"] == "buffered"  # index 1 again: the old text ended, so this one is a new text
    with pytest.raises(ValidationError) as refused:
        await adapter.message("stream-text", {"script": {"type": "text", "input": "x"}, "index": 1, **ref})
    assert refused.value.details == {"payload.index": "1 came after 1"}


async def test_a_talks_chunks_are_its_body_not_requests_but_new_talks_are(tmp_path: Any) -> None:
    """The key's request rate counts messages, except the chunks of a talk already streaming in (D-ID's
    demo sends a TTS's PCM as fast as it comes: they are paced by the talk itself)."""
    from talkstream.adapters.server.auth import RequestLimits

    settings = ServerSettings(
        keys=(KEY,), media_root=tmp_path, request_limits=RequestLimits(per_key=0.01, key_burst=12)
    )
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    adapter = WebSocketAdapter(str(server.make_url("")).rstrip("/"), KEY)
    try:
        async with StreamClient(adapter, AiortcClientTransport(), retry=RetryPolicy.none()) as client:
            stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
            await stream.connected(within=30)
            pcm = np.zeros(16_000 * 4, "<i2").tobytes()
            talk = await stream.stream_audio(pcm[at : at + 1000] for at in range(0, len(pcm), 1000))  # 129
            assert talk is not None
            await talk.done(within=30)

            async def new_talks() -> None:
                for _ in range(12):
                    await stream.stream_text(["Again."])

            with pytest.raises(TalkstreamError) as limited:  # a new talk is a request: over the rate
                await new_talks()
            assert limited.value.kind == "TooManyRequestsError"
    finally:
        await server.close()


async def test_a_streamed_text_is_at_most_dids_40000_characters(client: StreamClient) -> None:
    stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
    await stream.connected(within=30)
    adapter = client.http
    assert isinstance(adapter, WebSocketAdapter)
    ref = {"stream_id": stream.stream_id, "session_id": stream.session.session_id}
    for index in range(4):
        await adapter.message(
            "stream-text", {"script": {"type": "text", "input": "word " * 2000}, "index": index, **ref}
        )
    with pytest.raises(ValidationError) as refused:
        await adapter.message(
            "stream-text", {"script": {"type": "text", "input": "word " * 2000}, "index": 4, **ref}
        )
    assert "over 40000 characters" in str(refused.value.details)
    await stream.interrupt()
