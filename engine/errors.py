"""One error hierarchy, each class tied to one D-ID error kind and HTTP status:

    TalkstreamError                      kind / status: the protocol answer for this error
    ├── RequestError                     the caller's request is at fault (4xx); never retried
    │   ├── ValidationError              400 ValidationError        details name the field path
    │   ├── SessionError                 400 SessionError           missing or wrong session_id
    │   ├── BadRequestError              400 BadRequestError        e.g. invalid source url
    │   ├── AuthorizationError           401 AuthorizationError
    │   ├── PermissionDeniedError        403 PermissionError
    │   ├── NotFoundError                404 NotFound               unknown stream, or another key's
    │   ├── RequestTimeoutError          408 RequestTimeoutError    the body did not arrive in time
    │   ├── NotReadyError                409 NotReadyError          names the session's state
    │   │   └── IllegalTransition        409 NotReadyError          (state, input) not in the table
    │   ├── UnsupportedMediaTypeError    415 UnsupportedMimeTypeError
    │   └── RateLimitedError             429 TooManyRequestsError   carries Retry-After
    ├── ServerError                      5xx: the server is at fault
    │   ├── InternalServerError          500 InternalServerError    "Stream Error"
    │   ├── BadGatewayError              502 BadGatewayError
    │   ├── ServiceUnavailableError      503 ServiceUnavailableError
    │   └── GatewayTimeoutError          504 GatewayTimeoutError
    └── TransportError                   no answer came back (client side)
        ├── ConnectionFailedError        could not connect, or the connection dropped
        └── TimeoutError_                an attempt or a deadline ran out
            └── DeadlineExceededError    a retry policy's overall deadline ran out

What it must never do: import anything outside the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .states import Input, State

__all__ = [
    "AuthorizationError",
    "BadGatewayError",
    "BadRequestError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "GatewayTimeoutError",
    "IllegalTransition",
    "InternalServerError",
    "NotFoundError",
    "NotReadyError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionError",
    "TalkstreamError",
    "TimeoutError_",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "error_from_response",
]


class TalkstreamError(Exception):
    """Base of every talkstream error.

    ``kind`` and ``status`` are the protocol's answer for this error; ``description`` is the human text of
    D-ID's error body and ``details`` its optional structured part.
    """

    # Class attributes give each class its answer; an error received from a server with a kind or status
    # talkstream has no class for keeps them on the instance.
    kind: str = "InternalServerError"
    status: int = 500
    default_description: ClassVar[str] = "Stream Error"

    def __init__(self, description: str | None = None, *, details: Any = None) -> None:
        self.description = description if description is not None else self.default_description
        self.details = details
        super().__init__(self.description)

    def to_body(self) -> dict[str, Any]:
        """D-ID's error body: ``{"kind", "description", "details"?}``."""
        body: dict[str, Any] = {"kind": self.kind, "description": self.description}
        if self.details is not None:
            body["details"] = self.details
        return body

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers this error needs in a response (e.g. ``Retry-After``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, details={self.details!r})"


class RequestError(TalkstreamError):
    """The request was at fault; sending it again unchanged fails again."""

    kind = "BadRequestError"
    status = 400
    default_description = "bad request"


class ValidationError(RequestError):
    """A body failed validation. ``details`` maps field paths (``body.script.input``) to what is wrong."""

    kind = "ValidationError"
    status = 400
    default_description = "validation failed"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__("validation failed", details={path: problem})

    @classmethod
    def from_details(cls, description: str | None, details: Any) -> ValidationError:
        """A validation error as a server reported it (its details may name several fields)."""
        err = cls.__new__(cls)
        TalkstreamError.__init__(err, description, details=details)
        return err

    @property
    def path(self) -> str | None:
        """The first field path named in ``details``."""
        if isinstance(self.details, Mapping) and self.details:
            return str(next(iter(self.details)))
        return None

    @property
    def problem(self) -> str | None:
        if isinstance(self.details, Mapping) and self.details:
            return str(next(iter(self.details.values())))
        return None


class SessionError(RequestError):
    kind = "SessionError"
    status = 400
    default_description = "missing or invalid session_id"


class BadRequestError(RequestError):
    kind = "BadRequestError"
    status = 400
    default_description = "bad request"


class AuthorizationError(RequestError):
    kind = "AuthorizationError"
    status = 401
    default_description = "user unauthenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="talkstream"'}


class PermissionDeniedError(RequestError):
    kind = "PermissionError"
    status = 403
    default_description = "permission denied"


class NotFoundError(RequestError):
    kind = "NotFound"
    status = 404
    default_description = "not found"


class RequestTimeoutError(RequestError):
    """The request's body did not arrive within the server's time limit (408)."""

    kind = "RequestTimeoutError"
    status = 408
    default_description = "the request did not arrive in time"


class NotReadyError(RequestError):
    kind = "NotReadyError"
    status = 409
    default_description = "stream is not ready"


class IllegalTransition(NotReadyError):
    """An input the transition table does not allow in the session's state; the session is unchanged."""

    def __init__(self, state: State, input: Input, why: str | None = None) -> None:
        self.state = state
        self.input = input
        text = f"{input.value} is not allowed in state {state.value}"
        if why:
            text = f"{text}: {why}"
        # Build the base directly: TalkstreamError's signature takes a description, not a state.
        TalkstreamError.__init__(self, text, details={"state": state.value, "input": input.value})


class UnsupportedMediaTypeError(RequestError):
    kind = "UnsupportedMimeTypeError"
    status = 415
    default_description = "unsupported media type"


class _RetryAfter(TalkstreamError):
    """An error that may say when trying again may work: ``retry_after`` seconds, sent as ``Retry-After``."""

    def __init__(
        self, description: str | None = None, *, retry_after: float | None = None, details: Any = None
    ) -> None:
        super().__init__(description, details=details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Retry-After takes whole seconds; round up so a client never comes back too early.
        seconds = int(self.retry_after) + (self.retry_after % 1 > 0)
        return {"Retry-After": str(max(seconds, 0))}


class RateLimitedError(_RetryAfter, RequestError):
    """Over a limit (429)."""

    kind = "TooManyRequestsError"
    status = 429
    default_description = "too many requests"


class ServerError(TalkstreamError):
    kind = "InternalServerError"
    status = 500
    default_description = "Stream Error"


class InternalServerError(ServerError):
    pass


class BadGatewayError(ServerError):
    kind = "BadGatewayError"
    status = 502
    default_description = "bad gateway"


class ServiceUnavailableError(_RetryAfter, ServerError):
    kind = "ServiceUnavailableError"
    status = 503
    default_description = "service unavailable"


class GatewayTimeoutError(ServerError):
    kind = "GatewayTimeoutError"
    status = 504
    default_description = "gateway timeout"


class TransportError(TalkstreamError):
    """No protocol answer came back. A server that must report one answers 502."""

    kind = "BadGatewayError"
    status = 502
    default_description = "transport error"


class ConnectionFailedError(TransportError):
    default_description = "connection failed"


class TimeoutError_(TransportError):  # the trailing _ keeps the builtin TimeoutError usable
    kind = "GatewayTimeoutError"
    status = 504
    default_description = "timed out"


class DeadlineExceededError(TimeoutError_):
    default_description = "deadline exceeded"


_BY_KIND: Mapping[str, type[TalkstreamError]] = {
    cls.kind: cls
    for cls in (
        ValidationError,
        SessionError,
        BadRequestError,
        AuthorizationError,
        PermissionDeniedError,
        NotFoundError,
        RequestTimeoutError,
        NotReadyError,
        UnsupportedMediaTypeError,
        RateLimitedError,
        InternalServerError,
        BadGatewayError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}
_BY_STATUS: Mapping[int, type[TalkstreamError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthorizationError,
        PermissionDeniedError,
        NotFoundError,
        RequestTimeoutError,
        NotReadyError,
        UnsupportedMediaTypeError,
        InternalServerError,
        BadGatewayError,
        GatewayTimeoutError,
    )
}


def error_from_response(status: int, body: Any, *, retry_after: float | None = None) -> TalkstreamError:
    """Turn a server's error answer (status and parsed JSON body) into a typed error.

    The kind in the body picks the class when its status agrees; otherwise the status does. A kind or
    status talkstream has no class for keeps its name and number on a plain ``RequestError`` (4xx) or
    ``ServerError`` (5xx). A body that is not D-ID's error shape is kept whole in ``details``.
    """
    kind: str | None = None
    description: str | None = None
    details: Any = None
    if isinstance(body, Mapping):
        raw_kind, raw_desc = body.get("kind"), body.get("description")
        kind = raw_kind if isinstance(raw_kind, str) else None
        description = raw_desc if isinstance(raw_desc, str) else None
        details = body.get("details")
    elif body is not None:
        details = body

    err: TalkstreamError
    if status == 429:
        err = RateLimitedError(description, retry_after=retry_after, details=details)
    elif status == 503:
        err = ServiceUnavailableError(description, retry_after=retry_after, details=details)
    elif kind == ValidationError.kind and status == ValidationError.status:
        err = ValidationError.from_details(description, details)
    else:
        by_kind = _BY_KIND.get(kind) if kind is not None else None
        cls = by_kind if by_kind is not None and by_kind.status == status else _BY_STATUS.get(status)
        if cls is None or cls is ValidationError:
            cls = RequestError if 400 <= status < 500 else ServerError
        err = cls(description, details=details)
    if kind is not None and kind != err.kind:
        err.kind = kind
    err.status = status
    return err
