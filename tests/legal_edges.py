"""The protocol's legal edges written out by hand, independent of `engine.states.TRANSITIONS`.

The property tests take their expectations from here, so an edge added to (or dropped from) the product's
table is a failure, not a new expectation. Read it as: in STATE, INPUT leads to NEXT.
"""

from __future__ import annotations

from talkstream.engine.states import CloseReason, Input, State

_TABLE = """
created      offer_sent          negotiating
created      offer_received      negotiating
created      candidate_received  created
created      candidate_sent      created
created      delete_requested    closed
created      idle_expired        closed
created      connect_timed_out   closed
created      ice_failed          closed
created      transport_closed    closed
created      error               closed

negotiating  answer_received     ice
negotiating  answer_sent         ice
negotiating  candidate_received  negotiating
negotiating  candidate_sent      negotiating
negotiating  delete_requested    closed
negotiating  idle_expired        closed
negotiating  connect_timed_out   closed
negotiating  ice_failed          closed
negotiating  transport_closed    closed
negotiating  error               closed

ice          candidate_received  ice
ice          candidate_sent      ice
ice          ice_connected       connected
ice          delete_requested    closed
ice          idle_expired        closed
ice          connect_timed_out   closed
ice          ice_failed          closed
ice          transport_closed    closed
ice          error               closed

connected    candidate_received  connected
connected    candidate_sent      connected
connected    talk_requested      talking
connected    interrupt_received  connected
connected    interrupt_sent      connected
connected    delete_requested    closed
connected    idle_expired        closed
connected    connect_timed_out   closed
connected    ice_failed          closed
connected    transport_closed    closed
connected    error               closed

talking      candidate_received  talking
talking      candidate_sent      talking
talking      talk_requested      talking
talking      talk_started        talking
talking      chunk_received      talking
talking      chunk_sent          talking
talking      talk_finished       talking
talking      last_talk_finished  connected
talking      interrupt_received  connected
talking      interrupt_sent      connected
talking      delete_requested    closed
talking      idle_expired        closed
talking      connect_timed_out   closed
talking      ice_failed          closed
talking      transport_closed    closed
talking      error               closed
"""

#: (state, input) -> next state, for every legal edge and nothing else; closed has no way out.
LEGAL: dict[tuple[State, Input], State] = {
    (State(source), Input(inp)): State(dest)
    for source, inp, dest in (line.split() for line in _TABLE.strip().splitlines() if line.strip())
}

#: Why a session that closed on each input is closed.
CLOSE_REASONS: dict[Input, CloseReason] = {
    Input.DELETE_REQUESTED: CloseReason("deleted"),
    Input.IDLE_EXPIRED: CloseReason("expired"),
    Input.CONNECT_TIMED_OUT: CloseReason("connect_timeout"),
    Input.ICE_FAILED: CloseReason("ice_failed"),
    Input.TRANSPORT_CLOSED: CloseReason("transport_closed"),
    Input.ERROR: CloseReason("error"),
}

#: Inputs that are protocol messages: each pushes the idle deadline back.
MESSAGES: frozenset[Input] = frozenset(
    Input(name)
    for name in (
        "offer_sent",
        "offer_received",
        "answer_received",
        "answer_sent",
        "candidate_received",
        "candidate_sent",
        "talk_requested",
        "interrupt_received",
        "interrupt_sent",
        "chunk_received",
        "chunk_sent",
    )
)
