"""The cluster's shared state against a real Redis (Debian's redis-server, started here on a free port of
127.0.0.1): stream quotas held exactly under concurrent creates from several workers, leases that free a dead
worker's streams, token buckets shared by workers, keys by digest, and what happens while Redis is down and
after it comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkstream.adapters.cluster import Cluster, ClusterPlan, missing_programs
from talkstream.adapters.server.auth import KeyRing, RequestLimits, key_digest, owner_of
from talkstream.adapters.server.redis_state import RedisGate, RedisQuota, RedisState, add_keys, remove_keys
from talkstream.engine.errors import AuthorizationError, RateLimitedError, ServiceUnavailableError

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(missing_programs(["redis-server"])), reason="redis-server is not installed"),
]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Redis alone, from deploy/redis.conf (a cluster of no workers)."""
    cluster = Cluster(ClusterPlan(workers=0, turn=False, folder=tmp_path_factory.mktemp("redis")))
    cluster.start_redis()
    try:
        yield cluster
    finally:
        cluster.stop()


_prefixes = iter(range(1_000_000))


@pytest_asyncio.fixture
async def states(redis_server: Cluster) -> AsyncIterator[list[RedisState]]:
    """Three workers' links to Redis, under a prefix of this test's own."""
    prefix = f"test{next(_prefixes)}-{time.monotonic_ns()}:"
    made = [RedisState(redis_server.redis_url, prefix=prefix, lease=1.0) for _ in range(3)]
    try:
        yield made
    finally:
        for state in made:
            await state.aclose()


def basic(key: str) -> str:
    """The header D-ID's demo sends (``Basic user:password``, as is)."""
    return f"Basic {key}"


async def test_a_per_key_limit_holds_exactly_under_concurrent_creates_from_three_workers(
    states: list[RedisState],
) -> None:
    quotas = [RedisQuota(state, per_key=3, total=100) for state in states]
    owner = "key_abc"

    async def create(i: int) -> bool:
        try:
            await quotas[i % 3].acquire(owner, f"strm_w{i % 3 + 1}.{i}")
        except RateLimitedError as exc:
            assert "this key" in exc.description
            return False
        return True

    outcomes = await asyncio.gather(*(create(i) for i in range(10)))
    assert sum(outcomes) == 3
    # another key is not held back by this one
    await quotas[0].acquire("key_other", "strm_w1.other")
    # one released: exactly one more fits
    taken = [i for i, ok in enumerate(outcomes) if ok]
    await quotas[taken[0] % 3].release(owner, f"strm_w{taken[0] % 3 + 1}.{taken[0]}")
    again = await asyncio.gather(*(create(i) for i in range(10, 14)))
    assert sum(again) == 1


async def test_the_total_counts_every_key(states: list[RedisState]) -> None:
    quota = RedisQuota(states[0], per_key=10, total=2)
    await quota.acquire("key_a", "s1")
    await quota.acquire("key_b", "s2")
    with pytest.raises(RateLimitedError, match="maximum of live streams"):
        await quota.acquire("key_c", "s3")


async def test_a_dead_workers_streams_stop_counting_within_the_lease_and_a_live_ones_do_not(
    states: list[RedisState],
) -> None:
    live, dead = RedisQuota(states[0], per_key=2, total=100), RedisQuota(states[1], per_key=2, total=100)
    states[0].start()  # renews every lease / 3; the dead worker's state never renews
    await live.acquire("key_a", "strm_w1.live")
    await dead.acquire("key_a", "strm_w2.dead")
    with pytest.raises(RateLimitedError):
        await live.acquire("key_a", "strm_w1.more")
    # the lease is 1 s: once it has run out twice over, the dead one's place is free, the live one's not
    await asyncio.sleep(2.2)
    await live.acquire("key_a", "strm_w1.more")
    with pytest.raises(RateLimitedError):
        await live.acquire("key_a", "strm_w1.third")


async def test_request_rates_are_shared_by_workers(states: list[RedisState]) -> None:
    limits = RequestLimits(per_key=0.001, key_burst=5, total=1000, total_burst=1000)
    gates = [RedisGate(state, limits) for state in states]
    for i in range(5):  # the burst, spent on three workers
        await gates[i % 3].check("key_a")
    for gate in gates:
        with pytest.raises(RateLimitedError, match="this key") as refused:
            await gate.check("key_a")
        assert (refused.value.retry_after or 0) > 100  # a token every 1000 s
    await gates[0].check("key_b")  # its own bucket


async def test_keys_are_found_by_digest_and_a_removed_key_stops_within_the_cache_time(
    states: list[RedisState],
) -> None:
    state = states[0]
    state.key_cache = 0.3
    await add_keys(state, KeyRing(["alice:secret local_files"]).entries())
    gate = RedisGate(state)
    owner, granted = await gate.caller(basic("alice:secret"))
    assert owner == owner_of(key_digest(b"alice:secret")) and granted == {"local_files"}
    with pytest.raises(AuthorizationError):
        await gate.caller(basic("alice:wrong"))
    with pytest.raises(AuthorizationError):
        await gate.caller(None)
    # Redis holds digests only
    stored = await state.client.hgetall(state.name("keys"))
    assert list(stored) == [key_digest(b"alice:secret")] and "secret" not in repr(stored)
    await remove_keys(state, [key_digest(b"alice:secret")])
    await gate.caller(basic("alice:secret"))  # still cached
    await asyncio.sleep(0.35)
    with pytest.raises(AuthorizationError):
        await gate.caller(basic("alice:secret"))


async def test_redis_down_then_back(redis_server: Cluster, states: list[RedisState]) -> None:
    """Down: creates 503 with Retry-After, a known key still works (from the cache), an unknown one is 503
    (not 401: it may be valid), request rates fall back to the worker's own buckets. Back: all resumes by
    itself, and the live streams count again (a Redis that lost them gets them back from the renewals)."""
    state = states[0]
    state.key_cache = 0.0  # every lookup asks Redis while it is up
    await add_keys(state, KeyRing(["alice:secret"]).entries())
    gate = RedisGate(state, fallback=RequestLimits(per_key=0.001, key_burst=2))
    quota = RedisQuota(state, per_key=1, total=100)
    await gate.caller(basic("alice:secret"))
    await quota.acquire("key_a", "strm_w1.before")
    redis_server.stop_redis(kill=True)
    try:
        with pytest.raises(ServiceUnavailableError) as down:
            await quota.acquire("key_b", "strm_w1.during")
        assert down.value.retry_after == 1 and down.value.status == 503
        await gate.caller(basic("alice:secret"))
        with pytest.raises(ServiceUnavailableError):
            await gate.caller(basic("bob:unknown"))
        await gate.check("key_a")
        await gate.check("key_a")
        with pytest.raises(RateLimitedError):
            await gate.check("key_a")  # the fallback's burst of 2
        await quota.release("key_a", "strm_w1.gone")  # never raises
    finally:
        redis_server.start_redis()
    await state.client.flushall()  # as if it came back empty
    await quota.renew()
    with pytest.raises(RateLimitedError):
        await quota.acquire("key_a", "strm_w1.after")  # `before` is counted again
    await quota.acquire("key_b", "strm_w1.after")
    assert state.up


async def test_the_upkeep_seeds_keys_again_after_redis_lost_them(
    redis_server: Cluster, states: list[RedisState], tmp_path: Path
) -> None:
    state = states[0]
    state.seed_keys(KeyRing(["carol:secret"]).entries())
    state.start()
    gate = RedisGate(state)
    state.key_cache = 0.0
    for _ in range(100):
        try:
            await gate.caller(basic("carol:secret"))
            break
        except AuthorizationError:
            await asyncio.sleep(0.05)
    await state.client.hdel(state.name("keys"), key_digest(b"carol:secret"))
    with pytest.raises(AuthorizationError):
        await gate.caller(basic("carol:secret"))
    redis_server.stop_redis(kill=True)
    try:
        await asyncio.sleep(0.5)  # the upkeep finds it down
    finally:
        redis_server.start_redis()
    for _ in range(100):
        try:
            await gate.caller(basic("carol:secret"))
            break
        except (AuthorizationError, ServiceUnavailableError):
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the worker's keys were not seeded again once Redis was back")


def test_the_keys_command_adds_counts_and_removes_digests(
    redis_server: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from talkstream.adapters.cli import main

    url = redis_server.redis_url
    monkeypatch.setenv("TALKSTREAM_KEY", "dave:secret")
    assert main(["keys", "add", "local_files", "--redis", url]) == 0
    assert main(["keys", "count", "--redis", url]) == 0
    assert main(["keys", "add", "no_such_permission", "--redis", url]) == 2
    monkeypatch.setenv("TALKSTREAM_KEY", "two words")
    assert main(["keys", "add", "--redis", url]) == 2
    monkeypatch.setenv("TALKSTREAM_KEY", "dave:secret")
    assert main(["keys", "remove", "--redis", url]) == 0
    out, err = capsys.readouterr()
    assert "secret" not in out + err and "two words" not in out + err  # never the key
    assert "removed 1 key(s)" in out and "no_such_permission" in err


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        st.none(),
        st.text(max_size=300),
        st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
        st.builds("Basic {}".format, st.text(max_size=100)),
    )
)
async def test_any_authorization_is_a_caller_or_a_401(states: list[RedisState], header: str | None) -> None:
    """Whatever the header (aiohttp hands undecodable bytes over as lone surrogates), the shared keys answer
    with a caller or a 401: never another error, and Redis is never asked about an empty digest list."""
    gate = RedisGate(states[0])
    try:
        owner, _ = await gate.caller(header)
    except AuthorizationError:
        return
    raise AssertionError(f"{header!r} was let in as {owner}")  # no key was ever added under this prefix
