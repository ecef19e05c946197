"""The transition table holds the protocol's rules, the machine is built from it, the README draws it."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import pytest

from talkstream.engine.machine import build_machine, machine_edges
from talkstream.engine.states import (
    CLOSING_INPUTS,
    LIVE_STATES,
    MESSAGE_INPUTS,
    TALK_QUEUE_GUARDS,
    TRANSITIONS,
    CloseReason,
    Input,
    State,
    mermaid_diagram,
)

from ..legal_edges import CLOSE_REASONS, LEGAL, MESSAGES

README = Path(__file__).resolve().parents[2] / "README.md"
CANDIDATES = (Input.CANDIDATE_RECEIVED, Input.CANDIDATE_SENT)


def test_table_is_exactly_the_hand_written_edges() -> None:
    extra = {k: v for k, v in TRANSITIONS.items() if LEGAL.get(k) is not v}
    missing = {k: v for k, v in LEGAL.items() if TRANSITIONS.get(k) is not v}
    assert (extra, missing) == ({}, {})
    assert dict(CLOSING_INPUTS) == CLOSE_REASONS
    assert MESSAGE_INPUTS == MESSAGES


def test_states_in_the_design_cards_order() -> None:
    assert [s.value for s in State] == ["created", "negotiating", "ice", "connected", "talking", "closed"]


def test_close_reasons() -> None:
    assert {r.value for r in CloseReason} == {
        "deleted",
        "expired",
        "connect_timeout",
        "ice_failed",
        "transport_closed",
        "error",
    }
    assert set(CLOSING_INPUTS.values()) == set(CloseReason)


@pytest.mark.parametrize("state", [State.CREATED, State.NEGOTIATING, State.ICE])
@pytest.mark.parametrize("inp", CANDIDATES)
def test_candidates_before_and_during_ice_keep_the_state(state: State, inp: Input) -> None:
    assert TRANSITIONS[(state, inp)] is state


@pytest.mark.parametrize("state", [State.CONNECTED, State.TALKING])
@pytest.mark.parametrize("inp", CANDIDATES)
def test_late_candidates_and_end_of_candidates_are_taken_after_connect(state: State, inp: Input) -> None:
    assert TRANSITIONS[(state, inp)] is state


def test_talks_are_accepted_in_connected_and_talking_only() -> None:
    accepting = {s for (s, i) in TRANSITIONS if i is Input.TALK_REQUESTED}
    assert accepting == {State.CONNECTED, State.TALKING}
    assert TRANSITIONS[(State.CONNECTED, Input.TALK_REQUESTED)] is State.TALKING
    assert TRANSITIONS[(State.TALKING, Input.TALK_REQUESTED)] is State.TALKING


def test_only_the_last_talk_or_an_interrupt_returns_to_connected() -> None:
    out_of_talking = {i for (s, i), d in TRANSITIONS.items() if s is State.TALKING and d is State.CONNECTED}
    assert out_of_talking == {Input.LAST_TALK_FINISHED, Input.INTERRUPT_RECEIVED, Input.INTERRUPT_SENT}
    assert TRANSITIONS[(State.TALKING, Input.TALK_FINISHED)] is State.TALKING
    assert set(TALK_QUEUE_GUARDS) == {Input.TALK_FINISHED, Input.LAST_TALK_FINISHED}


def test_an_interrupt_is_heard_only_once_connected_and_empties_the_queue() -> None:
    for inp in (Input.INTERRUPT_RECEIVED, Input.INTERRUPT_SENT):
        assert {s for (s, i) in TRANSITIONS if i is inp} == {State.CONNECTED, State.TALKING}
        assert inp in MESSAGE_INPUTS and inp not in TALK_QUEUE_GUARDS


@pytest.mark.parametrize("state", LIVE_STATES)
@pytest.mark.parametrize("inp", list(CLOSING_INPUTS))
def test_every_live_state_closes_on_every_closing_input(state: State, inp: Input) -> None:
    assert TRANSITIONS[(state, inp)] is State.CLOSED


def test_closed_has_no_way_out() -> None:
    assert not [key for key in TRANSITIONS if key[0] is State.CLOSED]


def test_only_closing_inputs_lead_to_closed() -> None:
    assert {i for (_, i), d in TRANSITIONS.items() if d is State.CLOSED} == set(CLOSING_INPUTS)


def test_every_state_reachable_and_every_input_used() -> None:
    seen, todo = {State.CREATED}, deque([State.CREATED])
    while todo:
        state = todo.popleft()
        for (source, _), dest in TRANSITIONS.items():
            if source is state and dest not in seen:
                seen.add(dest)
                todo.append(dest)
    assert seen == set(State)
    assert {i for (_, i) in TRANSITIONS} == set(Input)


def test_messages_are_the_protocol_requests() -> None:
    # create, sdp, ice, talk, the client's interrupt and a streamed talk's chunks push the idle deadline;
    # transport reports and timers never do.
    assert {i.value for i in MESSAGE_INPUTS} == {
        "interrupt_received",
        "interrupt_sent",
        "chunk_received",
        "chunk_sent",
        "offer_sent",
        "offer_received",
        "answer_received",
        "answer_sent",
        "candidate_received",
        "candidate_sent",
        "talk_requested",
    }


def test_machine_is_built_from_the_table() -> None:
    machine = build_machine()
    assert machine_edges(machine) == dict(TRANSITIONS)
    assert set(machine.states) == {s.name for s in State}
    # No convenience transitions that would bypass the table.
    assert not [name for name in machine.events if name.startswith("to_")]


def test_readme_diagram_matches_the_table() -> None:
    text = README.read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "README has no mermaid diagram"
    assert mermaid_diagram() in blocks, "README diagram is stale: paste `talkstream states --mermaid`"


def test_diagram_names_every_edge() -> None:
    diagram = mermaid_diagram()
    for (source, inp), dest in TRANSITIONS.items():
        if source is dest:
            line = next(
                x for x in diagram.splitlines() if x.strip().startswith(f"note right of {source.value}:")
            )
        else:
            line = next(
                x for x in diagram.splitlines() if x.strip().startswith(f"{source.value} --> {dest.value}:")
            )
        assert inp.value in re.split(r"[:,\s]+", line)
