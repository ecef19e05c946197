"""Every scenario in specs/scenarios is a test: in process on both transports, and over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from talkstream.adapters.cli import main
from talkstream.adapters.scenarios import DEFAULT_KEY, OTHER_KEY, run_scenario
from talkstream.adapters.server.build import ServerSettings, build_app

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "specs" / "scenarios").glob("*.yaml"))

pytestmark = pytest.mark.timeout(120)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 15


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario_in_process_on_memory(path: Path) -> None:
    outcome = await run_scenario(path, transport="memory")
    if outcome.status == "skipped" and "WebSocket API needs real sockets" in outcome.detail:
        pytest.skip(outcome.detail)  # and only those: every other scenario runs on memory
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


_TALKED = (
    "name: {name}\nrequires: [virtual_clock]\nsteps:\n"
    "  - create: {{as: s}}\n  - connect: {{stream: s}}\n"
    "  - talk: {{stream: s, text: Hello there., as: t}}\n  - wait: {{talk: t, within: 30}}\n"
)
# Each check of the format, once as it holds and once broken: the broken one must fail at that step, naming
# what it saw. (step, the check as it holds, the same check broken, words the failure must carry)
CHECKS = {
    "state": ("expect", "{stream: s, state: connected}", "{stream: s, state: talking}", "state connected"),
    "events": (
        "expect",
        "{stream: s, events: [stream/started, stream/done]}",
        "{stream: s, events: [stream/started]}",
        "events ['stream/started', 'stream/done']",
    ),
    "inputs": (
        "expect",
        "{stream: s, inputs: [offer_received, answer_sent, candidate_sent, ice_connected, talk_requested,"
        " talk_started, last_talk_finished]}",
        "{stream: s, inputs: [offer_received, answer_sent, candidate_sent, ice_connected, talk_requested,"
        " talk_started]}",
        "inputs ['offer_received'",
    ),
    "frames_at_least": (
        "expect",
        "{stream: s, frames_at_least: 10}",
        "{stream: s, frames_at_least: 100000}",
        "expected at least 100000",
    ),
    "reason": (
        "expect",
        "{stream: s, reason: deleted}",
        "{stream: s, reason: expired}",
        "close reason deleted",
    ),
    "expect_error": (
        "create",
        "{as: x, body: {source_url: 42}, expect_error: {status: 400, kind: ValidationError}}",
        "{as: x, body: {source_url: 42}, expect_error: {status: 400, kind: NotFoundError}}",
        "kind ValidationError != NotFoundError",
    ),
    "attempts": ("create", "{as: y, attempts: 1}", "{as: y, attempts: 2}", "1 attempts, expected 2"),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_every_check_fails_when_its_expectation_is_wrong(tmp_path: Path, check: str) -> None:
    verb, holds, broken, words = CHECKS[check]
    delete = "  - delete: {stream: s}\n" if check == "reason" else ""
    outcomes = []
    for name, args in (("holds", holds), ("broken", broken)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(_TALKED.format(name=name) + delete + f"  - {verb}: {args}\n")
        outcomes.append(await run_scenario(path))
    holds_outcome, broken_outcome = outcomes
    assert holds_outcome.status == "passed", holds_outcome.detail
    step = 6 if check == "reason" else 5
    assert broken_outcome.status == "failed", check
    assert f"step {step} ({verb})" in broken_outcome.detail and words in broken_outcome.detail, (
        broken_outcome.detail
    )


_INTERRUPTED = (
    "name: {name}\nrequires: [virtual_clock]\nsteps:\n"
    "  - create: {{as: s, body: {{source_url: 'bundled:astronaut', fluent: true, output_resolution: 160}}}}\n"
    "  - connect: {{stream: s}}\n"
    "  - talk: {{stream: s, text: A sentence long enough to be stopped in its middle., as: t}}\n"
    "  - wait: {{stream: s, event: stream/started}}\n"
)
# The same for the checks of fluent streams and interrupts; the step under test is the fifth.
FLUENT_CHECKS = {
    "interrupt stops": (
        "interrupt",
        "{stream: s, stops: t}",
        "{stream: s, stops: null}",
        "stopped t, expected nothing",
    ),
    "interrupted": (
        "expect",
        "{stream: s, interrupted: []}",
        "{stream: s, interrupted: [t]}",
        "interrupted [], expected ['t']",
    ),
    "create_answer": (
        "expect",
        "{stream: s, create_answer: {fluent: true, interrupt_enabled: true}}",
        "{stream: s, create_answer: {fluent: false}}",
        "said fluent True, expected False",
    ),
}


@pytest.mark.parametrize("check", sorted(FLUENT_CHECKS))
async def test_every_fluent_check_fails_when_its_expectation_is_wrong(tmp_path: Path, check: str) -> None:
    verb, holds, broken, words = FLUENT_CHECKS[check]
    outcomes = []
    for name, args in (("holds", holds), ("broken", broken)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(_INTERRUPTED.format(name=name) + f"  - {verb}: {args}\n")
        outcomes.append(await run_scenario(path))
    holds_outcome, broken_outcome = outcomes
    assert holds_outcome.status == "passed", holds_outcome.detail
    assert broken_outcome.status == "failed", check
    assert f"step 5 ({verb})" in broken_outcome.detail and words in broken_outcome.detail, (
        broken_outcome.detail
    )


async def test_frames_grow_fails_when_no_video_comes(tmp_path: Path) -> None:
    """A stream that is not fluent sends nothing between talks: its frames do not grow."""
    path = tmp_path / "still.yaml"
    path.write_text(_TALKED.format(name="still") + "  - expect: {stream: s, frames_grow: 0.5}\n")
    outcome = await run_scenario(path)
    assert outcome.status == "failed" and "no video frame arrived within 0.5 s" in outcome.detail


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


async def test_a_studio_at_work_in_the_real_world_holds_virtual_time() -> None:
    """Fetching a photo is real I/O that `VirtualClock.run` cannot see: without the hold, time jumps to the
    next timer (here a session's idle expiry) while the studio waits on a socket."""
    from talkstream.adapters.scenarios import HeldStudio
    from talkstream.engine.clock import VirtualClock

    class SlowStudio:
        async def face(self, request: Any) -> Any:
            await asyncio.sleep(0.05)  # real time: a socket, not the clock
            return "face"

        async def speech(self, script: Any, *, pad_audio: float) -> Any:
            await asyncio.sleep(0.05)
            return "speech"

        def pcm_feed(self, sample_rate: int) -> Any:
            return "feed"

    def expiry(clock: VirtualClock, fired: list[float]) -> Callable[[], None]:
        return lambda: fired.append(clock.now())

    for held in (False, True):
        clock = VirtualClock()
        fired: list[float] = []
        clock.call_at(300.0, expiry(clock, fired))
        studio: Any = HeldStudio(SlowStudio(), clock) if held else SlowStudio()
        assert await clock.run(studio.face(None)) == "face"
        assert await clock.run(studio.speech(None, pad_audio=0.0)) == "speech"
        assert (clock.now(), fired) == ((0.0, []) if held else (300.0, [300.0]))
