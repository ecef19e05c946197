"""TURN credentials for the clients (coturn's shared-secret scheme), what the create answer hands out, and
the server's own peers kept off TURN."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from talkstream.adapters.cli import turn_credentials
from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.adapters.server.turn import DEFAULT_TURN_TTL, TurnCredentials
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import PeerOptions
from talkstream.transports.aiortc_server import AiortcServerPeer, AiortcServerTransport, without_turn

URLS = ("turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp")
NOW = 1_700_000_000.75
KEY = "turn-user:turn-secret-key"


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hmac_sha1(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA1 as RFC 2104 spells it, without the hmac module."""
    block = 64
    key = key.ljust(block, b"\0")
    inner = hashlib.sha1(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.sha1(bytes(k ^ 0x5C for k in key) + inner).digest()


def credentials(secret: str = "north-wind", ttl: int = 3600, now: float = NOW) -> TurnCredentials:
    return TurnCredentials(urls=URLS, secret=secret, ttl=ttl, clock=FixedClock(now))


# -- the credentials ------------------------------------------------------------------------------------


def test_the_username_is_the_expiry_and_the_name_and_the_password_its_hmac() -> None:
    server = credentials().ice_server("strm_example")
    assert server.urls == URLS
    assert server.username == "1700003600:strm_example"  # int(now) + ttl
    expected = base64.b64encode(hmac_sha1(b"north-wind", b"1700003600:strm_example")).decode()
    assert server.credential == expected
    # the same, from `openssl dgst -sha1 -hmac north-wind -binary | base64`
    assert server.credential == "v9LaHqwMZNEr5huU/9Q93FT5Zjg="


def test_a_non_ascii_secret_is_its_utf8_bytes() -> None:
    server = credentials(secret="sécret").ice_server("strm_x")
    assert server.username is not None
    expected = hmac_sha1("sécret".encode(), server.username.encode())
    assert server.credential == base64.b64encode(expected).decode()


def test_each_call_is_fresh_and_the_expiry_moves_with_the_clock() -> None:
    clock = FixedClock(NOW)
    turn = TurnCredentials(urls=URLS, secret="north-wind", ttl=600, clock=clock)
    first = turn.ice_server("strm_a")
    clock.now += 90
    later = turn.ice_server("strm_a")
    assert first.username == "1700000600:strm_a" and later.username == "1700000690:strm_a"
    assert first.credential != later.credential


def test_two_streams_get_different_usernames_and_passwords() -> None:
    turn = credentials()
    a, b = turn.ice_server("strm_a"), turn.ice_server("strm_b")
    assert a.username != b.username and a.credential != b.credential


def test_another_secret_gives_another_password() -> None:
    assert (
        credentials("one").ice_server("strm_a").credential
        != credentials("two").ice_server("strm_a").credential
    )


def test_the_default_ttl_covers_a_stream_waiting_for_its_client() -> None:
    from talkstream.engine.session import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT

    assert TurnCredentials(urls=URLS, secret="s").ttl == DEFAULT_TURN_TTL
    assert DEFAULT_TURN_TTL > DEFAULT_IDLE_TIMEOUT + DEFAULT_CONNECT_TIMEOUT


def test_the_secret_is_never_shown() -> None:
    turn = credentials(secret="very-secret-value")
    assert "very-secret-value" not in repr(turn) and "very-secret-value" not in str(turn)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"urls": ()}, "at least one"),
        ({"urls": ("stun:turn.example.com:3478",)}, "not a turn: or turns: URL"),
        ({"urls": ("turn:",)}, "not a turn: or turns: URL"),
        ({"secret": ""}, "empty"),
        ({"ttl": 0}, "at least 1 s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"urls": URLS, "secret": "s", **kwargs}
    with pytest.raises(ValueError, match=message):
        TurnCredentials(**settings)


def test_one_url_may_be_given_as_a_string_and_turns_is_accepted() -> None:
    turn = TurnCredentials(urls="turns:turn.example.com:5349?transport=tcp", secret="s")
    assert turn.urls == ("turns:turn.example.com:5349?transport=tcp",)


@pytest.mark.parametrize("name", ["", "a:b"])
def test_a_name_must_be_nonempty_and_without_the_separator(name: str) -> None:
    with pytest.raises(ValueError, match="free of ':'"):
        credentials().ice_server(name)


def test_handed_out_is_the_static_servers_then_the_streams_own_entry() -> None:
    static = (IceServer(urls="stun:stun.example.com:3478"),)
    handed = credentials().handed_out(static)
    answer = handed("strm_a")
    assert answer[0] == static[0] and len(answer) == 2
    assert answer[1].username == "1700003600:strm_a"
    assert handed("strm_b")[1].username == "1700003600:strm_b"


# -- the server's own peers -------------------------------------------------------------------------------


def test_without_turn_keeps_stun_only() -> None:
    stun = IceServer(urls="stun:stun.example.com:3478")
    turn = IceServer(urls="turn:turn.example.com:3478", username="u", credential="c")
    shouting = IceServer(urls="TURNS:turn.example.com:5349?transport=tcp")
    mixed = IceServer(urls=("stun:a.example.com", "turn:a.example.com"), username="u", credential="c")
    assert without_turn([stun, turn, shouting, mixed]) == (
        stun,
        IceServer(urls=("stun:a.example.com",), username="u", credential="c"),
    )
    assert without_turn([]) == ()


async def test_the_server_peer_is_configured_without_turn() -> None:
    stun = IceServer(urls="stun:stun.example.com:3478")
    turn = IceServer(urls="turn:turn.example.com:3478", username="u", credential="c")
    transport = AiortcServerTransport(ice_servers=[stun, turn])
    assert transport.ice_servers == (stun, turn)  # what clients are handed
    peer = transport.create_peer("strm_a", PeerOptions(), lambda inp, detail: None)
    try:
        config = peer._pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
        assert [s.urls for s in config.iceServers] == [["stun:stun.example.com:3478"]]
    finally:
        await peer.close()
        await transport.aclose()


async def test_with_turn_only_the_server_peer_has_an_empty_list_not_aiortcs_default() -> None:
    transport = AiortcServerTransport(ice_servers=[IceServer(urls="turn:turn.example.com:3478")])
    peer = transport.create_peer("strm_a", PeerOptions(), lambda inp, detail: None)
    try:
        config = peer._pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
        assert config.iceServers == []  # None would be aiortc's own STUN server
    finally:
        await peer.close()
        await transport.aclose()


# -- the create answer ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    """A server handing out a bare TURN URL (--ice-server) and per-stream credentials (--turn-url)."""
    settings = ServerSettings(
        keys=(KEY,),
        ice_servers=(IceServer(urls="turn:static.example.com:3478"),),
        turn=credentials(ttl=900),
    )
    client = TestClient(TestServer(build_app(settings, tts=None), host="127.0.0.1", port=0))
    await client.start_server()
    yield client
    await client.close()


async def test_each_create_answer_carries_the_static_servers_and_its_own_credentials(
    api: TestClient[Any, Any],
) -> None:
    headers = {"Authorization": f"Basic {KEY}"}
    answers = []
    for _ in range(2):
        response = await api.post("/talks/streams", json={"source_url": "bundled:astronaut"}, headers=headers)
        assert response.status == 201, await response.text()
        answers.append(await response.json())
    for created in answers:
        static, own = created["ice_servers"]
        assert static == {"urls": "turn:static.example.com:3478"}
        assert own["urls"] == list(URLS)
        assert own["username"] == f"1700000900:{created['id']}"  # the stream id, never the key
        expected = base64.b64encode(hmac_sha1(b"north-wind", own["username"].encode())).decode()
        assert own["credential"] == expected
        assert "typ relay" not in created["offer"]["sdp"]
    assert answers[0]["ice_servers"][1]["username"] != answers[1]["ice_servers"][1]["username"]
    # and the server's own peers have no ICE server at all (the TURN URLs are the clients')
    assert api.app is not None
    streams = api.app[SERVICE].streams()
    assert len(streams) == 2
    for stream in streams:
        assert isinstance(stream.peer, AiortcServerPeer)
        config = stream.peer._pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
        assert config.iceServers == []


async def test_without_turn_the_answer_has_the_transports_servers() -> None:
    settings = ServerSettings(keys=(KEY,))
    client = TestClient(TestServer(build_app(settings, tts=None), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        response = await client.post(
            "/talks/streams",
            json={"source_url": "bundled:astronaut"},
            headers={"Authorization": f"Basic {KEY}"},
        )
        assert (await response.json())["ice_servers"] == []
    finally:
        await client.close()


# -- the command line -------------------------------------------------------------------------------------


def _args(**given: Any) -> argparse.Namespace:
    values: dict[str, Any] = {"turn_url": None, "turn_secret_file": None, "turn_ttl": DEFAULT_TURN_TTL}
    return argparse.Namespace(**{**values, **given})


def test_no_turn_url_no_turn() -> None:
    assert turn_credentials(_args(), {"TALKSTREAM_TURN_SECRET": "s"}) is None


def test_the_secret_comes_from_the_file_before_the_environment(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")
    turn = turn_credentials(
        _args(turn_url=list(URLS), turn_secret_file=str(secret_file), turn_ttl=120),
        {"TALKSTREAM_TURN_SECRET": "from-the-environment"},
    )
    assert turn is not None and turn.secret == "from-the-file" and turn.ttl == 120 and turn.urls == URLS
    turn = turn_credentials(_args(turn_url=[URLS[0]]), {"TALKSTREAM_TURN_SECRET": " from-the-environment\n"})
    assert turn is not None and turn.secret == "from-the-environment"


@pytest.mark.parametrize(
    ("given", "content", "message"),
    [
        ({"turn_url": [URLS[0]]}, None, "needs the shared secret"),
        ({"turn_secret_file": "SECRET"}, b"s", "needs --turn-url"),
        ({"turn_url": [URLS[0]], "turn_secret_file": "SECRET"}, b"\n", "empty"),
        ({"turn_url": [URLS[0]], "turn_secret_file": "SECRET"}, b"\xffhidden\xfe", "not UTF-8"),
        ({"turn_url": [URLS[0]], "turn_secret_file": "MISSING"}, None, "cannot read it"),
        ({"turn_url": ["stun:x.example.com"], "turn_secret_file": "SECRET"}, b"hidden", "not a turn:"),
    ],
)
def test_bad_turn_settings_say_why_without_the_secret(
    tmp_path: Path, given: dict[str, Any], content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "SECRET").write_bytes(content)
    if "turn_secret_file" in given:
        given = {**given, "turn_secret_file": str(tmp_path / given["turn_secret_file"])}
    with pytest.raises(ValueError, match=message) as raised:
        turn_credentials(_args(**given), {})
    assert "hidden" not in str(raised.value) and "\\xff" not in str(raised.value)


def test_serve_refuses_a_turn_url_without_a_secret_before_starting() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TALKSTREAM_TURN_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "talkstream.adapters.cli", "serve", "--port", "1", "--turn-url", URLS[0]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--turn-url needs the shared secret" in done.stderr
