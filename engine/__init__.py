"""talkstream's engine: the protocol of D-ID's ``/talks/streams`` as an explicit state machine.

States, inputs and the transition table (`states`), the `transitions` machine built from it (`machine`),
sessions and their engine (`session`), events (`events`), time (`clock`), retries (`retry`), messages
(`messages`) and errors (`errors`). The engine imports neither aiohttp nor aiortc: adapters and transports
import it, never the reverse.
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
