"""``GET /metrics`` on `talkstream serve` in its own process, read with prometheus-client's own parser: live
streams by state, talks by outcome, frames sent, encode times, connect and talk-to-first-frame histograms,
errors by kind; and /healthz and /readyz."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import served

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

pytestmark = pytest.mark.timeout(90)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")  # the text format
        return samples(await response.text())


async def test_metrics_count_what_a_stream_did() -> None:
    async with served("--worker-id", "w7") as server:
        before = await scrape(server.base)
        assert before[("talkstream_worker", (("worker", "w7"),))] == 1
        assert before[("talkstream_frames_sent_total", ())] == 0
        assert before[("talkstream_talks_total", (("outcome", "done"),))] == 0
        assert before[("talkstream_draining", ())] == 0
        async with StreamClient(
            AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
        ) as client:
            stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
            assert stream.stream_id.startswith("strm_w7.")
            await stream.connected(within=20)
            for _ in range(200):  # the client saw ICE connect; the server reports it a moment later
                during = await scrape(server.base)
                if during[("talkstream_streams", (("state", "connected"),))] == 1:
                    break
                await asyncio.sleep(0.02)
            assert during[("talkstream_streams", (("state", "connected"),))] == 1
            assert during[("talkstream_connect_seconds_count", ())] == 1
            await (await stream.talk(text="Count me.")).done(within=30)
            async with aiohttp.ClientSession() as http:
                unknown = f"{server.base}/talks/streams/strm_w7.nothing"
                headers = {"Authorization": f"Basic {server.key}"}
                async with http.delete(unknown, json={"session_id": "x"}, headers=headers) as response:
                    assert response.status == 404
                    kind = (await response.json())["kind"]
            after = await scrape(server.base)
            await stream.close()
        frames = after[("talkstream_frames_sent_total", ())]
        assert frames >= 10
        assert after[("talkstream_talks_total", (("outcome", "done"),))] == 1
        assert after[("talkstream_talk_first_frame_seconds_count", ())] == 1
        assert 0 < after[("talkstream_talk_first_frame_seconds_sum", ())] < 30
        # every video frame was encoded and timed (the last few may still wait in the encoder's queue)
        assert 0 < after[("talkstream_encode_seconds_count", ())] <= frames
        assert after[("talkstream_errors_total", (("kind", kind),))] == 1
        assert after[("talkstream_streams", (("state", "talking"),))] == 0


async def test_health_and_readiness() -> None:
    async with served() as server, aiohttp.ClientSession() as http:
        for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
            async with http.get(server.base + path) as response:
                assert response.status == 200 and (await response.json())["status"] == expected
