"""The HTTP edge on its own: a failing service is a D-ID 500 body; strict voices refuse provider voices."""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from talkstream.adapters.server.app import create_app
from talkstream.adapters.server.auth import KeyRing
from talkstream.avatar.speech import Synthesis
from talkstream.avatar.studio import AvatarStudio
from talkstream.engine.errors import BadRequestError
from talkstream.engine.messages import Provider, TextScript


class Exploding:
    """A stand-in service whose create fails with a bug."""

    async def create(self, owner: str, request: Any) -> Any:
        raise RuntimeError("a bug in the service")


async def test_unexpected_errors_become_dids_500_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Exploding(), KeyRing(["k:s"]))  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.post(
                "/talks/streams",
                json={"source_url": "bundled:astronaut"},
                headers={"Authorization": "Basic k:s"},
            )
        assert response.status == 500
        assert await response.json() == {"kind": "InternalServerError", "description": "Stream Error"}
    assert "a bug in the service" in caplog.text


def test_keyring_refuses_empty_and_never_matches_a_prefix() -> None:
    with pytest.raises(ValueError, match="key"):
        KeyRing([])
    ring = KeyRing(["user:secret"])
    assert ring.owner("Basic user:secret") == ring.owner("Basic dXNlcjpzZWNyZXQ=")
    for header in ("Basic user:secre", "Basic user:secret2", "Token user:secret", "", None, "Basic"):
        with pytest.raises(Exception, match="unauthenticated"):
            ring.owner(header)


def test_keyring_takes_a_colonless_key_as_basic_user_with_an_empty_password() -> None:
    ring = KeyRing(["plainkey", "user:secret"])
    as_curl_sends_it = "Basic " + base64.b64encode(b"plainkey:").decode()
    assert ring.owner(as_curl_sends_it) == ring.owner("Basic plainkey") == ring.owner("Bearer plainkey")
    assert ring.owner("Basic user:secret") != ring.owner("Basic plainkey")
    # only an empty password makes the user alone a candidate: a key's prefix never matches
    for credentials in (b"plainkey:x", b"user:", b":plainkey", b"plainke:"):
        with pytest.raises(Exception, match="unauthenticated"):
            ring.owner("Basic " + base64.b64encode(credentials).decode())


async def test_strict_voices_refuse_provider_voices() -> None:
    class Silent:
        name = "silent"

        def synthesize(self, text: str, *, voice: str | None = None, ssml: bool = False) -> Synthesis:
            return Synthesis(pcm=np.zeros(4800, np.int16))

    script = TextScript(
        input="hello there", provider=Provider(type="microsoft", voice_id="en-US-JennyNeural")
    )
    strict = AvatarStudio(tts=Silent(), strict_voices=True)
    with pytest.raises(BadRequestError, match="microsoft"):
        await strict.speech(script, pad_audio=0)
    lenient = AvatarStudio(tts=Silent())
    assert (await lenient.speech(script, pad_audio=0)).duration == pytest.approx(0.1)
    none = AvatarStudio(tts=None)
    with pytest.raises(BadRequestError, match=r"talkstream\[tts\]"):
        await none.speech(TextScript(input="hello"), pad_audio=0)
    await strict.aclose()
    await lenient.aclose()
    await none.aclose()


def test_keyring_permissions() -> None:
    ring = KeyRing(["all:x", "some:y local_files"])
    assert ring.caller("Basic all:x")[1] == frozenset({"local_files", "session_timeout"})
    assert ring.caller("Basic some:y")[1] == frozenset({"local_files"})
    with pytest.raises(ValueError, match="unknown permissions"):
        KeyRing(["k:v fly"])
