"""The `talkstream` command line.

Why it exists: one entry point for people and for the Makefile. Today it shows the engine at work:
``talkstream simulate`` drives a server-side stream session through a whole life on the virtual clock
(offer, early candidates, answer, ICE, queued talks, a refused input, idle expiry) and prints every event;
``talkstream states`` prints the transition table or its Mermaid diagram. Later steps add ``serve`` and
``talk``.

What it must never do: hold protocol logic of its own; it wires engine parts together and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import IllegalTransition
from talkstream.engine.events import SessionClosed, SessionEvent, SessionOpened, StateChanged
from talkstream.engine.session import SessionEngine
from talkstream.engine.states import TRANSITIONS, Input, mermaid_diagram

__all__ = ["main"]


def _describe(event: SessionEvent) -> str:
    if isinstance(event, SessionOpened):
        return f"opened for {event.owner}"
    if isinstance(event, StateChanged):
        return f"{event.old.value} -> {event.new.value} on {event.input.value}"
    if isinstance(event, SessionClosed):
        return f"closed ({event.reason.value})"
    state = getattr(event, "state", None)
    inp = getattr(event, "input", None)
    return f"{getattr(state, 'value', state)} stays on {getattr(inp, 'value', inp)}"


async def simulate(idle_timeout: float, out: list[str]) -> int:
    """One server-side session's life on the virtual clock; lines go to `out`. Returns an exit code."""
    clock = VirtualClock()
    engine = SessionEngine(clock=clock, idle_timeout=idle_timeout)
    engine.subscribe(lambda event: out.append(f"t={event.at:8.3f}s  {event.stream_id}  {_describe(event)}"))
    session = engine.open("demo-key")

    async def step(inp: Input, after: float = 0.0) -> None:
        await clock.advance(after)
        await session.apply(inp)

    await step(Input.OFFER_SENT, 0.012)
    await step(Input.CANDIDATE_RECEIVED, 0.030)  # a browser trickles before its answer lands
    await step(Input.ANSWER_RECEIVED, 0.015)
    await step(Input.CANDIDATE_RECEIVED, 0.004)
    await step(Input.ICE_CONNECTED, 0.080)
    await step(Input.TALK_REQUESTED, 1.0)
    await step(Input.TALK_REQUESTED, 0.5)  # queued behind the first
    await step(Input.TALK_STARTED, 0.1)
    await clock.advance(2.4)
    await session.finish_talk()
    await step(Input.TALK_STARTED)
    await clock.advance(3.1)
    await session.finish_talk()
    try:
        await session.apply(Input.ANSWER_RECEIVED)
    except IllegalTransition as exc:
        out.append(
            f"t={clock.now():8.3f}s  {session.stream_id}  refused: {exc} -> HTTP {exc.status} {exc.kind}"
        )
    out.append(f"... no message for {idle_timeout:g} s (virtual time) ...")
    await clock.advance(idle_timeout)
    out.append(f"history kept: {len(session.history)} transitions; live sessions: {len(engine)}")
    return 0 if session.close_reason is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talkstream", description="talkstream: D-ID-compatible streams")
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="drive one session through its life on the virtual clock")
    sim.add_argument("--idle-timeout", type=float, default=300.0, help="seconds (default 300)")
    states = commands.add_parser("states", help="print the transition table")
    states.add_argument("--mermaid", action="store_true", help="as a Mermaid state diagram")
    args = parser.parse_args(argv)

    if args.command == "states":
        if args.mermaid:
            sys.stdout.write(mermaid_diagram())
        else:
            for (source, inp), dest in TRANSITIONS.items():
                print(f"{source.value:<12} {inp.value:<20} -> {dest.value}")
        return 0
    lines: list[str] = []
    code = asyncio.run(simulate(args.idle_timeout, lines))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
