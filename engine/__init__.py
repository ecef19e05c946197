"""talkstream's engine: D-ID's ``/talks/streams`` as an explicit state machine (`states`, `machine`,
`session`, `events`, `clock`, `retry`), what crosses its edges (`messages`, `errors`, `ports`, `channel`),
and its two drivers: the server's `service` (with its `player`) and the `client`.

What it must never do: import aiohttp, aiortc, PyAV or OpenCV; adapters and transports import it.
"""

from .clock import Clock, SystemClock, Timer, VirtualClock
from .errors import IllegalTransition, TalkstreamError
from .events import InputApplied, SessionClosed, SessionEvent, SessionOpened, StateChanged, Subscription
from .retry import RetryAttempt, RetryPolicy
from .session import HistoryEntry, SessionEngine, StreamSession
from .states import TRANSITIONS, CloseReason, Input, State

__all__ = [
    "TRANSITIONS",
    "Clock",
    "CloseReason",
    "HistoryEntry",
    "IllegalTransition",
    "Input",
    "InputApplied",
    "RetryAttempt",
    "RetryPolicy",
    "SessionClosed",
    "SessionEngine",
    "SessionEvent",
    "SessionOpened",
    "State",
    "StateChanged",
    "StreamSession",
    "Subscription",
    "SystemClock",
    "TalkstreamError",
    "Timer",
    "VirtualClock",
]
