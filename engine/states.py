"""The session state machine as one table: `State`, `Input`, `TRANSITIONS`, the closing inputs and their
reasons, the inputs that count as protocol messages, and the talk-queue guards.

What it must never do: hold logic; guards that need a session's data are checked in `engine.session`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "CLOSING_INPUTS",
    "LIVE_STATES",
    "MESSAGE_INPUTS",
    "TALK_QUEUE_GUARDS",
    "TRANSITIONS",
    "CloseReason",
    "Input",
    "State",
    "TalkQueueGuard",
    "mermaid_diagram",
]


class State(enum.Enum):
    """Where a stream session is in its life, in the order it goes through them."""

    CREATED = "created"  # the session exists; no offer yet
    NEGOTIATING = "negotiating"  # the offer is out; waiting for the answer
    ICE = "ice"  # the answer is applied; connectivity checks run
    CONNECTED = "connected"  # media can flow; no talk is playing
    TALKING = "talking"  # one talk plays, more may be queued behind it
    CLOSED = "closed"  # over: nothing leads out of here


class Input(enum.Enum):
    """Everything that can happen to a session, named with its origin and direction."""

    # Offer/answer (HTTP: POST /talks/streams, POST /talks/streams/{id}/sdp)
    OFFER_SENT = "offer_sent"  # server: its offer went out in the create response
    OFFER_RECEIVED = "offer_received"  # client: the create response brought the server's offer
    ANSWER_RECEIVED = "answer_received"  # server: the client's answer arrived and was applied
    ANSWER_SENT = "answer_sent"  # client: the server accepted our answer
    # Trickle ICE (HTTP: POST /talks/streams/{id}/ice), end-of-candidates included
    CANDIDATE_RECEIVED = "candidate_received"  # server: a client candidate arrived
    CANDIDATE_SENT = "candidate_sent"  # client: the server accepted one of our candidates
    # Transport reports
    ICE_CONNECTED = "ice_connected"  # ICE reached connected or completed
    ICE_FAILED = "ice_failed"
    TRANSPORT_CLOSED = "transport_closed"  # the peer connection closed under us
    # Talks (HTTP: POST /talks/streams/{id}; data channel: stream/started, stream/done)
    TALK_REQUESTED = "talk_requested"  # a talk was accepted and queued
    TALK_STARTED = "talk_started"  # a talk's media began
    TALK_FINISHED = "talk_finished"  # a talk ended and another is still queued
    LAST_TALK_FINISHED = "last_talk_finished"  # a talk ended and none is left
    # Interrupt (data channel: {"type": "stream/interrupt", "videoId": ...}): the talk playing stops within a
    # frame and the queued ones are dropped; with nothing playing it changes nothing but the idle deadline.
    INTERRUPT_RECEIVED = "interrupt_received"  # server: a client's interrupt arrived
    INTERRUPT_SENT = "interrupt_sent"  # client: we sent one
    # Streamed input (WebSocket: stream-text and stream-audio chunks after the one that started the talk)
    CHUNK_RECEIVED = "chunk_received"  # server: more of the talk playing arrived
    CHUNK_SENT = "chunk_sent"  # client: we sent more of it
    # Ends (HTTP: DELETE /talks/streams/{id}; the engine's timers; failures)
    DELETE_REQUESTED = "delete_requested"
    IDLE_EXPIRED = "idle_expired"  # no protocol message for the idle timeout
    CONNECT_TIMED_OUT = "connect_timed_out"  # no ICE connection in time after the answer
    ERROR = "error"  # something broke that the session cannot survive


class CloseReason(enum.Enum):
    """Why a session closed; kept on the session."""

    DELETED = "deleted"
    EXPIRED = "expired"
    CONNECT_TIMEOUT = "connect_timeout"
    ICE_FAILED = "ice_failed"
    TRANSPORT_CLOSED = "transport_closed"
    ERROR = "error"


#: The states a session can still leave.
LIVE_STATES: Final = (State.CREATED, State.NEGOTIATING, State.ICE, State.CONNECTED, State.TALKING)

#: Inputs that close a session from every live state, and the reason each leaves behind.
CLOSING_INPUTS: Final[Mapping[Input, CloseReason]] = MappingProxyType(
    {
        Input.DELETE_REQUESTED: CloseReason.DELETED,
        Input.IDLE_EXPIRED: CloseReason.EXPIRED,
        Input.CONNECT_TIMED_OUT: CloseReason.CONNECT_TIMEOUT,
        Input.ICE_FAILED: CloseReason.ICE_FAILED,
        Input.TRANSPORT_CLOSED: CloseReason.TRANSPORT_CLOSED,
        Input.ERROR: CloseReason.ERROR,
    }
)

#: Protocol messages (create, sdp, ice, talk): each one pushes the idle deadline back.
MESSAGE_INPUTS: Final = frozenset(
    {
        Input.OFFER_SENT,
        Input.OFFER_RECEIVED,
        Input.ANSWER_RECEIVED,
        Input.ANSWER_SENT,
        Input.CANDIDATE_RECEIVED,
        Input.CANDIDATE_SENT,
        Input.TALK_REQUESTED,
        Input.INTERRUPT_RECEIVED,
        Input.INTERRUPT_SENT,
        Input.CHUNK_RECEIVED,
        Input.CHUNK_SENT,
    }
)

TRANSITIONS: Final[Mapping[tuple[State, Input], State]] = MappingProxyType(
    {
        # Offer: the server makes it, the client receives it.
        (State.CREATED, Input.OFFER_SENT): State.NEGOTIATING,
        (State.CREATED, Input.OFFER_RECEIVED): State.NEGOTIATING,
        # Answer: the server applies it, the client has it accepted.
        (State.NEGOTIATING, Input.ANSWER_RECEIVED): State.ICE,
        (State.NEGOTIATING, Input.ANSWER_SENT): State.ICE,
        # Candidates never change the state. Browsers send them before (or while) their answer lands, so
        # created and negotiating take them (the server buffers them); late ones and the end-of-candidates
        # marker still arrive after ICE connects, so connected and talking take them too.
        **{
            (state, inp): state
            for state in (State.CREATED, State.NEGOTIATING, State.ICE, State.CONNECTED, State.TALKING)
            for inp in (Input.CANDIDATE_RECEIVED, Input.CANDIDATE_SENT)
        },
        (State.ICE, Input.ICE_CONNECTED): State.CONNECTED,
        # Talks queue: accepted while connected or already talking, played in order.
        (State.CONNECTED, Input.TALK_REQUESTED): State.TALKING,
        (State.TALKING, Input.TALK_REQUESTED): State.TALKING,
        (State.TALKING, Input.TALK_STARTED): State.TALKING,
        # A talk streamed over the WebSocket API is asked for by its first chunk; the rest arrive while it
        # plays (each a message from the client).
        (State.TALKING, Input.CHUNK_RECEIVED): State.TALKING,
        (State.TALKING, Input.CHUNK_SENT): State.TALKING,
        # Back to connected only when the last queued talk is done (see TALK_QUEUE_GUARDS).
        (State.TALKING, Input.TALK_FINISHED): State.TALKING,
        (State.TALKING, Input.LAST_TALK_FINISHED): State.CONNECTED,
        # An interrupt ends every talk at once (the session's queue empties); while connected there is
        # nothing to stop, but it is still a message from the client.
        **{
            (state, inp): State.CONNECTED
            for state in (State.CONNECTED, State.TALKING)
            for inp in (Input.INTERRUPT_RECEIVED, Input.INTERRUPT_SENT)
        },
        # Every live state can close, for each reason; closed has no way out.
        **{(state, inp): State.CLOSED for state in LIVE_STATES for inp in CLOSING_INPUTS},
    }
)


class TalkQueueGuard(enum.Enum):
    """What the talk queue must hold for a talk-finished input to be legal."""

    OTHERS_QUEUED = "others_queued"  # more than one talk pending before this one finishes
    LAST_ONE = "last_one"  # exactly one talk pending: this one


#: Which talk-finished input is legal depends on the queue: the table's two edges out of talking for a
#: finished talk are told apart by this guard, checked by the session before the table is consulted.
TALK_QUEUE_GUARDS: Final[Mapping[Input, TalkQueueGuard]] = MappingProxyType(
    {Input.TALK_FINISHED: TalkQueueGuard.OTHERS_QUEUED, Input.LAST_TALK_FINISHED: TalkQueueGuard.LAST_ONE}
)


def mermaid_diagram() -> str:
    """The table as a Mermaid state diagram (self-loops listed as notes to keep the picture readable).

    The README embeds this output; a test checks that the two agree.
    """
    lines = ["stateDiagram-v2", f"    [*] --> {State.CREATED.value}"]
    edges: dict[tuple[State, State], list[str]] = {}
    loops: dict[State, list[str]] = {}
    for (source, inp), dest in TRANSITIONS.items():
        if source is dest:
            loops.setdefault(source, []).append(inp.value)
        else:
            edges.setdefault((source, dest), []).append(inp.value)
    for (source, dest), inputs in edges.items():
        lines.append(f"    {source.value} --> {dest.value}: {', '.join(inputs)}")
    for state, inputs in loops.items():
        lines.append(f"    note right of {state.value}: stays on {', '.join(inputs)}")
    lines.append(f"    {State.CLOSED.value} --> [*]")
    return "\n".join(lines) + "\n"
