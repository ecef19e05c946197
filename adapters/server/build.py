"""Wiring: one function that builds the real server from its settings, and nothing at import time.

Why it exists: the CLI, the tests and embedding services all need the same assembly (engine on the system
clock, aiortc transport, avatar studio, stream service, aiohttp app); the parts are arguments, so tests can
swap any of them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import attrs
from aiohttp import web

from talkstream.avatar.fetch import Fetcher, FetchPolicy
from talkstream.avatar.presenters import PresenterBook
from talkstream.avatar.render import FileRenderer
from talkstream.avatar.speech import TextToSpeech, default_tts
from talkstream.avatar.studio import AvatarStudio
from talkstream.engine.clock import Clock, SystemClock
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import ServerTransport, Studio
from talkstream.engine.service import Limits, StreamService
from talkstream.engine.session import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, SessionEngine
from talkstream.engine.talks import TalkJobs
from talkstream.transports.aiortc_server import DEFAULT_SILENCE_TIMEOUT, AiortcServerTransport

from .app import DEFAULT_BODY_TIMEOUT, SERVICE, TALKS, create_app
from .auth import Gate, KeyRing, LocalGate, RequestLimits
from .metrics import Metrics
from .turn import TurnCredentials

__all__ = ["ServerSettings", "build_app", "drain_app"]

_log = logging.getLogger("talkstream")


@attrs.frozen(kw_only=True)
class ServerSettings:
    keys: tuple[str, ...]
    # handed to clients in each create answer; the server's own peers use their stun: URLs only
    ice_servers: tuple[IceServer, ...] = ()
    # a TURN server sharing a secret with this one: each create answer also carries a fresh, time-limited
    # username and password for it (`turn.TurnCredentials`)
    turn: TurnCredentials | None = None
    host_addresses: tuple[str, ...] | None = ("127.0.0.1",)
    media_root: Path | None = None
    fetch_policy: FetchPolicy = attrs.field(factory=FetchPolicy)
    limits: Limits = attrs.field(factory=Limits)
    request_limits: RequestLimits = attrs.field(factory=RequestLimits)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    silence_timeout: float = DEFAULT_SILENCE_TIMEOUT  # a connected peer that sends nothing this long is gone
    strict_voices: bool = False
    body_timeout: float = DEFAULT_BODY_TIMEOUT  # seconds for a request body to arrive in full
    # clips presenters an operator adds: id -> a photo inside media_root (the bundled one is always there)
    presenters: tuple[tuple[str, Path], ...] = ()
    # asynchronous talks (POST /talks): rendered this many at a time, kept this long, in this folder
    # (None: a temporary one, removed when the server stops)
    render_workers: int = 1
    talk_ttl: float = 24 * 3600.0
    results_dir: Path | None = None
    # in a cluster: this worker's name (it leads its stream, session and talk ids, for the proxy's routing)
    worker: str | None = None
    # in a cluster: the shared state (keys, quotas, request rates); `keys` are added to it at start, and
    # `limits.streams_total` stays this worker's own cap while `cluster_streams` caps them all
    redis_url: str | None = None
    cluster_streams: int = 1000
    lease: float = 15.0  # seconds a dead worker's streams go on counting against the shared quotas
    # SIGTERM: seconds the talks playing may take to finish before the streams are closed
    drain_timeout: float = 30.0


def build_app(
    settings: ServerSettings,
    *,
    clock: Clock | None = None,
    tts: TextToSpeech | bool | None = True,
    transport: ServerTransport | None = None,
    wrap_studio: Callable[[Studio], Studio] | None = None,
    extra_routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """The server as an aiohttp app; its service, transport and studio live for the app's lifetime.

    `tts`: True for the bundled engine when installed, None for none, or a provider of your own.
    `transport`: aiortc on the settings' addresses unless given (e.g. `transports.memory`'s).
    `wrap_studio`: puts something around the studio the app makes (a scenario on the virtual clock holds
    time still while the studio works in the real world).
    """
    metrics = Metrics(settings.worker)
    engine = SessionEngine(
        clock=clock or SystemClock(),
        idle_timeout=settings.idle_timeout,
        connect_timeout=settings.connect_timeout,
    )
    if transport is None:
        transport = AiortcServerTransport(
            ice_servers=settings.ice_servers,
            host_addresses=settings.host_addresses,
            silence_timeout=settings.silence_timeout,
            encode_observer=metrics.encoded,
        )
    speech = default_tts() if tts is True else (tts or None)
    studio = AvatarStudio(
        tts=speech,
        fetcher=Fetcher(settings.fetch_policy),
        media_root=settings.media_root,
        strict_voices=settings.strict_voices,
    )
    gate: Gate | None = None
    redis_state = None
    quota = None
    store = None
    if settings.redis_url is not None:
        from .redis_state import RedisGate, RedisQuota, RedisState, RedisTalkStore

        redis_state = RedisState(settings.redis_url, lease=settings.lease, worker=settings.worker or "")
        store = RedisTalkStore(redis_state)
        if settings.keys:
            redis_state.seed_keys(KeyRing(settings.keys).entries())
        gate = RedisGate(redis_state, settings.request_limits, attrs.evolve(settings.request_limits))
        quota = RedisQuota(
            redis_state,
            per_key=settings.limits.streams_per_key,
            total=settings.cluster_streams,
            retry_after=settings.limits.retry_after,
        )
    else:
        gate = LocalGate(KeyRing(settings.keys), settings.request_limits)
    service = StreamService(
        engine=engine,
        transport=transport,
        studio=wrap_studio(studio) if wrap_studio is not None else studio,
        limits=settings.limits,
        worker=settings.worker,
        quota=quota,
        observer=metrics,
        ice_servers=settings.turn.handed_out(transport.ice_servers) if settings.turn is not None else None,
    )
    results = settings.results_dir or Path(tempfile.mkdtemp(prefix="talkstream-talks-"))
    renderer = FileRenderer(settings.render_workers)
    talks = TalkJobs(
        studio=service.studio,
        renderer=renderer,
        clock=engine.clock,
        folder=results,
        workers=settings.render_workers,
        ttl=settings.talk_ttl,
        retry_after=settings.limits.retry_after,
        worker=settings.worker,
        store=store,
    )
    app = create_app(
        service,
        gate,
        presenters=PresenterBook(dict(settings.presenters)),
        talks=talks,
        body_timeout=settings.body_timeout,
        extra_routes=extra_routes,
        metrics=metrics,
    )

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        _log.info("text-to-speech: %s", speech.name if speech else "none (install talkstream[tts])")
        if redis_state is not None:
            redis_state.start()
        yield
        await talks.aclose()
        renderer.close()
        if settings.results_dir is None:
            shutil.rmtree(results, ignore_errors=True)
        await app[SERVICE].aclose()
        await transport.aclose()
        await studio.aclose()
        if redis_state is not None:
            await redis_state.aclose()

    app.cleanup_ctx.append(lifetime)
    return app


async def drain_app(app: web.Application, within: float) -> None:
    """What SIGTERM does first: take no new streams, talks or asynchronous talks (503, and /readyz says so),
    then wait, at most `within` seconds in all, for the talks playing and the renders under way to end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    talks = app.get(TALKS)
    if talks is not None:
        talks.draining = True
    await app[SERVICE].drain(within)
    if talks is not None:
        await talks.drain(max(0.0, deadline - loop.time()))
