"""Time for the engine: the `Clock` protocol, `SystemClock` (the event loop's monotonic time) and
`VirtualClock` (moved by hand or by `run`, for tests and replays).

What it must never do: read wall-clock time for deadlines, or sleep in real time on the virtual clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import inspect
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Clock", "SystemClock", "Timer", "TimerCallback", "VirtualClock", "run_with_timeout"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
TimerCallback = Callable[[], Awaitable[object] | None]


@runtime_checkable
class Timer(Protocol):
    """A scheduled callback. `cancel` is idempotent; a fired timer's cancel does nothing."""

    @property
    def when(self) -> float: ...

    def cancel(self) -> None: ...

    def cancelled(self) -> bool: ...


class Clock(Protocol):
    """What the engine needs of time: now, sleep and timers, all in seconds on one monotonic scale."""

    def now(self) -> float: ...

    async def sleep(self, delay: float) -> None: ...

    def call_at(self, when: float, callback: TimerCallback) -> Timer: ...

    def call_later(self, delay: float, callback: TimerCallback) -> Timer: ...


def _log_task_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("timer callback failed", exc_info=task.exception())


class _SystemTimer:
    __slots__ = ("_clock", "_handle", "_task", "_when")

    def __init__(self, clock: SystemClock, when: float) -> None:
        self._clock = clock
        self._when = when
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None

    @property
    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def cancelled(self) -> bool:
        return self._handle is not None and self._handle.cancelled()


class SystemClock:
    """The running event loop's monotonic clock (``loop.time()``).

    Timers are loop timers; an awaitable returned by a callback runs as a task that the clock holds until it
    ends, logging (never swallowing silently) any exception it raises.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))

    def call_at(self, when: float, callback: TimerCallback) -> Timer:
        timer = _SystemTimer(self, when)

        def fire() -> None:
            result = callback()
            if inspect.isawaitable(result):
                task: asyncio.Task[object] = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(_log_task_failure)

        timer._handle = asyncio.get_running_loop().call_at(when, fire)
        return timer

    def call_later(self, delay: float, callback: TimerCallback) -> Timer:
        return self.call_at(self.now() + max(delay, 0.0), callback)

    @property
    def pending_tasks(self) -> int:
        """Tasks started by timer callbacks that have not finished yet."""
        return len(self._tasks)


class _VirtualTimer:
    __slots__ = ("_callback", "_cancelled", "_fired", "_when")

    def __init__(self, when: float, callback: TimerCallback) -> None:
        self._when = when
        self._callback: TimerCallback | None = callback
        self._cancelled = False
        self._fired = False

    @property
    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        if not self._fired:
            self._cancelled = True
            self._callback = None  # drop references held by the callback at once

    def cancelled(self) -> bool:
        return self._cancelled

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "fired" if self._fired else "pending"
        return f"<VirtualTimer when={self._when} {state}>"


class VirtualClock:
    """A clock that moves only when told to.

    `advance(seconds)` fires every timer due up to the new time in deadline order (ties in the order they
    were scheduled), setting `now()` to each timer's deadline as it fires and awaiting whatever the callback
    returns before the next one; timers scheduled meanwhile join in if they fall due. After each timer the
    event loop gets a few turns, so coroutines woken by `sleep` run before later timers fire.
    """

    #: loop turns given after each fired timer to the coroutines it woke
    settle_turns = 3

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()
        self._holds = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Within this block `run` does not jump time: real-world work (network I/O) is under way."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: TimerCallback) -> Timer:
        timer = _VirtualTimer(float(when), callback)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: TimerCallback) -> Timer:
        return self.call_at(self._now + max(delay, 0.0), callback)

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(delay, wake)
        try:
            await future
        finally:
            timer.cancel()

    def next_deadline(self) -> float | None:
        """The deadline of the earliest pending timer, or None."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        return sum(1 for _, _, timer in self._heap if not timer.cancelled())

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled():
            heapq.heappop(self._heap)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer that falls due on the way."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, target: float) -> None:
        """Move time forward to `target` (no-op if it is in the past), firing due timers in order."""
        await self._settle()
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0][0] > target:
                break
            when, _, timer = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            callback, timer._callback = timer._callback, None
            timer._fired = True
            if callback is not None:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            await self._settle()
        self._now = max(self._now, target)

    async def _settle(self) -> None:
        for _ in range(self.settle_turns):
            await asyncio.sleep(0)

    async def run(
        self,
        awaitable: Awaitable[T],
        *,
        max_jumps: int = 1_000_000,
        idle_turns: int = 64,
        stall: float = 60.0,
    ) -> T:
        """Run `awaitable` to completion, jumping time to the next timer whenever it is waiting.

        For tests and replays of code that sleeps or times out on this clock: instead of advancing by hand,
        time jumps once nothing else can make progress: no task is ready to run and no thread-pool work is
        in flight (`run` installs a default executor that counts its jobs, so work handed to threads,
        `asyncio.to_thread` included, holds time still until it is done). Raises RuntimeError when it waits
        with no timer left to fire and nothing running for `stall` real seconds.
        """
        loop = asyncio.get_running_loop()
        executor = _counting_executor(loop)
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        stalled_since: float | None = None
        try:
            for _ in range(max_jumps):
                await self._until_quiet(loop, task, idle_turns)
                if task.done():
                    return task.result()
                if executor.pending or self._holds:
                    await asyncio.sleep(0.001)  # real time: a thread or real I/O is working
                    continue
                deadline = self.next_deadline()
                if deadline is None:
                    stalled_since = stalled_since or loop.time()
                    if loop.time() - stalled_since > stall:
                        raise RuntimeError("awaitable is blocked with no timer pending on the virtual clock")
                    await asyncio.sleep(0.001)
                    continue
                stalled_since = None
                await self.advance_to(deadline)
            raise RuntimeError(f"awaitable did not finish within {max_jumps} clock jumps")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    @staticmethod
    async def _until_quiet(
        loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any], idle_turns: int
    ) -> None:
        """Yield until nothing else is ready to run (or `task` is done).

        CPython's loop keeps its ready callbacks in ``_ready``; when it is empty as this coroutine resumes,
        every other task is waiting. Other loops lack it: then `idle_turns` turns stand in for the check.
        """
        ready = getattr(loop, "_ready", None)
        quiet = 0
        for _ in range(idle_turns * 1000 if ready is not None else idle_turns):
            await asyncio.sleep(0)
            if task.done():
                return
            if ready is not None:
                quiet = quiet + 1 if len(ready) == 0 else 0
                if quiet >= 2:
                    return


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that knows how many of its jobs are still running."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="talkstream-virtual")
        self.pending = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        with self._lock:
            self.pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: object) -> None:
        with self._lock:
            self.pending -= 1


def _counting_executor(loop: asyncio.AbstractEventLoop) -> _CountingExecutor:
    executor = getattr(loop, "_talkstream_counting_executor", None)
    if executor is None:
        executor = _CountingExecutor()
        loop.set_default_executor(executor)
        loop._talkstream_counting_executor = executor  # type: ignore[attr-defined]
    return executor


async def run_with_timeout(clock: Clock, delay: float, awaitable: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it when `delay` seconds pass on `clock`.

    Raises the builtin ``TimeoutError`` when the clock ran out (callers translate it into their own
    error); a cancellation of the caller itself propagates unchanged.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    fired = False

    def expire() -> None:
        nonlocal fired
        if not task.done():
            fired = True
            task.cancel()

    timer = clock.call_later(delay, expire)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if fired and (current is None or current.cancelling() == 0):
            raise TimeoutError(f"timed out after {delay} s") from None
        raise
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
