"""The error hierarchy: one kind and status each; server answers turned back into typed errors."""

from __future__ import annotations

import pytest

from talkstream.engine import errors as e
from talkstream.engine.states import Input, State


def test_bodies_and_statuses() -> None:
    assert e.SessionError().to_body() == {
        "kind": "SessionError",
        "description": "missing or invalid session_id",
    }
    assert e.AuthorizationError().to_body() == {
        "kind": "AuthorizationError",
        "description": "user unauthenticated",
    }
    assert e.AuthorizationError().headers()["WWW-Authenticate"].startswith("Basic")
    assert e.InternalServerError().to_body() == {"kind": "InternalServerError", "description": "Stream Error"}
    v = e.ValidationError("body.script.input", "must be at least 3 characters")
    assert v.to_body() == {
        "kind": "ValidationError",
        "description": "validation failed",
        "details": {"body.script.input": "must be at least 3 characters"},
    }
    assert (v.path, v.problem, v.status) == ("body.script.input", "must be at least 3 characters", 400)
    assert e.NotFoundError().kind == "NotFound" and e.NotFoundError.status == 404
    assert e.PermissionDeniedError.kind == "PermissionError"
    assert e.UnsupportedMediaTypeError.kind == "UnsupportedMimeTypeError"


def test_illegal_transition_is_a_not_ready_error() -> None:
    err = e.IllegalTransition(State.ICE, Input.TALK_REQUESTED)
    assert isinstance(err, e.NotReadyError) and err.status == 409
    assert err.description == "talk_requested is not allowed in state ice"


@pytest.mark.parametrize(("seconds", "header"), [(1, "1"), (1.2, "2"), (0, "0"), (30.0, "30")])
def test_retry_after_rounds_up(seconds: float, header: str) -> None:
    assert e.RateLimitedError(retry_after=seconds).headers() == {"Retry-After": header}
    assert e.RateLimitedError().headers() == {}
    assert e.ServiceUnavailableError(retry_after=seconds).headers() == {"Retry-After": header}


def test_every_error_has_one_kind_and_status() -> None:
    def walk(cls: type[e.TalkstreamError]) -> list[type[e.TalkstreamError]]:
        return [cls, *[c for sub in cls.__subclasses__() for c in walk(sub)]]

    for cls in walk(e.TalkstreamError):
        assert isinstance(cls.kind, str) and cls.kind
        assert 400 <= cls.status < 600
        if issubclass(cls, e.RequestError):
            assert 400 <= cls.status < 500
        if issubclass(cls, e.ServerError | e.TransportError):
            assert cls.status >= 500


@pytest.mark.parametrize(
    ("status", "body", "cls", "kind"),
    [
        (400, {"kind": "SessionError", "description": "missing or invalid session_id"}, e.SessionError, None),
        (
            401,
            {"kind": "AuthorizationError", "description": "user unauthenticated"},
            e.AuthorizationError,
            None,
        ),
        (404, {"kind": "NotFound", "description": "x"}, e.NotFoundError, None),
        (409, {"kind": "NotReadyError", "description": "x"}, e.NotReadyError, None),
        (500, {"kind": "InternalServerError", "description": "Stream Error"}, e.InternalServerError, None),
        (402, {"kind": "InsufficientCreditsError", "description": "no credits"}, e.RequestError, None),
        (404, {"kind": "UnknownThing", "description": "x"}, e.NotFoundError, "UnknownThing"),
        (502, "<html>bad gateway</html>", e.BadGatewayError, None),
        (504, None, e.GatewayTimeoutError, None),
        (599, [1, 2], e.ServerError, None),
    ],
)
def test_error_from_response(
    status: int, body: object, cls: type[e.TalkstreamError], kind: str | None
) -> None:
    err = e.error_from_response(status, body)
    assert type(err) is cls
    assert err.status == status
    if isinstance(body, dict):
        assert err.kind == body["kind"]
        assert err.description == body["description"]
    else:
        assert err.details == body
    if kind:
        assert err.kind == kind


def test_error_from_response_keeps_validation_details_and_retry_after() -> None:
    err = e.error_from_response(
        400,
        {
            "kind": "ValidationError",
            "description": "validation failed",
            "details": {"body.script": "required"},
        },
    )
    assert isinstance(err, e.ValidationError) and err.path == "body.script" and err.problem == "required"
    limited = e.error_from_response(
        429, {"kind": "TooManyRequests", "description": "slow down"}, retry_after=3
    )
    assert (
        isinstance(limited, e.RateLimitedError)
        and limited.retry_after == 3
        and limited.kind == "TooManyRequests"
    )
    unavailable = e.error_from_response(503, None, retry_after=1)
    assert isinstance(unavailable, e.ServiceUnavailableError) and unavailable.retry_after == 1
