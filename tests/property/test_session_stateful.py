"""A real StreamSession on the virtual clock against a plain reference model, step by step.

Random inputs (one at a time, or several from concurrent tasks at once) and clock advances (random, or to
exactly a deadline or just short of it). Invariants: the history holds only table edges, closed is
absorbing, expiry happens exactly at ``last message + idle timeout`` and never before, the connect timeout
exactly ``connect_timeout`` after entering ice, and concurrent inputs end as if applied in arrival order.

Hypothesis has no async rules: the machine owns one event loop and runs each rule to completion on it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from talkstream.engine import IllegalTransition, Input, SessionEngine, State, VirtualClock
from talkstream.engine.states import CloseReason

from ..legal_edges import CLOSE_REASONS, LEGAL, MESSAGES


class Reference:
    """The protocol's rules written the plainest way: no transitions, no queue, no timers."""

    def __init__(self, idle_timeout: float, connect_timeout: float) -> None:
        self.state = State.CREATED
        self.reason: CloseReason | None = None
        self.talks = 0
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.last_message = 0.0
        self.ice_since: float | None = None
        self.closed_at: float | None = None

    def legal(self, inp: Input, now: float) -> bool:
        if (self.state, inp) not in LEGAL:
            return False
        if inp is Input.IDLE_EXPIRED:
            return now >= self.last_message + self.idle_timeout
        if inp is Input.CONNECT_TIMED_OUT:
            return self.ice_since is not None and now >= self.ice_since + self.connect_timeout
        if inp is Input.TALK_FINISHED:
            return self.talks >= 2
        if inp is Input.LAST_TALK_FINISHED:
            return self.talks == 1
        return True

    def apply(self, inp: Input, now: float) -> bool:
        if not self.legal(inp, now):
            return False
        new = LEGAL[(self.state, inp)]
        if inp is Input.TALK_REQUESTED:
            self.talks += 1
        if inp in (Input.TALK_FINISHED, Input.LAST_TALK_FINISHED):
            self.talks -= 1
        if inp in (Input.INTERRUPT_RECEIVED, Input.INTERRUPT_SENT):
            self.talks = 0
        if inp in MESSAGES:
            self.last_message = now
        if new is State.ICE and self.state is not State.ICE:
            self.ice_since = now
        if new is not State.ICE:
            self.ice_since = None
        if new is State.CLOSED:
            self.reason = CLOSE_REASONS[inp]
            self.closed_at = now
        self.state = new
        return True

    def next_timer(self) -> tuple[float, Input] | None:
        if self.state is State.CLOSED:
            return None
        timers = [(self.last_message + self.idle_timeout, Input.IDLE_EXPIRED)]
        if self.ice_since is not None:
            timers.append((self.ice_since + self.connect_timeout, Input.CONNECT_TIMED_OUT))
        return min(timers, key=lambda t: t[0])

    def advance(self, now: float, target: float) -> None:
        while (timer := self.next_timer()) is not None and timer[0] <= target:
            self.apply(timer[1], max(now, timer[0]))


inputs = st.sampled_from(Input)


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = VirtualClock()
        self.closed_seen = False

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    @initialize(
        idle=st.sampled_from([5.0, 30.0, 300.0]) | st.floats(min_value=0.5, max_value=300.0),
        connect=st.sampled_from([1.0, 30.0]) | st.floats(min_value=0.5, max_value=60.0),
        yields=st.integers(min_value=0, max_value=3),
    )
    def open_session(self, idle: float, connect: float, yields: int) -> None:
        self.engine = SessionEngine(clock=self.clock, connect_timeout=connect)
        if yields:
            # A callback that suspends the transition, as an embedding service's async hook would:
            # concurrent inputs then really overlap, and transitions would cancel all but one of them
            # if the session did not queue them.
            async def suspend(_event: object) -> None:
                for _ in range(yields):
                    await asyncio.sleep(0)

            # transitions' stubs type callbacks as synchronous; AsyncMachine awaits coroutines.
            self.engine.machine.before_state_change = [cast(Any, suspend)]
        self.session = self.engine.open("key", idle_timeout=idle)
        self.ref = Reference(idle, connect)

    @rule(inp=inputs)
    def apply_one(self, inp: Input) -> None:
        now = self.clock.now()
        expected = self.ref.apply(inp, now)
        try:
            result = self.run(self.session.apply(inp))
        except IllegalTransition as exc:
            assert not expected, f"{inp} refused in {exc.state}"
        else:
            assert expected, f"{inp} accepted, reference refuses it"
            assert result is self.ref.state

    @rule(batch=st.lists(inputs, min_size=2, max_size=6))
    def apply_concurrently(self, batch: list[Input]) -> None:
        now = self.clock.now()
        expected = [self.ref.apply(inp, now) for inp in batch]

        async def together() -> list[Any]:
            # All tasks start before any finishes: they meet in the session's queue.
            return await asyncio.gather(*(self.session.apply(i) for i in batch), return_exceptions=True)

        results = self.run(together())
        for inp, ok, result in zip(batch, expected, results, strict=True):
            if ok:
                assert isinstance(result, State), f"{inp}: {result!r}"
            else:
                assert isinstance(result, IllegalTransition), f"{inp}: {result!r}"
        applied = [e.input for e in self.session.history][-sum(expected) :] if any(expected) else []
        assert applied == [i for i, ok in zip(batch, expected, strict=True) if ok][-len(applied) :]

    @rule(dt=st.floats(min_value=0.0, max_value=400.0))
    def advance(self, dt: float) -> None:
        self._advance_to(self.clock.now() + dt)

    @precondition(lambda self: self.ref.next_timer() is not None)
    @rule(offset=st.sampled_from([0.0, -1e-6, -0.5, 1e-6]))
    def advance_to_a_deadline(self, offset: float) -> None:
        timer = self.ref.next_timer()
        assert timer is not None
        self._advance_to(max(self.clock.now(), timer[0] + offset))

    def _advance_to(self, target: float) -> None:
        now = self.clock.now()
        self.ref.advance(now, target)
        self.run(self.clock.advance_to(target))

    @invariant()
    def matches_reference(self) -> None:
        if not hasattr(self, "session"):
            return
        assert self.session.state is self.ref.state
        assert self.session.close_reason is self.ref.reason
        assert self.session.talks_pending == self.ref.talks

    @invariant()
    def history_holds_only_table_edges(self) -> None:
        if not hasattr(self, "session"):
            return
        for entry in self.session.history:
            assert LEGAL[(entry.source, entry.input)] is entry.dest

    @invariant()
    def closed_is_absorbing(self) -> None:
        if not hasattr(self, "session"):
            return
        if self.closed_seen:
            assert self.session.state is State.CLOSED
            assert self.session.history[-1].dest is State.CLOSED
        self.closed_seen = self.session.state is State.CLOSED

    @invariant()
    def expiry_exactly_at_the_deadline(self) -> None:
        if not hasattr(self, "session"):
            return
        session = self.session
        if session.state is not State.CLOSED:
            assert self.clock.now() < session.idle_deadline, "alive past its idle deadline"
            assert self.engine.get(session.stream_id) is session
        else:
            assert self.engine.get(session.stream_id) is None
            last = session.history[-1]
            if session.close_reason is CloseReason.EXPIRED:
                assert last.at == session.last_activity + session.idle_timeout
            if session.close_reason is CloseReason.CONNECT_TIMEOUT:
                assert self.ref.closed_at == last.at


SessionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSession = SessionMachine.TestCase
