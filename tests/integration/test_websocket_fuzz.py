"""hypothesis against a live `talkstream serve`'s WebSocket API: messages valid, nearly valid and not at all,
in sequences on one socket (creating streams and addressing them, by id and by session id). Every message
gets exactly one answer, in order, within specs/websocket.schema.json; none is a 5xx; the socket stays open;
the server's log ends without a traceback."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from served import Served, serving

from talkstream.specs import WEBSOCKET_SCHEMA

pytestmark = pytest.mark.timeout(600)

ANSWERS = {**json.loads(WEBSOCKET_SCHEMA.read_text()), "$ref": "#/$defs/server_message"}
TYPES = ["init-stream", "sdp", "ice", "stream-text", "stream-audio", "delete-stream"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("ws") / "serve.log"
    extra = ("--max-streams-per-key", "1000", "--max-streams", "1000", "--requests-per-second", "100000")
    with serving(*extra, "--no-fetch", log=log) as server:
        yield server
    assert server.process.returncode == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# A stream reference: the one made on this socket (by the runner, "@id"/"@session"), another, or none.
refs = st.sampled_from(["@id", "@session", "strm_nope", "", None])
scripts_text = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "text", "audio"]), "input": st.text(max_size=60) | json_values},
    optional={
        "ssml": st.booleans(),
        "provider": st.fixed_dictionaries({"type": st.sampled_from(["microsoft", "x"])}),
    },
)
scripts_audio = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["audio", "audio", "text"]),
        "input": st.lists(st.integers(-3, 300), max_size=400)
        | st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode())
        | st.text(max_size=20),
    },
    optional={"sample_rate": st.sampled_from([16000, 8000, 48000, 4000, 100000])},
)
payloads = {
    "init-stream": st.one_of(
        st.fixed_dictionaries(
            {"source_url": st.just("bundled:astronaut"), "output_resolution": st.just(160)},
            optional={"fluent": st.booleans(), "stream_warmup": st.booleans()},
        ),
        st.fixed_dictionaries(
            {
                "presenter_id": st.sampled_from(["talkstream-astronaut", "nobody"]),
                "presenter_type": st.just("clip"),
            }
        ),
        st.dictionaries(
            st.sampled_from(["source_url", "presenter_id", "face", "config"]), json_values, max_size=3
        ),
    ),
    "sdp": st.fixed_dictionaries(
        {
            "answer": st.fixed_dictionaries(
                {"type": st.sampled_from(["answer", "offer"]), "sdp": st.text(max_size=80)}
            )
        },
        optional={"stream_id": refs, "session_id": refs},
    ),
    "ice": st.fixed_dictionaries(
        {},
        optional={
            "candidate": st.none() | st.text(max_size=80),
            "sdpMid": st.none() | st.text(max_size=3),
            "sdpMLineIndex": st.none() | st.integers(-2, 5),
            "stream_id": refs,
            "session_id": refs,
        },
    ),
    "stream-text": st.fixed_dictionaries(
        {"script": scripts_text},
        optional={"index": st.integers(-1, 6) | st.none(), "stream_id": refs, "session_id": refs},
    ),
    "stream-audio": st.fixed_dictionaries(
        {"script": scripts_audio},
        optional={"index": st.integers(-1, 6) | st.none(), "stream_id": refs, "session_id": refs},
    ),
    "delete-stream": st.fixed_dictionaries({}, optional={"stream_id": refs, "session_id": refs}),
}
messages = st.one_of(
    st.sampled_from(TYPES).flatmap(
        lambda t: payloads[t].map(lambda p: json.dumps({"type": t, "payload": p}))
    ),
    st.builds(lambda t, p: json.dumps({"type": t, "payload": p}), st.text(max_size=12), json_values),
    json_values.map(json.dumps),
    st.text(max_size=40),
)


async def converse(live: Served, sent: list[str]) -> list[dict[str, Any]]:
    url = live.base.replace("http", "ws") + "/ws"
    answers: list[dict[str, Any]] = []
    made: dict[str, str] = {}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, params={"authorization": f"Basic {live.key}"}) as ws,
    ):
        for text in sent:
            for name, value in (("@id", next(iter(made), "")), ("@session", next(iter(made.values()), ""))):
                text = text.replace(f'"{name}"', json.dumps(value))
            await ws.send_str(text)
            reply = await ws.receive(timeout=30)
            assert reply.type == aiohttp.WSMsgType.TEXT, (text, reply)
            answer = json.loads(reply.data)
            if answer.get("messageType") == "error" and "status" not in answer:
                reply = await ws.receive(timeout=30)  # an error about a talk playing; the answer follows
                answer = json.loads(reply.data)
            answers.append(answer)
            if answer.get("messageType") == "init-stream":
                made[answer["id"]] = answer["session_id"]
        for stream_id, session_id in made.items():
            await ws.send_str(
                json.dumps(
                    {"type": "delete-stream", "payload": {"stream_id": stream_id, "session_id": session_id}}
                )
            )
            await ws.receive(timeout=30)
        assert not ws.closed
    return answers


@given(sent=st.lists(messages, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_message_gets_one_answer_in_the_spec_and_never_a_5xx(live: Served, sent: list[str]) -> None:
    answers = asyncio.run(converse(live, sent))
    assert len(answers) == len(sent)
    for text, answer in zip(sent, answers, strict=True):
        jsonschema.validate(answer, ANSWERS)
        if answer["messageType"] == "error":
            assert answer["status"] < 500, (text, answer)
