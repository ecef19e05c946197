"""Wiring: one function that builds the real server from its settings, and nothing at import time.

Why it exists: the CLI, the tests and embedding services all need the same assembly (engine on the system
clock, aiortc transport, avatar studio, stream service, aiohttp app); the parts are arguments, so tests can
swap any of them.
"""

from __future__ import annotations

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

from .app import DEFAULT_BODY_TIMEOUT, SERVICE, create_app
from .auth import KeyRing, RequestLimits

__all__ = ["ServerSettings", "build_app"]

_log = logging.getLogger("talkstream")


@attrs.frozen(kw_only=True)
class ServerSettings:
    keys: tuple[str, ...]
    ice_servers: tuple[IceServer, ...] = ()
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
        )
    speech = default_tts() if tts is True else (tts or None)
    studio = AvatarStudio(
        tts=speech,
        fetcher=Fetcher(settings.fetch_policy),
        media_root=settings.media_root,
        strict_voices=settings.strict_voices,
    )
    service = StreamService(
        engine=engine,
        transport=transport,
        studio=wrap_studio(studio) if wrap_studio is not None else studio,
        limits=settings.limits,
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
    )
    app = create_app(
        service,
        KeyRing(settings.keys),
        presenters=PresenterBook(dict(settings.presenters)),
        talks=talks,
        limits=settings.request_limits,
        body_timeout=settings.body_timeout,
        extra_routes=extra_routes,
    )

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        _log.info("text-to-speech: %s", speech.name if speech else "none (install talkstream[tts])")
        yield
        await talks.aclose()
        renderer.close()
        if settings.results_dir is None:
            shutil.rmtree(results, ignore_errors=True)
        await app[SERVICE].aclose()
        await transport.aclose()
        await studio.aclose()

    app.cleanup_ctx.append(lifetime)
    return app
