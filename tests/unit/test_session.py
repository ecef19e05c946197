"""StreamSession and SessionEngine on the virtual clock: order, timers, events, registry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from talkstream.engine import (
    IllegalTransition,
    Input,
    InputApplied,
    SessionClosed,
    SessionEngine,
    SessionEvent,
    SessionOpened,
    State,
    StateChanged,
    StreamSession,
    VirtualClock,
)
from talkstream.engine.states import CloseReason

TO_CONNECTED = [Input.OFFER_SENT, Input.ANSWER_RECEIVED, Input.ICE_CONNECTED]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def engine(clock: VirtualClock) -> SessionEngine:
    return SessionEngine(clock=clock)


def hook(engine: SessionEngine, callback: Callable[[Any], Awaitable[None]]) -> None:
    """Run `callback` inside every transition, as an embedding service's async machine hook would."""
    # transitions' stubs type callbacks as synchronous; AsyncMachine awaits coroutine callbacks.
    engine.machine.before_state_change = [cast(Any, callback)]


async def connected(engine: SessionEngine, idle_timeout: float | None = None) -> StreamSession:
    session = engine.open("key", idle_timeout=idle_timeout)
    for inp in TO_CONNECTED:
        await session.apply(inp)
    return session


async def test_open_sets_ids_owner_times(engine: SessionEngine, clock: VirtualClock) -> None:
    await clock.advance(7)
    session = engine.open("owner-1")
    assert session.stream_id.startswith("strm_") and len(session.stream_id) > 15
    assert session.session_id and session.session_id != engine.open("owner-1").session_id
    assert (session.owner, session.state, session.close_reason) == ("owner-1", State.CREATED, None)
    assert session.created_at == session.last_activity == 7
    assert session.idle_timeout == 300 and session.idle_deadline == 307
    assert engine.get(session.stream_id) is session


async def test_open_validates_timeouts_and_ids(engine: SessionEngine) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        engine.open("k", idle_timeout=301)
    with pytest.raises(ValueError, match="idle_timeout"):
        engine.open("k", idle_timeout=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        engine.open("k", connect_timeout=-1)
    engine.open("k", stream_id="strm_x")
    with pytest.raises(ValueError, match="already open"):
        engine.open("k", stream_id="strm_x")
    assert engine.open("k", idle_timeout=60).idle_timeout == 60


async def test_a_full_life(engine: SessionEngine) -> None:
    session = await connected(engine)
    await session.apply(Input.TALK_REQUESTED)
    await session.apply(Input.TALK_REQUESTED)
    assert (session.state, session.talks_pending) == (State.TALKING, 2)
    await session.apply(Input.TALK_STARTED)
    assert await session.finish_talk() is State.TALKING
    assert [e.input for e in session.history][-1:] == [Input.TALK_FINISHED]
    assert await session.finish_talk() is State.CONNECTED
    assert [e.input for e in session.history][-1:] == [Input.LAST_TALK_FINISHED]
    assert await session.close() is CloseReason.DELETED
    assert session.closed and engine.get(session.stream_id) is None and len(engine) == 0


async def test_illegal_input_names_state_and_changes_nothing(engine: SessionEngine) -> None:
    session = engine.open("k")
    history = list(session.history)
    with pytest.raises(IllegalTransition) as caught:
        await session.apply(Input.TALK_REQUESTED)
    err = caught.value
    assert (err.state, err.input, err.status, err.kind) == (
        State.CREATED,
        Input.TALK_REQUESTED,
        409,
        "NotReadyError",
    )
    assert "created" in err.description
    assert err.to_body()["details"] == {"state": "created", "input": "talk_requested"}
    assert session.state is State.CREATED and list(session.history) == history and session.talks_pending == 0


async def test_last_talk_finished_with_talks_still_queued_is_refused(engine: SessionEngine) -> None:
    session = await connected(engine)
    await session.apply(Input.TALK_REQUESTED)
    await session.apply(Input.TALK_REQUESTED)
    with pytest.raises(IllegalTransition, match="2 talks pending"):
        await session.apply(Input.LAST_TALK_FINISHED)
    await session.apply(Input.TALK_FINISHED)
    with pytest.raises(IllegalTransition, match="last one"):
        await session.apply(Input.TALK_FINISHED)
    assert session.allows(Input.LAST_TALK_FINISHED) and not session.allows(Input.TALK_FINISHED)


async def test_close_is_idempotent_and_only_takes_closing_inputs(engine: SessionEngine) -> None:
    session = engine.open("k")
    with pytest.raises(ValueError, match="does not close"):
        await session.close(Input.TALK_REQUESTED)
    assert await session.close(Input.ICE_FAILED) is CloseReason.ICE_FAILED
    assert await session.close() is CloseReason.ICE_FAILED  # first reason kept
    with pytest.raises(IllegalTransition):
        await session.apply(Input.DELETE_REQUESTED)


# -- order ---------------------------------------------------------------------------------------------


async def test_concurrent_inputs_apply_in_arrival_order_through_a_suspending_machine(
    engine: SessionEngine,
) -> None:
    order: list[str] = []

    async def suspend(event: object) -> None:
        order.append(f"begin {event.event.name}")  # type: ignore[attr-defined]
        for _ in range(5):
            await asyncio.sleep(0)
        order.append(f"end {event.event.name}")  # type: ignore[attr-defined]

    hook(engine, suspend)
    session = engine.open("k")
    inputs = [Input.CANDIDATE_RECEIVED, Input.OFFER_SENT, Input.CANDIDATE_RECEIVED, Input.ANSWER_RECEIVED]
    results = await asyncio.gather(*(session.apply(i) for i in inputs))
    assert results == [State.CREATED, State.NEGOTIATING, State.NEGOTIATING, State.ICE]
    assert [e.input for e in session.history] == inputs
    # Never two transitions in flight at once: each ends before the next begins.
    assert order == [x for i in inputs for x in (f"begin {i.value}", f"end {i.value}")]


async def test_a_cancelled_waiter_does_not_block_the_queue(engine: SessionEngine) -> None:
    gate = asyncio.Event()

    async def hold(_event: object) -> None:
        await gate.wait()

    hook(engine, hold)
    session = engine.open("k")
    first = asyncio.ensure_future(session.apply(Input.OFFER_SENT))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(session.apply(Input.CANDIDATE_RECEIVED))
    third = asyncio.ensure_future(session.apply(Input.ANSWER_RECEIVED))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()
    assert await first is State.NEGOTIATING
    assert await third is State.ICE
    assert second.cancelled()
    assert [e.input for e in session.history] == [Input.OFFER_SENT, Input.ANSWER_RECEIVED]
    assert not session._busy


async def test_a_waiter_cancelled_after_being_handed_the_turn_passes_it_on(engine: SessionEngine) -> None:
    gate = asyncio.Event()

    async def hold(_event: object) -> None:
        await gate.wait()

    hook(engine, hold)
    session = engine.open("k")
    first = asyncio.ensure_future(session.apply(Input.OFFER_SENT))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(session.apply(Input.CANDIDATE_RECEIVED))
    third = asyncio.ensure_future(session.apply(Input.ANSWER_RECEIVED))
    await asyncio.sleep(0)
    gate.set()
    await first  # hands the turn to `second`, which has not resumed yet
    second.cancel()
    assert await third is State.ICE
    assert [e.input for e in session.history] == [Input.OFFER_SENT, Input.ANSWER_RECEIVED]


async def test_a_cancelled_apply_ends_cancelled_and_changes_nothing(engine: SessionEngine) -> None:
    """transitions turns a cancellation inside a transition into False; the session must not turn that
    into an IllegalTransition the cancelled task then carries (and a loop catching it carries on)."""
    session = engine.open("k")
    inside = asyncio.Event()

    async def hold(_event: object) -> None:
        inside.set()
        await asyncio.Event().wait()  # until cancelled

    hook(engine, hold)
    task = asyncio.ensure_future(session.apply(Input.OFFER_SENT))
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state is State.CREATED and list(session.history) == []
    engine.machine.before_state_change = []
    assert await session.apply(Input.OFFER_SENT) is State.NEGOTIATING  # the turn was passed on


# -- timers ----------------------------------------------------------------------------------------------


async def test_idle_expiry_exactly_at_last_message_plus_timeout(
    engine: SessionEngine, clock: VirtualClock
) -> None:
    session = await connected(engine, idle_timeout=60)
    await clock.advance(50)
    await session.apply(Input.CANDIDATE_RECEIVED)  # a message: deadline moves to 110
    await clock.advance(59.999)
    assert session.state is State.CONNECTED
    await clock.advance(0.001)
    assert session.close_reason is CloseReason.EXPIRED
    assert session.history[-1].at == 110 == clock.now()


async def test_a_talk_pushes_the_idle_deadline_and_its_playing_does_not(
    engine: SessionEngine, clock: VirtualClock
) -> None:
    session = await connected(engine, idle_timeout=300)
    await clock.advance(250)
    await session.apply(Input.TALK_REQUESTED)  # a message: the deadline moves from 300 to 550
    assert session.idle_deadline == 550
    await clock.advance(1)
    await session.apply(Input.TALK_STARTED)  # the player's reports are not messages
    await clock.advance(9)
    await session.finish_talk()
    assert session.idle_deadline == 550
    await clock.advance_to(549.999)
    assert session.state is State.CONNECTED
    await clock.advance_to(550)
    assert session.close_reason is CloseReason.EXPIRED and session.history[-1].at == 550


async def test_transport_reports_do_not_count_as_messages(engine: SessionEngine, clock: VirtualClock) -> None:
    session = engine.open("k", idle_timeout=10)
    for inp in [Input.OFFER_SENT, Input.ANSWER_RECEIVED]:
        await session.apply(inp)
    await clock.advance(5)
    await session.apply(Input.ICE_CONNECTED)  # not a protocol message
    await clock.advance(5)
    assert session.close_reason is CloseReason.EXPIRED and clock.now() == 10


async def test_expiry_by_hand_before_the_deadline_is_refused(
    engine: SessionEngine, clock: VirtualClock
) -> None:
    session = engine.open("k", idle_timeout=10)
    await clock.advance(9)
    with pytest.raises(IllegalTransition, match="idle deadline"):
        await session.apply(Input.IDLE_EXPIRED)
    with pytest.raises(IllegalTransition, match="connect deadline"):
        await session.apply(Input.CONNECT_TIMED_OUT)
    assert session.state is State.CREATED


async def test_connect_timeout_counts_from_entering_ice(clock: VirtualClock) -> None:
    engine = SessionEngine(clock=clock, connect_timeout=30)
    session = engine.open("k")
    await session.apply(Input.OFFER_SENT)
    await clock.advance(100)  # negotiating: only the idle timer runs
    await session.apply(Input.ANSWER_RECEIVED)
    await clock.advance(29.5)
    assert session.state is State.ICE
    await clock.advance(0.5)
    assert session.close_reason is CloseReason.CONNECT_TIMEOUT and clock.now() == 130


async def test_idle_expiry_wins_a_tie_with_the_connect_timeout(clock: VirtualClock) -> None:
    """Found by the stateful test: the idle timer, re-armed late, fired after the connect timer set for the
    same instant, so the reason depended on the order the timers were armed in."""
    engine = SessionEngine(clock=clock, idle_timeout=1.0, connect_timeout=1.0)
    session = engine.open("key")
    await clock.advance_to(0.999999)
    await session.apply(Input.OFFER_SENT)
    await session.apply(Input.ANSWER_RECEIVED)  # idle and connect deadlines both at 0.999999 + 1.0
    tie = 0.999999 + 1.0
    assert session.idle_deadline == tie
    await clock.advance_to(tie)
    assert session.close_reason is CloseReason.EXPIRED
    assert [e.input for e in session.history][-1] is Input.IDLE_EXPIRED


async def test_connecting_in_time_cancels_the_connect_timer(clock: VirtualClock) -> None:
    engine = SessionEngine(clock=clock, connect_timeout=30)
    session = await connected(engine)
    await clock.advance(299)
    assert session.state is State.CONNECTED


async def test_a_closed_session_cancels_its_timers(engine: SessionEngine, clock: VirtualClock) -> None:
    session = engine.open("k")
    await session.apply(Input.OFFER_SENT)
    await session.apply(Input.ANSWER_RECEIVED)
    assert clock.pending == 2  # idle and connect
    await session.close()
    assert clock.pending == 0


async def test_expiry_waits_behind_a_queued_message_and_then_spares_the_session(
    engine: SessionEngine, clock: VirtualClock
) -> None:
    gate = asyncio.Event()

    async def hold(_event: object) -> None:
        await gate.wait()

    session = engine.open("k", idle_timeout=10)
    await clock.advance(9.5)
    hook(engine, hold)
    message = asyncio.ensure_future(session.apply(Input.CANDIDATE_RECEIVED))  # holds the turn
    await asyncio.sleep(0)
    expiry = asyncio.ensure_future(clock.advance(0.5))  # the idle timer fires, waits for its turn
    await asyncio.sleep(0)
    gate.set()
    await message
    await expiry
    assert session.state is State.CREATED, "the message landed first, so the session lives on"
    # The message counts from when it was applied (its transition ended at t=10, when the expiry was due).
    assert session.history[-1].at == 10 and session.idle_deadline == 20
    engine.machine.before_state_change = []
    await clock.advance(9.9)
    assert session.state is State.CREATED
    await clock.advance(0.1)
    assert session.close_reason is CloseReason.EXPIRED and session.history[-1].at == 20


# -- events ---------------------------------------------------------------------------------------------


async def test_events_state_changed_input_applied_closed(engine: SessionEngine) -> None:
    seen: list[SessionEvent] = []
    everything: list[SessionEvent] = []
    engine.subscribe(everything.append)
    session = engine.open("k")
    session.subscribe(seen.append)
    await session.apply(Input.CANDIDATE_RECEIVED)
    await session.apply(Input.OFFER_SENT)
    await session.close(Input.ERROR)
    sid = session.stream_id
    assert seen == [
        InputApplied(stream_id=sid, at=0, state=State.CREATED, input=Input.CANDIDATE_RECEIVED),
        StateChanged(stream_id=sid, at=0, old=State.CREATED, new=State.NEGOTIATING, input=Input.OFFER_SENT),
        StateChanged(stream_id=sid, at=0, old=State.NEGOTIATING, new=State.CLOSED, input=Input.ERROR),
        SessionClosed(stream_id=sid, at=0, reason=CloseReason.ERROR, previous=State.NEGOTIATING),
    ]
    assert everything == [SessionOpened(stream_id=sid, at=0, owner="k"), *seen]


async def test_subscription_cancel_stops_delivery(engine: SessionEngine) -> None:
    seen: list[SessionEvent] = []
    session = engine.open("k")
    subscription = session.subscribe(seen.append)
    await session.apply(Input.OFFER_SENT)
    subscription.cancel()
    subscription.cancel()
    await session.apply(Input.ANSWER_RECEIVED)
    assert len(seen) == 1 and not subscription.active


async def test_a_failing_subscriber_is_logged_and_breaks_nothing(
    engine: SessionEngine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[SessionEvent] = []

    def broken(_event: SessionEvent) -> None:
        raise RuntimeError("subscriber bug")

    session = engine.open("k")
    session.subscribe(broken)
    session.subscribe(seen.append)
    with caplog.at_level(logging.ERROR):
        assert await session.apply(Input.OFFER_SENT) is State.NEGOTIATING
    assert len(seen) == 1
    assert "subscriber bug" in caplog.text


async def test_event_stream_ends_after_close(engine: SessionEngine, clock: VirtualClock) -> None:
    session = engine.open("k", idle_timeout=5)
    stream = session.events()

    async def collect() -> list[SessionEvent]:
        return [event async for event in stream]

    collector = asyncio.ensure_future(collect())
    await session.apply(Input.OFFER_SENT)
    await clock.advance(5)
    events = await collector
    assert [type(e) for e in events] == [StateChanged, StateChanged, SessionClosed]
    assert isinstance(events[-1], SessionClosed) and events[-1].reason is CloseReason.EXPIRED
    assert [e async for e in session.events()] == []  # already closed: ends at once


async def test_engine_event_stream_sees_all_sessions_until_aclose(engine: SessionEngine) -> None:
    stream = engine.events()
    a, b = engine.open("a"), engine.open("b")
    await a.apply(Input.OFFER_SENT)
    await b.close()
    got = [await anext(stream) for _ in range(5)]
    assert [type(e).__name__ for e in got] == [
        "SessionOpened",
        "SessionOpened",
        "StateChanged",
        "StateChanged",
        "SessionClosed",
    ]
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_close_all(engine: SessionEngine) -> None:
    sessions = [engine.open("k") for _ in range(5)]
    await sessions[0].apply(Input.OFFER_SENT)
    await engine.close_all(Input.TRANSPORT_CLOSED)
    assert len(engine) == 0
    assert {s.close_reason for s in sessions} == {CloseReason.TRANSPORT_CLOSED}
