"""A browser that may only relay (``iceTransportPolicy: "relay"``) plays a talk through coturn, with the
time-limited credentials the create answer hands it; with a secret coturn does not share, it gets nothing.

coturn runs on 127.0.0.1 from deploy/turnserver.conf (tests/e2e/turn.py); `talkstream serve` in its own
process with --turn-url and --turn-secret-file. The page uses the create answer's ``ice_servers`` as D-ID's
demo does, adding only the relay policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from served import serving

from .conftest import until as wait_until
from .turn import TURNSERVER, Coturn, coturn

pytestmark = pytest.mark.timeout(120)

TTL = 600

# The page's side, in the manner of D-ID's demo: create, a peer on the answer's ice_servers (relay only),
# the answer and trickled candidates posted back; `window.relay` keeps what the test reads.
CONNECT = """async ({ base, key, only }) => {
  const headers = { Authorization: `Basic ${key}`, 'Content-Type': 'application/json' };
  const call = async (method, path, body) => {
    const response = await fetch(base + path, { method, headers, body: JSON.stringify(body) });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const created = await call('POST', '/talks/streams', { source_url: 'bundled:astronaut' });
  const path = `/talks/streams/${created.id}`, session_id = created.session_id;
  let iceServers = created.ice_servers;
  if (only) {  // keep one transport's TURN URLs
    iceServers = iceServers.map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => u.endsWith(only)) }));
  }
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
  const relay = (window.relay = { pc, candidates: [], errors: [], messages: [], posted: [] });
  const video = document.createElement('video');
  video.autoplay = true; video.muted = true; document.body.append(video);
  relay.video = video;
  pc.addEventListener('track', (event) => { video.srcObject = event.streams[0]; });
  pc.addEventListener('icecandidateerror', (event) => {
    relay.errors.push({ code: event.errorCode, text: event.errorText, url: event.url });
  });
  pc.addEventListener('icecandidate', (event) => {
    const body = event.candidate
      ? { candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid,
          sdpMLineIndex: event.candidate.sdpMLineIndex, session_id }
      : { session_id };
    if (event.candidate) relay.candidates.push(event.candidate.candidate);
    relay.posted.push(call('POST', `${path}/ice`, body));
  });
  const channel = pc.createDataChannel('JanusDataChannel');
  channel.addEventListener('message', (message) => relay.messages.push(message.data));
  await pc.setRemoteDescription(created.offer);
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  await call('POST', `${path}/sdp`, { answer, session_id });
  relay.talk = (input) => call('POST', path, { script: { type: 'text', input }, session_id });
  relay.destroy = async () => {
    await Promise.allSettled(relay.posted);
    await call('DELETE', path, { session_id });
    pc.close();
  };
  relay.stats = async () => {
    const reports = new Map();
    (await pc.getStats()).forEach((r) => reports.set(r.id, r));
    const candidate = (id) => {
      const c = reports.get(id);
      return c && { type: c.candidateType, address: c.address, port: c.port,
                    protocol: c.protocol, relayProtocol: c.relayProtocol || null };
    };
    const out = { frames: 0, locals: [], local: null, remote: null };
    for (const r of reports.values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') out.frames = r.framesDecoded || 0;
      if (r.type === 'local-candidate') out.locals.push(candidate(r.id));
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = reports.get(r.selectedCandidatePairId);
        out.local = candidate(pair.localCandidateId);
        out.remote = candidate(pair.remoteCandidateId);
      }
    }
    return out;
  };
  return created;
}"""


CONNECTED_OR_NEVER = """(({ pc, candidates }) =>
  ['connected', 'completed', 'failed'].includes(pc.iceConnectionState)
  || (pc.iceGatheringState === 'complete' && candidates.length === 0))(window.relay)"""


async def until(page: Any, expression: str, within: float = 30.0, logs: Callable[[], str] = str) -> Any:
    """`conftest.until`, its failure telling the relay page's state too."""
    try:
        return await wait_until(page, expression, within, logs)
    except AssertionError as failure:
        state = await page.evaluate("window.relay && { ...window.relay, pc: undefined, video: undefined }")
        raise AssertionError(f"{failure}\nthe page: {state}") from None


async def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Whether `check()` comes true within `within` seconds (coturn writes its log from its own threads)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def tails(turn: Coturn, server: Talkstream, since: int) -> str:
    """The end of coturn's log since `since`, and of the server's output: for a failure's message."""
    output = server.log.read_text(errors="replace") if server.log.exists() else ""
    return f"coturn:\n{turn.log_text(since)[-3000:]}\ntalkstream serve:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if TURNSERVER is None:
        pytest.skip("coturn is not installed (no turnserver): `make test` installs it (make cluster-deps)")
    with coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


class Talkstream(NamedTuple):
    base: str
    key: str
    log: Path  # its output


@contextlib.contextmanager
def talkstream_with(turn: Coturn, secret: str, folder: Path) -> Iterator[Talkstream]:
    """`talkstream serve` handing out `turn`'s URLs with credentials made from `secret` (from a file)."""
    secret_file = folder / "turn-secret"
    with os.fdopen(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(secret + "\n")
    urls = [arg for url in turn.urls for arg in ("--turn-url", url)]
    args = [*urls, "--turn-secret-file", str(secret_file), "--turn-ttl", str(TTL)]
    with serving(*args, log=folder / "serve.log") as served:
        yield Talkstream(served.base, served.key, folder / "serve.log")


@pytest.fixture(scope="module")
def relayed(turn: Coturn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Talkstream]:
    """talkstream sharing coturn's secret."""
    with talkstream_with(turn, turn.secret, tmp_path_factory.mktemp("talkstream")) as server:
        yield server


@pytest.fixture(scope="module")
def misconfigured(turn: Coturn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Talkstream]:
    """talkstream with a secret coturn does not know."""
    folder = tmp_path_factory.mktemp("talkstream-wrong-secret")
    with talkstream_with(turn, secrets.token_urlsafe(24), folder) as server:
        yield server


def check_handed_out(created: dict[str, Any], turn: Coturn) -> str:
    """The create answer's one ICE server: coturn's URLs, this stream's username expiring in TTL seconds,
    a password; the server's own offer has host candidates only. Returns the username."""
    [entry] = created["ice_servers"]
    assert entry["urls"] == list(turn.urls)
    match = re.fullmatch(r"(\d+):(\S+)", entry["username"])
    assert match is not None and match.group(2) == created["id"], entry["username"]
    assert abs(int(match.group(1)) - (time.time() + TTL)) < 120  # the two clocks are this machine's
    assert entry["credential"]
    offer = created["offer"]["sdp"]
    assert "typ host" in offer and "typ relay" not in offer and "typ srflx" not in offer
    return str(entry["username"])


@pytest.mark.parametrize("only", [None, "transport=tcp"], ids=["as-handed-out", "tcp-only"])
async def test_a_relay_only_browser_plays_a_talk_through_coturn(
    browser: Any, turn: Coturn, relayed: Talkstream, only: str | None
) -> None:
    mark = turn.mark()
    page = await browser.new_page()
    await page.goto(f"{relayed.base}/")
    created = await page.evaluate(CONNECT, {"base": relayed.base, "key": relayed.key, "only": only})
    username = check_handed_out(created, turn)

    logs = functools.partial(tails, turn, relayed, mark)
    # connected, or never will be: failed, or gathering over without a single (relayed) candidate
    await until(page, CONNECTED_OR_NEVER, logs=logs)
    state = await page.evaluate("window.relay.pc.iceConnectionState")
    assert state in ("connected", "completed"), f"ICE {state}\n{logs()}"
    await page.evaluate("window.relay.talk('Hello through the relay.')")
    await until(page, "window.relay.messages.some((m) => m.startsWith('stream/done'))", logs=logs)
    await until(page, "window.relay.stats().then((s) => s.frames > 10)", logs=logs)
    stats = await page.evaluate("window.relay.stats()")
    assert await page.evaluate("window.relay.video.videoWidth") > 0
    assert [m.split(":")[0] for m in await page.evaluate("window.relay.messages")] == [
        "stream/started",
        "stream/done",
    ]
    # The media went through coturn: the selected pair's local end is a relayed address, over TCP when the
    # page kept only the TCP URL; the server's end is its host candidate.
    assert stats["local"]["type"] == "relay", stats
    assert stats["local"]["relayProtocol"] in (("tcp",) if only else ("udp", "tcp")), stats
    assert stats["remote"]["type"] == "host" and stats["remote"]["address"] == "127.0.0.1", stats
    gathered = [c.split() for c in await page.evaluate("window.relay.candidates")]
    assert gathered and {c[7] for c in gathered} == {"relay"}, gathered

    await page.evaluate("window.relay.destroy()")

    # Every allocation coturn made for this test has the username the browser was handed (one per TURN URL
    # it tried; one it no longer needed once connected may be missing from its candidates): the server's own
    # peer allocated nothing, and its offer had no relayed candidate (`check_handed_out`).
    def allocations() -> set[str]:
        answers = turn.answers(mark)
        return {user for user, what, outcome in answers if (what, outcome) == ("ALLOCATE", "success")}

    assert await eventually(lambda: bool(allocations())), logs()
    assert allocations() == {username}, logs()
    # The server said it hands out TURN credentials, and never showed the secret.
    output = relayed.log.read_text()
    assert f"TURN: each stream's client gets credentials good for {TTL} s" in output
    assert turn.secret not in output


async def test_with_a_secret_coturn_does_not_share_a_relay_only_browser_gets_nowhere(
    browser: Any, turn: Coturn, misconfigured: Talkstream
) -> None:
    mark = turn.mark()
    page = await browser.new_page()
    await page.goto(f"{misconfigured.base}/")
    created = await page.evaluate(
        CONNECT, {"base": misconfigured.base, "key": misconfigured.key, "only": None}
    )
    username = check_handed_out(created, turn)
    # coturn refuses the credentials (401): the browser gathers no candidate, and with relay only it has
    # nothing to connect with. Gathering ends as soon as every TURN URL has refused.
    logs = functools.partial(tails, turn, misconfigured, mark)
    await until(page, "window.relay.pc.iceGatheringState === 'complete'", within=15, logs=logs)
    relay = await page.evaluate(
        "({ candidates: window.relay.candidates, errors: window.relay.errors,"
        " ice: window.relay.pc.iceConnectionState })"
    )
    assert relay["candidates"] == [], relay
    assert {e["code"] for e in relay["errors"]} == {401}, relay
    assert relay["ice"] not in ("connected", "completed"), relay
    assert await eventually(lambda: (username, "message", "error 401") in turn.answers(mark)), logs()
    assert not [a for a in turn.answers(mark) if a[2] == "success"], logs()
    await page.evaluate("window.relay.destroy()")


async def test_a_relay_only_browser_plays_a_talk_through_the_whole_cluster(
    browser: Any, tmp_path: Path
) -> None:
    """`talkstream cluster`'s parts as its users meet them: the page, its requests and its stream through
    HAProxy to a worker, the media through the cluster's coturn with the credentials the worker handed out."""
    from talkstream.adapters.cluster import Cluster, ClusterPlan, missing_programs

    if missing_programs():
        pytest.skip(f"{', '.join(missing_programs())} not installed (`make cluster-deps`)")
    plan = ClusterPlan(workers=2, port=0, folder=tmp_path / "cluster", drain_timeout=5)
    with Cluster(plan).running() as cluster:
        page = await browser.new_page()
        await page.goto(f"{cluster.url}/")
        created = await page.evaluate(CONNECT, {"base": cluster.url, "key": plan.key, "only": None})
        [entry] = created["ice_servers"]
        assert entry["urls"] == list(cluster.turn_urls) and entry["username"].endswith(":" + created["id"])

        def logs() -> str:
            return "\n".join(
                f"{n}:\n{cluster.log(n).read_text()[-2000:]}" for n in ("coturn-requests", "w1", "w2")
            )

        await until(page, CONNECTED_OR_NEVER, logs=logs)
        await page.evaluate("window.relay.talk('Hello through the whole cluster.')")
        await until(page, "window.relay.messages.some((m) => m.startsWith('stream/done'))", logs=logs)
        stats = await page.evaluate("window.relay.stats()")
        assert stats["local"]["type"] == "relay" and stats["frames"] > 10, stats
        await page.evaluate("window.relay.destroy()")
