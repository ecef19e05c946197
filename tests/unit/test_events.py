"""EventHub and EventStream on their own."""

from __future__ import annotations

import asyncio

import pytest

from talkstream.engine.events import EventHub, EventStream


async def test_hub_delivers_in_subscription_order_and_survives_self_removal() -> None:
    hub: EventHub[int] = EventHub()
    seen: list[str] = []

    def once(event: int) -> None:
        seen.append(f"a{event}")
        first.cancel()

    first = hub.subscribe(once)
    hub.subscribe(lambda e: seen.append(f"b{e}"))
    hub.publish(1)
    hub.publish(2)
    assert seen == ["a1", "b1", "b2"]
    assert len(hub) == 1


async def test_same_callback_twice_is_two_subscriptions() -> None:
    hub: EventHub[int] = EventHub()
    seen: list[int] = []
    one = hub.subscribe(seen.append)
    hub.subscribe(seen.append)
    one.cancel()
    hub.publish(3)
    assert seen == [3]


async def test_stream_buffers_from_creation_and_ends_on_last() -> None:
    hub: EventHub[int] = EventHub()
    stream = EventStream(hub, last=lambda e: e == 3)
    for e in range(5):
        hub.publish(e)
    assert [e async for e in stream] == [0, 1, 2, 3]
    assert len(hub) == 0


async def test_stream_waits_for_events() -> None:
    hub: EventHub[int] = EventHub()
    stream = EventStream(hub)
    getter = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not getter.done()
    hub.publish(7)
    assert await getter == 7
    stream.end()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
