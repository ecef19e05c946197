"""RetryPolicy properties over generated policies and scripted outcomes, on the virtual clock."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import (
    BadGatewayError,
    BadRequestError,
    ConnectionFailedError,
    DeadlineExceededError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    TalkstreamError,
    TimeoutError_,
)
from talkstream.engine.retry import RetryPolicy

from ..retry_fakes import HANG, Scripted

policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(0, 6),
    base=st.floats(0.01, 2.0),
    factor=st.floats(1.0, 3.0),
    jitter=st.floats(0.0, 1.0),
    max_delay=st.floats(0.5, 10.0),
    max_retry_after=st.floats(1.0, 60.0),
    attempt_timeout=st.none() | st.floats(0.5, 20.0),
    deadline=st.none() | st.floats(1.0, 120.0),
)


def outcome() -> st.SearchStrategy[object]:
    return st.one_of(
        st.just("ok"),
        st.builds(ConnectionFailedError),
        st.builds(RateLimitedError, retry_after=st.none() | st.floats(0.0, 60.0)),
        st.builds(InternalServerError),
        st.builds(BadGatewayError),
        st.builds(ServiceUnavailableError),
        st.builds(GatewayTimeoutError),
        st.builds(BadRequestError),
        st.builds(NotFoundError),
        st.just(HANG),
    )


RETRYABLE = (
    ConnectionFailedError,
    RateLimitedError,
    BadGatewayError,
    ServiceUnavailableError,
    GatewayTimeoutError,
)


@settings(max_examples=150, deadline=None)
@given(
    policy=policies, outcomes=st.lists(outcome(), min_size=1, max_size=10), rng_value=st.floats(0.0, 0.999)
)
def test_retry_properties(policy: RetryPolicy, outcomes: list[object], rng_value: float) -> None:
    if policy.attempt_timeout is None and policy.deadline is None:
        # Nothing would ever end a hanging attempt (rightly): hang only where a timer can.
        outcomes = [ConnectionFailedError() if o == HANG else o for o in outcomes]

    async def run() -> tuple[Scripted, object, VirtualClock]:
        clock = VirtualClock()
        op = Scripted(clock, outcomes)
        try:
            result: object = await clock.run(policy.run(op, clock=clock, rng=lambda: rng_value))
        except TalkstreamError as exc:
            result = exc
        return op, result, clock

    op, result, clock = asyncio.run(run())
    calls = len(op.calls)
    assert calls <= policy.max_retries + 1
    if policy.deadline is not None:
        assert clock.now() <= policy.deadline + 1e-9
    played = [outcomes[min(i, len(outcomes) - 1)] for i in range(calls)]
    # Success stops retrying; no call follows a non-retryable failure.
    for earlier in played[:-1]:
        assert earlier != "ok"
        assert isinstance(earlier, RETRYABLE) or earlier == HANG
    if result == "ok":
        assert played[-1] == "ok"
    for i in range(1, calls):
        previous = played[i - 1]
        waited = op.calls[i][1] - op.ended[i - 1]
        retry_after = getattr(previous, "retry_after", None)
        if retry_after is not None:
            assert abs(waited - retry_after) < 1e-9, "Retry-After is the wait, never undercut"
            assert retry_after <= policy.max_retry_after
        else:
            low = min(policy.base * policy.factor**i, policy.max_delay)
            assert low - 1e-9 <= waited <= policy.max_delay + 1e-9
    if isinstance(result, DeadlineExceededError):
        assert policy.deadline is not None
    elif isinstance(result, TalkstreamError) and not isinstance(result, TimeoutError_):
        assert result is played[-1]
