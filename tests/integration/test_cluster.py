"""The cluster as its users meet it: `Cluster` starts Redis, coturn, HAProxy and three `talkstream serve`
workers from deploy/, each in its own process on 127.0.0.1, and the tests speak to HAProxy only (but for
killing, draining and reading a worker): the D-ID flow, a per-key limit under concurrent creates, a worker
killed mid-talk, a Redis restart, a worker drained with a talk playing, and async talks across workers.

The workers allow 3 live streams per key and hold them on leases of 2 s. Tests that stop a worker or Redis
start it again before they end, so the next test finds the cluster whole.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as redis

from talkstream.adapters.cluster import Cluster, ClusterPlan, missing_programs
from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.adapters.http.websocket import WebSocketAdapter
from talkstream.engine.client import ClientStream, StreamClient
from talkstream.engine.errors import NotFoundError, RateLimitedError, ServiceUnavailableError
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.session import worker_of
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        bool(missing_programs(["redis-server", "haproxy"])), reason="redis-server or haproxy is not installed"
    ),
]

LEASE = 2.0
PER_KEY = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    plan = ClusterPlan(
        workers=3,
        port=0,
        turn=True,  # coturn runs; each create answer carries credentials for it
        folder=tmp_path_factory.mktemp("cluster"),
        lease=LEASE,
        drain_timeout=30.0,
        serve_args=("--max-streams-per-key", str(PER_KEY), "--requests-per-second", "1000"),
    )
    with Cluster(plan).running() as running:
        yield running
    for worker in plan.worker_ids():  # whatever the tests did, no worker logged a traceback
        assert "Traceback" not in running.log(worker).read_text(errors="replace"), worker


@pytest_asyncio.fixture
async def client(cluster: Cluster) -> AsyncIterator[StreamClient]:
    async with StreamClient(
        AiohttpAdapter(cluster.url, cluster.plan.key), AiortcClientTransport(), retry=RetryPolicy.none()
    ) as made:
        yield made


async def _request(cluster: Cluster, method: str, path: str, body: Any = None) -> tuple[int, Any, str | None]:
    """(status, JSON body, the worker that answered) of a raw request through HAProxy."""
    headers = {"Authorization": f"Basic {cluster.plan.key}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, cluster.url + path, data=json.dumps(body or {}), headers=headers) as response,
    ):
        return response.status, await response.json(), response.headers.get("X-Talkstream-Worker")


async def _create(cluster: Cluster) -> tuple[int, Any, str | None]:
    return await _request(cluster, "POST", "/talks/streams", {"source_url": "bundled:astronaut"})


async def _delete(cluster: Cluster, created: Any) -> None:
    await _request(
        cluster, "DELETE", f"/talks/streams/{created['id']}", {"session_id": created["session_id"]}
    )


async def _create_on(
    client: StreamClient, workers: set[str], avoid: frozenset[str] | set[str] = frozenset()
) -> ClientStream:
    """A stream on a worker not in `avoid` (creates are balanced, so a few tries find one)."""
    for _ in range(12):
        stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
        worker = worker_of(stream.stream_id)
        if worker not in avoid:
            workers.add(str(worker))
            return stream
        await stream.close()
    raise AssertionError(f"every create landed on {avoid}")


async def _frames_flow(stream: ClientStream, within: float = 10.0) -> None:
    before = stream.received_frames
    deadline = time.monotonic() + within
    while stream.received_frames < before + 5:
        assert time.monotonic() < deadline, "no frames arrive"
        await asyncio.sleep(0.05)


async def test_the_did_flow_through_haproxy_reaches_every_worker(
    cluster: Cluster, client: StreamClient
) -> None:
    streams = [
        await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160) for _ in range(3)
    ]
    workers = {worker_of(s.stream_id) for s in streams}
    assert workers == {"w1", "w2", "w3"}, [s.stream_id for s in streams]  # fewest connections: each its turn
    for stream in streams:
        assert worker_of(stream.session.session_id) == worker_of(stream.stream_id)
        await stream.connected(within=20)
    talks = [await s.talk(text="Hello from behind the proxy.") for s in streams]
    for talk in talks:
        await talk.done(within=30)
    assert all(s.received_frames > 10 for s in streams)
    for stream in streams:
        await stream.close()
    # the WebSocket API through HAProxy: the socket lives on one worker, its stream's messages follow it
    async with StreamClient(
        WebSocketAdapter(cluster.url, cluster.plan.key), AiortcClientTransport(), retry=RetryPolicy.none()
    ) as over_ws:
        stream = await over_ws.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
        await stream.connected(within=20)
        await (await stream.talk(text="And over the socket.")).done(within=30)
        await stream.close()
    # a socket opened for a stream made elsewhere reaches the stream's worker (?stream_id= routes it)
    for _ in range(5):  # each lands on its stream's worker, not on the one balancing would choose
        status, made, _ = await _create(cluster)
        assert status == 201, made
        (turn,) = made["ice_servers"]  # the cluster's coturn, with this stream's own credentials
        assert turn["urls"] == list(cluster.turn_urls) and turn["username"].endswith(":" + made["id"])
        query = urlencode({"stream_id": made["id"], "authorization": f"Basic {cluster.plan.key}"})
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{cluster.url}/ws?{query}") as ws:
            ids = {"stream_id": made["id"], "session_id": made["session_id"]}
            await ws.send_str(json.dumps({"type": "delete-stream", "payload": ids}))
            answer = json.loads((await ws.receive(timeout=30)).data)
            assert answer.get("status") == "success", answer
    # each worker's metrics are its own; HAProxy does not pass /metrics through
    status, body, _ = await _request(cluster, "GET", "/metrics")
    assert status == 404 and body["kind"] == "NotFoundError"
    async with aiohttp.ClientSession() as http:
        async with http.get(cluster.worker_url("w1") + "/metrics") as response:
            text = await response.text()
        assert 'talkstream_worker{worker="w1"} 1.0' in text
        async with http.get(cluster.stats_url) as response:
            assert response.status == 200 and "workers" in await response.text()


async def test_a_per_key_limit_of_3_holds_under_10_concurrent_creates(cluster: Cluster) -> None:
    answers = await asyncio.gather(
        *(_request(cluster, "POST", "/talks/streams", {"source_url": "bundled:astronaut"}) for _ in range(10))
    )
    created = [body for status, body, _ in answers if status == 201]
    refused = [body for status, body, _ in answers if status == 429]
    try:
        assert len(created) == PER_KEY and len(refused) == 10 - PER_KEY, [a[:2] for a in answers]
        assert all("this key" in body["description"] for body in refused)
        assert len({worker for _, _, worker in answers}) >= 2  # decided by several workers, counted once
    finally:
        for body in created:
            await _request(
                cluster, "DELETE", f"/talks/streams/{body['id']}", {"session_id": body["session_id"]}
            )


async def test_a_worker_killed_mid_talk(cluster: Cluster, client: StreamClient) -> None:
    """Its streams' next requests answer 404 at once, the other workers' streams play on, and its quota is
    free again within the lease."""
    workers: set[str] = set()
    doomed = await _create_on(client, workers)
    survivor = await _create_on(client, workers, avoid={str(worker_of(doomed.stream_id))})
    victim = str(worker_of(doomed.stream_id))
    try:
        await doomed.connected(within=20)
        await survivor.connected(within=20)
        # ~15 s: it plays on past the kill, however late this client hears things
        playing = await survivor.talk(text="I keep talking while another worker dies. " * 6)
        cut = await doomed.talk(text="I am cut off in the middle of this sentence. " * 3)
        await asyncio.wait_for(asyncio.shield(cut.started), 20)
        cluster.signal(victim, signal.SIGKILL)
        assert cluster.wait_exit(victim, 10) == -signal.SIGKILL
        # a dead worker releases nothing: its stream still holds its place, on a lease
        async with redis.Redis.from_url(cluster.redis_url) as shared:
            assert await shared.zscore("talkstream:streams", doomed.stream_id) is not None
        started = time.monotonic()
        with pytest.raises(NotFoundError):
            await doomed.talk(text="Anyone there?")
        assert time.monotonic() - started < 5  # answered by another worker, not a timeout
        await _frames_flow(survivor)
        await playing.done(within=60)
        # Once the lease has run out, the key has its place back: the survivor and two more make 3.
        await asyncio.sleep(LEASE * 1.5)
        extra = [await _create_on(client, workers, avoid={victim}) for _ in range(PER_KEY - 1)]
        with pytest.raises(RateLimitedError, match="too many live streams"):
            await client.create("bundled:astronaut", output_resolution=160)
        for stream in extra:
            await stream.close()
    finally:
        await survivor.close()
        cluster.start_worker(victim)
        cluster.wait_balanced()


async def test_a_redis_restart(cluster: Cluster, client: StreamClient) -> None:
    """Creates answer 503 with Retry-After while Redis is away, a stream already playing plays on and takes
    talks, and creates work again once it is back."""
    stream = await client.create("bundled:astronaut", sink=MediaSink(), output_resolution=160)
    try:
        await stream.connected(within=20)
        await (await stream.talk(text="Before.")).done(within=30)
        cluster.stop_redis()
        try:
            status, body, _ = await _request(
                cluster, "POST", "/talks/streams", {"source_url": "bundled:astronaut"}
            )
            assert status == 503 and body["kind"] == "ServiceUnavailableError", body
            with pytest.raises(ServiceUnavailableError) as refused:
                await client.create("bundled:astronaut", output_resolution=160)
            assert refused.value.retry_after == 1
            talk = await stream.talk(text="While the shared state is away, this stream plays on. " * 3)
            await _frames_flow(stream)
            await talk.done(within=30)
        finally:
            cluster.start_redis()
        for _ in range(100):  # the first create after it is back may still meet a worker that has not retried
            status, body, _ = await _request(
                cluster, "POST", "/talks/streams", {"source_url": "bundled:astronaut"}
            )
            if status == 201:
                break
            await asyncio.sleep(0.1)
        assert status == 201, body
        await _delete(cluster, body)
    finally:
        await stream.close()


async def test_sigterm_drains_a_worker_with_a_talk_playing(cluster: Cluster, client: StreamClient) -> None:
    workers: set[str] = set()
    stream = await _create_on(client, workers)
    worker = str(worker_of(stream.stream_id))
    try:
        await stream.connected(within=20)
        # long enough (about 13 s) that the signal lands while it plays, however late the client hears it
        talk = await stream.talk(text="This talk ends whole, though my worker was asked to stop. " * 4)
        await asyncio.wait_for(asyncio.shield(talk.started), 20)
        cluster.signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while cluster.server_states().get(worker) != "NOLB":  # its check says 404: persistent traffic only
            assert time.monotonic() < deadline, cluster.server_states()
            await asyncio.sleep(0.1)
        # new streams go elsewhere; this stream's own requests still reach its worker, which refuses new talks
        for _ in range(3):
            status, body, answered = await _request(
                cluster, "POST", "/talks/streams", {"source_url": "bundled:astronaut"}
            )
            assert status == 201 and worker_of(body["id"]) != worker and answered != worker
            await _request(
                cluster, "DELETE", f"/talks/streams/{body['id']}", {"session_id": body["session_id"]}
            )
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            await stream.talk(text="One more?")
        await talk.done(within=60)
        assert not talk.interrupted
        assert cluster.wait_exit(worker, 30) == 0
    finally:
        cluster.start_worker(worker)
        cluster.wait_balanced()


async def _talk_until(
    cluster: Cluster, talk_id: str, statuses: set[str], within: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status, body, _ = await _request(cluster, "GET", f"/talks/{talk_id}")
        assert status == 200, body
        if body["status"] in statuses:
            return dict(body)
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_async_talks_across_the_cluster(cluster: Cluster) -> None:
    """A talk renders on the worker its id names; every worker lists it (the records are in Redis); its
    result comes from its worker; a talk whose worker dies mid-render reads as failed once its lease ends."""
    script = {"type": "text", "input": "Rendered on one worker."}
    talk = {"source_url": "bundled:astronaut", "script": script}
    status, created, _ = await _request(cluster, "POST", "/talks", talk)
    assert status == 201 and worker_of(created["id"]) in cluster.plan.worker_ids(), created
    done = await _talk_until(cluster, created["id"], {"done", "error"})
    assert done["status"] == "done" and done["result_url"].startswith(cluster.url), done
    answered = set()
    for _ in range(6):  # balanced over the workers: each lists the talk
        status, listed, worker = await _request(cluster, "GET", "/talks")
        assert status == 200 and created["id"] in [t["id"] for t in listed["talks"]], listed
        answered.add(worker)
    assert len(answered) >= 2
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Basic {cluster.plan.key}"}
        async with http.get(done["result_url"], headers=headers) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "video/mp4"
            assert len(await response.read()) > 1000
    await _request(cluster, "DELETE", f"/talks/{created['id']}")

    long = {**talk, "script": {"type": "text", "input": "A long talk to render, again and again. " * 60}}
    status, doomed, _ = await _request(cluster, "POST", "/talks", long)
    assert status == 201, doomed
    await _talk_until(cluster, doomed["id"], {"started"})
    victim = str(worker_of(doomed["id"]))
    cluster.signal(victim, signal.SIGKILL)
    try:
        assert cluster.wait_exit(victim, 10) == -signal.SIGKILL
        failed = await _talk_until(cluster, doomed["id"], {"error", "done"}, within=LEASE * 5)
        assert failed["status"] == "error" and "stopped" in failed["error"]["description"], failed
        status, body, _ = await _request(cluster, "DELETE", f"/talks/{doomed['id']}")  # its record goes
        assert status == 200
        status, body, _ = await _request(cluster, "GET", f"/talks/{doomed['id']}")
        assert status == 404, body
    finally:
        cluster.start_worker(victim)
        cluster.wait_balanced()


def test_the_cluster_folder_holds_each_services_log(cluster: Cluster) -> None:
    names = {p.name for p in Path(cluster.folder).iterdir()}
    assert {"redis.log", "haproxy.log", "w1.log", "haproxy.cfg", "redis.conf"} <= names


def test_talkstream_cluster_comes_up_with_one_command_and_goes_down_on_ctrl_c(tmp_path: Path) -> None:
    """The command as a user runs it: it prints the URL and a key that work, and Ctrl-C (SIGINT to the
    command alone, as a terminal sends it to the foreground job) stops every process it started."""
    import psutil

    from talkstream.adapters.cluster import free_port

    port, stats = free_port(), free_port()
    command = [sys.executable, "-m", "talkstream.adapters.cli", "cluster", "--workers", "2", "--no-turn"]
    command += ["--port", str(port), "--stats-port", str(stats), "--worker-port", str(free_port())]
    command += ["--folder", str(tmp_path / "cluster")]
    with open(tmp_path / "out.log", "w+b") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while b"Ctrl-C stops everything" not in (tmp_path / "out.log").read_bytes():
                assert process.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "out.log"
                ).read_text()
                time.sleep(0.1)
            printed = (tmp_path / "out.log").read_text()
            url = re.search(r"behind HAProxy at (\S+)", printed)
            key = re.search(r"API key \(send as `Authorization: Basic <key>`\): (\S+)", printed)
            assert url is not None and key is not None, printed
            assert url.group(1) == f"http://127.0.0.1:{port}"
            children = psutil.Process(process.pid).children(recursive=True)
            assert len(children) == 4  # Redis, HAProxy, two workers
            request = urllib.request.Request(
                url.group(1) + "/talks/streams",
                data=json.dumps({"source_url": "bundled:astronaut"}).encode(),
                headers={"Authorization": f"Basic {key.group(1)}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 201 and worker_of(json.load(response)["id"]) in ("w1", "w2")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0
            _, alive = psutil.wait_procs(children, timeout=10)
            assert not alive, alive
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_worker_that_cannot_listen_stops_the_command_with_one_line_and_nothing_left(tmp_path: Path) -> None:
    import psutil

    from talkstream.adapters.cluster import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        command = [sys.executable, "-m", "talkstream.adapters.cli", "cluster", "--workers", "1", "--no-turn"]
        command += ["--port", str(free_port()), "--stats-port", str(free_port()), "--worker-port", str(busy)]
        command += ["--folder", str(tmp_path / "cluster")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{busy}: Address already in use" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + (tmp_path / "cluster" / "w1.log").read_text()
    # what it started is gone: Redis (it retitles itself "redis-server 127.0.0.1:<port>"), the worker
    redis = re.search(r"port=(\d+)", (tmp_path / "cluster" / "redis.log").read_text())
    assert redis is not None
    ours = (f"redis-server 127.0.0.1:{redis.group(1)}", f"--port {busy} ", str(tmp_path))
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(m in " ".join(p.info["cmdline"] or ()) for m in ours)
    ]
    assert not left, left
