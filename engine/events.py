"""Events about sessions (`SessionOpened`, `StateChanged`, `InputApplied`, `SessionClosed`) and the hub that
delivers them, synchronously and in order, to callbacks or to an async `EventStream`.

What it must never do: let a subscriber block, re-enter the engine, or break a session by raising.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import attrs

from .states import CloseReason, Input, State

__all__ = [
    "EventHub",
    "EventStream",
    "InputApplied",
    "SessionClosed",
    "SessionEvent",
    "SessionOpened",
    "StateChanged",
    "Subscription",
]

_log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class SessionEvent:
    """Something that happened to session `stream_id` at clock time `at`."""

    stream_id: str
    at: float


@attrs.frozen(kw_only=True)
class SessionOpened(SessionEvent):
    owner: str


@attrs.frozen(kw_only=True)
class StateChanged(SessionEvent):
    old: State
    new: State
    input: Input


@attrs.frozen(kw_only=True)
class InputApplied(SessionEvent):
    """An accepted input that left the state as it was."""

    state: State
    input: Input


@attrs.frozen(kw_only=True)
class SessionClosed(SessionEvent):
    reason: CloseReason
    previous: State


E = TypeVar("E")
Callback = Callable[[E], object]


class Subscription(Generic[E]):
    """A handle to stop a subscription; `cancel` is idempotent."""

    __slots__ = ("_callback", "_hub")

    def __init__(self, hub: EventHub[E], callback: Callback[E]) -> None:
        self._hub: EventHub[E] | None = hub
        self._callback = callback

    def cancel(self) -> None:
        if self._hub is not None:
            self._hub._remove(self._callback)
            self._hub = None

    @property
    def active(self) -> bool:
        return self._hub is not None


class EventHub(Generic[E]):
    """An ordered list of callbacks; `publish` calls each one, logging and skipping any that raises."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callback[E]] = []

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def __len__(self) -> int:
        return len(self._callbacks)

    def subscribe(self, callback: Callback[E]) -> Subscription[E]:
        self._callbacks.append(callback)
        return Subscription(self, callback)

    def _remove(self, callback: Callback[E]) -> None:
        # Remove by identity: two subscriptions of equal bound methods are still two subscriptions.
        for index, existing in enumerate(self._callbacks):
            if existing is callback:
                del self._callbacks[index]
                return

    def publish(self, event: E) -> None:
        # Iterate over a copy: a callback may unsubscribe itself (or another) while we deliver.
        for callback in tuple(self._callbacks):
            try:
                callback(event)
            except Exception:
                _log.exception("event subscriber %r failed on %r", callback, event)

    def clear(self) -> None:
        self._callbacks.clear()


class EventStream(AsyncIterator[E]):
    """An async iterator over events, fed by a hub subscription made when the stream is created.

    Subscribing at creation (not at the first ``__anext__``) means no event between the two is lost.
    The stream ends after an event for which `last(event)` is true (a session's `SessionClosed`), or when
    `aclose` is called. Events wait in an unbounded buffer: a session produces a bounded number of events
    per protocol message, and a consumer that stops reading should `aclose` its stream.
    """

    def __init__(self, hub: EventHub[E], *, last: Callable[[E], bool] | None = None) -> None:
        self._buffer: deque[E] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._last = last
        self._ended = False
        self._subscription = hub.subscribe(self._push)

    def _push(self, event: E) -> None:
        if self._ended:
            return
        self._buffer.append(event)
        if self._last is not None and self._last(event):
            self._end()
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._subscription.cancel()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def end(self) -> None:
        """End the stream after the events already buffered (used when the source goes away)."""
        if not self._ended:
            self._end()
            self._wake()

    def __aiter__(self) -> EventStream[E]:
        return self

    async def __anext__(self) -> E:
        while not self._buffer:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop receiving; events already buffered are dropped."""
        self._end()
        self._buffer.clear()
        self._wake()
