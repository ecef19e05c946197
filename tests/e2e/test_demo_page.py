"""The demo page, used as a person would, in headless Chromium over real WebRTC; and D-ID's demo flow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from talkstream.adapters.server.app import SERVICE

from .conftest import ARTIFACTS, KEY, until

pytestmark = pytest.mark.timeout(120)


def subjects(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["text"].split("data channel: ")[1].split(":")[0] for e in events if "data channel: " in e["text"]
    ]


async def inbound(page: Any) -> dict[str, Any]:
    return await page.evaluate(  # type: ignore[no-any-return]
        """async () => { const out = {}; (await window.demo.pc.getStats()).forEach((r) => {
             if (r.type === 'inbound-rtp') out[r.kind] = { bytes: r.bytesReceived };
           }); return out; }"""
    )


@pytest.mark.parametrize("source", ["bundled:astronaut", "clips:talkstream-astronaut"])
async def test_a_person_connects_talks_and_destroys(browser: Any, server: TestServer, source: str) -> None:
    """On the demo page at /, with a photo (/talks/streams) or a presenter (/clips/streams)."""
    page = await browser.new_page()
    base = str(server.make_url("")).rstrip("/")
    await page.goto(f"{base}/#key={KEY}")
    await page.select_option("#source", source)
    await page.click("#connect")
    await until(page, "window.demo.state === 'connected'")
    await until(page, "['connected', 'completed'].includes(document.getElementById('st-ice').textContent)")
    assert await page.evaluate("window.demo.api") == ("clips" if source.startswith("clips:") else "talks")
    idle_frames = await page.evaluate("window.demo.framesDecoded")
    before = await inbound(page)

    await page.fill("#text", "Hello from a real browser, over WebRTC.")
    await page.click("#talk")
    await until(page, "window.demo.state === 'talking'")
    await until(page, "window.demo.framesDecoded > 10")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"demo-mid-talk-{source.split(':')[0]}.png"))
    await until(page, "window.demo.events.some((e) => e.text.includes('stream/done'))")
    events = await page.evaluate("window.demo.events")
    assert subjects(events) == ["stream/started", "stream/done"]
    width = await page.evaluate("document.getElementById('video').videoWidth")
    assert width > 0
    talking_frames = await page.evaluate("window.demo.framesDecoded")
    assert talking_frames - idle_frames > 25
    after = await inbound(page)
    assert after["audio"]["bytes"] > before.get("audio", {"bytes": 0})["bytes"] + 5000, after
    assert await page.evaluate("window.demo.timings.talkToFirstFrame") is not None

    # Between talks the server sends nothing: the decoded frame count stands still.
    await asyncio.sleep(1.0)
    settled = await page.evaluate("window.demo.framesDecoded")
    await asyncio.sleep(1.0)
    assert await page.evaluate("window.demo.framesDecoded") == settled

    await page.click("#destroy")
    await until(page, "window.demo.state === 'closed'")
    service = server.app[SERVICE]
    for _ in range(100):
        if len(service) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(service) == 0 and service.transport.live_peers == 0


async def test_a_wrong_key_shows_a_readable_error(browser: Any, server: TestServer) -> None:
    page = await browser.new_page()
    await page.goto(str(server.make_url("/")))
    await page.fill("#key", "nobody:nothing")
    await page.click("#connect")
    await until(page, "!document.getElementById('error').hidden")
    text = await page.text_content("#error")
    assert "AuthorizationError" in text and "user unauthenticated" in text and "401" in text
    assert await page.is_enabled("#connect")


DID_DEMO = Path(__file__).resolve().parent / "did_demo" / "index.html"


async def did_demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DID_DEMO)


@pytest_asyncio.fixture
async def other_origin() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/", did_demo_page)
    site = TestServer(app, host="127.0.0.1", port=0)
    await site.start_server()
    yield str(site.make_url("/"))
    await site.close()


@pytest.mark.parametrize("service", ["talks", "clips"])
async def test_dids_demo_flow_from_another_origin_plays_a_talk(
    browser: Any, server: TestServer, other_origin: str, service: str
) -> None:
    """D-ID's demo flow for each `service` its api.json may name (clips is its default)."""
    page = await browser.new_page()
    await page.goto(other_origin)
    base = str(server.make_url("")).rstrip("/")
    await page.evaluate(f"connect({base!r}, {KEY!r}, {service!r})")
    await until(page, "['connected', 'completed'].includes(peerConnection.iceConnectionState)")
    await page.evaluate("startTalk()")
    await until(page, "window.didResults.messages.some((m) => m.startsWith('stream/done'))")
    result = await page.evaluate("window.didResults")
    assert result["talk"]["status"] == "started" and result["talk"]["video_id"].startswith("tlk_")
    # The demo asks clips streams for the warm-up video, which ends with stream/ready.
    warmup = ["stream/ready"] if service == "clips" else []
    assert [m.split(":")[0] for m in result["messages"]] == [*warmup, "stream/started", "stream/done"]
    frames = await page.evaluate(
        "document.getElementById('talk-video').getVideoPlaybackQuality().totalVideoFrames"
    )
    assert frames > 10
    await page.evaluate("destroy()")


DID_WS_DEMO = Path(__file__).resolve().parent / "did_demo" / "ws.html"


async def did_ws_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DID_WS_DEMO)


async def test_dids_websocket_demo_flow_from_another_origin_plays_streamed_words(
    browser: Any, server: TestServer
) -> None:
    """D-ID's WebSocket page: a clips presenter, word chunks, answers by messageType, delete-stream."""
    app = web.Application()
    app.router.add_get("/", did_ws_page)
    site = TestServer(app, host="127.0.0.1", port=0)
    await site.start_server()
    try:
        page = await browser.new_page()
        await page.goto(str(site.make_url("/")))
        url = str(server.make_url("")).rstrip("/").replace("http", "ws")  # the bare host, as D-ID's api.json
        await page.evaluate(f"connect({url!r}, {KEY!r})")
        await until(page, "['connected', 'completed'].includes(peerConnection?.iceConnectionState)")
        await page.evaluate("streamWords()")
        await until(page, "window.wsResults.messages.some((m) => m.startsWith('stream/done'))", within=60)
        result = await page.evaluate("window.wsResults")
        kinds = [a["messageType"] for a in result["answers"]]
        assert kinds[:2] == ["init-stream", "sdp"] and "error" not in kinds, result["answers"]
        statuses = [a["status"] for a in result["answers"] if a["messageType"] == "stream-text"]
        assert statuses.count("started") == 1 and statuses[-1] == "ended", statuses
        assert [m.split(":")[0] for m in result["messages"]] == ["stream/started", "stream/done"]
        frames = await page.evaluate(
            "document.getElementById('talk-video').getVideoPlaybackQuality().totalVideoFrames"
        )
        assert frames > 10
        await page.evaluate("destroy()")
        await until(page, "window.wsResults.answers.some((a) => a.messageType === 'delete-stream')")
        assert len(server.app[SERVICE]) == 0
    finally:
        await site.close()


async def test_the_demo_page_over_the_websocket_api_fluent_and_interrupted(
    browser: Any, server: TestServer
) -> None:
    """The demo page's WebSocket mode with a fluent stream: idle video before the talk, words streamed in,
    the Interrupt button stopping the talk, video flowing on."""
    page = await browser.new_page()
    await page.goto(f"{str(server.make_url('')).rstrip('/')}/#key={KEY}")
    await page.select_option("#signalling", "websocket")
    await page.check("#fluent")
    await page.click("#connect")
    await until(page, "window.demo.state === 'connected'")
    await until(page, "window.demo.framesDecoded > 10")  # fluent: idle video with no talk asked
    await page.fill(
        "#text",
        "This is a long answer, streamed in word by word, that the person will interrupt before its end.",
    )
    await page.click("#talk")
    await until(page, "window.demo.state === 'talking'")
    await asyncio.sleep(0.5)
    await page.click("#interrupt")
    await until(page, "window.demo.events.some((e) => e.text.includes('\"interrupted\":true'))")
    assert await page.evaluate("window.demo.state") == "connected"
    answers = await page.evaluate("window.demo.answers")
    assert [a["messageType"] for a in answers][:2] == ["init-stream", "sdp"]
    assert any(a.get("status") == "started" for a in answers if a["messageType"] == "stream-text")
    frames = await page.evaluate("window.demo.framesDecoded")
    await asyncio.sleep(1.0)
    assert await page.evaluate("window.demo.framesDecoded") > frames + 10, "fluent: the video goes on"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo-websocket-interrupted.png"))
    await page.click("#destroy")
    await until(page, "window.demo.state === 'closed'")
    for _ in range(100):
        if len(server.app[SERVICE]) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(server.app[SERVICE]) == 0
