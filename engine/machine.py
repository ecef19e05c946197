"""The `transitions` machine, built from the one table in `engine.states` and shared by all the sessions of
an engine (sessions are triggered, not `add_model`'d); the table's self-loops are internal transitions.

What it must never do: add a transition that is not in the table.
"""

from __future__ import annotations

from typing import Any

from transitions.extensions.asyncio import AsyncEvent, AsyncMachine

from .states import TRANSITIONS, Input, State

__all__ = ["build_machine", "events_by_input", "machine_edges"]


def build_machine(name: str = "talkstream") -> AsyncMachine:
    """A fresh machine with the table's states and transitions, and no models."""
    machine = AsyncMachine(
        model=None,
        states=State,
        initial=State.CREATED,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=True,
        name=name,
    )
    for (source, inp), dest in TRANSITIONS.items():
        machine.add_transition(inp.value, source, None if dest is source else dest)
    return machine


def events_by_input(machine: AsyncMachine) -> dict[Input, AsyncEvent]:
    """The machine's event for each input, looked up once so applying an input is a dict hit."""
    return {inp: machine.events[inp.value] for inp in Input if inp.value in machine.events}


def machine_edges(machine: AsyncMachine) -> dict[tuple[State, Input], State]:
    """Read the machine's transitions back as a table (tests compare it with `TRANSITIONS`)."""
    edges: dict[tuple[State, Input], State] = {}
    for name, event in machine.events.items():
        inp = Input(name)
        transitions: dict[str, list[Any]] = event.transitions
        for source_name, transitions_from in transitions.items():
            source = State[source_name]
            for transition in transitions_from:
                dest = source if transition.dest is None else State[transition.dest]
                edges[(source, inp)] = dest
    return edges
