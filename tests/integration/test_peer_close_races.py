"""A peer closed while it gathers (an offer or an answer being made) leaves no socket open.

Gathering opens one UDP socket per address and component, one await at a time. A close that lands between
two of them used to leave the later ones open until the garbage collector found them (3 per peer, each a
ResourceWarning): at a shutdown with creates in flight, or a client giving up mid-answer. The close is
tried after every number of event-loop steps from 0 (before gathering starts) to past its end, so the
interleavings do not depend on the machine's speed. Sockets are counted as open file descriptors, with no
garbage collection in between: closed means closed, not collectable.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import psutil
import pytest

from talkstream.engine.errors import TransportError
from talkstream.engine.ports import PeerOptions
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.aiortc_server import AiortcServerTransport

pytestmark = pytest.mark.timeout(120)

STEPS = range(14)  # 0: closed before gathering starts; 13: well after it has ended (5 here)


def nothing(*_: object) -> None:
    return None


def assert_nothing_left_for_the_collector() -> None:
    """No socket (or other resource) is only closed when garbage collection finds it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("steps", STEPS)
async def test_a_server_peer_closed_while_making_its_offer_keeps_no_socket(steps: int) -> None:
    process = psutil.Process()
    transport = AiortcServerTransport()
    gc.collect()
    before = process.num_fds()
    peer = transport.create_peer("strm_race", PeerOptions(), nothing)
    offering = asyncio.ensure_future(peer.make_offer())
    for _ in range(steps):
        await asyncio.sleep(0)
    await peer.close()
    try:
        outcome = await offering
        assert outcome.startswith("v=0")  # it was made before the close, and the close came after
    except TransportError as exc:
        assert "closed" in str(exc) or "InvalidState" in repr(exc.__cause__), exc
    assert process.num_fds() == before
    assert transport.live_peers == 0
    assert_nothing_left_for_the_collector()
    await transport.aclose()


@pytest.mark.parametrize("steps", STEPS)
async def test_a_client_peer_closed_while_making_its_answer_keeps_no_socket(steps: int) -> None:
    process = psutil.Process()
    server = AiortcServerTransport()
    offerer = server.create_peer("strm_race", PeerOptions(), nothing)
    offer = await offerer.make_offer()
    client = AiortcClientTransport()
    gc.collect()
    before = process.num_fds()
    peer = client.create_peer("strm_race", nothing, nothing, None)
    answering = asyncio.ensure_future(peer.answer(offer))
    for _ in range(steps):
        await asyncio.sleep(0)
    await peer.close()
    try:
        outcome = await answering
        assert outcome.startswith("v=0")
    except TransportError as exc:
        assert "closed" in str(exc) or "InvalidState" in repr(exc.__cause__), exc
    assert process.num_fds() == before
    assert_nothing_left_for_the_collector()
    await server.aclose()
    await client.aclose()
