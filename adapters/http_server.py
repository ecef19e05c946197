"""D-ID's ``/talks/streams`` API over HTTP, with aiohttp: the app factory and its middlewares.

Why it exists: any client written for D-ID's streams (its browser demo included) must work against
talkstream unchanged but for the base URL and key. This module is only the HTTP edge: it authenticates,
parses bodies into `engine.messages`, calls `engine.server.StreamService`, and writes D-ID's answers and
error bodies; every decision about streams is the service's.

* Auth: ``Authorization: Basic <key>`` with the key as is (``user:password``, as D-ID's demo sends it) or
  base64-encoded (standard Basic; a key with no colon may come as the user with an empty password, as
  ``curl -u KEY:`` sends it), or ``Bearer <key>``. Keys compare in constant time, as the bytes sent: any
  bytes may arrive, and what is not a key is a 401. A stream belongs to
  the key that made it; the owner recorded is a digest of the key, which is never logged. Keys may be
  limited to some permissions (`KeyRing`); using another is 403 ``PermissionError``. Each key's request
  rate and the server's are limited (`RequestLimits`): over either, 429 with ``Retry-After``.
* Errors: every `TalkstreamError` becomes ``{"kind", "description", "details"?}`` with its status and
  headers (``Retry-After`` on 429, ``WWW-Authenticate`` on 401); unknown routes and methods answer in the
  same shape; anything unexpected is logged and answered as 500 ``InternalServerError``. A body that does
  not arrive within ``body_timeout`` is a 408; a client gone mid-request is one log line, not an error.
* CORS for pages on other origins (D-ID's demo runs on its own little server), preflight included.
* One log line per request, with the stream id when there is one.

What it must never do: log a key, let an exception out as an HTML page, or hold stream state of its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from talkstream.engine.errors import (
    AuthorizationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestError,
    RequestTimeoutError,
    TalkstreamError,
    ValidationError,
)
from talkstream.engine.messages import (
    CreateStreamRequest,
    DeleteRequest,
    IceCandidateRequest,
    SdpRequest,
    TalkRequest,
)
from talkstream.engine.server import StreamService

__all__ = ["PERMISSIONS", "SERVICE", "KeyRing", "create_app"]

_log = logging.getLogger("talkstream.http")

SERVICE: web.AppKey[StreamService] = web.AppKey("service", StreamService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "openapi.yaml"
STATIC = Path(__file__).resolve().parent / "static"
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


#: What a key may do beyond the basics. A key given without a list may do all of it.
PERMISSIONS = frozenset({"local_files", "session_timeout"})


class KeyRing:
    """The API keys a server accepts, each with its permissions; lookups take the same time for any key.

    Entries are ``KEY`` (every permission) or ``KEY PERMISSION ...`` (only those), as in a keys file:
    ``local_files`` lets ``file://`` sources be used, ``session_timeout`` lets a stream choose its idle
    timeout (D-ID reserves that to permitted accounts too). Using one without it is 403 PermissionError.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._keys: list[tuple[bytes, frozenset[str]]] = []
        for entry in entries:
            key, *granted = entry.split()
            unknown = set(granted) - PERMISSIONS
            if unknown:
                raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")
            self._keys.append((key.encode(), frozenset(granted) if granted else PERMISSIONS))
        if not self._keys:
            raise ValueError("at least one API key is needed")

    def owner(self, authorization: str | None) -> str:
        """The owner id for an Authorization header, or raise 401."""
        return self.caller(authorization)[0]

    def caller(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        """(owner id, permissions) for an Authorization header, or raise 401."""
        match: tuple[bytes, frozenset[str]] | None = None
        for candidate in _presented_keys(authorization):
            for key, granted in self._keys:  # no early exit: the time does not tell which key matched
                if hmac.compare_digest(candidate, key):
                    match = (key, granted)
        if match is None:
            raise AuthorizationError()
        key, granted = match
        return "key_" + hashlib.sha256(key).hexdigest()[:16], granted


KEYS: web.AppKey[KeyRing] = web.AppKey("keys", KeyRing)


@attrs.define
class _Bucket:
    tokens: float
    at: float


@attrs.define
class RequestLimits:
    """Request rate per key and in all, as token buckets: `per_key` requests a second with bursts of
    `key_burst`, `total` a second with bursts of `total_burst`. Over either: 429 with ``Retry-After``.

    Only authenticated requests count (a request with a wrong key is 401 before any bucket is touched, so
    strangers cannot spend a key's allowance), and the buckets are keyed by the owner digest, never the key.
    A page connecting through D-ID's five steps makes about a dozen requests at once, and a service often
    holds one key for all its users: the defaults allow a dozen pages connecting in the same second.
    """

    per_key: float = 50.0
    key_burst: float = 150.0
    total: float = 1000.0
    total_burst: float = 2000.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = attrs.field(factory=dict, init=False)

    def check(self, owner: str) -> None:
        """Spend one request of `owner`'s and of the total allowance, or raise 429 and spend nothing."""
        now = self.clock()
        key = self._refill(owner, self.per_key, self.key_burst, now)
        total = self._refill("", self.total, self.total_burst, now)
        for bucket, rate, scope in ((key, self.per_key, "this key"), (total, self.total, "this server")):
            if bucket.tokens < 1.0:
                raise RateLimitedError(
                    f"too many requests for {scope}", retry_after=(1.0 - bucket.tokens) / rate
                )
        key.tokens -= 1.0
        total.tokens -= 1.0

    def _refill(self, name: str, rate: float, burst: float, now: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(tokens=burst, at=now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket


LIMITS: web.AppKey[RequestLimits] = web.AppKey("request_limits", RequestLimits)
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a whole request body (at most 1 MB) to arrive


def _caller(request: web.Request) -> tuple[str, frozenset[str]]:
    """(owner, permissions) of an authenticated request within its request rate; 401 or 429 if not."""
    owner, granted = request.app[KEYS].caller(request.headers.get("Authorization"))
    request.app[LIMITS].check(owner)
    return owner, granted


def _presented_keys(header: str | None) -> tuple[bytes, ...]:
    """The keys an Authorization header may carry, as bytes: none, one, or for ``key:`` in standard Basic
    both ``key:`` and ``key`` (``curl -u KEY:`` sends a colon-less key with an empty password).

    Any bytes may arrive: aiohttp hands undecodable header bytes over as lone surrogates, which are turned
    back into the bytes sent (so they simply match no key), and base64 that is not ASCII is not base64.
    """
    if not header:
        return ()
    try:
        raw = header.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no bytes decode to: it came from no client
        return ()
    scheme, _, value = raw.strip().partition(b" ")
    value = value.strip()
    if scheme.lower() == b"bearer" and value:
        return (value,)
    if scheme.lower() != b"basic" or not value:
        return ()
    if b":" in value:
        return (value,)  # D-ID's demo sends `Basic user:password` as is
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return (value,)  # a key without a colon, sent as is
    if b":" not in decoded:
        return (value,)
    user, _, password = decoded.partition(b":")
    return (decoded, user) if user and not password else (decoded,)


def _error_response(error: TalkstreamError) -> web.Response:
    return web.json_response(error.to_body(), status=error.status, headers=error.headers())


@web.middleware
async def _cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # already answered by _errors for API paths
            response = exc
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    if origin:
        response.headers["Vary"] = "Origin"
    response.headers.update(CORS_HEADERS)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    stream_id = request.match_info.get("id", "-")
    try:
        response = await handler(request)
    except TalkstreamError as exc:
        response = _error_response(exc)
        if isinstance(exc, RequestTimeoutError):
            response.force_close()  # the rest of that body is not worth waiting for
        if exc.status == 401 and request.headers.get("Sec-Fetch-Dest") == "empty":
            # A page's fetch(): a Basic challenge would make the browser hold the request and ask the
            # person for a password (headless: forever). Name the same scheme under another name.
            response.headers["WWW-Authenticate"] = 'X-Basic realm="talkstream"'
    except web.HTTPNotFound:
        response = _error_response(NotFoundError("no such route"))
    except web.HTTPMethodNotAllowed as exc:
        response = _error_response(NotFoundError(f"{request.method} is not allowed here"))
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    except web.HTTPRequestEntityTooLarge:
        response = _error_response(RequestError("request body too large"))
    except web.HTTPException:
        raise
    except ConnectionError as exc:
        if not _client_gone(request):
            _log.exception("%s %s failed", request.method, request.path)
            response = _error_response(InternalServerError())
        else:  # the client went away mid-request: nothing to answer, nothing wrong here
            _log.info(
                "%s %s %s -> client gone (%s, %.1f ms)",
                request.method,
                request.path,
                stream_id,
                exc,
                (time.perf_counter() - started) * 1000,
            )
            return _error_response(RequestError("the client closed the connection"))
    except Exception:
        _log.exception("%s %s failed", request.method, request.path)
        response = _error_response(InternalServerError())
    _log.info(
        "%s %s %s -> %d (%.1f ms)",
        request.method,
        request.path,
        stream_id,
        response.status,
        (time.perf_counter() - started) * 1000,
    )
    return response


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _body(request: web.Request) -> Any:
    """The request's JSON body ({} if none); 408 if it does not arrive within the app's body timeout."""
    if not request.can_read_body:
        return {}
    limit = request.app[BODY_TIMEOUT]
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeoutError(f"the request body did not arrive within {limit:g} s") from None
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError("body", "must be valid JSON") from exc


def _owner(request: web.Request) -> str:
    return _caller(request)[0]


async def create_stream(request: web.Request) -> web.Response:
    owner, granted = _caller(request)
    message = CreateStreamRequest.from_json(await _body(request))
    if message.source_url.lower().startswith("file:") and "local_files" not in granted:
        raise PermissionDeniedError("this key may not use local files as sources")
    if message.session_timeout is not None and "session_timeout" not in granted:
        raise PermissionDeniedError("this key may not choose a session_timeout")
    response = await request.app[SERVICE].create(owner, message)
    return web.json_response(response.to_json(), status=201)


async def post_sdp(request: web.Request) -> web.Response:
    owner = _owner(request)
    message = SdpRequest.from_json(await _body(request))
    response = await request.app[SERVICE].answer(owner, request.match_info["id"], message)
    return web.json_response(response.to_json())


async def post_ice(request: web.Request) -> web.Response:
    owner = _owner(request)
    message = IceCandidateRequest.from_json(await _body(request))
    response = await request.app[SERVICE].candidate(owner, request.match_info["id"], message)
    return web.json_response(response.to_json())


async def post_talk(request: web.Request) -> web.Response:
    owner = _owner(request)
    message = TalkRequest.from_json(await _body(request))
    response = await request.app[SERVICE].talk(owner, request.match_info["id"], message)
    return web.json_response(response.to_json())


async def delete_stream(request: web.Request) -> web.Response:
    owner = _owner(request)
    message = DeleteRequest.from_json(await _body(request))
    response = await request.app[SERVICE].delete(owner, request.match_info["id"], message)
    return web.json_response(response.to_json())


async def index(request: web.Request) -> web.FileResponse:
    """The demo page: plain HTML, CSS and a small module that use only the public API."""
    return web.FileResponse(STATIC / "index.html")


async def openapi(request: web.Request) -> web.Response:
    import yaml

    spec = yaml.safe_load(SPEC_PATH.read_text())
    return web.json_response(spec)


def create_app(
    service: StreamService,
    keys: KeyRing,
    *,
    limits: RequestLimits | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    extra_routes: Iterable[web.RouteDef] = (),
) -> web.Application:
    """The streams API as an aiohttp application (the service's lifetime is the caller's).

    `body_timeout`: seconds a request body may take to arrive in full (408 after that).
    """
    app = web.Application(middlewares=[_cors, _errors], client_max_size=1024 * 1024)
    app[SERVICE] = service
    app[KEYS] = keys
    app[LIMITS] = limits if limits is not None else RequestLimits()
    app[BODY_TIMEOUT] = body_timeout
    app.add_routes(
        [
            web.post("/talks/streams", create_stream),
            web.post("/talks/streams/{id}/sdp", post_sdp),
            web.post("/talks/streams/{id}/ice", post_ice),
            web.post("/talks/streams/{id}", post_talk),
            web.delete("/talks/streams/{id}", delete_stream),
            web.get("/openapi.json", openapi),
            web.get("/", index),
            web.static("/static", STATIC),
            *extra_routes,
        ]
    )
    return app
