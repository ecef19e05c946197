"""Every scenario in specs/scenarios is a test: in process on both transports, and over TCP."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from talkstream.adapters.bootstrap import ServerSettings, build_app
from talkstream.adapters.cli import main
from talkstream.adapters.replay import DEFAULT_KEY, OTHER_KEY, run_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "specs" / "scenarios").glob("*.yaml"))

pytestmark = pytest.mark.timeout(120)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 15


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario_in_process_on_memory(path: Path) -> None:
    outcome = await run_scenario(path, transport="memory")
    assert outcome.status == "passed", outcome.detail


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario_in_process_on_aiortc(path: Path) -> None:
    outcome = await run_scenario(path, transport="aiortc")
    if outcome.status == "skipped":
        pytest.skip(outcome.detail)
    assert outcome.status == "passed", outcome.detail


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKSTREAM_REPLAY_KEY", DEFAULT_KEY)
    monkeypatch.setenv("TALKSTREAM_REPLAY_OTHER_KEY", OTHER_KEY)


async def test_scenarios_against_a_live_server_over_tcp(keys: None) -> None:
    server = TestServer(build_app(ServerSettings(keys=(DEFAULT_KEY, OTHER_KEY))), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        results = {p.stem: await run_scenario(p, target=url, transport="aiortc") for p in SCENARIOS}
    finally:
        await server.close()
    failed = {name: o.detail for name, o in results.items() if o.status == "failed"}
    assert not failed
    assert sum(o.status == "passed" for o in results.values()) >= 10


async def test_a_scenario_whose_expectation_is_wrong_fails(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "name: expects expiry too early\nrequires: [virtual_clock]\nsteps:\n"
        "  - create: {as: s}\n  - connect: {stream: s}\n  - advance: 299\n"
        "  - expect: {stream: s, state: closed, reason: expired}\n"
    )
    outcome = await run_scenario(wrong)
    assert (
        outcome.status == "failed" and "step 4 (expect)" in outcome.detail and "connected" in outcome.detail
    )


async def test_a_file_outside_the_format_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: nope\nsteps:\n  - teleport: {to: mars}\n")
    outcome = await run_scenario(bad)
    assert outcome.status == "failed" and "steps/0" in outcome.detail


def test_replay_command_reports_and_exits_non_zero_on_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(SCENARIOS[0]), str(SCENARIOS[3])]) == 0
    out = capsys.readouterr().out
    assert "2 passed, 0 failed, 0 skipped" in out and "[1/2] ok" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nsteps:\n  - create: {as: s, key: wrong}\n")
    assert main(["replay", str(broken)]) == 1
    assert "FAIL broken" in capsys.readouterr().out
