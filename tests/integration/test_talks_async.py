"""D-ID's asynchronous talks against a real server on 127.0.0.1: talkstream's `TalksClient` and raw HTTP
ask for talks, wait for them, fetch the MP4 (decoded here: H.264 and AAC of the talk's length) with the
talk's own key only, list, delete; refused bodies change nothing."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import av
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.engine.errors import NotFoundError
from talkstream.engine.talks_client import TalksClient

from .conftest import KEY, OTHER_KEY, Api, loud_quiet_loud

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture
async def base(settings: ServerSettings) -> AsyncIterator[str]:
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def decoded(data: bytes) -> tuple[list[str], float, tuple[int, int]]:
    with av.open(io.BytesIO(data), "r") as container:
        kinds = sorted(f"{s.type}/{s.codec_context.name}" for s in container.streams)
        video = container.streams.video[0]
        return kinds, float(container.duration or 0) / 1e6, (video.width, video.height)


async def test_a_text_talk_renders_to_an_mp4_for_its_own_key(base: str) -> None:
    async with (
        TalksClient(AiohttpAdapter(base, KEY)) as talks,
        TalksClient(AiohttpAdapter(base, OTHER_KEY)) as others,
    ):
        created = await talks.create(
            text="Hello, I was rendered to a file while you waited.", name="greeting"
        )
        assert created.status == "created" and created.id.startswith("tlk_")
        done = await talks.wait(created.id, within=60, every=0.1)
        assert done.status == "done" and done.result_url == f"{base}/talks/{created.id}/result"
        assert done.duration is not None and 1.5 < done.duration < 10
        video = await talks.result(created.id)
        kinds, seconds, size = decoded(video)
        assert kinds == ["audio/aac", "video/h264"] and size == (512, 512)
        assert abs(seconds - done.duration) < 0.2
        # Another key sees nothing of it.
        for call in (others.get(created.id), others.result(created.id), others.delete(created.id)):
            with pytest.raises(NotFoundError):
                await call
        assert [t.id for t in await talks.list()] == [created.id] and await others.list() == []
        # A video element cannot send a header: the key may come in the query.
        async with aiohttp.ClientSession() as session:
            async with session.get(done.result_url, params={"authorization": f"Basic {KEY}"}) as got:
                assert got.status == 200 and got.headers["Content-Type"] == "video/mp4"
                assert await got.read() == video
            async with session.get(done.result_url, params={"authorization": f"Basic {OTHER_KEY}"}) as other:
                assert other.status == 404
            async with session.get(done.result_url) as nobody:
                assert nobody.status == 401
        deleted = await talks.delete(created.id)
        assert deleted.id == created.id
        with pytest.raises(NotFoundError):
            await talks.get(created.id)


async def test_an_audio_talk_in_a_mov_and_the_pages_of_the_list(
    base: str, media_server: Callable[[str, bytes, str], Awaitable[str]]
) -> None:
    url = await media_server("speech.wav", loud_quiet_loud(), "audio/wav")
    async with TalksClient(AiohttpAdapter(base, KEY)) as talks:
        made = [await talks.create(audio_url=url, result_format="mov") for _ in range(3)]
        for talk in made:
            done = await talks.wait(talk.id, within=60, every=0.1)
            assert done.duration == pytest.approx(2.4, abs=0.1)
        with av.open(io.BytesIO(await talks.result(made[0].id)), format="mov") as container:
            assert {s.type for s in container.streams} == {"audio", "video"}
        listed = await talks.list(limit=2)  # two pages
        assert sorted(t.id for t in listed) == sorted(t.id for t in made)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({}, "ValidationError"),
        ({"script": {"type": "text", "input": "hi"}}, "ValidationError"),
        (
            {"script": {"type": "text", "input": "Hello there."}, "webhook": "https://example.invalid/hook"},
            "BadRequestError",
        ),
        (
            {
                "script": {"type": "text", "input": "Hello there."},
                "result_url": "https://example.invalid/put",
            },
            "BadRequestError",
        ),
        (
            {"script": {"type": "text", "input": "Hello there."}, "config": {"result_format": "gif"}},
            "ValidationError",
        ),
    ],
)
async def test_refused_bodies_make_no_talk(api: Api, body: dict[str, object], kind: str) -> None:
    status, answer, _ = await api.call("POST", "/talks", body)
    assert (status, answer["kind"]) == (400, kind), answer
    status, listed, _ = await api.call("GET", "/talks")
    assert status == 200 and listed == {"talks": []}


async def test_a_talk_whose_photo_cannot_be_used_ends_in_error(api: Api) -> None:
    status, created, _ = await api.call(
        "POST",
        "/talks",
        {"source_url": "https://example.invalid/a.jpg", "script": {"type": "text", "input": "Hello there."}},
    )
    assert status == 201
    for _ in range(200):
        status, talk, _ = await api.call("GET", f"/talks/{created['id']}")
        if talk["status"] in ("done", "error"):
            break
        await asyncio.sleep(0.05)
    assert talk["status"] == "error" and talk["error"]["kind"] in ("BadRequestError", "ValidationError"), talk
    assert "result_url" not in talk
