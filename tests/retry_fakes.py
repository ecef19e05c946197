"""A scripted operation for retry tests: each call plays the next outcome and records when it came."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import TalkstreamError

HANG = "hang"


class Scripted:
    """Outcomes in order: an error instance to raise, HANG to wait forever, anything else to return."""

    def __init__(self, clock: VirtualClock, outcomes: Sequence[object]) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.calls: list[tuple[int, float]] = []  # (attempt, time called)
        self.ended: list[float] = []  # when each call ended (raised or returned)

    async def __call__(self, attempt: int) -> object:
        self.calls.append((attempt, self.clock.now()))
        outcome = self.outcomes[min(len(self.calls) - 1, len(self.outcomes) - 1)]
        try:
            if outcome == HANG:
                await asyncio.get_running_loop().create_future()
            if isinstance(outcome, TalkstreamError):
                raise outcome
            return outcome
        finally:
            self.ended.append(self.clock.now())
