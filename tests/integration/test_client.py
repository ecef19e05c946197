"""talkstream's own client against its server over 127.0.0.1: the five steps, talks, errors, the MP4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from talkstream.adapters.cli import local_photo, main
from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.engine.client import StreamClient
from talkstream.engine.errors import ConnectionFailedError, NotFoundError, SessionError, ValidationError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import CloseReason, Input, State
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

from .conftest import KEY

PORTRAIT = Path(__file__).resolve().parents[2] / "avatar" / "assets" / "astronaut.png"

pytestmark = pytest.mark.timeout(90)


def client_for(server: TestServer, key: str = KEY) -> StreamClient:
    base = str(server.make_url("")).rstrip("/")
    return StreamClient(AiohttpAdapter(base, key), AiortcClientTransport(), retry=RetryPolicy.none())


async def test_client_drives_the_protocol_and_receives_the_talk(server: TestServer, tmp_path: Path) -> None:
    sink = MediaSink(keep=True)
    async with client_for(server) as client:
        stream = await client.create("bundled:astronaut", sink=sink, output_resolution=256)
        await stream.connected(within=20)
        states = [stream.state]
        first = await stream.talk(text="One, two.")
        second = await stream.talk(text="Three, four.")
        states.append(stream.state)
        assert states == [State.CONNECTED, State.TALKING]
        await first.done(within=20)
        await second.done(within=20)
        assert stream.state is State.CONNECTED
        inputs = [e.input for e in stream.session.history]
        assert inputs[:3] == [Input.OFFER_RECEIVED, Input.ANSWER_SENT, Input.CANDIDATE_SENT]
        assert inputs.count(Input.TALK_STARTED) == 2 and inputs[-1] is Input.LAST_TALK_FINISHED
        assert [m.split(":")[0] for _, m in stream.messages] == ["stream/started", "stream/done"] * 2
        assert sink.size == (256, 256) and sink.frames > 25 and sink.samples > 48000
        assert await stream.close() is CloseReason.DELETED
    summary = sink.write_mp4(tmp_path / "talk.mp4")
    assert summary["frames"] == sink.frames


async def test_server_errors_arrive_as_typed_errors(server: TestServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(ValidationError) as caught:
            await client.create("bundled:astronaut", output_resolution=5)
        assert caught.value.path == "body.output_resolution"
        stream = await client.create("bundled:astronaut")
        await stream.connected(within=20)
        real = stream.session.session_id
        stream.session.session_id = "forged"
        with pytest.raises(SessionError):
            await stream.talk(text="hello there")
        stream.session.session_id = real
    async with client_for(server, "other-user:other-secret") as other:
        with pytest.raises(NotFoundError):
            await other._call(
                "POST", f"/talks/streams/{stream.stream_id}/ice", {"session_id": real}, retry=False
            )


async def test_client_sees_expiry_as_closed_expired(server: TestServer) -> None:
    async with client_for(server) as client:
        stream = await client.create("bundled:astronaut", session_timeout=1)
        await stream.connected(within=20)
        events = stream.events()
        async for event in events:
            if getattr(event, "reason", None) is not None:
                break
        assert stream.session.close_reason is CloseReason.EXPIRED
        with pytest.raises(ConnectionFailedError):
            await stream.connected()


def test_talk_command_takes_a_photo_on_this_machine(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--source ./photo.png` with the embedded server: it may read that photo's folder, and nothing else."""
    (tmp_path / "me").mkdir()
    portrait = cv2.imread(str(PORTRAIT))
    assert portrait is not None
    cv2.imwrite(str(tmp_path / "me" / "photo.png"), cv2.flip(portrait, 1))  # a photo of its own
    monkeypatch.chdir(tmp_path)
    code = main(["talk", "--text", "Mine.", "--source", "./me/photo.png", "--out", "mine.mp4"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    with av.open(str(tmp_path / "mine.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="gray")
    # The mirrored photo, not the bundled one: its bright side is the other side.
    left, right = first[:, :200].mean(), first[:, -200:].mean()
    bundled = cv2.cvtColor(portrait, cv2.COLOR_BGR2GRAY)
    bundled_left, bundled_right = bundled[:, :200].mean(), bundled[:, -200:].mean()
    assert abs(bundled_left - bundled_right) > 10  # lopsided enough to tell the mirror image
    assert (left > right) == (bundled_right > bundled_left), (left, right, bundled_left, bundled_right)
    assert main(["talk", "--text", "x", "--source", "./me/nothing.png"]) == 2
    assert "no such photo" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "local"),
    [
        ("bundled:astronaut", None),
        ("https://example.invalid/me.jpg", None),
        ("me.jpg", "me.jpg"),
        ("./a/me.jpg", "a/me.jpg"),
        ("file:///tmp/x%20y.png", "/tmp/x y.png"),
    ],
)
def test_which_sources_are_photos_on_this_machine(source: str, local: str | None, tmp_path: Path) -> None:
    found = local_photo(source)
    assert found == (None if local is None else (Path.cwd() / local).resolve())


def test_talk_command_writes_an_mp4_with_a_moving_mouth_and_speech(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "talk.mp4"
    assert main(["talk", "--text", "Hello, this is a test of the talk command.", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and str(out) in printed
    with av.open(str(out)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert len(frames) > 40 and frames[0].shape == (512, 512)
    mouth = np.array(
        [np.abs(f[136:166, 196:252].astype(int) - frames[0][136:166, 196:252]).mean() for f in frames]
    )
    assert mouth.max() > 8, "the mouth never moved"
    assert np.abs(audio).max() > 0.05, "the audio is silent"


async def test_the_client_drives_a_clips_stream_of_a_listed_presenter(server: TestServer) -> None:
    sink = MediaSink()
    async with client_for(server) as client:
        presenters = await client.presenters()
        assert presenters and presenters[0].presenter_id == "talkstream-astronaut"
        stream = await client.create_clip(presenters[0].presenter_id, driver_id="subtle", sink=sink)
        assert stream.api == "clips"
        await stream.connected(within=20)
        talk = await stream.talk(text="Hello from a clip.", background="#FFFFFF")
        await talk.done(within=20)
        assert [m.split(":")[0] for _, m in stream.messages] == ["stream/started", "stream/done"]
        assert sink.frames > 10
        assert await stream.close() is CloseReason.DELETED
        with pytest.raises(NotFoundError):
            await client.create_clip("nobody-here")
        clip = await client.create_clip(presenters[0].presenter_id)
        await clip.connected(within=20)
        with pytest.raises(ValidationError) as caught:
            await clip.talk(text="Hi.", background="white")
        assert caught.value.path == "body.background.color"
