"""VirtualClock and SystemClock: order, ties, cancellation, sleep, autojump, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from talkstream.engine.clock import Clock, SystemClock, Timer, VirtualClock, run_with_timeout


async def test_timers_fire_in_deadline_order_ties_in_scheduling_order() -> None:
    clock = VirtualClock(start=100)
    fired: list[tuple[str, float]] = []

    def record(name: str) -> Callable[[], None]:
        return lambda: fired.append((name, clock.now()))

    for name, delay in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2), ("late", 10)]:
        clock.call_later(delay, record(name))
    await clock.advance(5)
    assert fired == [("a", 101), ("b1", 102), ("b2", 102), ("c", 103)]
    assert clock.now() == 105 and clock.pending == 1 and clock.next_deadline() == 110


async def test_cancelled_timers_never_fire_and_cancel_is_idempotent() -> None:
    clock = VirtualClock()
    fired: list[int] = []
    timer = clock.call_later(1, lambda: fired.append(1))
    assert isinstance(timer, Timer) and timer.when == 1
    timer.cancel()
    timer.cancel()
    await clock.advance(2)
    assert fired == [] and timer.cancelled() and clock.next_deadline() is None


async def test_timers_scheduled_while_firing_join_in_when_due() -> None:
    clock = VirtualClock()
    fired: list[float] = []

    def chain() -> None:
        fired.append(clock.now())
        if len(fired) < 4:
            clock.call_later(1, chain)

    clock.call_later(1, chain)
    await clock.advance(3)
    assert fired == [1, 2, 3]


async def test_awaitable_callbacks_finish_before_the_next_timer() -> None:
    clock = VirtualClock()
    log: list[str] = []

    async def slow() -> None:
        log.append("slow begins")
        for _ in range(10):
            await asyncio.sleep(0)
        log.append("slow ends")

    clock.call_at(1, slow)
    clock.call_at(1, lambda: log.append("next"))
    await clock.advance(1)
    assert log == ["slow begins", "slow ends", "next"]


async def test_sleep_wakes_at_its_deadline_in_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.now()))

    tasks = [asyncio.ensure_future(sleeper("b", 2)), asyncio.ensure_future(sleeper("a", 1))]
    await asyncio.sleep(0)
    await clock.advance(1.5)
    assert woke == [("a", 1)]
    await clock.advance(1)
    assert woke == [("a", 1), ("b", 2)]
    await asyncio.gather(*tasks)


async def test_time_never_goes_back() -> None:
    clock = VirtualClock(start=5)
    with pytest.raises(ValueError, match="back"):
        await clock.advance(-1)
    await clock.advance_to(3)
    assert clock.now() == 5


async def test_run_jumps_time_while_the_awaitable_waits() -> None:
    clock = VirtualClock()

    async def work() -> float:
        await clock.sleep(30)
        await clock.sleep(0.5)
        return clock.now()

    assert await clock.run(work()) == 30.5


async def test_run_reports_a_deadlock() -> None:
    clock = VirtualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(RuntimeError, match="no timer pending"):
        await clock.run(never, stall=0.05)


async def test_run_with_timeout_on_the_virtual_clock() -> None:
    clock = VirtualClock()

    async def slow() -> str:
        await clock.sleep(10)
        return "done"

    with pytest.raises(TimeoutError):
        await clock.run(run_with_timeout(clock, 3, slow()))
    assert clock.now() == 3
    assert await clock.run(run_with_timeout(clock, 30, slow())) == "done"
    assert clock.pending == 0  # the unused timeout timer was cancelled


async def test_run_with_timeout_lets_outer_cancellation_through() -> None:
    clock = VirtualClock()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await clock.sleep(10)

    task = asyncio.ensure_future(run_with_timeout(clock, 5, slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_system_clock_runs_async_callbacks_as_held_tasks() -> None:
    clock: Clock = SystemClock()
    done = asyncio.Event()
    start = clock.now()

    async def callback() -> None:
        done.set()

    clock.call_later(0, callback)
    await done.wait()
    assert clock.now() >= start
    cancelled = clock.call_later(0, lambda: pytest.fail("cancelled timer fired"))
    cancelled.cancel()
    assert cancelled.cancelled()
    await clock.sleep(0)
    await asyncio.sleep(0)
    assert isinstance(clock, SystemClock) and clock.pending_tasks == 0


async def test_run_holds_time_while_real_work_is_held_or_in_a_thread() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    clock.call_later(300, lambda: fired.append(clock.now()))

    async def real_world_work() -> float:
        with clock.hold():
            await asyncio.sleep(0.02)  # real time, as socket I/O would take: no timer may fire meanwhile
        await asyncio.to_thread(time.sleep, 0.02)  # the same for work in a thread
        return clock.now()

    assert await clock.run(real_world_work()) == 0
    assert fired == []
