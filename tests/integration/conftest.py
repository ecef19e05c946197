"""Integration fixtures: a real talkstream server on 127.0.0.1 (port 0), and a media fixture server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from served import Served, encode_wav, serving  # bench/served.py (tests/conftest.py puts it on the path)

from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.fetch import FetchPolicy
from talkstream.engine.service import Limits

__all__ = ["Served", "encode_wav", "serving"]

KEY = "test-user:test-secret"
OTHER_KEY = "other-user:other-secret"
LIMITED_KEY = "limited-user:limited-secret"  # may choose a session_timeout, may not use local files


def loud_quiet_loud(rate: int = 16_000) -> bytes:
    """0.8 s of a loud voiced buzz, 0.8 s of silence, 0.8 s of buzz again."""
    t = np.arange(int(0.8 * rate)) / rate
    buzz = (np.sign(np.sin(2 * np.pi * 140 * t)) * 0.4 + np.sin(2 * np.pi * 700 * t) * 0.3) * 20000
    silence = np.zeros(int(0.8 * rate))
    return encode_wav(np.concatenate([buzz, silence, buzz]), rate)


class Api:
    """A thin HTTP helper for the tests (deliberately not talkstream's own client)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = KEY,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["Authorization"] = f"Basic {key}"
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        async with self.session.request(method, self.base + path, data=data, headers=all_headers) as response:
            text = await response.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return response.status, parsed, response.headers


@pytest.fixture
def settings(tmp_path: Any) -> ServerSettings:
    return ServerSettings(
        keys=(KEY, OTHER_KEY, f"{LIMITED_KEY} session_timeout"),
        media_root=tmp_path,
        fetch_policy=FetchPolicy.local(),
        limits=Limits(streams_per_key=3, streams_total=5, retry_after=7),
    )


@pytest_asyncio.fixture
async def server(settings: ServerSettings) -> AsyncIterator[TestServer]:
    app = build_app(settings)
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest_asyncio.fixture
async def api(server: TestServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/"))


@pytest_asyncio.fixture
async def media_server() -> AsyncIterator[Callable[[str, bytes, str], Awaitable[str]]]:
    """Serve fixture files on 127.0.0.1; returns a function that publishes one and gives its URL."""
    files: dict[str, tuple[bytes, str]] = {}

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        body, content_type = files[name]
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.add_routes([web.get("/media/{name}", handler)])
    media = TestServer(app, host="127.0.0.1", port=0)
    await media.start_server()

    async def publish(name: str, body: bytes, content_type: str) -> str:
        files[name] = (body, content_type)
        return str(media.make_url(f"/media/{name}"))

    yield publish
    await media.close()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(key.encode()).decode()
