"""Messages under hypothesis: valid ones round-trip through JSON, junk only ever raises ValidationError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from talkstream.engine import messages as m
from talkstream.engine.errors import ValidationError

text = st.text(max_size=40)
nonblank = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
json_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | finite | text
free_json = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)

faces = st.builds(
    m.FaceBox,
    size=st.integers(0, 5000),
    top_left=st.tuples(st.floats(-8000, 8000, width=32), st.floats(-8000, 8000, width=32)),
)
stream_configs = st.builds(
    m.StreamConfig,
    stitch=st.none() | st.booleans(),
    motion_factor=st.none() | st.floats(0, 10, width=32),
    align_expand_factor=st.none() | st.floats(0, 10, width=32),
)
creates = st.builds(
    m.CreateStreamRequest,
    source_url=nonblank,
    driver_url=st.none() | nonblank,
    face=st.none() | faces,
    config=st.none() | stream_configs,
    compatibility_mode=st.none() | st.sampled_from(["on", "off", "auto"]),
    stream_warmup=st.none() | st.booleans(),
    session_timeout=st.none() | st.floats(0.5, 300, width=32),
    output_resolution=st.none() | st.floats(150, 1280, width=32),
)
descriptions = st.builds(m.SessionDescription, type=st.sampled_from(["offer", "answer"]), sdp=nonblank)
ice_servers = st.builds(
    m.IceServer,
    urls=nonblank | st.lists(nonblank, min_size=1, max_size=3).map(tuple),
    username=st.none() | text,
    credential=st.none() | text,
)
responses = st.builds(
    m.CreateStreamResponse,
    id=nonblank,
    session_id=nonblank,
    offer=st.builds(m.SessionDescription, type=st.just("offer"), sdp=nonblank),
    ice_servers=st.lists(ice_servers, max_size=3).map(tuple),
)
sdps = st.builds(
    m.SdpRequest,
    answer=st.builds(m.SessionDescription, type=st.just("answer"), sdp=nonblank),
    session_id=st.none() | text,
)
candidates = st.builds(
    m.IceCandidateRequest,
    candidate=st.none() | nonblank,
    sdp_mid=st.none() | st.text(max_size=10),
    sdp_m_line_index=st.none() | st.integers(0, 1024),
    session_id=st.none() | text,
).filter(lambda c: c.candidate is not None or (c.sdp_mid is None and c.sdp_m_line_index is None))
providers = st.builds(
    m.Provider,
    type=st.sampled_from(["microsoft", "azure-openai", "amazon"]),
    voice_id=nonblank,
    voice_config=st.none() | st.dictionaries(text, json_leaf, max_size=3),
    language=st.none() | text,
    model_id=st.none() | text,
)
scripts = st.builds(
    m.TextScript, input=st.text(min_size=3, max_size=200), ssml=st.booleans(), provider=st.none() | providers
) | st.builds(m.AudioScript, audio_url=nonblank)
talk_configs = st.builds(
    m.TalkConfig,
    stitch=st.none() | st.booleans(),
    fluent=st.none() | st.booleans(),
    pad_audio=st.none() | st.floats(0, 60, width=32),
    result_format=st.none() | st.sampled_from(["mp4", "mov"]),
)
talks = st.builds(
    m.TalkRequest,
    script=scripts,
    config=st.none() | talk_configs,
    driver_url=st.none() | nonblank,
    user_data=st.none() | nonblank.filter(lambda s: len(s) <= 1000),
    name=st.none() | text,
    audio_optimization=st.none() | st.floats(0, 10, width=32),
    metadata=free_json,
    session_id=st.none() | text,
)
talk_responses = st.builds(
    m.TalkResponse,
    session_id=st.none() | text,
    video_id=st.none() | text,
    duration=st.none() | st.floats(0, 1e6),
)
messages = st.one_of(
    creates,
    responses,
    sdps,
    candidates,
    talks,
    talk_responses,
    st.builds(m.DeleteRequest, session_id=st.none() | text),
    st.builds(m.StatusResponse, status=text),
    st.builds(m.ErrorBody, kind=text, description=text, details=free_json),
)


def normalise(value: Any) -> Any:
    """JSON has no tuples: compare through a JSON round trip."""
    return json.loads(json.dumps(value))


@settings(max_examples=200)
@given(messages)
def test_round_trip(message: Any) -> None:
    model = type(message)
    body = message.to_json()
    assert model.from_json(body) == message
    assert model.from_json(json.loads(json.dumps(body))).to_json() == normalise(body)


MODELS = [
    m.CreateStreamRequest,
    m.CreateStreamResponse,
    m.SdpRequest,
    m.IceCandidateRequest,
    m.TalkRequest,
    m.TalkResponse,
    m.DeleteRequest,
    m.StatusResponse,
    m.ErrorBody,
]
junk_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
    | st.just("x" * 50_000)
)
junk = st.recursive(
    junk_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=12)
            | st.sampled_from(["script", "type", "input", "answer", "sdp", "face", "config", "provider"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200)
@given(model=st.sampled_from(MODELS), data=junk)
def test_junk_only_ever_raises_validation_error(model: Any, data: Any) -> None:
    try:
        model.from_json(data)
    except ValidationError as exc:
        assert exc.path is not None and exc.path.startswith("body")


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def test_very_deep_metadata_is_refused_cleanly() -> None:
    body = {"script": {"type": "text", "input": "hello"}, "metadata": deep(5000)}
    try:
        m.TalkRequest.from_json(body)
    except ValidationError as exc:
        assert exc.path is not None and exc.path.startswith("body.metadata")
    else:
        raise AssertionError("5000 levels of nesting were accepted")


@settings(max_examples=200)
@given(message=st.one_of(creates, talks, sdps), data=st.data())
def test_one_field_replaced_by_junk(message: Any, data: st.DataObject) -> None:
    body = normalise(message.to_json())
    # Walk to a random object in the body and replace one of its fields with junk.
    node = body
    while True:
        keys = [k for k, v in node.items() if isinstance(v, dict)]
        if not keys or data.draw(st.booleans()):
            break
        node = node[data.draw(st.sampled_from(keys))]
    if not node:
        return
    key = data.draw(st.sampled_from(sorted(node)))
    node[key] = data.draw(junk)
    try:
        type(message).from_json(body)
    except ValidationError as exc:
        assert exc.path is not None and exc.path.startswith("body")
