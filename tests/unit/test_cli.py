"""The command line: `talkstream simulate` and `talkstream states`."""

from __future__ import annotations

import pytest

from talkstream.adapters.cli import main
from talkstream.engine.states import TRANSITIONS, mermaid_diagram


def test_simulate_drives_a_whole_life_and_expires(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--idle-timeout", "60"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "created -> negotiating on offer_sent" in lines[1]
    assert "refused: answer_received is not allowed in state connected -> HTTP 409 NotReadyError" in out
    assert "connected -> closed on idle_expired" in out
    # The last message (the second talk request) came at t=1.641 s: expiry exactly 60 s later.
    assert "t=  61.641s" in next(x for x in lines if "idle_expired" in x)
    assert lines[-1] == "history kept: 12 transitions; live sessions: 0"


def test_states_prints_the_table_and_the_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["states"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(TRANSITIONS)
    assert main(["states", "--mermaid"]) == 0
    assert capsys.readouterr().out == mermaid_diagram()
