"""Every (State, Input) pair, drawn by hypothesis: the next state that tests/legal_edges.py names, or
IllegalTransition and no change.

In the manner of h2's ``test_state_machines.py``: the cheapest strong test there is.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkstream.engine import IllegalTransition, Input, SessionEngine, State, StreamSession, VirtualClock

from ..legal_edges import CLOSE_REASONS, LEGAL


def path_to(state: State, talks: int) -> list[Input]:
    """A shortest list of inputs from created to `state` (with `talks` queued when talking)."""
    parents: dict[State, tuple[State, Input] | None] = {State.CREATED: None}
    todo = deque([State.CREATED])
    while todo:
        current = todo.popleft()
        for (source, inp), dest in LEGAL.items():
            if source is current and dest not in parents and inp is not Input.LAST_TALK_FINISHED:
                parents[dest] = (source, inp)
                todo.append(dest)
    steps: list[Input] = []
    node: State = state
    while (link := parents[node]) is not None:
        node, inp = link
        steps.append(inp)
    steps.reverse()
    if state is State.TALKING:
        steps += [Input.TALK_REQUESTED] * (talks - 1)
    return steps


def snapshot(session: StreamSession) -> tuple[object, ...]:
    return (
        session.state,
        session.close_reason,
        session.talks_pending,
        session.last_activity,
        list(session.history),
        session.idle_deadline,
    )


# ~400 (state, input, queue) combinations: draw enough to meet each of them several times.
@settings(max_examples=1500)
@given(
    state=st.sampled_from(State),
    inp=st.sampled_from(Input),
    talks=st.integers(min_value=1, max_value=4),
    closing=st.sampled_from(list(CLOSE_REASONS)),
    elapsed=st.floats(min_value=0.0, max_value=100.0),
)
def test_result_is_the_tables_state_or_illegal_and_unchanged(
    state: State, inp: Input, talks: int, closing: Input, elapsed: float
) -> None:
    async def run() -> None:
        clock = VirtualClock()
        # Timers far beyond `elapsed`: time passes to stamp the history, and fires a timer only when the
        # session is to be closed by one.
        engine = SessionEngine(clock=clock, idle_timeout=10_000.0, connect_timeout=1_000.0)
        session = engine.open("key")
        if state is not State.CLOSED:
            for step in path_to(state, talks):
                await session.apply(step)
        elif closing is Input.IDLE_EXPIRED:
            await clock.advance(10_000.0)
        elif closing is Input.CONNECT_TIMED_OUT:
            for step in path_to(State.ICE, 1):
                await session.apply(step)
            await clock.advance(1_000.0)
        else:
            await session.apply(closing)
        assert session.close_reason is (CLOSE_REASONS[closing] if state is State.CLOSED else None)
        assert session.state is state
        await clock.advance(elapsed)
        before = snapshot(session)
        expected = LEGAL.get((state, inp))  # the hand-written list, not the product's table
        # The table's edge holds only when the session's data agrees: the talk queue for the two
        # talk-finished inputs, and a deadline that has come for the timers' inputs (whose own timers
        # would have closed the session already, so by hand they are always early here).
        guard_blocks = (
            (inp is Input.TALK_FINISHED and session.talks_pending < 2)
            or (inp is Input.LAST_TALK_FINISHED and session.talks_pending != 1)
            or (inp is Input.IDLE_EXPIRED and clock.now() < session.last_activity + session.idle_timeout)
            or inp is Input.CONNECT_TIMED_OUT
        )
        if expected is None or guard_blocks:
            with pytest.raises(IllegalTransition) as caught:
                await session.apply(inp)
            assert caught.value.state is state
            assert caught.value.input is inp
            assert caught.value.status == 409
            assert snapshot(session) == before
        else:
            assert await session.apply(inp) is expected
            assert session.state is expected
            assert session.history[-1][1:] == (state, inp, expected)
            assert session.history[-1].at == clock.now()

    asyncio.run(run())
