"""schemathesis against a live `talkstream serve`, from specs/openapi.yaml: no 5xx, every answer in the spec.

The server runs in its own process on 127.0.0.1 (real aiortc offers, real HTTP); schemathesis generates
requests from the spec, valid and invalid, one operation at a time and in sequences that follow the spec's
links (create, then sdp, ice, talk and delete on the stream it made). Every response must be a documented
status with a body and headers matching the spec, and none may be a 5xx. Answers that a correct request can
still get (404 for a made-up id, 415 for a source that is not an image, 409 before ICE connects) are in the
spec, so `positive_data_acceptance` (which wants a 2xx for any schema-valid request) is not asked for.
"""

from __future__ import annotations

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
from served import Served, serving

from talkstream.specs import OPENAPI

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Served]:
    """`talkstream serve` on a free port, with room for many streams and requests; its log must end clean."""
    log = tmp_path / "serve.log"
    extra = ("--max-streams-per-key", "1000", "--max-streams", "1000", "--requests-per-second", "100000")
    # --no-fetch: made-up URLs are refused before any name is looked up, so nothing leaves the machine
    with serving(*extra, "--no-fetch", log=log) as server:
        yield server
    assert server.process.returncode == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


schema = schemathesis.openapi.from_path(OPENAPI)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_the_spec(case: Any, live: Served) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Basic {live.key}"}
    case.call_and_validate(base_url=live.base, checks=CHECKS)


@pytest.mark.parametrize("api", ["talks", "clips"])
def test_sequences_along_the_links_answer_within_the_spec(live: Served, api: str) -> None:
    """Each API's create and the operations its links lead to, as sequences (one API at a time, so that
    each run follows all of its own links)."""

    class Workflow(schema.include(path_regex=f"^/{api}/").as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Basic {live.key}"}
            if isinstance(case.body, dict) and case.operation.label == "POST /clips/streams":
                case.body["presenter_id"] = "talkstream-astronaut"  # as for talks: a presenter that exists
                case.body.pop("driver_id", None)
                case.body.pop("session_timeout", None)
            if isinstance(case.body, dict) and case.operation.label == "POST /talks/streams":
                # Streams must exist for the links to lead anywhere: a made-up source_url is a 400 (the
                # per-operation test sends those). A stream asking to expire within microseconds is gone
                # or not by the next call, as the clock has it, and hypothesis needs the same answers for
                # the same sequence; the per-operation test covers session_timeout too.
                case.body["source_url"] = "bundled:astronaut"
                case.body.pop("session_timeout", None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live.base}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            seen.append((case.operation.label, response.status_code))
            case.validate_response(response, checks=CHECKS)

    seen: list[tuple[str, int]] = []
    Workflow.run(
        settings=settings(
            Workflow.TestCase.settings,
            max_examples=60,
            stateful_step_count=6,
            database=None,
        )
    )
    # The links were followed: the operations on a created stream found it (any answer but 404).
    reached = {label for label, status in seen if status != 404 and "/streams/{id}" in label}
    assert reached == {
        f"POST /{api}/streams/{{id}}/sdp",
        f"POST /{api}/streams/{{id}}/ice",
        f"POST /{api}/streams/{{id}}",
        f"DELETE /{api}/streams/{{id}}",
    }, sorted(set(seen))
