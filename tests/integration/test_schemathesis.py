"""schemathesis against a live `talkstream serve`, from specs/openapi.yaml: no 5xx, every answer in the spec.

The server runs in its own process on 127.0.0.1 (real aiortc offers, real HTTP); schemathesis generates
requests from the spec, valid and invalid, one operation at a time and in sequences that follow the spec's
links (create, then sdp, ice, talk and delete on the stream it made). Every response must be a documented
status with a body and headers matching the spec, and none may be a 5xx. Answers that a correct request can
still get (404 for a made-up id, 415 for a source that is not an image, 409 before ICE connects) are in the
spec, so `positive_data_acceptance` (which wants a 2xx for any schema-valid request) is not asked for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "openapi.yaml"
KEY = "fuzz-user:fuzz-secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live() -> Iterator[str]:
    """`talkstream serve` on a free port, with room for many streams and requests."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "talkstream.adapters.cli",
        "serve",
        "--port",
        str(port),
        "--max-streams-per-key",
        "1000",
        "--max-streams",
        "1000",
        "--requests-per-second",
        "100000",
        "--no-fetch",  # made-up URLs are refused before any name is looked up: nothing leaves the machine
    ]
    env = {**os.environ, "TALKSTREAM_API_KEYS": KEY}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
        assert server.returncode == 0, errors.decode()[-2000:]
        assert b"Traceback" not in errors, errors.decode()[-4000:]


schema = schemathesis.openapi.from_path(SPEC)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_the_spec(case: Any, live: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Basic {KEY}"}
    case.call_and_validate(base_url=live, checks=CHECKS)


def test_sequences_along_the_links_answer_within_the_spec(live: str) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Basic {KEY}"}
            if isinstance(case.body, dict) and case.operation.label == "POST /talks/streams":
                # Streams must exist for the links to lead anywhere: a made-up source_url is a 400 (the
                # per-operation test sends those). A stream asking to expire within microseconds is gone
                # or not by the next call, as the clock has it, and hypothesis needs the same answers for
                # the same sequence; the per-operation test covers session_timeout too.
                case.body["source_url"] = "bundled:astronaut"
                case.body.pop("session_timeout", None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            seen.append((case.operation.label, response.status_code))
            case.validate_response(response, checks=CHECKS)

    seen: list[tuple[str, int]] = []
    Workflow.run(
        settings=settings(
            Workflow.TestCase.settings,
            max_examples=40,
            stateful_step_count=6,
            database=None,
        )
    )
    # The links were followed: the operations on a created stream found it (any answer but 404).
    reached = {label for label, status in seen if status != 404 and "{id}" in label}
    assert reached == {
        "POST /talks/streams/{id}/sdp",
        "POST /talks/streams/{id}/ice",
        "POST /talks/streams/{id}",
        "DELETE /talks/streams/{id}",
    }, sorted(set(seen))
