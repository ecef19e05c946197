"""D-ID's streams API as an aiohttp app: routes (``/talks/streams``, ``/clips/streams`` and its presenters),
body parsing, D-ID's error shape, CORS, one log line each.

Every decision about streams is `engine.service.StreamService`'s; this is only the HTTP edge.
What it must never do: log a key, answer with an HTML page, or hold stream state of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web

from talkstream.engine.errors import (
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RequestError,
    RequestTimeoutError,
    TalkstreamError,
    ValidationError,
)
from talkstream.engine.messages import (
    CreateClipStreamRequest,
    CreateStreamRequest,
    CreateStreamResponse,
    CreateTalkRequest,
    DeleteRequest,
    IceCandidateRequest,
    Presenter,
    PresentersResponse,
    SdpRequest,
    TalkRequest,
)
from talkstream.engine.service import StreamKind, StreamService
from talkstream.engine.talks import TalkJobs
from talkstream.specs import OPENAPI

from .auth import Gate, KeyRing, LocalGate, RequestLimits
from .metrics import METRICS, Metrics, metrics_page

__all__ = ["DEFAULT_BODY_TIMEOUT", "SERVICE", "Presenters", "create_app"]

_log = logging.getLogger("talkstream.http")

SERVICE: web.AppKey[StreamService] = web.AppKey("service", StreamService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC = Path(__file__).resolve().parent / "static"
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
    # a page may read how long to wait after a 429 or 503, and which worker of a cluster answered
    "Access-Control-Expose-Headers": "Retry-After, X-Talkstream-Worker",
}


GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)


class Presenters(Protocol):
    """The presenters ``/clips/streams`` may ask for (`avatar.presenters.PresenterBook`)."""

    def all(self) -> tuple[Presenter, ...]: ...

    def get(self, presenter_id: str) -> Presenter: ...

    def stream_request(self, request: CreateClipStreamRequest) -> CreateStreamRequest: ...


PRESENTERS: web.AppKey[Presenters] = web.AppKey("presenters", Presenters)


BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a whole request body (at most 1 MB) to arrive


async def admit(app: web.Application, authorization: str | None) -> tuple[str, frozenset[str]]:
    """(owner, permissions) of a caller with this Authorization within its request rate; 401 or 429 if not
    (503 when a cluster's shared keys cannot be read)."""
    gate = app[GATE]
    owner, granted = await gate.caller(authorization)
    await gate.check(owner)
    return owner, granted


async def _caller(request: web.Request) -> tuple[str, frozenset[str]]:
    return await admit(request.app, request.headers.get("Authorization"))


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
        if METRICS in request.app:
            request.app[METRICS].error(exc.kind)
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
    worker = getattr(request.app[SERVICE], "worker", None)
    if worker is not None and not response.prepared:
        response.headers["X-Talkstream-Worker"] = worker  # which worker answered (behind a proxy)
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


async def _owner(request: web.Request) -> str:
    return (await _caller(request))[0]


async def open_talks_stream(
    app: web.Application, owner: str, granted: frozenset[str], body: Any
) -> CreateStreamResponse:
    """A ``/talks/streams`` create for `owner` with `granted` permissions (over HTTP or the WebSocket)."""
    message = CreateStreamRequest.from_json(body)
    if message.source_url.lower().startswith("file:") and "local_files" not in granted:
        raise PermissionDeniedError("this key may not use local files as sources")
    if message.session_timeout is not None and "session_timeout" not in granted:
        raise PermissionDeniedError("this key may not choose a session_timeout")
    return await app[SERVICE].create(owner, message)


async def open_clips_stream(
    app: web.Application, owner: str, granted: frozenset[str], body: Any
) -> CreateStreamResponse:
    """A ``/clips/streams`` create: the presenter's photo and driver, then the same stream as a talks one."""
    message = CreateClipStreamRequest.from_json(body)
    if message.session_timeout is not None and "session_timeout" not in granted:
        raise PermissionDeniedError("this key may not choose a session_timeout")
    if PRESENTERS not in app:
        raise NotFoundError("this server offers no presenters")
    stream = app[PRESENTERS].stream_request(message)
    return await app[SERVICE].create(owner, stream, kind="clips")


async def create_stream(request: web.Request) -> web.Response:
    owner, granted = await _caller(request)
    response = await open_talks_stream(request.app, owner, granted, await _body(request))
    return web.json_response(response.to_json(), status=201)


class _Reply(Protocol):
    def to_json(self) -> dict[str, Any]: ...


M = TypeVar("M")


def _stream_operation(
    kind: StreamKind,
    parse: Callable[[Any], M],
    operation: Callable[[StreamService], Callable[[str, str, M], Awaitable[_Reply]]],
) -> Handler:
    """The handler of an operation on one stream of `kind`: the caller, the body as `parse` reads it, the
    service's `operation` on the stream in the path, and its answer as JSON."""

    async def handle(request: web.Request) -> web.Response:
        owner = await _owner(request)
        message = parse(await _body(request))
        service, stream_id = request.app[SERVICE], request.match_info["id"]
        service.check_kind(owner, stream_id, kind)
        reply = await operation(service)(owner, stream_id, message)
        return web.json_response(reply.to_json())

    return handle


def _operations(kind: StreamKind) -> list[web.RouteDef]:
    """sdp, ice, talk and delete under ``/{kind}/streams/{id}``."""
    base = f"/{kind}/streams/{{id}}"
    return [
        web.post(f"{base}/sdp", _stream_operation(kind, SdpRequest.from_json, lambda s: s.answer)),
        web.post(
            f"{base}/ice", _stream_operation(kind, IceCandidateRequest.from_json, lambda s: s.candidate)
        ),
        web.post(base, _stream_operation(kind, TalkRequest.from_json, lambda s: s.talk)),
        web.delete(base, _stream_operation(kind, DeleteRequest.from_json, lambda s: s.delete)),
    ]


async def create_clip_stream(request: web.Request) -> web.Response:
    """``POST /clips/streams``: the presenter's photo and driver, then the same stream as a talks one."""
    owner, granted = await _caller(request)
    response = await open_clips_stream(request.app, owner, granted, await _body(request))
    return web.json_response(response.to_json(), status=201)


async def list_presenters(request: web.Request) -> web.Response:
    """``GET /clips/presenters?limit=N``: every presenter (there are few: no pages, no token)."""
    await _owner(request)
    presenters = request.app[PRESENTERS].all()
    limit = request.query.get("limit")
    if limit is not None:
        if not limit.isdigit() or int(limit) < 1:
            raise ValidationError("limit", "must be a whole number of at least 1")
        presenters = presenters[: int(limit)]
    return web.json_response(PresentersResponse(presenters=presenters).to_json())


async def get_presenter(request: web.Request) -> web.Response:
    """``GET /clips/presenters/{id}``: D-ID's schema wraps the one presenter in the list's shape."""
    await _owner(request)
    presenter = request.app[PRESENTERS].get(request.match_info["id"])
    return web.json_response(PresentersResponse(presenters=(presenter,)).to_json())


TALKS: web.AppKey[TalkJobs] = web.AppKey("talks", TalkJobs)
_RESULT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime"}


def _talk_body(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """A talk's body with its ``result_url`` (where this request came in: behind a proxy, the proxy)."""
    if body.get("status") == "done":
        body = {**body, "result_url": f"{request.url.origin()}/talks/{body['id']}/result"}
    return body


async def create_talk(request: web.Request) -> web.Response:
    """``POST /talks``: a talk rendered to a file, off the event loop; poll ``GET /talks/{id}``."""
    owner, granted = await _caller(request)
    message = CreateTalkRequest.from_json(await _body(request))
    if message.source_url.lower().startswith("file:") and "local_files" not in granted:
        raise PermissionDeniedError("this key may not use local files as sources")
    if message.webhook is not None:
        raise BadRequestError("this server sends no webhooks: poll GET /talks/{id} until it is done")
    if message.result_url is not None:
        raise BadRequestError("this server keeps the result itself: fetch it from the talk's result_url")
    job = await request.app[TALKS].create(owner, message)
    body = {k: v for k, v in job.to_json(None).items() if k in ("id", "object", "created_at", "status")}
    return web.json_response({**body, "created_by": owner}, status=201)


async def list_talks(request: web.Request) -> web.Response:
    """``GET /talks?limit=N&token=T``: newest first, a page at a time (the token is where the next starts)."""
    owner = await _owner(request)
    limit, token = request.query.get("limit", "100"), request.query.get("token", "0")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise ValidationError("limit", "must be a whole number from 1 to 1000")
    if not token.isdigit():
        raise ValidationError("token", "must be a token this server gave")
    jobs = await request.app[TALKS].describe_all(owner)
    start, end = int(token), int(token) + int(limit)
    body: dict[str, Any] = {"talks": [_talk_body(request, job) for job in jobs[start:end]]}
    if end < len(jobs):
        body["token"] = str(end)
    return web.json_response(body)


async def get_talk(request: web.Request) -> web.Response:
    body = await request.app[TALKS].describe(await _owner(request), request.match_info["id"])
    return web.json_response(_talk_body(request, body))


async def delete_talk(request: web.Request) -> web.Response:
    body = await request.app[TALKS].delete_anywhere(await _owner(request), request.match_info["id"])
    return web.json_response(_talk_body(request, body))


async def talk_result(request: web.Request) -> web.FileResponse:
    """The talk's video, to its own key only (in the header, or ``?authorization=`` for a video element)."""
    authorization = request.headers.get("Authorization") or request.query.get("authorization")
    owner, _ = await admit(request.app, authorization)
    path = request.app[TALKS].result(owner, request.match_info["id"])
    kind = _RESULT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private, no-store"})


async def index(request: web.Request) -> web.StreamResponse:
    """The demo page: plain HTML, CSS and a small module that use only the public API; a WebSocket
    upgrade here is D-ID's WebSocket API (its demo's `websocketUrl` is a bare host)."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        from .websocket import websocket_api

        return await websocket_api(request)
    return web.FileResponse(STATIC / "index.html")


async def _websocket(request: web.Request) -> web.StreamResponse:
    from .websocket import websocket_api  # it builds on this module's keys, limits and creates

    return await websocket_api(request)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process serves requests at all (a liveness check)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 while this server takes new streams, 503 once it drains (a proxy's check sends
    creates elsewhere; the streams it holds are still reachable here until they end). ``?draining=404``
    asks for 404 instead: HAProxy's ``http-check disable-on-404`` then keeps routing the streams' own
    requests here while sending no new ones (with 503 it would count the server down)."""
    service = request.app[SERVICE]
    if service.draining:
        status = 404 if request.query.get("draining") == "404" else 503
        return web.json_response({"status": "draining", "streams": len(service)}, status=status)
    return web.json_response({"status": "ready", "streams": len(service)})


async def openapi(request: web.Request) -> web.Response:
    import yaml

    spec = yaml.safe_load(OPENAPI.read_text())
    return web.json_response(spec)


def create_app(
    service: StreamService,
    keys: KeyRing | Gate,
    *,
    presenters: Presenters | None = None,
    talks: TalkJobs | None = None,
    limits: RequestLimits | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    extra_routes: Iterable[web.RouteDef] = (),
    metrics: Metrics | None = None,
) -> web.Application:
    """The streams API as an aiohttp application (the service's lifetime is the caller's).

    `body_timeout`: seconds a request body may take to arrive in full (408 after that).
    `keys`: the keys this server accepts (with `limits`, the request rates), or a `Gate` deciding both (a
    cluster's shared one; `limits` is then unused).
    `presenters`: what ``/clips/streams`` offers (without them, the clips routes answer 404).
    `metrics`: what ``GET /metrics`` shows (it watches `service`; without it, no such route).
    """
    app = web.Application(middlewares=[_cors, _errors], client_max_size=1024 * 1024)
    app[SERVICE] = service
    app[GATE] = (
        LocalGate(keys, limits if limits is not None else RequestLimits())
        if isinstance(keys, KeyRing)
        else keys
    )
    app[BODY_TIMEOUT] = body_timeout
    from . import websocket  # it builds on this module

    websocket.install(app)
    if metrics is not None:
        app[METRICS] = metrics
        metrics.watch(service)
        app.router.add_get("/metrics", metrics_page)
    clips: list[web.RouteDef] = []
    if talks is not None:
        app[TALKS] = talks
        clips += [
            web.post("/talks", create_talk),
            web.get("/talks", list_talks),
            web.get("/talks/{id}", get_talk),
            web.delete("/talks/{id}", delete_talk),
            web.get("/talks/{id}/result", talk_result),
        ]
    if presenters is not None:
        app[PRESENTERS] = presenters
        clips += [
            web.post("/clips/streams", create_clip_stream),
            *_operations("clips"),
            web.get("/clips/presenters", list_presenters),
            web.get("/clips/presenters/{id}", get_presenter),
        ]
    app.add_routes(
        [
            web.post("/talks/streams", create_stream),
            *_operations("talks"),
            *clips,
            web.get("/openapi.json", openapi),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/ws", _websocket),
            web.get("/", index),
            web.static("/static", STATIC),
            *extra_routes,
        ]
    )
    return app
