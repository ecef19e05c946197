"""Faults mid-talk over real WebRTC: a crashing speech engine, an undecodable file, a face that fails while
it plays. Each is answered plainly (an HTTP error or `stream/error`), the talk already playing is not
disturbed, and the stream goes back to connected and takes the next talk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.speech import Synthesis
from talkstream.engine.ports import AUDIO_RATE as RATE
from talkstream.engine.states import State

from .conftest import Api, loud_quiet_loud
from .test_webrtc_server import Peer, connect

pytestmark = pytest.mark.timeout(90)


class FlakySpeech:
    """A speech engine that says any text as a tone (0.08 s a character) and crashes on "crash"."""

    name = "flaky"

    def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis:
        if "crash" in text:
            raise RuntimeError("the speech engine's library crashed")
        t = np.arange(int(len(text) * 0.08 * RATE)) / RATE
        return Synthesis(pcm=(np.sin(2 * np.pi * 200 * t) * 12000).astype(np.int16))


@pytest_asyncio.fixture
async def flaky(settings: ServerSettings) -> AsyncIterator[tuple[Api, Any]]:
    app = build_app(settings, tts=FlakySpeech())
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/")), app[SERVICE]
    await server.close()


def text(words: str) -> dict[str, Any]:
    return {"script": {"type": "text", "input": words}}


async def talk(api: Api, stream_id: str, session_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, answer, _ = await api.call(
        "POST", f"/talks/streams/{stream_id}", {**body, "session_id": session_id}
    )
    return status, answer


async def nth(peer: Peer, subject: str, n: int, within: float) -> None:
    """Wait until `subject` has arrived `n` times (`Peer.wait_message` finds only the first)."""
    for _ in range(int(within / 0.02)):
        if peer.subjects().count(subject) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{subject} x{n} did not arrive; got {peer.subjects()}")


async def back_to_connected(session: Any) -> None:
    """The player sends stream/done or stream/error, then hands the session back: wait for that hand-off."""
    for _ in range(250):
        if session.state is State.CONNECTED:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the stream stayed {session.state}")


async def talks_again(
    api: Api, peer: Peer, stream_id: str, session_id: str, body: dict[str, Any], *, done_before: int
) -> None:
    """After the fault the stream takes another talk and plays it to its end."""
    status, again = await talk(api, stream_id, session_id, body)
    assert status == 200, again
    await nth(peer, "stream/done", done_before + 1, within=again["duration"] + 15)


def events(peer: Peer, subject: str) -> list[dict[str, Any]]:
    prefix = subject + ":"
    return [json.loads(m.split(":", 1)[1]) for _, m in peer.messages if m.startswith(prefix)]


async def test_a_crashing_speech_engine_is_a_clear_500_and_the_talk_playing_goes_on(
    flaky: tuple[Api, Any],
) -> None:
    api, service = flaky
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        session = service.streams()[0].session
        status, first = await talk(api, stream_id, session_id, text("a sentence that plays for a while"))
        assert status == 200, first
        await peer.wait_message("stream/started")
        status, body = await talk(api, stream_id, session_id, text("now crash please"))
        assert (status, body) == (
            500,
            {"kind": "InternalServerError", "description": "text-to-speech (flaky) failed"},
        )
        status, body = await talk(api, stream_id, session_id, {"script": {"type": "audio", "audio_url": "x"}})
        assert status == 400 and body["kind"] == "BadRequestError"  # a refused URL changes nothing either
        await peer.wait_message("stream/done", within=first["duration"] + 15)
        assert peer.subjects() == ["stream/started", "stream/done"]
        await back_to_connected(session)
        await talks_again(api, peer, stream_id, session_id, text("still here"), done_before=1)
        assert peer.subjects().count("stream/done") == 2 and "stream/error" not in peer.subjects()
    finally:
        await peer.close()


async def test_an_undecodable_audio_file_is_415_and_the_stream_stays_usable(
    flaky: tuple[Api, Any], media_server: Callable[..., Any]
) -> None:
    api, _ = flaky
    good = await media_server("good.wav", loud_quiet_loud(), "audio/wav")
    broken = await media_server("broken.wav", loud_quiet_loud()[:44] + bytes(range(256)) * 40, "audio/wav")
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, first = await talk(
            api, stream_id, session_id, {"script": {"type": "audio", "audio_url": good}}
        )
        assert status == 200, first
        status, body = await talk(
            api, stream_id, session_id, {"script": {"type": "audio", "audio_url": broken}}
        )
        assert status == 415 and body["kind"] == "UnsupportedMimeTypeError", body
        await peer.wait_message("stream/done", within=first["duration"] + 15)
        await talks_again(
            api, peer, stream_id, session_id, {"script": {"type": "audio", "audio_url": good}}, done_before=1
        )
        assert peer.subjects().count("stream/done") == 2 and "stream/error" not in peer.subjects()
    finally:
        await peer.close()


async def test_a_face_failing_while_it_plays_ends_the_talk_with_stream_error_only(
    flaky: tuple[Api, Any],
) -> None:
    api, service = flaky
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        stream = service.streams()[0]
        face, drawn = stream.face, {"frames": 0}
        original = face.frame

        def failing(openness: float, at: float | None = None, *, out: Any = None, motion: float = 1.0) -> Any:
            drawn["frames"] += 1
            if drawn["frames"] == 10:
                raise RuntimeError("the renderer ran out of something")
            return original(openness, at, out=out, motion=motion)

        face.frame = failing
        status, doomed = await talk(api, stream_id, session_id, text("this talk will not finish"))
        assert status == 200, doomed
        await peer.wait_message("stream/error")
        (error,) = events(peer, "stream/error")
        assert error == {
            "kind": "InternalServerError",
            "description": "Stream Error",
            "videoId": doomed["video_id"],
        }
        await back_to_connected(stream.session)
        await talks_again(api, peer, stream_id, session_id, text("and yet here I am"), done_before=0)
        assert peer.subjects() == ["stream/started", "stream/error", "stream/started", "stream/done"]
        assert len(service) == 1 and service.transport.live_peers == 1
    finally:
        await peer.close()
