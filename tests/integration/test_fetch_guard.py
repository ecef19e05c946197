"""The URL guard against real fixtures on loopback: what it refuses never gets a connection.

Only loopback canaries are contacted: 127.0.0.1 fixtures the policy allows, and 127.0.0.2 canaries it does
not, which must see zero hits.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from talkstream.avatar.fetch import Fetcher, FetchPolicy
from talkstream.engine.errors import BadRequestError, TimeoutError_

pytestmark = pytest.mark.timeout(60)

ONLY_127_0_0_1 = FetchPolicy.local(("127.0.0.1/32",))


class Canary:
    def __init__(self) -> None:
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=b"secret")


@pytest_asyncio.fixture
async def canary() -> AsyncIterator[tuple[Canary, str]]:
    """A server on 127.0.0.2, an address the policy does not allow: it must never be reached."""
    bird = Canary()
    app = web.Application()
    app.router.add_get("/{tail:.*}", bird.handle)
    server = TestServer(app, host="127.0.0.2", port=0)
    await server.start_server()
    yield bird, f"http://127.0.0.2:{server.port}/metadata"
    await server.close()


@pytest_asyncio.fixture
async def fixture_server(canary: tuple[Canary, str]) -> AsyncIterator[str]:
    """An allowed server on 127.0.0.1 that redirects, streams big bodies and trickles slow ones."""
    _, canary_url = canary

    async def redirect_out(request: web.Request) -> web.Response:
        raise web.HTTPFound(canary_url)

    async def redirect_chain(request: web.Request) -> web.Response:
        hop = int(request.match_info["n"])
        raise web.HTTPFound(f"/chain/{hop + 1}")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the cap must work while streaming
        await response.prepare(request)
        chunk = b"\0" * 65536
        try:
            for _ in range(50 * 1024 * 1024 // len(chunk)):
                await response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(60):
                await response.write(b"x")
                await asyncio.sleep(1.0)  # the 1 byte/s body the fetcher must give up on
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/out", redirect_out)
    app.router.add_get("/chain/{n}", redirect_chain)
    app.router.add_get("/huge", huge)
    app.router.add_get("/slow", slow)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_a_name_that_resolves_to_loopback_is_refused_without_a_connection(
    canary: tuple[Canary, str],
) -> None:
    bird, url = canary
    fetcher = Fetcher(FetchPolicy(ports=None))  # public addresses only
    with pytest.raises(BadRequestError, match="not allowed"):
        await fetcher.get(url.replace("127.0.0.2", "localhost"), max_bytes=1000)
    await fetcher.aclose()
    assert bird.hits == 0


async def test_a_redirect_to_a_disallowed_address_is_refused(
    fixture_server: str, canary: tuple[Canary, str]
) -> None:
    bird, _ = canary
    fetcher = Fetcher(ONLY_127_0_0_1)
    with pytest.raises(BadRequestError, match="not allowed"):
        await fetcher.get(f"{fixture_server}/out", max_bytes=1000)
    await fetcher.aclose()
    assert bird.hits == 0


async def test_more_than_three_redirects_are_refused(fixture_server: str) -> None:
    fetcher = Fetcher(ONLY_127_0_0_1)
    with pytest.raises(BadRequestError, match="redirects"):
        await fetcher.get(f"{fixture_server}/chain/0", max_bytes=1000)
    await fetcher.aclose()


async def test_a_50_mb_body_is_cut_at_the_cap(fixture_server: str) -> None:
    fetcher = Fetcher(ONLY_127_0_0_1)
    with pytest.raises(BadRequestError, match="larger than"):
        await fetcher.get(f"{fixture_server}/huge", max_bytes=15 * 1024 * 1024)
    await fetcher.aclose()


async def test_a_1_byte_per_second_body_is_cut_by_the_read_timeout(fixture_server: str) -> None:
    fetcher = Fetcher(FetchPolicy(ports=None, allow_networks=ONLY_127_0_0_1.allow_networks, read_timeout=0.5))
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError_):
        await fetcher.get(f"{fixture_server}/slow", max_bytes=1000)
    await fetcher.aclose()
    assert asyncio.get_running_loop().time() - started < 10, "the fetch hung"


async def test_a_policy_that_fetches_nothing_refuses_before_any_lookup(canary: tuple[Canary, str]) -> None:
    bird, url = canary
    fetcher = Fetcher(FetchPolicy.none())
    for target in (url, url.replace("127.0.0.2", "localhost"), "https://example.com/a.png"):
        with pytest.raises(BadRequestError, match="fetches no urls"):
            await fetcher.get(target, max_bytes=1000)
    assert fetcher._session is None, "a session (and its resolver) was made"
    await fetcher.aclose()
    assert bird.hits == 0


async def test_a_refused_connection_is_a_400_in_words() -> None:
    with socket.socket() as unused:  # a loopback port nothing listens on once this closes
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    fetcher = Fetcher(ONLY_127_0_0_1)
    with pytest.raises(BadRequestError, match="could not fetch the url: could not connect to its host"):
        await fetcher.get(f"http://127.0.0.1:{port}/a.png", max_bytes=1000)
    await fetcher.aclose()
