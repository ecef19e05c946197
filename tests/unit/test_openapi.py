"""specs/openapi.yaml describes the API as served and agrees with D-ID's published schemas."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from talkstream.engine import messages as m
from talkstream.specs import OPENAPI

SPEC = yaml.safe_load(OPENAPI.read_text())
# The request fields of D-ID's published OpenAPI description of /talks/streams, by operation.
DID_REQUEST_FIELDS = {
    ("/talks/streams", "post"): {
        "compatibility_mode",
        "config",
        "face",
        "output_resolution",
        "session_timeout",
        "source_url",
        "stream_warmup",
    },
    ("/talks/streams/{id}/sdp", "post"): {"answer", "session_id"},
    ("/talks/streams/{id}", "post"): {
        "audio_optimization",
        "config",
        "driver_url",
        "metadata",
        "name",
        "script",
        "session_id",
        "user_data",
    },
    ("/talks/streams/{id}", "delete"): {"session_id"},
}


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def request_schema(spec_path: str, method: str) -> dict[str, Any]:
    operation = SPEC["paths"][spec_path][method]
    return resolve(operation["requestBody"]["content"]["application/json"]["schema"])  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "method"), sorted(DID_REQUEST_FIELDS))
def test_every_reference_request_field_is_described(path: str, method: str) -> None:
    theirs = DID_REQUEST_FIELDS[(path, method)]
    ours = request_schema(path, method)["properties"]
    assert theirs <= set(ours), theirs - set(ours)


def test_operations_and_statuses() -> None:
    ops = {(p, verb): op for p, item in SPEC["paths"].items() for verb, op in item.items()}
    operations = (
        ("", "post"),
        ("/{id}/sdp", "post"),
        ("/{id}/ice", "post"),
        ("/{id}", "post"),
        ("/{id}", "delete"),
    )
    streams = {(f"/{api}/streams{tail}", verb) for api in ("talks", "clips") for tail, verb in operations}
    talks = {("/talks", "post"), ("/talks", "get"), ("/talks/{id}", "get"), ("/talks/{id}", "delete")}
    talks |= {("/talks/{id}/result", "get")}
    presenters = {("/clips/presenters", "get"), ("/clips/presenters/{id}", "get")}
    operators = {("/healthz", "get"), ("/readyz", "get")}  # no key: no 401, and nothing that fails with 500
    assert set(ops) == streams | presenters | talks | operators
    assert "201" in ops[("/talks/streams", "post")]["responses"]
    assert "201" in ops[("/clips/streams", "post")]["responses"]
    assert "404" in ops[("/clips/streams", "post")]["responses"]  # an unknown presenter
    for key, op in ops.items():
        if key in operators:
            assert op["security"] == [], key
            continue
        assert {"401", "500"} <= set(op["responses"]), key
        takes_input = "requestBody" in op or any(p.get("in") == "query" for p in op.get("parameters", []))
        assert "400" in op["responses"] or not takes_input, key


def test_examples_from_the_spec_shapes_parse_as_messages() -> None:
    # The fields the spec requires are the ones the message models require.
    create = request_schema("/talks/streams", "post")
    assert create["required"] == ["source_url"]
    m.CreateStreamRequest.from_json({"source_url": "bundled:astronaut"})
    talk = request_schema("/talks/streams/{id}", "post")
    assert talk["required"] == ["script"]
    response = resolve(SPEC["components"]["schemas"]["CreateStreamResponse"])
    sample = m.CreateStreamResponse(  # as the service makes it: it always says fluent and interrupt_enabled
        id="strm_x",
        session_id="s",
        offer=m.SessionDescription(type="offer", sdp="v=0"),
        fluent=False,
        interrupt_enabled=True,
    ).to_json()
    assert set(response["required"]) <= set(sample)
    talk_response = resolve(SPEC["components"]["schemas"]["TalkResponse"])
    assert set(talk_response["required"]) <= set(
        m.TalkResponse(session_id="s", video_id="tlk_1", duration=1.0).to_json()
    )
