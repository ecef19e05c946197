"""The embedded server over 127.0.0.1 with a real aiortc peer written here, not talkstream's client.

The peer follows D-ID's browser flow: it opens its own ``JanusDataChannel``, trickles its candidates
(before its answer lands, as browsers do) and the end-of-candidates marker, waits for ICE, then asks for
talks and watches frames, audio and data-channel messages arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from talkstream.engine.states import State
from talkstream.transports.aiortc_patches import offered_host_addresses

from .conftest import Api, loud_quiet_loud

pytestmark = pytest.mark.timeout(90)

# Where the bundled portrait's mouth is in a 512x512 frame (stitch on): checked by a unit test of the
# animator; here it only tells where to look in the decoded video.
MOUTH = (slice(136, 166), slice(196, 252))


class Peer:
    """A browser-like WebRTC peer: records frames with arrival times and data-channel messages."""

    def __init__(self, *, own_channel: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video: list[tuple[float, np.ndarray]] = []
        self.audio: list[tuple[float, np.ndarray]] = []
        self.messages: list[tuple[float, str]] = []
        self.message_arrived = asyncio.Event()
        self.connected = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        # D-ID's newer clients open JanusDataChannel themselves and listen on it alone; older ones listen
        # on the channel the server's offer brings.
        if own_channel:
            self.channel = self.pc.createDataChannel("JanusDataChannel")
            self.channel.on("message", self._message)
        else:
            self.pc.on("datachannel", lambda ch: ch.on("message", self._message))
        self.pc.on("track", self._track)
        self.pc.on("iceconnectionstatechange", self._ice)

    def _message(self, text: str) -> None:
        self.messages.append((time.monotonic(), text))
        self.message_arrived.set()

    def _ice(self) -> None:
        if self.pc.iceConnectionState in ("connected", "completed"):
            self.connected.set()

    def _track(self, track: Any) -> None:
        async def pump() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                now = time.monotonic()
                if track.kind == "video":
                    self.video.append((now, frame.to_ndarray(format="rgb24")))
                else:
                    self.audio.append((now, frame.to_ndarray()))

        self.tasks.append(asyncio.ensure_future(pump()))

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        with offered_host_addresses(["127.0.0.1"]):  # stay on loopback
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def wait_message(self, prefix: str, within: float = 20.0) -> float:
        deadline = time.monotonic() + within
        while True:
            for at, text in self.messages:
                if text.startswith(prefix):
                    return at
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {prefix!r} message; got {[m for _, m in self.messages]}")
            self.message_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.message_arrived.wait(), remaining)

    def subjects(self) -> list[str]:
        return [text.split(":", 1)[0] for _, text in self.messages]

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def connect(
    api: Api, peer: Peer, body: dict[str, Any] | None = None, *, service: str = "talks"
) -> tuple[str, str]:
    """D-ID's five steps up to a connected peer, under ``/{service}/streams``."""
    status, created, _ = await api.call(
        "POST", f"/{service}/streams", body or {"source_url": "bundled:astronaut"}
    )
    assert status == 201, created
    stream_id, session_id = created["id"], created["session_id"]
    assert stream_id.startswith("strm_") and created["offer"]["type"] == "offer"
    assert created["jsep"] == created["offer"] and created["ice_servers"] == []
    assert "127.0.0.1" in created["offer"]["sdp"]
    answer = await peer.answer(created["offer"]["sdp"])
    # Trickle first, as a browser does while its answer is still on the way; then the answer.
    for line in answer.splitlines():
        if line.startswith("a=candidate:"):
            status, body_, _ = await api.call(
                "POST",
                f"/{service}/streams/{stream_id}/ice",
                {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0, "session_id": session_id},
            )
            assert status == 200, body_
    status, body_, _ = await api.call(
        "POST", f"/{service}/streams/{stream_id}/ice", {"session_id": session_id}
    )
    assert status == 200, body_
    status, body_, _ = await api.call(
        "POST",
        f"/{service}/streams/{stream_id}/sdp",
        {"answer": {"type": "answer", "sdp": answer}, "session_id": session_id},
    )
    assert (status, body_) == (200, {"status": "success"})
    await asyncio.wait_for(peer.connected.wait(), 20)
    return stream_id, session_id


def mouth_motion(frames: list[tuple[float, np.ndarray]], reference: np.ndarray) -> np.ndarray:
    return np.array([np.abs(f[MOUTH].astype(np.int16) - reference[MOUTH]).mean() for _, f in frames])


async def test_text_talk_streams_a_talking_face_with_sound(api: Api, server: Any) -> None:
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, talk, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}",
            {
                "script": {
                    "type": "text",
                    "input": "Hello! I am a face streamed over WebRTC.",
                    "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural"},
                },
                "session_id": session_id,
            },
        )
        assert status == 200, talk
        assert talk["status"] == "started" and talk["session_id"] == session_id
        assert talk["video_id"].startswith("tlk_") and 1.0 < talk["duration"] < 10.0
        started = await peer.wait_message("stream/started")
        done = await peer.wait_message("stream/done", within=talk["duration"] + 15)
        assert peer.subjects()[:2] == ["stream/started", "stream/done"]
        _, text = next(m for m in peer.messages if m[1].startswith("stream/started"))
        assert json.loads(text.split(":", 1)[1]) == {"metadata": {"videoId": talk["video_id"]}}
        during = [f for f in peer.video if started - 0.5 <= f[0] <= done + 0.5]
        assert len(during) >= 0.6 * talk["duration"] * 25, f"{len(during)} frames for {talk['duration']} s"
        assert during[0][1].shape == (512, 512, 3)
        assert len(peer.audio) >= 0.6 * talk["duration"] * 50
        assert max(np.abs(a).max() for _, a in peer.audio) > 1000, "the audio is silent"
        motion = mouth_motion(during, during[0][1])
        assert motion.max() > 8.0, "the mouth never moved"
    finally:
        await peer.close()


async def test_audio_talk_mouth_moves_with_sound_and_rests_in_silence(
    api: Api, media_server: Callable[[str, bytes, str], Awaitable[str]]
) -> None:
    url = await media_server("speech.wav", loud_quiet_loud(), "audio/wav")
    peer = Peer(own_channel=False)  # an older client: listens on the channel the offer brings
    try:
        # A still head (bank://stiff), so that what moves in the mouth's pixels is the mouth.
        stream_id, session_id = await connect(
            api, peer, {"source_url": "bundled:astronaut", "driver_url": "bank://stiff"}
        )
        status, talk, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}",
            {
                "script": {"type": "audio", "audio_url": url},
                "config": {"pad_audio": 0.4},
                "session_id": session_id,
            },
        )
        assert status == 200, talk
        assert talk["duration"] == pytest.approx(2.8, abs=0.05)
        started = await peer.wait_message("stream/started")
        done = await peer.wait_message("stream/done", within=20)
        frames = [f for f in peer.video if started - 0.5 <= f[0] <= done + 0.5]
        assert len(frames) >= 50
        # Frames arrive in order at 25 fps: index k shows media time k * 40 ms from the talk's start.
        reference = frames[-1][1]  # the padding at the end: mouth closed
        motion = mouth_motion(frames, reference)
        loud = np.concatenate([motion[4:16], motion[44:56]])
        quiet = motion[26:36]
        assert loud.mean() > 3 * max(quiet.mean(), 1.0), (loud.mean(), quiet.mean())
        assert quiet.max() < 6.0, "the mouth moved in silence"
    finally:
        await peer.close()


async def test_talks_queue_in_order_and_nothing_is_sent_between_them(api: Api) -> None:
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        ids = []
        for text in ("First talk here.", "And the second one."):
            status, talk, _ = await api.call(
                "POST",
                f"/talks/streams/{stream_id}",
                {"script": {"type": "text", "input": text}, "session_id": session_id},
            )
            assert status == 200, talk
            ids.append(talk["video_id"])
        while peer.subjects().count("stream/done") < 2:
            await peer.wait_message("stream/done")
            peer.message_arrived.clear()
            await asyncio.wait_for(peer.message_arrived.wait(), 20)
        subjects = peer.subjects()
        assert subjects == ["stream/started", "stream/done", "stream/started", "stream/done"]
        started = [
            json.loads(m.split(":", 1)[1])["metadata"]["videoId"]
            for _, m in peer.messages
            if m.startswith("stream/started")
        ]
        assert started == ids
        done = [
            json.loads(m.split(":", 1)[1])["metadata"]["videoId"]
            for _, m in peer.messages
            if m.startswith("stream/done")
        ]
        assert done == ids
        # Idle now: no video for a while after the last talk (allow the frames in flight to land).
        last_done = peer.messages[-1][0]
        count = len(peer.video)
        await asyncio.sleep(0.6)
        assert len(peer.video) - count <= 2
        assert all(at <= last_done + 0.3 for at, _ in peer.video)
    finally:
        await peer.close()


async def test_delete_closes_the_peer_and_frees_the_stream(api: Api, server: Any) -> None:
    from talkstream.adapters.server.app import SERVICE

    service = server.app[SERVICE]
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        assert len(service) == 1 and service.transport.live_peers == 1
        status, body, _ = await api.call("DELETE", f"/talks/streams/{stream_id}", {"session_id": session_id})
        assert (status, body) == (200, {"status": "success"})
        assert len(service) == 0 and service.transport.live_peers == 0
        assert len(service.engine) == 0
    finally:
        await peer.close()


async def test_stream_warmup_sends_idle_video_then_ready(api: Api) -> None:
    peer = Peer()
    try:
        await connect(
            api, peer, {"source_url": "bundled:astronaut", "stream_warmup": True, "output_resolution": 256}
        )
        ready = await peer.wait_message("stream/ready", within=20)
        assert peer.subjects() == ["stream/ready"]
        warm = [f for f in peer.video if f[0] <= ready + 0.2]
        assert len(warm) >= 25, "about 2 s of warm-up video comes before stream/ready"
        assert warm[0][1].shape == (256, 256, 3)
    finally:
        await peer.close()


async def test_compatibility_mode_off_offers_h264_and_on_offers_vp8(api: Api) -> None:
    for mode, codec in (("off", "H264"), ("on", "VP8")):
        status, created, _ = await api.call(
            "POST", "/talks/streams", {"source_url": "bundled:astronaut", "compatibility_mode": mode}
        )
        assert status == 201, created
        video = created["offer"]["sdp"].split("m=video")[1].split("m=application")[0]
        codecs = {
            line.split()[1].split("/")[0] for line in video.splitlines() if line.startswith("a=rtpmap:")
        }
        assert codec in codecs and codecs <= {codec, "rtx"}, codecs
        await api.call("DELETE", f"/talks/streams/{created['id']}", {"session_id": created["session_id"]})


async def test_a_browser_hiding_behind_mdns_still_connects(api: Api, server: Any) -> None:
    """As Chromium does by default: no address in the answer, only `.local` candidates, then the end marker.

    The server drops the names (resolving them would wait 1 s and multicast) and must not take the end
    marker as "no candidates at all": the peer's checks reveal its address as peer-reflexive.
    """
    from talkstream.adapters.server.app import SERVICE

    peer = Peer()
    try:
        status, created, _ = await api.call("POST", "/talks/streams", {"source_url": "bundled:astronaut"})
        stream_id, session_id = created["id"], created["session_id"]
        answer = await peer.answer(created["offer"]["sdp"])
        hidden = (
            "\r\n".join(
                line
                for line in answer.splitlines()
                if not line.startswith(("a=candidate:", "a=end-of-candidates"))
            )
            + "\r\n"
        )
        mdns = "candidate:1 1 udp 2122260223 6b8e7a55-0d5c-4f4f-9d36-3c8e1b2a9f10.local 54321 typ host"
        for body in (
            {"candidate": mdns, "sdpMid": "0", "sdpMLineIndex": 0, "session_id": session_id},
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "session_id": session_id},  # end marker
        ):
            status, reply, _ = await api.call("POST", f"/talks/streams/{stream_id}/ice", body)
            assert (status, reply) == (200, {"status": "success"})
        (stream,) = server.app[SERVICE].streams()
        assert stream.peer.mdns_dropped == 1
        status, _, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}/sdp",
            {"answer": {"type": "answer", "sdp": hidden}, "session_id": session_id},
        )
        assert status == 200
        await asyncio.wait_for(peer.connected.wait(), 20)
        for _ in range(200):
            if stream.session.state is State.CONNECTED:
                break
            await asyncio.sleep(0.01)
        assert stream.session.state is State.CONNECTED, stream.session.history
    finally:
        await peer.close()


async def test_an_end_marker_before_any_candidate_waits_for_one(api: Api, server: Any) -> None:
    """A client that trickles can post its end-of-candidates marker before its answer and candidates land
    (a relay-only browser waiting on TURN does). aioice, told "no more candidates" with none, fails at once;
    the server keeps the marker until a candidate has come."""
    from talkstream.adapters.server.app import SERVICE

    peer = Peer()
    try:
        status, created, _ = await api.call("POST", "/talks/streams", {"source_url": "bundled:astronaut"})
        stream_id, session_id = created["id"], created["session_id"]
        answer = await peer.answer(created["offer"]["sdp"])
        lines = answer.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        bare = (
            "\r\n".join(x for x in lines if not x.startswith(("a=candidate:", "a=end-of-candidates")))
            + "\r\n"
        )
        status, _, _ = await api.call("POST", f"/talks/streams/{stream_id}/ice", {"session_id": session_id})
        assert status == 200
        status, _, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}/sdp",
            {"answer": {"type": "answer", "sdp": bare}, "session_id": session_id},
        )
        assert status == 200
        await asyncio.sleep(0.3)  # what aioice needs to give up on an empty check list
        streams = server.app[SERVICE].streams()
        assert streams, "the end marker, with no candidate to go with, failed ICE and closed the stream"
        (stream,) = streams  # (the peer's own checks may have connected it by now: that is fine)
        for candidate in candidates:
            status, reply, _ = await api.call(
                "POST",
                f"/talks/streams/{stream_id}/ice",
                {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0, "session_id": session_id},
            )
            assert (status, reply) == (200, {"status": "success"})
        await asyncio.wait_for(peer.connected.wait(), 20)
        for _ in range(200):
            if stream.session.state is State.CONNECTED:
                break
            await asyncio.sleep(0.01)
        assert stream.session.state is State.CONNECTED, stream.session.history
    finally:
        await peer.close()


async def test_an_idle_stream_reports_every_few_seconds_and_a_talking_one_often(api: Api) -> None:
    """aiortc would send a sender report every 0.5-1.5 s from each idle sender; the server waits about 5 s
    (RFC 3550's minimum) while it sends no media, and keeps aiortc's pace once it does."""
    from aiortc.rtp import RtcpSrPacket

    peer = Peer()
    reports: list[float] = []

    def count_reports(receiver: Any) -> None:
        handle = receiver._handle_rtcp_packet

        async def counting(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                reports.append(time.monotonic())
            await handle(packet)

        receiver._handle_rtcp_packet = counting

    try:
        stream_id, session_id = await connect(api, peer)
        for receiver in peer.pc.getReceivers():
            count_reports(receiver)
        connected = time.monotonic()
        await asyncio.sleep(3.0)
        assert [t - connected for t in reports] == [], "an idle sender reported within 3 s"
        status, talk, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}",
            {"script": {"type": "text", "input": "Reports while I talk. " * 4}, "session_id": session_id},
        )
        assert status == 200, talk
        await peer.wait_message("stream/done", within=talk["duration"] + 15)
        # The idle wait that was running when the talk began ends within 6 s of the connection; from then on,
        # each of the two senders reports every 0.5-1.5 s while the talk lasts.
        talking_after_idle_wait = talk["duration"] + 3.0 - 6.0
        if talking_after_idle_wait > 2.0:
            assert len(reports) >= 2 * int(talking_after_idle_wait / 1.5), (talk["duration"], reports)
        assert reports, "no report while talking"
    finally:
        await peer.close()


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (
            lambda sdp: "\r\n".join(x for x in sdp.split("\r\n") if not x.startswith("a=fingerprint:")),
            "fingerprint",
        ),
        (lambda sdp: "\r\n".join(x for x in sdp.split("\r\n") if not x.startswith("a=setup:")), "a=setup"),
        (lambda sdp: sdp.replace("a=setup:active", "a=setup:nonsense"), "invalid answer"),
        (lambda sdp: sdp.split("m=", 1)[0], "no media"),
        # an a=fmtp for a payload type with no a=rtpmap: aiortc's lookup ran out (StopIteration, was a 500)
        (
            lambda sdp: re.sub(r"(m=video [^\r\n]*\r\n)", r"\1a=fmtp:126 x=1\r\n", sdp, count=1),
            "does not parse",
        ),
    ],
    ids=["no-fingerprint", "no-setup", "unknown-setup", "no-media", "format-without-rtpmap"],
)
async def test_a_broken_answer_is_a_400_with_its_reason_and_the_real_one_still_connects(
    api: Api, broken: Callable[[str], str], reason: str
) -> None:
    peer = Peer()
    try:
        status, created, _ = await api.call("POST", "/talks/streams", {"source_url": "bundled:astronaut"})
        assert status == 201, created
        stream_id, session_id = created["id"], created["session_id"]
        answer = await peer.answer(created["offer"]["sdp"])
        bad = broken(answer)
        assert bad != answer
        status, body, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}/sdp",
            {"answer": {"type": "answer", "sdp": bad}, "session_id": session_id},
        )
        assert status == 400 and body["kind"] == "BadRequestError", body
        assert reason in body["description"], body
        status, body, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}/sdp",
            {"answer": {"type": "answer", "sdp": answer}, "session_id": session_id},
        )
        assert (status, body) == (200, {"status": "success"})
        await asyncio.wait_for(peer.connected.wait(), 20)
    finally:
        await peer.close()
