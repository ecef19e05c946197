"""RetryPolicy against a scripted fake on the virtual clock: what is retried, when, and when it stops."""

from __future__ import annotations

import asyncio
import email.utils

import pytest

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import (
    AuthorizationError,
    BadGatewayError,
    BadRequestError,
    ConnectionFailedError,
    DeadlineExceededError,
    GatewayTimeoutError,
    NotFoundError,
    NotReadyError,
    RateLimitedError,
    ServiceUnavailableError,
    TimeoutError_,
)
from talkstream.engine.retry import RetryAttempt, RetryPolicy, parse_retry_after

from ..retry_fakes import HANG, Scripted


def fixed(value: float):  # type: ignore[no-untyped-def]
    return lambda: value


async def test_success_first_time_calls_once() -> None:
    clock = VirtualClock()
    op = Scripted(clock, ["ok"])
    assert await clock.run(RetryPolicy().run(op, clock=clock)) == "ok"
    assert op.calls == [(0, 0.0)]


async def test_connection_errors_back_off_like_dids_demo() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [ConnectionFailedError(), ConnectionFailedError(), ConnectionFailedError(), "ok"])
    result = await clock.run(RetryPolicy.did_demo().run(op, clock=clock, rng=fixed(0.5)))
    assert result == "ok"
    # min(2**n / 4 + 0.5, 4): 1.0, then 1.5, then 2.5 seconds.
    assert [t for _, t in op.calls] == [0.0, 1.0, 2.5, 5.0]
    assert [a for a, _ in op.calls] == [0, 1, 2, 3]


@pytest.mark.parametrize("error", [BadRequestError(), AuthorizationError(), NotFoundError(), NotReadyError()])
async def test_other_4xx_are_never_retried(error: Exception) -> None:
    clock = VirtualClock()
    op = Scripted(clock, [error, "ok"])
    with pytest.raises(type(error)):
        await clock.run(RetryPolicy().run(op, clock=clock))
    assert len(op.calls) == 1


async def test_non_talkstream_errors_propagate_at_once() -> None:
    clock = VirtualClock()

    async def broken(attempt: int) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await clock.run(RetryPolicy().run(broken, clock=clock))


async def test_retry_after_is_the_wait() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [RateLimitedError(retry_after=2), "ok"])
    assert await clock.run(RetryPolicy().run(op, clock=clock, rng=fixed(0.9))) == "ok"
    assert [t for _, t in op.calls] == [0.0, 2.0]


async def test_retry_after_over_the_cap_gives_up_at_once() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [RateLimitedError(retry_after=120), "ok"])
    with pytest.raises(RateLimitedError):
        await clock.run(RetryPolicy(max_retry_after=30).run(op, clock=clock))
    assert len(op.calls) == 1 and clock.now() == 0


@pytest.mark.parametrize("error", [BadGatewayError(), ServiceUnavailableError(), GatewayTimeoutError()])
async def test_502_503_504_are_retried(error: Exception) -> None:
    clock = VirtualClock()
    op = Scripted(clock, [error, "ok"])
    assert await clock.run(RetryPolicy().run(op, clock=clock, rng=fixed(0))) == "ok"
    assert len(op.calls) == 2


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    clock = VirtualClock()
    last = ConnectionFailedError("last")
    op = Scripted(clock, [ConnectionFailedError(), ConnectionFailedError(), last])
    with pytest.raises(ConnectionFailedError) as caught:
        await clock.run(RetryPolicy(max_retries=2).run(op, clock=clock, rng=fixed(0)))
    assert caught.value is last and len(op.calls) == 3


async def test_a_hanging_attempt_times_out_and_is_retried() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [HANG, "ok"])
    policy = RetryPolicy(attempt_timeout=5, jitter=0)
    assert await clock.run(policy.run(op, clock=clock)) == "ok"
    assert [t for _, t in op.calls] == [0.0, 5.5]  # timed out at 5, waited 0.25 * 2


async def test_timeouts_not_retried_when_told_not_to() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [HANG, "ok"])
    with pytest.raises(TimeoutError_):
        await clock.run(RetryPolicy(attempt_timeout=1, retry_on_timeouts=False).run(op, clock=clock))


async def test_the_deadline_holds() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [ConnectionFailedError()] * 10)
    policy = RetryPolicy(max_retries=10, jitter=0, base=1, factor=2, max_delay=100, deadline=10)
    with pytest.raises(DeadlineExceededError) as caught:
        await clock.run(policy.run(op, clock=clock))
    assert isinstance(caught.value.__cause__, ConnectionFailedError)
    assert [t for _, t in op.calls] == [0.0, 2.0, 6.0]  # the next wait (8 s) would end past t=10
    assert clock.now() <= 10


async def test_the_deadline_cuts_a_hanging_attempt() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [HANG])
    with pytest.raises(DeadlineExceededError):
        await clock.run(RetryPolicy(deadline=3).run(op, clock=clock))
    assert clock.now() == 3


async def test_on_retry_is_told_each_wait() -> None:
    clock = VirtualClock()
    seen: list[RetryAttempt] = []
    first, second = ConnectionFailedError(), RateLimitedError(retry_after=3)
    op = Scripted(clock, [first, second, "ok"])
    await clock.run(RetryPolicy().run(op, clock=clock, rng=fixed(0), on_retry=seen.append))
    assert seen == [
        RetryAttempt(attempt=1, error=first, delay=0.5),
        RetryAttempt(attempt=2, error=second, delay=3.0),
    ]


async def test_did_sdk_preset_retries_429_one_second_apart_and_nothing_else() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [RateLimitedError(), RateLimitedError(), RateLimitedError(), "ok"])
    assert await clock.run(RetryPolicy.did_sdk().run(op, clock=clock)) == "ok"
    assert [t for _, t in op.calls] == [0.0, 1.0, 2.0, 3.0]
    op = Scripted(clock, [ServiceUnavailableError(), "ok"])
    with pytest.raises(ServiceUnavailableError):
        await clock.run(RetryPolicy.did_sdk().run(op, clock=clock))
    op = Scripted(clock, [ConnectionFailedError(), "ok"])
    with pytest.raises(ConnectionFailedError):
        await clock.run(RetryPolicy.did_sdk().run(op, clock=clock))


async def test_cancelling_the_caller_stops_everything() -> None:
    clock = VirtualClock()
    op = Scripted(clock, [ConnectionFailedError(), "ok"])
    task = asyncio.ensure_future(RetryPolicy().run(op, clock=clock, rng=fixed(0)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.advance(10)
    assert len(op.calls) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-1", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_wall=1_000_000.0) == expected


def test_parse_retry_after_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 5, usegmt=True), now_wall=now) == 5.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now_wall=now) == 0.0
    assert parse_retry_after("Wed, 99 Foo 2024 00:00:00 GMT", now_wall=now) is None
