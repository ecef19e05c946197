"""Stream sessions and the engine that owns them: one input at a time in arrival order, the idle and
connect timers, the bounded history, and the events each change publishes.

What it must never do: do I/O, import a backend, or change a session outside its turn.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, NamedTuple, TypeVar

import attrs

from .clock import Clock, SystemClock, Timer
from .errors import IllegalTransition
from .events import Callback as _Callback
from .events import (
    EventHub,
    EventStream,
    InputApplied,
    SessionClosed,
    SessionEvent,
    SessionOpened,
    StateChanged,
    Subscription,
)
from .machine import build_machine, events_by_input
from .states import (
    CLOSING_INPUTS,
    MESSAGE_INPUTS,
    TALK_QUEUE_GUARDS,
    TRANSITIONS,
    CloseReason,
    Input,
    State,
    TalkQueueGuard,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_IDLE_TIMEOUT",
    "WORKER_ID",
    "HistoryEntry",
    "SessionEngine",
    "StreamSession",
    "new_session_id",
    "new_stream_id",
    "routed_id",
    "worker_of",
]

DEFAULT_IDLE_TIMEOUT = 300.0  # D-ID: a stream with no message for 5 minutes is closed
DEFAULT_CONNECT_TIMEOUT = 30.0  # from the answer to ICE connected
DEFAULT_HISTORY_LIMIT = 32  # transitions kept per session; older ones fall off

_STREAM_ID_PREFIX = "strm_"
T = TypeVar("T")


def new_stream_id(worker: str | None = None) -> str:
    """A fresh stream id in D-ID's shape: ``strm_`` and url-safe random text; with `worker`, ``strm_`` then
    the worker, a dot (never in the random text) and the random text, so a proxy can route on it."""
    return _STREAM_ID_PREFIX + routed_id(worker, secrets.token_urlsafe(15))


def new_session_id(worker: str | None = None) -> str:
    """A fresh opaque session id (at D-ID a sticky-routing cookie; here 160 random bits), led by `worker` and
    a dot when given."""
    return routed_id(worker, secrets.token_urlsafe(20))


def worker_of(identifier: str) -> str | None:
    """The worker a stream, session or talk id names (``strm_w2.…``, ``w2.…``, ``tlk_w2.…``), or None."""
    head, dot, _ = identifier.partition(".")
    if not dot:
        return None
    worker = head.rpartition("_")[2] if head.startswith(("strm_", "tlk_")) else head
    return worker if WORKER_ID.fullmatch(worker) else None


#: What a worker may be called: it goes into ids and a proxy's routing rules.
WORKER_ID = re.compile(r"[a-z0-9]{1,16}")


def routed_id(worker: str | None, token: str) -> str:
    """`token`, led by `worker` and a dot when given (the form every routed id takes)."""
    if worker is None:
        return token
    if not WORKER_ID.fullmatch(worker):
        raise ValueError(f"a worker id is 1 to 16 lowercase letters or digits, not {worker!r}")
    return f"{worker}.{token}"


class HistoryEntry(NamedTuple):
    """One applied input: when, from which state, what, to which state."""

    at: float
    source: State
    input: Input
    dest: State


@attrs.define(slots=True, eq=False, repr=False)
class StreamSession:
    """One stream's life, driven by the engine's state machine. Create it with `SessionEngine.open`.

    Public fields are read-only for callers: change a session only through `apply` and its helpers.
    ``state`` is written by the `transitions` machine.
    """

    stream_id: str
    session_id: str
    owner: str
    idle_timeout: float
    connect_timeout: float | None
    created_at: float
    last_activity: float
    history: deque[HistoryEntry]
    engine: SessionEngine
    state: State = State.CREATED
    close_reason: CloseReason | None = None
    talks_pending: int = 0
    _busy: bool = False
    _waiters: deque[asyncio.Future[None]] | None = None
    _hub: EventHub[SessionEvent] | None = None
    _idle_timer: Timer | None = None
    _connect_timer: Timer | None = None
    _connect_deadline: float | None = None

    def __repr__(self) -> str:
        return (
            f"<StreamSession {self.stream_id} {self.state.value}"
            f"{f' ({self.close_reason.value})' if self.close_reason else ''} owner={self.owner!r}>"
        )

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def idle_deadline(self) -> float:
        """When the session expires unless another protocol message arrives first."""
        return self.last_activity + self.idle_timeout

    def allows(self, inp: Input) -> bool:
        """Whether `inp` would be accepted now (the table and the talk-queue guard)."""
        return (self.state, inp) in TRANSITIONS and (inp not in _GUARDED or _guard_failure(self, inp) is None)

    # -- changing --------------------------------------------------------------------------------------

    async def apply(self, inp: Input) -> State:
        """Apply one input after every input that arrived before it; return the new state.

        Raises `IllegalTransition` (and changes nothing) when the table or the talk queue forbids it.
        """
        return await self._in_turn(self.engine._apply, self, inp)

    async def finish_talk(self) -> State:
        """The talk playing now ended: ``talk_finished`` or ``last_talk_finished``, whichever is true."""

        def finished() -> Awaitable[State]:
            last = self.talks_pending == 1
            return self.engine._apply(self, Input.LAST_TALK_FINISHED if last else Input.TALK_FINISHED)

        return await self._in_turn(finished)

    async def close(self, inp: Input = Input.DELETE_REQUESTED) -> CloseReason | None:
        """Close with `inp` (a closing input) unless already closed; return the close reason."""
        if inp not in CLOSING_INPUTS:
            raise ValueError(f"{inp.value} does not close a session")

        async def closing() -> CloseReason | None:
            if self.state is not State.CLOSED:
                await self.engine._apply(self, inp)
            return self.close_reason

        return await self._in_turn(closing)

    # -- watching --------------------------------------------------------------------------------------

    def subscribe(self, callback: _Callback[SessionEvent]) -> Subscription[SessionEvent]:
        """Call `callback(event)` for each event of this session, in order, until it closes."""
        if self._hub is None:
            self._hub = EventHub()
        return self._hub.subscribe(callback)

    def events(self) -> EventStream[SessionEvent]:
        """An async iterator over this session's events from now on; it ends after `SessionClosed`."""
        if self._hub is None:
            self._hub = EventHub()
        stream: EventStream[SessionEvent] = EventStream(
            self._hub, last=lambda event: isinstance(event, SessionClosed)
        )
        if self.state is State.CLOSED:
            stream.end()
        return stream

    # -- the turn: one input at a time, first come first served -----------------------------------------

    async def _in_turn(self, step: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `step` once every change that arrived before it is done, and before any that comes after.

        transitions' `AsyncMachine` cancels a running transition when another trigger reaches the same
        model, so callers queue here: a FIFO hand-off that allocates nothing until two callers meet.
        """
        if self._busy:
            await self._wait_turn()
        else:
            self._busy = True
        try:
            return await step(*args)
        finally:
            self._pass_turn()

    async def _wait_turn(self) -> None:
        if self._waiters is None:
            self._waiters = deque()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                # We were handed the turn and cancelled before we could use it: hand it on.
                self._pass_turn()
            else:
                self._waiters.remove(turn)
            raise

    def _pass_turn(self) -> None:
        waiters = self._waiters
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the turn passes over; _busy stays set
                return
        self._busy = False

    # -- timers -----------------------------------------------------------------------------------------

    def _on_idle_timer(self) -> Coroutine[None, None, None] | None:
        self._idle_timer = None
        if self.state is State.CLOSED:
            return None
        clock = self.engine.clock
        if clock.now() < self.idle_deadline:
            # A message moved the deadline since this timer was set: wait for the new one.
            self._idle_timer = clock.call_at(self.idle_deadline, self._on_idle_timer)
            return None
        return self._expire()

    async def _expire(self) -> None:
        async def expire() -> None:
            if self.state is State.CLOSED:
                return
            if self.engine.clock.now() < self.idle_deadline:
                # A message queued ahead of the expiry landed first: the session lives on.
                self._arm_idle_timer()
                return
            await self.engine._apply(self, Input.IDLE_EXPIRED)

        await self._in_turn(expire)

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is None:
            self._idle_timer = self.engine.clock.call_at(self.idle_deadline, self._on_idle_timer)

    def _on_connect_timer(self) -> Coroutine[None, None, None] | None:
        self._connect_timer = None
        if self.state is not State.ICE:
            return None
        return self._connect_timed_out()

    async def _connect_timed_out(self) -> None:
        async def time_out() -> None:
            if self.state is not State.ICE:
                return
            # Both deadlines at the same instant: the idle expiry wins, whichever timer the clock fired
            # first (which one that is depends on when each was last armed).
            expired = self.engine.clock.now() >= self.idle_deadline
            await self.engine._apply(self, Input.IDLE_EXPIRED if expired else Input.CONNECT_TIMED_OUT)

        await self._in_turn(time_out)

    def _cancel_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None


def _guard_failure(session: StreamSession, inp: Input) -> str | None:
    """Why `inp` may not be applied now although the table has the edge, or None.

    Two kinds of input depend on the session's data: which talk-finished input is true depends on the
    queue (`TALK_QUEUE_GUARDS`), and the timers' inputs are true only once their deadline has come, so
    that nobody can expire a session a moment early (the client side applies them from its own timers).
    """
    guard = TALK_QUEUE_GUARDS.get(inp)
    if guard is not None:
        pending = session.talks_pending
        if guard is TalkQueueGuard.LAST_ONE and pending != 1:
            return f"{pending} talks pending, not exactly one"
        if guard is TalkQueueGuard.OTHERS_QUEUED and pending < 2:
            return f"{pending} talks pending: this is the last one"
    elif inp is Input.IDLE_EXPIRED:
        if session.engine.clock.now() < session.idle_deadline:
            return f"the idle deadline is t={session.idle_deadline}"
    elif inp is Input.CONNECT_TIMED_OUT:
        deadline = session._connect_deadline
        if deadline is None or session.engine.clock.now() < deadline:
            return "no connect deadline has passed"
    return None


_GUARDED = frozenset({*TALK_QUEUE_GUARDS, Input.IDLE_EXPIRED, Input.CONNECT_TIMED_OUT})


class SessionEngine:
    """Owns the live sessions of one side (server or client): the shared machine, clock and event hub.

    ``idle_timeout`` is the default and the maximum a session may ask for; ``connect_timeout`` (None: no
    limit) applies from entering ``ice``; ``history_limit`` bounds each session's history.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        name: str = "talkstream",
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if connect_timeout is not None and connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive or None")
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.history_limit = history_limit
        self.machine = build_machine(name)
        self._events = events_by_input(self.machine)
        self._sessions: dict[str, StreamSession] = {}
        self._hub: EventHub[SessionEvent] = EventHub()

    # -- the registry ------------------------------------------------------------------------------------

    def open(
        self,
        owner: str,
        *,
        stream_id: str | None = None,
        session_id: str | None = None,
        idle_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> StreamSession:
        """Create a session in ``created``; its creation counts as its first protocol message.

        `idle_timeout` may lower the engine's (never raise it); `connect_timeout` likewise overrides the
        engine's for this session.
        """
        if idle_timeout is None:
            idle_timeout = self.idle_timeout
        elif not 0 < idle_timeout <= self.idle_timeout:
            raise ValueError(f"idle_timeout must be in (0, {self.idle_timeout}]")
        if connect_timeout is None:
            connect_timeout = self.connect_timeout
        elif connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        stream_id = stream_id if stream_id is not None else new_stream_id()
        if stream_id in self._sessions:
            raise ValueError(f"stream {stream_id} is already open")
        now = self.clock.now()
        session = StreamSession(
            stream_id=stream_id,
            session_id=session_id if session_id is not None else new_session_id(),
            owner=owner,
            idle_timeout=idle_timeout,
            connect_timeout=connect_timeout,
            created_at=now,
            last_activity=now,
            history=deque(maxlen=self.history_limit),
            engine=self,
        )
        self._sessions[stream_id] = session
        session._arm_idle_timer()
        if self._hub:
            self._hub.publish(SessionOpened(stream_id=stream_id, at=now, owner=owner))
        return session

    def get(self, stream_id: str) -> StreamSession | None:
        """The live session with this id, or None (closed sessions are forgotten)."""
        return self._sessions.get(stream_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[StreamSession]:
        return iter(tuple(self._sessions.values()))

    async def close_all(self, inp: Input = Input.DELETE_REQUESTED) -> None:
        """Close every live session with `inp` (shutdown)."""
        await asyncio.gather(*(session.close(inp) for session in self))

    # -- watching ---------------------------------------------------------------------------------------

    def subscribe(self, callback: _Callback[SessionEvent]) -> Subscription[SessionEvent]:
        """Call `callback(event)` for every event of every session, `SessionOpened` included."""
        return self._hub.subscribe(callback)

    def events(self) -> EventStream[SessionEvent]:
        """An async iterator over every session's events from now on, until `aclose`."""
        return EventStream(self._hub)

    # -- applying ---------------------------------------------------------------------------------------

    async def _apply(self, session: StreamSession, inp: Input) -> State:
        """Apply `inp` to `session`, which holds its turn. The one place a session changes."""
        source = session.state
        dest = self._allowed(session, inp)
        await self._trigger(session, inp, source)
        now = self.clock.now()
        self._record(session, inp, source, dest, now)
        self._announce(session, inp, source, dest, now)
        return dest

    @staticmethod
    def _allowed(session: StreamSession, inp: Input) -> State:
        """The table's next state for `inp`, if its guard holds too; else `IllegalTransition`."""
        source = session.state
        dest = TRANSITIONS.get((source, inp))
        if dest is None:
            raise IllegalTransition(source, inp)
        if inp in _GUARDED:
            why = _guard_failure(session, inp)
            if why is not None:
                raise IllegalTransition(source, inp, why)
        return dest

    async def _trigger(self, session: StreamSession, inp: Input, source: State) -> None:
        """Let the `transitions` machine move the session (it writes ``session.state``)."""
        if await self._events[inp].trigger(session):
            return
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # transitions answers a cancellation inside a transition with False: it is still ours.
            raise asyncio.CancelledError
        # The machine is built from the table, so this means a callback added to it vetoed.
        raise IllegalTransition(source, inp, "the state machine refused it")

    def _record(self, session: StreamSession, inp: Input, source: State, dest: State, now: float) -> None:
        """The session's bookkeeping for an applied input: talk queue, idle deadline, timers, history."""
        if inp is Input.TALK_REQUESTED:
            session.talks_pending += 1
        elif inp is Input.TALK_FINISHED or inp is Input.LAST_TALK_FINISHED:
            session.talks_pending -= 1
        elif inp is Input.INTERRUPT_RECEIVED or inp is Input.INTERRUPT_SENT:
            session.talks_pending = 0  # the playing talk stops and the queued ones are dropped
        if inp in MESSAGE_INPUTS:
            session.last_activity = now  # the idle timer re-arms itself lazily when it fires
        if dest is not source:
            if dest is State.ICE and session.connect_timeout is not None:
                session._connect_deadline = now + session.connect_timeout
                session._connect_timer = self.clock.call_at(
                    session._connect_deadline, session._on_connect_timer
                )
            elif source is State.ICE:
                session._connect_deadline = None
                if session._connect_timer is not None:
                    session._connect_timer.cancel()
                    session._connect_timer = None
            if dest is State.CLOSED:
                session.close_reason = CLOSING_INPUTS[inp]
                session._cancel_timers()
                self._sessions.pop(session.stream_id, None)
        session.history.append(HistoryEntry(now, source, inp, dest))

    def _announce(self, session: StreamSession, inp: Input, source: State, dest: State, now: float) -> None:
        """Publish what happened to the session's and the engine's subscribers; a closed session lets its
        subscribers go."""
        hub = session._hub
        if hub or self._hub:
            event: SessionEvent = (
                InputApplied(stream_id=session.stream_id, at=now, state=dest, input=inp)
                if dest is source
                else StateChanged(stream_id=session.stream_id, at=now, old=source, new=dest, input=inp)
            )
            self._publish(hub, event)
            if dest is State.CLOSED:
                assert session.close_reason is not None
                closed = SessionClosed(
                    stream_id=session.stream_id, at=now, reason=session.close_reason, previous=source
                )
                self._publish(hub, closed)
        if dest is State.CLOSED and hub is not None:
            hub.clear()
            session._hub = None

    def _publish(self, hub: EventHub[SessionEvent] | None, event: SessionEvent) -> None:
        if hub:
            hub.publish(event)
        if self._hub:
            self._hub.publish(event)
