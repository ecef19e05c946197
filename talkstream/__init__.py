"""talkstream: D-ID's Live Streaming API (``/talks/streams``) as a state machine with pluggable transports.

Everything a user picks is importable from here; the subpackages are where it lives:

- the client: `StreamClient` (with `ClientStream`, `ClientTalk`) and its `RetryPolicy`; `TalksClient` for
  asynchronous talks (``/talks``: a talk rendered to a file);
- HTTP adapters for it: `AiohttpAdapter` (the network), `WebSocketAdapter` (D-ID's WebSocket API, and
  streamed talks), `InProcessAdapter` (an app in this process),
  `FaultyAdapter` (injected faults), and cassettes: `Recorder`, `ReplayAdapter`, `ReplayTransport`;
- WebRTC transports: `AiortcClientTransport`, `AiortcServerTransport`, and the in-memory fake
  `MemoryNetwork` (with `NetworkKnobs`, `MemorySink`); received media goes to a `MediaSink`;
- the server: `ServerSettings` and `build_app` (an aiohttp app), `serve_app` (run it as `talkstream serve`
  does), `StreamService`, `Limits`, `KeyRing`, `RequestLimits`, `ConnectionLimits`, `tune_process`;
- the engine: `SessionEngine`, `StreamSession`, `State`, `Input`, `CloseReason`, `TRANSITIONS`, the clocks
  and the session events;
- errors: `TalkstreamError` and every subclass, each with D-ID's ``kind`` and HTTP ``status``.

The errors are there at once (their module needs only the standard library); every other name loads on
first use, so ``import talkstream`` and the engine stay free of aiohttp, aiortc, PyAV and OpenCV.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Every error class, at once: the module needs nothing beyond the standard library.
from .engine.errors import *  # noqa: F403
from .engine.errors import __all__ as _error_names

#: public name -> the module that defines it
_HOMES: dict[str, str] = {
    **dict.fromkeys(("ClientStream", "ClientTalk", "StreamClient", "TalkFailedError"), "engine.client"),
    "RetryPolicy": "engine.retry",
    **dict.fromkeys(("TalkRenderFailedError", "TalksClient"), "engine.talks_client"),
    "AiohttpAdapter": "adapters.http.network",
    "WebSocketAdapter": "adapters.http.websocket",
    "InProcessAdapter": "adapters.http.inprocess",
    "FaultyAdapter": "adapters.http.faulty",
    **dict.fromkeys(
        ("CassetteMismatchError", "Recorder", "ReplayAdapter", "ReplayTransport", "load_cassette"),
        "adapters.cassette",
    ),
    "AiortcClientTransport": "transports.aiortc_client",
    "AiortcServerTransport": "transports.aiortc_server",
    **dict.fromkeys(("MemoryNetwork", "MemorySink", "NetworkKnobs"), "transports.memory"),
    "MediaSink": "transports.sink",
    **dict.fromkeys(("ServerSettings", "build_app"), "adapters.server.build"),
    **dict.fromkeys(
        ("ConnectionLimits", "MemoryKeeper", "serve_app", "tune_process"), "adapters.server.serving"
    ),
    **dict.fromkeys(("KeyRing", "RequestLimits"), "adapters.server.auth"),
    **dict.fromkeys(("Limits", "StreamService"), "engine.service"),
    **dict.fromkeys(("SessionEngine", "StreamSession"), "engine.session"),
    **dict.fromkeys(("TRANSITIONS", "CloseReason", "Input", "State"), "engine.states"),
    **dict.fromkeys(("Clock", "SystemClock", "VirtualClock"), "engine.clock"),
    **dict.fromkeys(
        ("InputApplied", "SessionClosed", "SessionEvent", "SessionOpened", "StateChanged", "Subscription"),
        "engine.events",
    ),
}

__all__ = [
    "TRANSITIONS",
    "AiohttpAdapter",
    "AiortcClientTransport",
    "AiortcServerTransport",
    "CassetteMismatchError",
    "ClientStream",
    "ClientTalk",
    "Clock",
    "CloseReason",
    "ConnectionLimits",
    "FaultyAdapter",
    "InProcessAdapter",
    "Input",
    "InputApplied",
    "KeyRing",
    "Limits",
    "MediaSink",
    "MemoryKeeper",
    "MemoryNetwork",
    "MemorySink",
    "NetworkKnobs",
    "Recorder",
    "ReplayAdapter",
    "ReplayTransport",
    "RequestLimits",
    "RetryPolicy",
    "ServerSettings",
    "SessionClosed",
    "SessionEngine",
    "SessionEvent",
    "SessionOpened",
    "State",
    "StateChanged",
    "StreamClient",
    "StreamService",
    "StreamSession",
    "Subscription",
    "SystemClock",
    "TalkFailedError",
    "TalkRenderFailedError",
    "TalksClient",
    "VirtualClock",
    "WebSocketAdapter",
    "build_app",
    "load_cassette",
    "serve_app",
    "tune_process",
]
__all__ += _error_names


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'talkstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"talkstream.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .adapters.cassette import (
        CassetteMismatchError,
        Recorder,
        ReplayAdapter,
        ReplayTransport,
        load_cassette,
    )
    from .adapters.http.faulty import FaultyAdapter
    from .adapters.http.inprocess import InProcessAdapter
    from .adapters.http.network import AiohttpAdapter
    from .adapters.http.websocket import WebSocketAdapter
    from .adapters.server.auth import KeyRing, RequestLimits
    from .adapters.server.build import ServerSettings, build_app
    from .adapters.server.serving import ConnectionLimits, MemoryKeeper, serve_app, tune_process
    from .engine.client import ClientStream, ClientTalk, StreamClient, TalkFailedError
    from .engine.clock import Clock, SystemClock, VirtualClock
    from .engine.events import (
        InputApplied,
        SessionClosed,
        SessionEvent,
        SessionOpened,
        StateChanged,
        Subscription,
    )
    from .engine.retry import RetryPolicy
    from .engine.service import Limits, StreamService
    from .engine.session import SessionEngine, StreamSession
    from .engine.states import TRANSITIONS, CloseReason, Input, State
    from .engine.talks_client import TalkRenderFailedError, TalksClient
    from .transports.aiortc_client import AiortcClientTransport
    from .transports.aiortc_server import AiortcServerTransport
    from .transports.memory import MemoryNetwork, MemorySink, NetworkKnobs
    from .transports.sink import MediaSink
