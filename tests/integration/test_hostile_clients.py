"""`talkstream serve` in its own process against clients that misbehave: raw bytes on a socket, requests that
never finish, clients that vanish, floods of connections, and WebRTC peers that are not talkstream's.

Every server here is started by the test and its whole log is read when it stops: no traceback, no 500, no
exception asyncio had to report. Nothing is timed against the machine's speed: the server's own time limits
are set short and the waits for them are generous.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from talkstream.engine.messages import MAX_TEXT
from talkstream.transports.aiortc_patches import install_aiortc_patches, offered_host_addresses

from .conftest import Served, serving

pytestmark = pytest.mark.timeout(180)

HEADER_TIMEOUT, BODY_TIMEOUT = 2.0, 2.0
BAD_LOG_LINES = re.compile(r"Traceback|never retrieved|Exception in callback|-> 5\d\d|InternalServerError")


def assert_clean_log(log: Path) -> None:
    text = log.read_text(errors="replace")
    bad = [line for line in text.splitlines() if BAD_LOG_LINES.search(line)]
    assert not bad, "the server's log shows failures:\n" + "\n".join(bad[:20]) + "\n\n" + text[-4000:]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outside]:
    """One `talkstream serve` for the module, with short header and body time limits."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    limits = ("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT))
    with serving(*limits, log=log) as server:
        yield server, log
    assert_clean_log(log)


Outside = tuple[Served, Path]  # the server, and its log


def port_of(server: Served) -> int:
    return int(server.base.rsplit(":", 1)[1])


async def exchange(port: int, data: bytes, *, within: float = 30.0, then_wait: bool = True) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `within` s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if not then_wait:
            return b""
        chunks = []
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def request(method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body or method == "POST":
        lines.append(b"Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def log_has(log: Path, pattern: str, within: float = 20.0) -> bool:
    """Whether the server's log shows `pattern` within `within` seconds (the server is another process:
    real time, without holding this test's event loop)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if re.search(pattern, await asyncio.to_thread(log.read_text, errors="replace")):
            return True
        await asyncio.sleep(0.05)
    return False


# -- bytes in Authorization ----------------------------------------------------------------------------------

BAD_AUTHORIZATIONS = [
    b"Basic \xc3\xa9",
    b"Basic \xff:x",
    b"Bearer \xff",
    b"Basic \xff\xfe\xfd",
    b"Basic =\xe9=",
]
ENDPOINTS = [
    ("POST", "/talks/streams"),
    ("POST", "/talks/streams/strm_x/sdp"),
    ("POST", "/talks/streams/strm_x/ice"),
    ("POST", "/talks/streams/strm_x"),
    ("DELETE", "/talks/streams/strm_x"),
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS, ids=lambda a: a.decode("latin-1"))
async def test_any_bytes_in_authorization_are_a_401(outside: Outside, authorization: bytes) -> None:
    server, _ = outside
    for method, path in ENDPOINTS:
        raw = await exchange(port_of(server), request(method, path, {"Authorization": authorization}, b"{}"))
        status, _, body = parse(raw)
        assert (status, body["kind"]) == (401, "AuthorizationError"), (method, path, raw[:300])


# -- requests that never finish ------------------------------------------------------------------------------


async def test_a_body_that_never_comes_is_a_408_and_the_connection_closes(
    outside: Outside,
) -> None:
    server, _ = outside
    head = request("POST", "/talks/streams", {"Authorization": b"Basic " + server.key.encode()})
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100")
    started = time.monotonic()
    raw = await exchange(port_of(server), head + b'{"source_url": ', within=BODY_TIMEOUT + 30)
    status, _, body = parse(raw)
    assert (status, body["kind"]) == (408, "RequestTimeoutError")
    assert time.monotonic() - started >= BODY_TIMEOUT * 0.9


async def test_a_body_that_trickles_is_cut_at_the_time_limit(outside: Outside) -> None:
    server, _ = outside
    head = request("POST", "/talks/streams", {"Authorization": b"Basic " + server.key.encode()})
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100000")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(head)
        answer = b""
        async with asyncio.timeout(BODY_TIMEOUT + 30):
            while not reader.at_eof():
                writer.write(b" ")  # a byte every 100 ms keeps no read waiting long, never finishes
                try:
                    answer += await asyncio.wait_for(reader.read(65536), 0.1)
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
    finally:
        writer.close()
    status, _, body = parse(answer)
    assert (status, body["kind"]) == (408, "RequestTimeoutError")


async def test_headers_that_never_finish_are_cut(outside: Outside) -> None:
    server, _ = outside
    started = time.monotonic()
    raw = await exchange(
        port_of(server), b"POST /talks/streams HTTP/1.1\r\nHost: x\r\n", within=HEADER_TIMEOUT + 30
    )
    assert raw == b""  # closed without an answer: there is no request to answer
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9


async def test_a_client_that_vanishes_mid_body_is_not_a_server_error(outside: Outside) -> None:
    server, log = outside
    head = request("POST", "/talks/streams", {"Authorization": b"Basic " + server.key.encode()})
    head = head.replace(b"Content-Length: 0", b"Content-Length: 1000")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
            sock.sendall(head + b'{"source_url": "bundled:')
            await asyncio.sleep(0.1)  # the handler is reading the body now
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not close
    assert await log_has(log, r"POST /talks/streams - -> client gone")
    assert_clean_log(log)


@pytest.mark.parametrize(
    ("header", "logged"),
    [
        (b"X-Odd: a\x00b", r"malformed request from [\d.]+: 400, message: Invalid header value char"),
        (b"X-Long: " + b"a" * 9000, r"malformed request from [\d.]+: 400, message: Got more than 8190 bytes"),
        (
            b"Authorization: Basic s3cret-key\x00",
            r"malformed request from [\d.]+: 400, message: Invalid header",
        ),
    ],
    ids=["nul-in-a-header", "header-over-8-KiB", "nul-after-a-key"],
)
async def test_a_request_the_http_parser_refuses_is_a_400_and_one_log_line(
    outside: Outside, header: bytes, logged: str
) -> None:
    """aiohttp logs the requests its parser refuses at ERROR with a traceback, though the fault is the
    client's: the server's log says so in one warning line instead."""
    server, log = outside
    raw = await exchange(
        port_of(server), request("GET", "/clips/presenters", {}).replace(b"Host:", header + b"\r\nHost:")
    )
    assert raw.startswith(b"HTTP/1.") and raw.split(b" ")[1] == b"400", raw[:200]
    assert await log_has(log, logged)
    text = log.read_text(errors="replace")
    assert "s3cret" not in text and "aaaaaaaa" not in text, "the log quotes the request's bytes"
    assert_clean_log(log)


# -- floods ------------------------------------------------------------------------------------------------


async def test_connections_over_the_cap_get_a_503_and_normal_service_returns(tmp_path: Path) -> None:
    cap = 20
    log = tmp_path / "serve.log"
    with serving("--max-connections", str(cap), "--header-timeout", "120", log=log) as server:
        port = port_of(server)
        held = []
        for _ in range(cap):  # each connection proves itself served, then stays open (keep-alive)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
            await reader.readexactly(length)
            held.append(writer)
        raw = await exchange(port, request("GET", "/openapi.json", {}), within=30)
        status, headers, body = parse(raw)
        assert (status, body["kind"], headers["retry-after"]) == (503, "ServiceUnavailableError", "1")
        for writer in held:
            writer.close()
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                async with http.get(server.base + "/openapi.json") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert response.status == 200
    assert_clean_log(log)
    assert "refusing more" in log.read_text()


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


async def test_out_of_descriptors_the_log_stays_small_and_service_returns(tmp_path: Path) -> None:
    """A cap set above what the descriptors allow: accept() fails while the flood lasts, and says so a few
    times, not once per attempt."""
    log = tmp_path / "serve.log"
    with serving(
        "--max-connections", "1000", "--header-timeout", "120", log=log, preexec_fn=_few_descriptors
    ) as server:
        port = port_of(server)
        flood = []
        for _ in range(150):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except OSError:
                break
        await asyncio.sleep(3.0)  # the server retries accept() all this while
        for sock in flood:
            sock.close()
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                try:
                    async with http.get(server.base + "/openapi.json") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            assert response.status == 200
    text = log.read_text()
    assert 1 <= text.count("accept() failed") <= 3, text[-3000:]
    assert "socket.accept() out of system resource" not in text


# -- WebRTC peers that are not ours ------------------------------------------------------------------------


class RawPeer:
    """A plain aiortc peer answering the server's offer, as a third-party client would."""

    def __init__(self, *, own_channel: bool) -> None:
        # Plain aiortc, but for one fix: the tests close these peers while aiortc's own connect task may
        # still be starting ICE or DTLS, and that task then fails with nobody to retrieve it (the server's
        # peers have the same fix; it changes nothing for a peer still open).
        install_aiortc_patches()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.events: list[tuple[RTCDataChannel, str]] = []  # (the channel it came on, message)
        self.channels: list[RTCDataChannel] = []
        self.connected = asyncio.Event()
        if own_channel:
            self._listen(self.pc.createDataChannel("JanusDataChannel"))
        self.pc.on("datachannel", self._listen)
        self.pc.on("iceconnectionstatechange", self._ice)

    def _listen(self, channel: RTCDataChannel) -> None:
        self.channels.append(channel)  # its own first, if it made one
        channel.on("message", lambda message: self.events.append((channel, str(message))))

    def _ice(self) -> None:
        if self.pc.iceConnectionState in ("connected", "completed"):
            self.connected.set()

    async def answer(self, offer: dict[str, str]) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer))
        with offered_host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)


async def connect(http: aiohttp.ClientSession, server: Served, peer: RawPeer) -> tuple[str, str]:
    headers = {"Authorization": f"Basic {server.key}"}
    async with http.post(
        server.base + "/talks/streams",
        json={"source_url": "bundled:astronaut", "output_resolution": 160},
        headers=headers,
    ) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    stream, session = created["id"], created["session_id"]
    answer = {"answer": {"type": "answer", "sdp": await peer.answer(created["offer"])}, "session_id": session}
    async with http.post(
        f"{server.base}/talks/streams/{stream}/sdp", json=answer, headers=headers
    ) as response:
        assert response.status == 200, await response.text()
    await asyncio.wait_for(peer.connected.wait(), 30)
    return stream, session


async def delete(http: aiohttp.ClientSession, server: Served, stream: str, session: str) -> None:
    headers = {"Authorization": f"Basic {server.key}"}
    async with http.delete(
        f"{server.base}/talks/streams/{stream}", json={"session_id": session}, headers=headers
    ) as response:
        assert response.status == 200, await response.text()


async def test_delete_right_after_ice_connects_leaves_nothing_unretrieved(
    outside: Outside,
) -> None:
    server, log = outside
    async with aiohttp.ClientSession() as http:
        for _ in range(20):  # the close lands mid-DTLS about one time in three
            peer = RawPeer(own_channel=True)
            try:
                stream, session = await connect(http, server, peer)
                await delete(http, server, stream, session)
            finally:
                await peer.pc.close()
    await asyncio.sleep(0.5)
    assert_clean_log(log)


@pytest.mark.parametrize(
    "own_channel", [True, False], ids=["client-opens-JanusDataChannel", "server-channel"]
)
async def test_each_event_reaches_the_client_once(outside: Outside, own_channel: bool) -> None:
    server, _ = outside
    headers = {"Authorization": f"Basic {server.key}"}
    peer = RawPeer(own_channel=own_channel)
    async with aiohttp.ClientSession() as http:
        try:
            stream, session = await connect(http, server, peer)
            for text in ("One.", "Two."):
                async with http.post(
                    f"{server.base}/talks/streams/{stream}",
                    json={"script": {"type": "text", "input": text}, "session_id": session},
                    headers=headers,
                ) as response:
                    assert response.status == 200, await response.text()
            for _ in range(600):
                if sum(message.startswith("stream/done") for _, message in peer.events) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a duplicate would arrive by now
            await delete(http, server, stream, session)
        finally:
            await peer.pc.close()
    subjects = [message.split(":", 1)[0] for _, message in peer.events]
    assert subjects == ["stream/started", "stream/done", "stream/started", "stream/done"], peer.events
    # both channels were open for the client that made its own; the events came on its own one
    assert len(peer.channels) == (2 if own_channel else 1)
    assert {channel for channel, _ in peer.events} == {peer.channels[0]}


async def test_the_longest_text_is_answered_at_once_and_costs_little_memory(outside: Outside) -> None:
    """40,000 characters is about 45 minutes of speech: made up front, it took the server from ~280 MB to
    3.3 GB. Made while it plays, the talk costs what a short one does."""
    server, _ = outside
    process = psutil.Process(server.pid)
    headers = {"Authorization": f"Basic {server.key}"}
    sentence = "Every phrase of this long talk is spoken while the one before it plays. "
    longest = (sentence * 600)[: MAX_TEXT - 1] + "."
    peer = RawPeer(own_channel=True)
    async with aiohttp.ClientSession() as http:
        try:
            stream, session = await connect(http, server, peer)
            before = process.memory_info().rss
            async with http.post(
                f"{server.base}/talks/streams/{stream}",
                json={"script": {"type": "text", "input": longest}, "session_id": session},
                headers=headers,
            ) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            assert answer["duration"] > 1800  # the estimate of a long talk, not of its first phrase
            for _ in range(600):
                if any(message.startswith("stream/started") for _, message in peer.events):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(5.0)  # a few phrases in
            grown = (process.memory_info().rss - before) / 1e6
            assert grown < 150, f"the server grew by {grown:.0f} MB while the long talk played"
            await delete(http, server, stream, session)
        finally:
            await peer.pc.close()


async def test_talking_streams_do_not_each_start_threads(outside: Outside) -> None:
    """Each stream's Opus encoder resampled through an FFmpeg filter graph with a pool of threads per core:
    8 churning clients took the server to 42 threads (and as many malloc arenas). Now a few in all."""
    server, _ = outside
    process = psutil.Process(server.pid)
    headers = {"Authorization": f"Basic {server.key}"}
    peers = [RawPeer(own_channel=True) for _ in range(4)]
    async with aiohttp.ClientSession() as http:
        try:
            streams = [await connect(http, server, peer) for peer in peers]
            for stream, session in streams:
                async with http.post(
                    f"{server.base}/talks/streams/{stream}",
                    json={
                        "script": {"type": "text", "input": "Four streams talk at once."},
                        "session_id": session,
                    },
                    headers=headers,
                ) as response:
                    assert response.status == 200, await response.text()
            for _ in range(600):
                if all(any(m.startswith("stream/started") for _, m in p.events) for p in peers):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            threads = process.num_threads()
            for stream, session in streams:
                await delete(http, server, stream, session)
        finally:
            for peer in peers:
                await peer.pc.close()
    assert threads <= 10, f"{threads} threads with 4 streams talking"  # 7 measured with 8; 23 before
