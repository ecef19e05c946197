"""Retrying a protocol call (`RetryPolicy`): which failures to retry (transport errors and 429/502/503/504),
how long to wait (capped, jittered back-off on the clock, or the server's ``Retry-After``), when to give up.

What it must never do: sleep outside the clock, retry another 4xx, or let the deadline pass while waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from .clock import Clock, run_with_timeout
from .errors import (
    DeadlineExceededError,
    RateLimitedError,
    ServiceUnavailableError,
    TalkstreamError,
    TimeoutError_,
    TransportError,
)

__all__ = ["RetryAttempt", "RetryPolicy", "parse_retry_after"]

T = TypeVar("T")
Rng = Callable[[], float]


@attrs.frozen(kw_only=True)
class RetryAttempt:
    """Told to `on_retry` before each wait: attempt `attempt` failed with `error`; next try in `delay` s."""

    attempt: int
    error: TalkstreamError
    delay: float


def parse_retry_after(value: str | None, *, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None for garbage."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often to retry. Immutable; one policy serves any number of calls."""

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    base: float = 0.25
    factor: float = 2.0
    jitter: float = 1.0
    max_delay: float = 4.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    retry_on_connection_errors: bool = True
    retry_on_timeouts: bool = True
    max_retry_after: float = 30.0
    attempt_timeout: float | None = None
    deadline: float | None = None

    # -- presets --------------------------------------------------------------------------------------

    @classmethod
    def did_demo(cls) -> RetryPolicy:
        """D-ID's live-streaming demo: 3 retries, ``min(2**n / 4 + random(), 4)`` s apart (the default)."""
        return cls()

    @classmethod
    def did_sdk(cls) -> RetryPolicy:
        """D-ID's agents SDK: retry HTTP 429 only, 1 s apart, 3 times.

        (The SDK's ``retryOperation`` counts its ``limit: 3`` in attempts in some versions; talkstream
        reads it as three retries after the first attempt.)
        """
        return cls(
            max_retries=3,
            base=1.0,
            factor=1.0,
            jitter=0.0,
            max_delay=1.0,
            retry_statuses=frozenset({429}),
            retry_on_connection_errors=False,
            retry_on_timeouts=False,
        )

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_retries=0)

    # -- decisions ------------------------------------------------------------------------------------

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, DeadlineExceededError):
            return False
        if isinstance(error, TimeoutError_):
            return self.retry_on_timeouts
        if isinstance(error, TransportError):
            return self.retry_on_connection_errors
        if isinstance(error, TalkstreamError):
            return error.status in self.retry_statuses
        return False

    def backoff(self, retry_number: int, rng: Rng) -> float:
        """The wait before retry `retry_number` (1-based) when the server named none."""
        return min(self.base * self.factor**retry_number + rng() * self.jitter, self.max_delay)

    def next_delay(self, retry_number: int, error: BaseException, rng: Rng) -> float | None:
        """How long to wait before retry `retry_number` after `error`, or None not to retry."""
        if retry_number > self.max_retries or not self.is_retryable(error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, RateLimitedError | ServiceUnavailableError) and retry_after is not None:
            if retry_after > self.max_retry_after:
                return None  # the server wants longer than we will wait: coming back early is no use
            return max(float(retry_after), 0.0)
        return self.backoff(retry_number, rng)

    # -- running --------------------------------------------------------------------------------------

    async def run(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        clock: Clock,
        rng: Rng = random.random,
        on_retry: Callable[[RetryAttempt], None] | None = None,
    ) -> T:
        """Call `operation(attempt)` (attempt 0 first) until it succeeds or the policy gives up.

        Raises the last error when giving up, or `DeadlineExceededError` (chained from it) when the
        overall deadline would pass.
        """
        started = clock.now()
        attempt = 0
        while True:
            timeout = self.attempt_timeout
            remaining = None if self.deadline is None else started + self.deadline - clock.now()
            if remaining is not None:
                if remaining <= 0:
                    raise DeadlineExceededError(f"deadline of {self.deadline} s exceeded")
                timeout = remaining if timeout is None else min(timeout, remaining)
            try:
                if timeout is None:
                    return await operation(attempt)
                return await run_with_timeout(clock, timeout, operation(attempt))
            except asyncio.CancelledError:
                raise
            except TimeoutError as exc:
                if self.deadline is not None and clock.now() >= started + self.deadline:
                    raise DeadlineExceededError(f"deadline of {self.deadline} s exceeded") from exc
                error: TalkstreamError = TimeoutError_(f"attempt {attempt} timed out after {timeout} s")
                error.__cause__ = exc
            except TalkstreamError as exc:
                error = exc
            attempt += 1
            delay = self.next_delay(attempt, error, rng)
            if delay is None:
                raise error
            if self.deadline is not None and clock.now() + delay >= started + self.deadline:
                raise DeadlineExceededError(
                    f"deadline of {self.deadline} s would pass before retry {attempt}"
                ) from error
            if on_retry is not None:
                on_retry(RetryAttempt(attempt=attempt, error=error, delay=delay))
            await clock.sleep(delay)
