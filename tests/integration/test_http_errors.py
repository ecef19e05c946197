"""Every error kind of the protocol, provoked over HTTP on 127.0.0.1, in D-ID's body shape."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from .conftest import KEY, LIMITED_KEY, OTHER_KEY, Api, basic

pytestmark = pytest.mark.timeout(60)

CREATE = {"source_url": "bundled:astronaut"}


async def create(api: Api, key: str = KEY) -> dict[str, Any]:
    status, body, _ = await api.call("POST", "/talks/streams", CREATE, key=key)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def assert_error(status: int, body: Any, expected_status: int, kind: str) -> None:
    assert status == expected_status, body
    assert body["kind"] == kind, body
    assert isinstance(body["description"], str) and body["description"]


async def test_401_without_or_with_a_wrong_key(api: Api) -> None:
    for key in (None, "nobody:nothing"):
        status, body, headers = await api.call("POST", "/talks/streams", CREATE, key=key)
        assert_error(status, body, 401, "AuthorizationError")
        assert body["description"] == "user unauthenticated"
        assert headers["WWW-Authenticate"].startswith("Basic")


async def test_basic_key_raw_base64_and_bearer_all_work(api: Api) -> None:
    for header in (f"Basic {KEY}", basic(KEY), f"Bearer {KEY}"):
        status, body, _ = await api.call(
            "POST", "/talks/streams", CREATE, key=None, headers={"Authorization": header}
        )
        assert status == 201, (header, body)
        sid = body["id"]
        status, _, _ = await api.call("DELETE", f"/talks/streams/{sid}", {"session_id": body["session_id"]})
        assert status == 200


async def test_400_validation_names_the_field(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/talks/streams", {"source_url": "bundled:astronaut", "output_resolution": 99}
    )
    assert_error(status, body, 400, "ValidationError")
    assert "body.output_resolution" in body["details"]
    status, body, _ = await api.call("POST", "/talks/streams", {})
    assert_error(status, body, 400, "ValidationError")
    assert body["details"] == {"body.source_url": "required"}
    status, body, _ = await api.call("POST", "/talks/streams", raw=b"{not json")
    assert_error(status, body, 400, "ValidationError")


async def test_400_session_error_and_404_for_another_key(api: Api) -> None:
    stream = await create(api)
    sid = stream["id"]
    talk = {"script": {"type": "text", "input": "hello there"}}
    status, body, _ = await api.call("POST", f"/talks/streams/{sid}", talk)
    assert_error(status, body, 400, "SessionError")
    assert body["description"] == "missing or invalid session_id"
    status, body, _ = await api.call("POST", f"/talks/streams/{sid}", {**talk, "session_id": "wrong"})
    assert_error(status, body, 400, "SessionError")
    for method, path, payload in [
        ("POST", f"/talks/streams/{sid}", {**talk, "session_id": stream["session_id"]}),
        (
            "POST",
            f"/talks/streams/{sid}/sdp",
            {"answer": {"type": "answer", "sdp": "v=0"}, "session_id": stream["session_id"]},
        ),
        ("POST", f"/talks/streams/{sid}/ice", {"session_id": stream["session_id"]}),
        ("DELETE", f"/talks/streams/{sid}", {"session_id": stream["session_id"]}),
    ]:
        status, body, _ = await api.call(method, path, payload, key=OTHER_KEY)
        assert_error(status, body, 404, "NotFound")
    # The owner still has it, untouched.
    status, body, _ = await api.call("DELETE", f"/talks/streams/{sid}", {"session_id": stream["session_id"]})
    assert status == 200
    status, body, _ = await api.call("DELETE", f"/talks/streams/{sid}", {"session_id": stream["session_id"]})
    assert_error(status, body, 404, "NotFound")


async def test_409_talk_before_the_connection_names_the_state(api: Api, server: Any) -> None:
    stream = await create(api)
    status, body, _ = await api.call(
        "POST",
        f"/talks/streams/{stream['id']}",
        {"script": {"type": "text", "input": "too early"}, "session_id": stream["session_id"]},
    )
    assert_error(status, body, 409, "NotReadyError")
    assert "negotiating" in body["description"] and body["details"]["state"] == "negotiating"


async def test_bad_sdp_is_400_and_changes_nothing(api: Api) -> None:
    stream = await create(api)
    path = f"/talks/streams/{stream['id']}/sdp"
    status, body, _ = await api.call(
        "POST",
        path,
        {"answer": {"type": "answer", "sdp": "v=0\r\nnot sdp"}, "session_id": stream["session_id"]},
    )
    assert_error(status, body, 400, "BadRequestError")
    status, body, _ = await api.call(
        "POST",
        f"/talks/streams/{stream['id']}/ice",
        {
            "candidate": "candidate:garbage",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "session_id": stream["session_id"],
        },
    )
    assert_error(status, body, 400, "BadRequestError")
    # Still negotiating: a talk is refused for that reason, not because the stream broke.
    status, body, _ = await api.call(
        "POST",
        f"/talks/streams/{stream['id']}",
        {"script": {"type": "text", "input": "still there?"}, "session_id": stream["session_id"]},
    )
    assert body["details"]["state"] == "negotiating"


async def test_415_for_a_source_that_is_not_an_image_and_400_for_no_face(api: Api, settings: Any) -> None:
    root = settings.media_root
    (root / "notes.png").write_bytes(b"this is text, not a picture")
    status, body, _ = await api.call("POST", "/talks/streams", {"source_url": f"file://{root}/notes.png"})
    assert_error(status, body, 415, "UnsupportedMimeTypeError")
    (root / "wall.png").write_bytes(cv2.imencode(".png", np.full((240, 240, 3), 200, np.uint8))[1].tobytes())
    status, body, _ = await api.call("POST", "/talks/streams", {"source_url": f"file://{root}/wall.png"})
    assert_error(status, body, 400, "BadRequestError")
    assert "face" in body["description"]
    status, body, _ = await api.call("POST", "/talks/streams", {"source_url": "file:///etc/passwd"})
    assert_error(status, body, 400, "BadRequestError")
    status, body, _ = await api.call(
        "POST",
        "/talks/streams",
        {"source_url": f"file://{root}/wall.png", "face": {"size": 100, "top_left": [70, 70]}},
    )
    assert status == 201, body


async def test_429_with_retry_after_over_the_per_key_limit(api: Api) -> None:
    for _ in range(3):
        await create(api)
    status, body, headers = await api.call("POST", "/talks/streams", CREATE)
    assert status == 429, body
    assert headers["Retry-After"] == "7"
    await create(api, key=OTHER_KEY)  # another key has its own allowance


async def test_unknown_routes_answer_in_did_shape(api: Api) -> None:
    status, body, _ = await api.call("GET", "/talks/nothing-here")
    assert_error(status, body, 404, "NotFound")
    status, body, _ = await api.call("GET", "/talks/streams")
    assert_error(status, body, 404, "NotFound")


async def test_cors_preflight_and_headers(api: Api) -> None:
    async with api.session.options(
        api.base + "/talks/streams",
        headers={
            "Origin": "http://127.0.0.1:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    status, _, headers = await api.call(
        "POST", "/talks/streams", CREATE, headers={"Origin": "http://127.0.0.1:3000"}
    )
    assert status == 201 and headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"


async def test_openapi_is_served(api: Api) -> None:
    status, body, _ = await api.call("GET", "/openapi.json", key=None)
    assert status == 200
    assert set(body["paths"]) == {
        f"/{api}/streams{tail}"
        for api in ("talks", "clips")
        for tail in ("", "/{id}/sdp", "/{id}/ice", "/{id}")
    } | {"/clips/presenters", "/clips/presenters/{id}", "/talks", "/talks/{id}", "/talks/{id}/result"} | {
        "/healthz",
        "/readyz",
    }


async def test_429_when_the_server_is_full_across_keys(api: Api) -> None:
    for _ in range(3):
        await create(api)
    for _ in range(2):
        await create(api, key=OTHER_KEY)  # 5 streams: the server's total
    status, body, headers = await api.call("POST", "/talks/streams", CREATE, key=OTHER_KEY)
    assert status == 429 and "maximum" in body["description"] and headers["Retry-After"] == "7"


async def test_415_for_audio_that_is_not_audio(api: Api, media_server: Any) -> None:
    from .test_webrtc_server import Peer, connect

    url = await media_server("page.mp3", b"<html>not audio</html>", "audio/mpeg")
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, body, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}",
            {"script": {"type": "audio", "audio_url": url}, "session_id": session_id},
        )
        assert_error(status, body, 415, "UnsupportedMimeTypeError")
        status, body, _ = await api.call(
            "POST",
            f"/talks/streams/{stream_id}",
            {
                "script": {"type": "audio", "audio_url": "http://127.0.0.1:1/nothing.wav"},
                "session_id": session_id,
            },
        )
        assert_error(status, body, 400, "BadRequestError")
        assert peer.messages == []  # nothing was queued
    finally:
        await peer.close()


async def test_403_for_what_a_key_is_not_permitted(api: Api, settings: Any) -> None:
    (settings.media_root / "face.png").write_bytes(b"whatever")
    source = {"source_url": f"file://{settings.media_root}/face.png"}
    status, body, _ = await api.call("POST", "/talks/streams", source, key=LIMITED_KEY)
    assert_error(status, body, 403, "PermissionError")
    status, body, _ = await api.call(
        "POST", "/talks/streams", {**CREATE, "session_timeout": 60}, key=LIMITED_KEY
    )
    assert status == 201, body


async def test_a_page_fetch_gets_a_challenge_that_does_not_open_a_login_dialog(api: Api) -> None:
    status, body, headers = await api.call(
        "POST", "/talks/streams", CREATE, key=None, headers={"Sec-Fetch-Dest": "empty"}
    )
    assert_error(status, body, 401, "AuthorizationError")
    assert headers["WWW-Authenticate"].startswith("X-Basic")
