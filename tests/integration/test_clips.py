"""``/clips/streams`` and ``/clips/presenters`` against the real server on 127.0.0.1 with a real aiortc peer:
the same five steps as talks streams, presenters by id (the bundled one, the ids D-ID's demo sends, one an
operator adds), D-ID's errors for unknown presenters and drivers, and streams kept to the API that made
them."""

from __future__ import annotations

import shutil

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from talkstream.adapters.server.build import ServerSettings, build_app
from talkstream.avatar.portrait import bundled_portrait_bytes
from talkstream.avatar.presenters import BUNDLED_PRESENTER, DEMO_PRESENTER_IDS

from .conftest import Api
from .test_webrtc_server import Peer, connect

DEMO_TALK = {
    "script": {"type": "audio", "audio_url": "placeholder"},
    "config": {"stitch": True},
    "background": {"color": "#FFFFFF"},
}


async def test_presenters_are_listed_and_found_by_id(api: Api) -> None:
    status, listed, _ = await api.call("GET", "/clips/presenters")
    assert status == 200, listed
    ids = [p["presenter_id"] for p in listed["presenters"]]
    assert BUNDLED_PRESENTER in ids and set(DEMO_PRESENTER_IDS) <= set(ids)
    for presenter in listed["presenters"]:
        assert {
            "presenter_id",
            "driver_id",
            "gender",
            "owner_id",
            "preview_url",
            "modified_at",
        } <= presenter.keys()
    status, limited, _ = await api.call("GET", "/clips/presenters?limit=1")
    assert status == 200 and len(limited["presenters"]) == 1
    status, one, _ = await api.call("GET", f"/clips/presenters/{BUNDLED_PRESENTER}")
    assert status == 200 and [p["presenter_id"] for p in one["presenters"]] == [BUNDLED_PRESENTER]
    status, missing, _ = await api.call("GET", "/clips/presenters/nobody-here")
    assert status == 404 and missing["kind"] == "NotFound", missing
    status, bad, _ = await api.call("GET", "/clips/presenters?limit=zero")
    assert status == 400 and bad["kind"] == "ValidationError"


async def test_presenters_need_a_key(server: TestServer) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/clips/presenters")) as response,
    ):
        assert response.status == 401
        assert (await response.json())["kind"] == "AuthorizationError"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({}, 400, "ValidationError"),
        ({"presenter_id": ""}, 400, "ValidationError"),
        ({"presenter_id": "nobody-here"}, 404, "NotFound"),
        ({"presenter_id": BUNDLED_PRESENTER, "driver_id": "no-such-driver"}, 400, "BadRequestError"),
        ({"presenter_id": BUNDLED_PRESENTER, "fluent": "yes"}, 400, "ValidationError"),
        ({"presenter_id": BUNDLED_PRESENTER, "compatibility_mode": "sometimes"}, 400, "ValidationError"),
    ],
)
async def test_bad_creates_answer_dids_errors_and_make_nothing(
    api: Api, server: TestServer, body: dict[str, object], status: int, kind: str
) -> None:
    got, answer, _ = await api.call("POST", "/clips/streams", body)
    assert (got, answer["kind"]) == (status, kind), answer
    from talkstream.adapters.server.app import SERVICE

    assert len(server.app[SERVICE]) == 0


async def test_a_clips_stream_connects_talks_and_is_deleted_like_a_talks_one(
    api: Api, media_server: object
) -> None:
    from .conftest import loud_quiet_loud

    url = await media_server("speech.wav", loud_quiet_loud(), "audio/wav")  # type: ignore[operator]
    peer = Peer()
    try:
        # What D-ID's demo sends with service "clips" (its api.json default).
        body = {"presenter_id": DEMO_PRESENTER_IDS[0], "driver_id": "e3nbserss8", "stream_warmup": True}
        stream_id, session_id = await connect(api, peer, body, service="clips")
        # The stream belongs to /clips/streams: /talks/streams does not know it.
        status, wrong, _ = await api.call(
            "POST", f"/talks/streams/{stream_id}", {**DEMO_TALK, "session_id": session_id}
        )
        assert status == 404 and wrong["kind"] == "NotFound", wrong
        talk = {**DEMO_TALK, "script": {"type": "audio", "audio_url": url}, "session_id": session_id}
        status, started, _ = await api.call("POST", f"/clips/streams/{stream_id}", talk)
        assert status == 200 and started["status"] == "started", started
        await peer.wait_message("stream/started")
        await peer.wait_message("stream/done", within=20)
        assert len(peer.video) > 25 and len(peer.audio) > 25
        bad = {**talk, "background": {"color": "white"}}
        status, refused, _ = await api.call("POST", f"/clips/streams/{stream_id}", bad)
        assert status == 400 and refused["kind"] == "ValidationError", refused
        status, deleted, _ = await api.call(
            "DELETE", f"/clips/streams/{stream_id}", {"session_id": session_id}
        )
        assert (status, deleted) == (200, {"status": "success"}), deleted
    finally:
        await peer.close()


async def test_a_talks_stream_is_not_reachable_under_clips(api: Api) -> None:
    peer = Peer()
    try:
        stream_id, session_id = await connect(api, peer)
        status, answer, _ = await api.call(
            "DELETE", f"/clips/streams/{stream_id}", {"session_id": session_id}
        )
        assert status == 404 and answer["kind"] == "NotFound"
        status, _, _ = await api.call("DELETE", f"/talks/streams/{stream_id}", {"session_id": session_id})
        assert status == 200
    finally:
        await peer.close()


async def test_an_operator_adds_a_presenter_from_the_media_folder(tmp_path: object) -> None:
    from pathlib import Path

    import aiohttp

    from .conftest import KEY, basic

    root = Path(str(tmp_path))
    (root / "me.png").write_bytes(bundled_portrait_bytes())
    settings = ServerSettings(keys=(KEY,), media_root=root, presenters=(("me", root / "me.png"),))
    server = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": basic(KEY)}) as session:
            async with session.get(server.make_url("/clips/presenters/me")) as response:
                assert response.status == 200
            async with session.post(
                server.make_url("/clips/streams"), json={"presenter_id": "me"}
            ) as response:
                created = await response.json()
                assert response.status == 201, created
            async with session.delete(
                server.make_url(f"/clips/streams/{created['id']}"), json={"session_id": created["session_id"]}
            ) as response:
                assert response.status == 200
    finally:
        await server.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_session_timeout_needs_its_permission_as_for_talks() -> None:
    from .conftest import KEY, basic

    # A key that may use local files but may not choose a session_timeout.
    server = TestServer(build_app(ServerSettings(keys=(f"{KEY} local_files",))), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        body = {"presenter_id": BUNDLED_PRESENTER, "session_timeout": 30}
        async with (
            aiohttp.ClientSession(headers={"Authorization": basic(KEY)}) as session,
            session.post(server.make_url("/clips/streams"), json=body) as response,
        ):
            assert response.status == 403
            assert (await response.json())["kind"] == "PermissionError"
    finally:
        await server.close()
