"""Message models: D-ID's real bodies parse, bad ones fail with the field's path, responses round-trip."""

from __future__ import annotations

from typing import Any

import pytest

from talkstream.engine import messages as m
from talkstream.engine.errors import ValidationError

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_create_as_dids_demo_sends_it() -> None:
    request = m.CreateStreamRequest.from_json({"source_url": "https://example.com/alice.jpg"})
    assert request.source_url == "https://example.com/alice.jpg"
    assert request.to_json() == {"source_url": "https://example.com/alice.jpg"}
    full = m.CreateStreamRequest.from_json(
        {
            "source_url": "https://example.com/alice.jpg",
            "driver_url": "bank://lively/",
            "face": {"size": 512, "top_left": [-10, 20.5], "overlap": "NO"},
            "config": {"stitch": True, "motion_factor": 1},
            "compatibility_mode": "off",
            "stream_warmup": True,
            "session_timeout": 180,
            "output_resolution": 512,
            "some_future_field": {"x": 1},
        }
    )
    assert full.face == m.FaceBox(size=512, top_left=(-10.0, 20.5))
    assert full.config == m.StreamConfig(stitch=True, motion_factor=1.0)
    assert (full.compatibility_mode, full.stream_warmup, full.session_timeout) == ("off", True, 180.0)
    assert m.CreateStreamRequest.from_json(full.to_json()) == full


def test_sdp_ice_delete_as_clients_send_them() -> None:
    sdp = m.SdpRequest.from_json({"answer": {"type": "answer", "sdp": SDP}, "session_id": "abc"})
    assert (sdp.answer.sdp, sdp.session_id) == (SDP, "abc")
    ice = m.IceCandidateRequest.from_json(
        {
            "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "session_id": "abc",
        }
    )
    assert not ice.end_of_candidates and ice.sdp_m_line_index == 0
    for end in (
        {"session_id": "abc"},
        {"candidate": None, "session_id": "abc"},
        {"candidate": "", "sdpMid": "0"},
    ):
        assert m.IceCandidateRequest.from_json(end).end_of_candidates
    assert m.IceCandidateRequest.from_json({"candidate": "c", "sdpMLineIndex": 1.0}).sdp_m_line_index == 1
    assert m.DeleteRequest.from_json({"session_id": "abc"}).session_id == "abc"
    assert m.DeleteRequest.from_json({}).session_id is None


def test_talks_text_and_audio() -> None:
    text = m.TalkRequest.from_json(
        {
            "script": {
                "type": "text",
                "input": "Hello world",
                "ssml": False,
                "provider": {
                    "type": "microsoft",
                    "voice_id": "en-US-JennyNeural",
                    "voice_config": {"style": "Cheerful"},
                },
            },
            "config": {"fluent": True, "pad_audio": 0.5, "stitch": True},
            "user_data": "tag",
            "metadata": {"a": [1, 2, {"b": None}]},
            "session_id": "abc",
        }
    )
    assert isinstance(text.script, m.TextScript)
    assert text.script.provider == m.Provider(
        type="microsoft", voice_id="en-US-JennyNeural", voice_config={"style": "Cheerful"}
    )
    assert text.config == m.TalkConfig(fluent=True, pad_audio=0.5, stitch=True)
    assert m.TalkRequest.from_json(text.to_json()) == text
    audio = m.TalkRequest.from_json({"script": {"type": "audio", "audio_url": "https://x.test/a.mp3"}})
    assert audio.script == m.AudioScript(audio_url="https://x.test/a.mp3")
    assert m.TalkRequest.from_json(
        {"script": {"type": "text", "input": "hey", "provider": {"type": "elevenlabs"}}}
    )


def test_responses_carry_what_old_and_new_clients_read() -> None:
    created = m.CreateStreamResponse(
        id="strm_1",
        session_id="s",
        offer=m.SessionDescription(type="offer", sdp=SDP),
        ice_servers=(
            m.IceServer(urls=("stun:127.0.0.1:3478",)),
            m.IceServer(urls="turn:127.0.0.1", username="u", credential="p"),
        ),
    )
    body = created.to_json()
    assert body["offer"] == body["jsep"] == {"type": "offer", "sdp": SDP}
    assert body["ice_servers"] == [
        {"urls": ["stun:127.0.0.1:3478"]},
        {"urls": "turn:127.0.0.1", "username": "u", "credential": "p"},
    ]
    assert m.CreateStreamResponse.from_json(body) == created
    jsep_only = {k: v for k, v in body.items() if k != "offer"}
    assert m.CreateStreamResponse.from_json(jsep_only).offer == created.offer
    talk = m.TalkResponse(session_id="s", video_id="tlk_1", duration=2.5)
    assert talk.to_json() == {"status": "started", "session_id": "s", "video_id": "tlk_1", "duration": 2.5}
    assert m.TalkResponse.from_json({"status": "started", "talkId": "tlk_9"}).video_id == "tlk_9"
    assert m.TalkResponse.from_json({"duration": 1, "session_id": "s", "status": "started"}).video_id is None
    assert m.ErrorBody.from_json({"kind": "NotFound", "description": "x"}).to_json() == {
        "kind": "NotFound",
        "description": "x",
    }


def test_fluent_streams_and_the_interrupt_message() -> None:
    assert m.CreateStreamRequest.from_json(create(fluent=True)).fluent is True
    assert "fluent" not in m.CreateStreamRequest.from_json(create()).to_json()
    clip = m.CreateClipStreamRequest.from_json({"presenter_id": "p", "fluent": True})
    assert clip.as_stream("bundled:astronaut").fluent is True
    offer = m.SessionDescription(type="offer", sdp=SDP)
    fluent = m.CreateStreamResponse(id="s", session_id="x", offer=offer, fluent=True, interrupt_enabled=True)
    body = fluent.to_json()
    assert (body["fluent"], body["interrupt_enabled"]) == (True, True)
    assert m.CreateStreamResponse.from_json(body) == fluent
    plain = m.CreateStreamResponse(id="s", session_id="x", offer=offer).to_json()
    assert "fluent" not in plain and "interrupt_enabled" not in plain  # a server that does not say
    sent = {"type": "stream/interrupt", "videoId": "tlk_1", "timestamp": 1733200000000}
    interrupt = m.StreamInterrupt.from_json(sent)
    assert (interrupt.video_id, interrupt.to_json()) == ("tlk_1", sent)
    assert m.StreamInterrupt.from_json({"type": "stream/interrupt", "videoId": "v"}).timestamp is None


def test_websocket_chunks_as_dids_demo_sends_them_and_back() -> None:
    demo = {
        "script": {
            "type": "text",
            "input": "word ",
            "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural"},
            "ssml": True,
        },
        "config": {"stitch": True},
        "background": {"color": "#FFFFFF"},
        "index": 3,
        "session_id": "s",
        "stream_id": "strm_1",
        "presenter_type": "clip",
    }
    text = m.StreamTextChunk.from_json(demo)
    assert (text.input, text.ssml, text.index, text.stream_id, text.ends) == (
        "word ",
        True,
        3,
        "strm_1",
        False,
    )
    assert m.StreamTextChunk.from_json(text.to_json()) == text
    assert m.StreamTextChunk.from_json({**demo, "script": {"type": "text", "input": " "}}).ends
    listed = m.StreamAudioChunk.from_json({"script": {"type": "audio", "input": [1, 2, 255]}, "index": 0})
    encoded = m.StreamAudioChunk.from_json({"script": {"type": "audio", "input": "AQL/"}, "index": 0})
    assert listed == encoded and listed.data == b"\x01\x02\xff" and listed.sample_rate == 16_000
    assert m.StreamAudioChunk.from_json(listed.to_json()) == listed
    assert m.StreamAudioChunk.from_json({"script": {"type": "audio", "input": []}}).ends
    message = m.WebSocketMessage.from_json({"type": "stream-text", "payload": demo})
    assert message.to_json() == {"type": "stream-text", "payload": demo}


def create(**extra: Any) -> dict[str, Any]:
    return {"source_url": "https://example.com/a.jpg", **extra}


def talk(**script: Any) -> dict[str, Any]:
    return {"script": {"type": "text", "input": "hello", **script}}


CASES: list[tuple[type[Any], Any, str]] = [
    (m.CreateStreamRequest, [], "body"),
    (m.CreateStreamRequest, "nope", "body"),
    (m.CreateStreamRequest, {}, "body.source_url"),
    (m.CreateStreamRequest, {"source_url": 5}, "body.source_url"),
    (m.CreateStreamRequest, {"source_url": "   "}, "body.source_url"),
    (m.CreateStreamRequest, {"source_url": "x" * 3000}, "body.source_url"),
    (m.CreateStreamRequest, create(output_resolution=100), "body.output_resolution"),
    (m.CreateStreamRequest, create(output_resolution=True), "body.output_resolution"),
    (m.CreateStreamRequest, create(output_resolution=float("nan")), "body.output_resolution"),
    (m.CreateStreamRequest, create(session_timeout=301), "body.session_timeout"),
    (m.CreateStreamRequest, create(session_timeout=0), "body.session_timeout"),
    (m.CreateStreamRequest, create(compatibility_mode="maybe"), "body.compatibility_mode"),
    (m.CreateStreamRequest, create(stream_warmup="yes"), "body.stream_warmup"),
    (m.CreateStreamRequest, create(face={"size": 10, "top_left": [1]}), "body.face.top_left"),
    (m.CreateStreamRequest, create(face={"size": 10, "top_left": [1, "a"]}), "body.face.top_left[1]"),
    (m.CreateStreamRequest, create(face={"top_left": [1, 2]}), "body.face.size"),
    (m.CreateStreamRequest, create(face={"size": -1, "top_left": [1, 2]}), "body.face.size"),
    (m.CreateStreamRequest, create(config={"stitch": 1}), "body.config.stitch"),
    (m.CreateStreamRequest, create(config=[]), "body.config"),
    (m.SdpRequest, {}, "body.answer"),
    (m.SdpRequest, {"answer": {"type": "offer", "sdp": SDP}}, "body.answer.type"),
    (m.SdpRequest, {"answer": {"type": "answer", "sdp": ""}}, "body.answer.sdp"),
    (m.SdpRequest, {"answer": {"type": "answer", "sdp": SDP}, "session_id": 5}, "body.session_id"),
    (m.IceCandidateRequest, {"candidate": 7}, "body.candidate"),
    (m.IceCandidateRequest, {"candidate": "c", "sdpMLineIndex": 1.5}, "body.sdpMLineIndex"),
    (m.IceCandidateRequest, {"candidate": "c", "sdpMLineIndex": -1}, "body.sdpMLineIndex"),
    (m.IceCandidateRequest, {"candidate": "c", "sdpMLineIndex": False}, "body.sdpMLineIndex"),
    (m.TalkRequest, {}, "body.script"),
    (m.TalkRequest, {"script": "hello"}, "body.script"),
    (m.TalkRequest, {"script": {"input": "hello"}}, "body.script.type"),
    (m.TalkRequest, {"script": {"type": "video"}}, "body.script.type"),
    (m.TalkRequest, talk(input="hi"), "body.script.input"),
    (m.TalkRequest, talk(input="x" * 40_001), "body.script.input"),
    (m.TalkRequest, talk(provider={"type": "nobody"}), "body.script.provider.type"),
    (m.TalkRequest, talk(provider={"type": "microsoft"}), "body.script.provider.voice_id"),
    (m.TalkRequest, talk(ssml="true"), "body.script.ssml"),
    (m.TalkRequest, {"script": {"type": "audio"}}, "body.script.audio_url"),
    (m.TalkRequest, {**talk(), "config": {"pad_audio": 61}}, "body.config.pad_audio"),
    (m.TalkRequest, {**talk(), "config": {"result_format": "gif"}}, "body.config.result_format"),
    (m.TalkRequest, {**talk(), "user_data": "   "}, "body.user_data"),
    (m.TalkRequest, {**talk(), "user_data": "x" * 1001}, "body.user_data"),
    (m.TalkRequest, {**talk(), "metadata": {"deep": float("inf")}}, "body.metadata.deep"),
    (m.DeleteRequest, {"session_id": ["a"]}, "body.session_id"),
    (m.CreateStreamRequest, create(fluent="true"), "body.fluent"),
    (m.WebSocketMessage, {"type": "fly", "payload": {}}, "message.type"),
    (m.WebSocketMessage, {"type": "sdp", "payload": []}, "message.payload"),
    (m.StreamTextChunk, {"script": {"type": "audio"}}, "payload.script.type"),
    (m.StreamTextChunk, {"script": {"type": "text", "input": "x" * 10_001}}, "payload.script.input"),
    (m.StreamTextChunk, {"script": {"type": "text", "input": "x"}, "index": -1}, "payload.index"),
    (m.StreamAudioChunk, {"script": {"type": "audio", "input": [0, 256]}}, "payload.script.input"),
    (m.StreamAudioChunk, {"script": {"type": "audio", "input": [True]}}, "payload.script.input"),
    (m.StreamAudioChunk, {"script": {"type": "audio", "input": "@@"}}, "payload.script.input"),
    (m.StreamAudioChunk, {"script": {"type": "audio", "input": [0] * 96_001}}, "payload.script.input"),
    (
        m.StreamAudioChunk,
        {"script": {"type": "audio", "input": [], "sample_rate": 4000}},
        "payload.script.sample_rate",
    ),
    (m.StreamInterrupt, {"videoId": "v"}, "message.type"),
    (m.StreamInterrupt, {"type": "stream/done", "videoId": "v"}, "message.type"),
    (m.StreamInterrupt, {"type": "stream/interrupt"}, "message.videoId"),
    (m.StreamInterrupt, {"type": "stream/interrupt", "videoId": ""}, "message.videoId"),
    (m.StreamInterrupt, {"type": "stream/interrupt", "videoId": "v" * 600}, "message.videoId"),
    (m.StreamInterrupt, {"type": "stream/interrupt", "videoId": "v", "timestamp": "x"}, "message.timestamp"),
]


@pytest.mark.parametrize(("model", "body", "path"), CASES, ids=[c[2] + f"#{i}" for i, c in enumerate(CASES)])
def test_bad_bodies_name_the_field(model: type[Any], body: Any, path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model.from_json(body)
    assert caught.value.path == path
    err = caught.value.to_body()
    assert err["kind"] == "ValidationError" and err["description"] == "validation failed"
    assert list(err["details"]) == [path]
    assert caught.value.status == 400
