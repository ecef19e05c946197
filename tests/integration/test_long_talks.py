"""Long talks over real WebRTC: D-ID's longest text is answered after its first phrase and spoken phrase by
phrase as it plays; the speech a stream may have waiting is bounded; a talk that fails halfway ends in
`stream/error` and the stream goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.server.app import SERVICE
from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.speech import Synthesis
from talkstream.engine.messages import MAX_TEXT
from talkstream.engine.service import StreamService
from talkstream.engine.states import State

from .conftest import Api
from .test_faults import FlakySpeech, back_to_connected, events, nth, talk, text
from .test_webrtc_server import Peer, connect

pytestmark = pytest.mark.timeout(90)


class CountingSpeech(FlakySpeech):
    """FlakySpeech (0.08 s of tone a character, "crash" crashes), counting what it is asked to say."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis:
        self.said.append(text)
        return super().synthesize(text, voice=voice, ssml=ssml)


@pytest_asyncio.fixture
async def counting(settings: ServerSettings) -> AsyncIterator[tuple[Api, StreamService, CountingSpeech]]:
    tts = CountingSpeech()
    limits = attrs.evolve(settings.limits, queued_speech_seconds=3600.0)
    app = build_app(attrs.evolve(settings, limits=limits), tts=tts)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/")), app[SERVICE], tts
    await server.close()


async def test_the_longest_text_is_answered_after_its_first_phrase(
    counting: tuple[Api, StreamService, CountingSpeech],
) -> None:
    api, service, tts = counting
    sentence = "A phrase of a long talk, spoken while it plays. "
    longest = (sentence * (MAX_TEXT // len(sentence) + 1))[: MAX_TEXT - 1] + "."
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, answer = await talk(api, stream_id, session_id, text(longest))
        assert status == 200, answer
        assert len(tts.said) == 1  # one phrase made before answering, not 53 minutes of speech
        assert answer["duration"] == pytest.approx(len(longest) * 0.08, rel=0.05)  # estimated from it
        await nth(peer, "stream/started", 1, within=15)
        for _ in range(400):  # the second phrase (3.8 s in) starts playing: the third is made
            if len(tts.said) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert 3 <= len(tts.said) <= 4  # the phrase playing and the one after it, no more
        status, _, _ = await api.call("DELETE", f"/talks/streams/{stream_id}", {"session_id": session_id})
        assert status == 200
        said = len(tts.said)
        await asyncio.sleep(0.5)
        assert len(tts.said) == said  # nothing more is made for a stream that is gone
        assert len(service) == 0
    finally:
        await peer.close()


async def test_speech_waiting_past_the_limit_is_a_400_and_changes_nothing(
    counting: tuple[Api, StreamService, CountingSpeech],
) -> None:
    api, service, _ = counting
    service.limits = attrs.evolve(service.limits, queued_speech_seconds=10.0)
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        stream = service.streams()[0]
        for words in ("x" * 60, "y" * 50):  # 4.8 s and 4 s
            status, answer = await talk(api, stream_id, session_id, text(words))
            assert status == 200, answer
        await nth(peer, "stream/started", 1, within=15)
        queued = len(stream.talks)
        status, body = await talk(api, stream_id, session_id, text("z" * 100))  # 8 s more: past 10 s
        assert status == 400 and body["kind"] == "BadRequestError", body
        assert "limit of 10 s" in body["description"]
        assert len(stream.talks) == queued and stream.session.state is State.TALKING
        await nth(peer, "stream/done", 2, within=30)
        await back_to_connected(stream.session)
        status, answer = await talk(api, stream_id, session_id, text("z" * 100))
        assert status == 200, answer  # with nothing waiting, the same talk fits
    finally:
        await peer.close()


async def test_a_talk_whose_later_phrase_fails_ends_in_stream_error_and_the_stream_goes_on(
    counting: tuple[Api, StreamService, CountingSpeech],
) -> None:
    api, service, _ = counting
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, answer = await talk(
            api, stream_id, session_id, text("This part plays. Then it crashes here.")
        )
        assert status == 200, answer  # the first phrase was fine
        await nth(peer, "stream/error", 1, within=15)
        error: dict[str, Any] = events(peer, "stream/error")[0]
        assert error["kind"] == "InternalServerError" and error["videoId"] == answer["video_id"]
        assert peer.subjects().count("stream/started") == 1 and "stream/done" not in peer.subjects()
        await back_to_connected(service.streams()[0].session)
        status, answer = await talk(api, stream_id, session_id, text("And now all is well."))
        assert status == 200, answer
        await nth(peer, "stream/done", 1, within=answer["duration"] + 15)
    finally:
        await peer.close()
