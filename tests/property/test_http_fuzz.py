"""Hypothesis at every endpoint of a real server: junk bodies, headers, SDP and candidates get only the
documented 4xx, in D-ID's error shape, and a rejected request changes nothing.

The server is the real one in this process (aiohttp on 127.0.0.1, aiortc peers, `FetchPolicy.none()` so no
generated URL is ever looked up). One stream, made before the examples, is the target of the stream
operations; after every rejected request the server's streams, their states, histories, queued talks and
live peers are exactly as before. After the SDP and candidate junk, a real aiortc peer still connects to
that same stream: a rejected answer left nothing half-applied in aiortc either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.auth import RequestLimits
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.fetch import FetchPolicy
from talkstream.engine.service import StreamService
from talkstream.engine.states import State

KEY, OTHER = "fuzz:secret", "someone:else"
UNLIMITED = RequestLimits(per_key=1e9, key_burst=1e9, total=1e9, total_burst=1e9)
DOCUMENTED = {  # specs/openapi.yaml, without the 5xx
    "create": {201, 400, 401, 415, 429},
    "sdp": {200, 400, 401, 404, 409},
    "ice": {200, 400, 401, 404, 409},
    "talk": {200, 400, 401, 404, 409, 415, 429},
    "delete": {200, 400, 401, 404},
}
EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

pytestmark = pytest.mark.timeout(300)

text = st.text(max_size=60)
json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | text
free_json = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["source_url", "session_id", "answer", "candidate", "sdpMid", "sdpMLineIndex", "script", "config", "face"]
)
shaped_json = st.dictionaries(field_names | text, free_json, max_size=6)  # near misses, not only noise
bodies = st.one_of(
    free_json.map(lambda v: json.dumps(v).encode()),
    shaped_json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),  # not JSON at all
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


class World:
    """The server under test, its client, and the one stream the examples aim at."""

    def __init__(self, client: TestClient[web.Request, web.Application], service: StreamService) -> None:
        self.client, self.service = client, service
        self.stream_id = self.session_id = ""

    async def new_stream(self) -> None:
        response = await self.client.post(
            "/talks/streams", json={"source_url": "bundled:astronaut"}, headers=auth()
        )
        body = await response.json()
        assert response.status == 201, body
        self.stream_id, self.session_id, self.offer = body["id"], body["session_id"], body["offer"]["sdp"]

    def snapshot(self) -> Any:
        return (
            self.service.transport.live_peers,
            sorted(
                (
                    s.session.stream_id,
                    s.session.owner,
                    s.session.state,
                    len(s.session.history),
                    len(s.talks),
                )
                for s in self.service.streams()
            ),
        )

    def path(self, operation: str, stream_id: str | None = None) -> tuple[str, str]:
        sid = self.stream_id if stream_id is None else stream_id
        return {
            "create": ("POST", "/talks/streams"),
            "sdp": ("POST", f"/talks/streams/{sid}/sdp"),
            "ice": ("POST", f"/talks/streams/{sid}/ice"),
            "talk": ("POST", f"/talks/streams/{sid}"),
            "delete": ("DELETE", f"/talks/streams/{sid}"),
        }[operation]

    async def send(
        self, operation: str, body: bytes, headers: dict[str, str], stream_id: str | None = None
    ) -> Any:
        method, path = self.path(operation, stream_id)
        before = self.snapshot()
        response = await self.client.request(method, path, data=body, headers=headers)
        raw = await response.read()
        assert response.status in DOCUMENTED[operation], (operation, response.status, raw[:300])
        if operation != "create" and not self.names_the_session(body):
            assert response.status >= 400, f"{operation} without its session_id answered {response.status}"
        if response.status >= 400:
            error = json.loads(raw)
            assert set(error) <= {"kind", "description", "details"} and error["kind"] and error["description"]
            assert self.snapshot() == before, f"{operation} answered {response.status} and changed the server"
        elif self.stream_id not in {s.session.stream_id for s in self.service.streams()}:
            await self.new_stream()  # a junk body that happened to be a valid delete: aim at a new stream
        return response.status

    def names_the_session(self, body: bytes) -> bool:
        try:
            data = json.loads(body)
        except ValueError:
            return False
        return isinstance(data, dict) and data.get("session_id") == self.session_id


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Basic {key}", "Content-Type": "application/json"}


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    settings_ = ServerSettings(keys=(KEY, OTHER), fetch_policy=FetchPolicy.none(), request_limits=UNLIMITED)
    app = build_app(settings_)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        w = World(client, app[SERVICE])
        await w.new_stream()
        yield w


operations = st.sampled_from(sorted(DOCUMENTED))

VALID_BODIES: dict[str, dict[str, Any]] = {
    "sdp": {"answer": {"type": "answer", "sdp": "v=0\r\n"}},
    "ice": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0},
    "talk": {"script": {"type": "text", "input": "hello"}},
    "delete": {},
}


@pytest.mark.parametrize("operation", sorted(VALID_BODIES))
@pytest.mark.parametrize("session", ["missing", "wrong", "another streams", "empty"])
async def test_a_wrong_or_missing_session_id_is_a_session_error(
    world: World, operation: str, session: str
) -> None:
    """Each stream operation checks the body's session_id before anything else: 400 SessionError."""
    theirs = world.session_id
    if session == "another streams":
        await world.new_stream()  # the old stream is still live, with its own session
        assert world.session_id != theirs
    body: dict[str, Any] = dict(VALID_BODIES[operation])
    if session == "wrong":
        body["session_id"] = world.session_id[:-1] + ("A" if world.session_id[-1] != "A" else "B")
    elif session == "another streams":
        body["session_id"] = theirs
    elif session == "empty":
        body["session_id"] = ""
    method, path = world.path(operation)
    before = world.snapshot()
    response = await world.client.request(method, path, json=body, headers=auth())
    assert response.status == 400, await response.text()
    assert (await response.json())["kind"] == "SessionError"
    assert world.snapshot() == before


@EXAMPLES
@given(operation=operations, body=bodies, authorization=st.none() | header_values)
async def test_without_the_right_key_every_request_is_401_and_changes_nothing(
    world: World, operation: str, body: bytes, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None and authorization.strip() not in (
        f"Basic {KEY}",
        f"Bearer {KEY}",
        f"Basic {OTHER}",
    ):
        headers["Authorization"] = authorization
    status = await world.send(operation, body, headers)
    assert status == 401


@EXAMPLES
@given(operation=operations, body=bodies, content_type=st.none() | header_values)
async def test_junk_bodies_and_headers_get_documented_answers_and_change_nothing(
    world: World, operation: str, body: bytes, content_type: str | None
) -> None:
    headers = auth()
    if content_type is not None:
        headers["Content-Type"] = content_type
    await world.send(operation, body, headers)


@EXAMPLES
@given(operation=operations.filter(lambda o: o != "create"), body=bodies)
async def test_another_keys_stream_answers_as_one_that_does_not_exist(
    world: World, operation: str, body: bytes
) -> None:
    """Whatever the body, another key learns nothing: the answer is the one a made-up id gets."""
    method, path = world.path(operation)
    theirs = await world.client.request(method, path, data=body, headers=auth(OTHER))
    nobody_method, nobody_path = world.path(operation, "strm_doesNotExist00000")
    nobodys = await world.client.request(nobody_method, nobody_path, data=body, headers=auth(OTHER))
    assert theirs.status == nobodys.status and theirs.status in {400, 404}
    anonymous = (await nobodys.text()).replace("strm_doesNotExist00000", world.stream_id)
    assert await theirs.text() == anonymous  # the same words, the id being the caller's own
    await world.send(operation, body, auth(OTHER))  # and it changes nothing


def mutated_sdp(offer: str) -> st.SearchStrategy[str]:
    """Answers made from the server's own offer (its candidates removed, so nothing generated can name an
    address to check) by breaking it: lines dropped, duplicated, garbled or replaced."""
    lines = [
        line for line in offer.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates"))
    ]
    lines = [line.replace("a=setup:actpass", "a=setup:active") for line in lines]

    def apply(edits: list[tuple[int, str, str]]) -> str:
        out = list(lines)
        for index, kind, junk in edits:
            i = index % len(out)
            if kind == "drop" and len(out) > 1:
                out.pop(i)
            elif kind == "dup":
                out.insert(i, out[i])
            elif kind == "garble":
                out[i] = out[i][: len(out[i]) // 2] + junk
            else:
                out[i] = junk
        return "\r\n".join(out) + "\r\n"

    edit = st.tuples(st.integers(0, 10_000), st.sampled_from(["drop", "dup", "garble", "replace"]), text)
    return st.lists(edit, min_size=1, max_size=6).map(apply)


async def connects(world: World) -> None:
    """A real aiortc peer answers the target stream and reaches connected; then the stream is replaced."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from talkstream.transports.aiortc_patches import offered_host_addresses

    stream = next(s for s in world.service.streams() if s.session.stream_id == world.stream_id)
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await peer.setRemoteDescription(RTCSessionDescription(world.offer, "offer"))
        with offered_host_addresses(["127.0.0.1"]):
            await peer.setLocalDescription(await peer.createAnswer())
        answer = {
            "answer": {"type": "answer", "sdp": peer.localDescription.sdp},
            "session_id": world.session_id,
        }
        response = await world.client.post(
            f"/talks/streams/{world.stream_id}/sdp", json=answer, headers=auth()
        )
        assert response.status == 200, await response.text()
        for _ in range(1500):
            if stream.session.state is State.CONNECTED:
                break
            await asyncio.sleep(0.02)
        assert stream.session.state is State.CONNECTED, stream.session.state
    finally:
        await peer.close()
        await world.client.delete(
            f"/talks/streams/{world.stream_id}", json={"session_id": world.session_id}, headers=auth()
        )
        await world.new_stream()


@settings(EXAMPLES, max_examples=25)
@given(data=st.data(), kind=st.sampled_from(["answer", "offer", "pranswer", ""]))
async def test_a_rejected_sdp_answer_leaves_the_stream_ready_for_a_real_one(
    world: World, data: Any, kind: str
) -> None:
    sdp = data.draw(st.one_of(text, mutated_sdp(world.offer)), label="sdp")
    body = {"answer": {"type": kind, "sdp": sdp}, "session_id": world.session_id}
    status = await world.send("sdp", json.dumps(body).encode(), auth())
    if status >= 400:
        await connects(world)  # nothing was half-applied, in the engine or in aiortc
    else:
        await world.client.delete(
            f"/talks/streams/{world.stream_id}", json={"session_id": world.session_id}, headers=auth()
        )
        await world.new_stream()


candidates = st.one_of(
    text,
    st.from_regex(
        r"candidate:\S{0,8} \d{0,3} (udp|tcp|x)? ?\d{0,12} [\d.:a-z]{0,40} \d{0,6} typ \w{0,8}",
        fullmatch=True,
    ),
)


@EXAMPLES
@given(candidate=candidates, mid=st.none() | text, index=st.none() | st.integers(-5, 10) | text)
async def test_junk_candidates_get_documented_answers(
    world: World, candidate: str, mid: Any, index: Any
) -> None:
    # The stream is never answered here, so a candidate that parses stays pending: nothing is ever checked
    # against the addresses hypothesis makes up.
    body = {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": index, "session_id": world.session_id}
    await world.send("ice", json.dumps(body).encode(), auth())
