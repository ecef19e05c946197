"""State several workers share, in Redis: API keys and their permissions, live-stream quotas per key and in
all, and request-rate limits. `RedisState` owns the connection and a worker's background upkeep; `RedisGate`
is the app's `Gate`, `RedisQuota` the service's `StreamQuota`.

- **Keys**: a hash of SHA-256 digest -> permissions (never a key). A worker asks Redis for a digest it has not
  seen in `key_cache` seconds; a key removed from Redis stops working within that time.
- **Quotas**: one sorted set per key and one for all, members stream ids, scores their lease's end (Redis'
  own clock, so workers' clocks never matter). A Lua script drops expired leases, checks both counts and
  adds the stream in one step (no two creates can both take the last place). Each worker renews its live
  streams' leases every `lease / 3` seconds; a worker that dies stops renewing, and its streams stop
  counting within `lease` seconds.
- **Request rates**: token buckets (per key and in all), each one string "<tokens> <time>", refilled and
  spent by one Lua script (four commands inside it).
- **Async talks** (`RedisTalkStore`): each talk's body, kept as long as the talk, and a sorted set per key
  (newest first). Files stay on the worker that rendered them (its id leads the talk id, so a proxy routes
  there). Each worker holds a heartbeat key with a random incarnation, renewed by its upkeep; a talk not
  finished whose worker's incarnation is gone (it died, or restarted) reads as ``error``.

When Redis cannot be reached (each command gives up after `timeout`): a create is 503 with ``Retry-After``
(no quota can be checked); a known key keeps working from the worker's cache, an unknown one is 503 (it
may be valid); request rates fall back to the worker's own buckets; streams already playing never notice.
Everything resumes by itself: each command opens a new connection once Redis is back, and the next upkeep
(every `lease / 3` s) re-registers every live stream (`ZADD GT` adds what a restarted Redis lost) and, when
Redis' run id changed (a restart), adds the worker's own keys again. Keys added with `talkstream keys` last
as long as Redis' data does (deploy/redis.conf keeps an append-only file).

What it must never do: store or log a key, answer 401 for a key it could not check, or count a stream
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from talkstream.engine.errors import AuthorizationError, RateLimitedError, ServiceUnavailableError

from .auth import PERMISSIONS, RequestLimits, key_digest, owner_of, presented_keys

__all__ = ["RedisGate", "RedisQuota", "RedisState", "RedisTalkStore", "add_keys", "remove_keys"]

_log = logging.getLogger("talkstream.redis")

# KEYS: the key's set, the set of all. ARGV: stream id, per-key limit, total limit, lease (ms).
# Returns 0 (counted), 1 (the key is at its limit) or 2 (all streams are).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 0
"""

# KEYS: pairs of (the key's set) for each stream, then the set of all. ARGV: lease (ms), stream ids.
# Extends each stream's lease, and adds it back where it is missing (a Redis that restarted empty).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local all = KEYS[#KEYS]
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[i - 1], 'GT', now + lease, ARGV[i])
  redis.call('PEXPIRE', KEYS[i - 1], lease * 2)
  redis.call('ZADD', all, 'GT', now + lease, ARGV[i])
end
return #ARGV - 1
"""

# KEYS: the key's bucket, the bucket of all (each a string "<tokens> <time>"). ARGV: per-key rate, burst,
# total rate, burst. Returns {0} (spent one of each) or {1, seconds to wait as a string, which bucket: 1 key,
# 2 all}. Four commands inside: TIME, MGET, two SETs.
_SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local saved = redis.call('MGET', KEYS[1], KEYS[2])
local rates = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local bursts = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local levels = {}
for i = 1, 2 do
  local tokens, at = bursts[i], now
  if saved[i] then
    local space = string.find(saved[i], ' ')
    tokens = tonumber(string.sub(saved[i], 1, space - 1))
    at = tonumber(string.sub(saved[i], space + 1))
  end
  levels[i] = math.min(bursts[i], tokens + math.max(0, now - at) * rates[i])
  if levels[i] < 1 then return {1, tostring((1 - levels[i]) / rates[i]), i} end
end
for i = 1, 2 do
  local full = math.ceil(bursts[i] / rates[i] * 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.17g %.17g', levels[i] - 1, now), 'PX', full)
end
return {0}
"""


@attrs.define(eq=False)
class RedisState:
    """A worker's link to the cluster's Redis at `url` (``redis://host:port/db``), its names under `prefix`.

    `timeout`: seconds any command may take, connecting included (then Redis counts as down).
    `lease`: seconds a dead worker's streams go on counting. `key_cache`: seconds a key's lookup is reused.
    """

    url: str
    prefix: str = "talkstream:"
    timeout: float = 0.5
    lease: float = 15.0
    key_cache: float = 10.0
    worker: str = ""  # this worker's id (its heartbeat's name)
    clock: Callable[[], float] = time.monotonic
    incarnation: str = attrs.field(factory=lambda: secrets.token_hex(8), init=False)
    client: Any = attrs.field(init=False)
    _acquire: Any = attrs.field(init=False)
    _renew: Any = attrs.field(init=False)
    _spend: Any = attrs.field(init=False)
    _quotas: list[RedisQuota] = attrs.field(factory=list, init=False)
    _seeds: list[tuple[str, frozenset[str]]] = attrs.field(factory=list, init=False)
    _upkeep: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    up: bool = attrs.field(default=True, init=False)  # as of the last command

    def __attrs_post_init__(self) -> None:
        self.client = redis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # a pooled connection Redis closed (it restarted) is retried once, at once, on a new one
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
            decode_responses=True,
        )
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._spend = self.client.register_script(_SPEND)

    def name(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(self, what: str, command: Any) -> Any:
        """Await one Redis command; ServiceUnavailableError (503, Retry-After 1) if Redis is out of reach."""
        try:
            result = await command
        except (RedisError, OSError) as exc:
            if self.up:
                _log.warning("Redis unreachable (%s: %s): creates answer 503 until it is back", what, exc)
            self.up = False
            raise ServiceUnavailableError(
                "the cluster's shared state cannot be reached; try again shortly", retry_after=1
            ) from None
        if not self.up:
            _log.warning("Redis reachable again (%s)", what)
        self.up = True
        return result

    def seed_keys(self, entries: Iterable[tuple[str, frozenset[str]]]) -> None:
        """Keys (digest, permissions) this worker adds to Redis at start, and again after Redis comes back."""
        self._seeds.extend(entries)

    def start(self) -> None:
        if self._upkeep is None:
            self._upkeep = asyncio.ensure_future(self._keep_up())

    async def aclose(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
            self._upkeep = None
        await self.client.aclose()

    async def _keep_up(self) -> None:
        """Every `lease / 3` seconds: which Redis answers (its run id; a new one is a restart, which may
        have lost data), the seeded keys (at start and after each restart), every live stream's lease."""
        seeded_on: str | None = None  # the run id of the Redis the keys went into
        while True:
            with contextlib.suppress(ServiceUnavailableError):
                run_id = (await self.run("upkeep", self.client.info("server"))).get("run_id")
                beat = self.client.set(
                    self.name("worker", self.worker), self.incarnation, px=int(self.lease * 1000)
                )
                await self.run("heartbeat", beat)
                if self._seeds and seeded_on != run_id:
                    await add_keys(self, self._seeds)
                    seeded_on = run_id
                for quota in self._quotas:
                    await quota.renew()
            await asyncio.sleep(self.lease / 3)


async def add_keys(state: RedisState, entries: Iterable[tuple[str, frozenset[str]]]) -> int:
    """Add keys (digest, permissions) to the cluster; a key already there takes these permissions."""
    mapping = {digest: " ".join(sorted(granted)) for digest, granted in entries}
    if mapping:
        await state.run("add keys", state.client.hset(state.name("keys"), mapping=mapping))
    return len(mapping)


async def remove_keys(state: RedisState, digests: Iterable[str]) -> int:
    """Remove keys from the cluster (workers stop accepting them within their `key_cache`)."""
    names = list(digests)
    return int(await state.run("remove keys", state.client.hdel(state.name("keys"), *names))) if names else 0


@attrs.define(eq=False)
class RedisGate:
    """The app's `Gate` over Redis: keys looked up by digest, request rates as shared token buckets (the
    worker's own `fallback` buckets while Redis is down)."""

    state: RedisState
    limits: RequestLimits = attrs.field(factory=RequestLimits)
    fallback: RequestLimits = attrs.field(factory=RequestLimits)
    _cache: dict[str, tuple[float, frozenset[str] | None]] = attrs.field(factory=dict, init=False)

    async def caller(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        digests = [key_digest(candidate) for candidate in presented_keys(authorization)]
        if not digests:
            raise AuthorizationError()
        now = self.state.clock()
        found: dict[str, frozenset[str] | None] = {}
        stale: dict[str, frozenset[str] | None] = {}
        for digest in digests:
            cached = self._cache.get(digest)
            if cached is not None:
                (found if now - cached[0] < self.state.key_cache else stale)[digest] = cached[1]
        asking = [d for d in digests if d not in found]
        if asking:
            try:
                values = await self.state.run(
                    "key lookup", self.state.client.hmget(self.state.name("keys"), asking)
                )
            except ServiceUnavailableError:
                if not all(d in stale for d in asking):
                    raise  # a key this worker cannot vouch for: maybe valid, so not a 401
                found.update({d: stale[d] for d in asking})  # known while Redis was up: trusted meanwhile
            else:
                if len(self._cache) > 10_000:
                    self._cache.clear()  # random keys must not grow it without bound
                for digest, value in zip(asking, values, strict=True):
                    granted = _permissions(value)
                    self._cache[digest] = (now, granted)
                    found[digest] = granted
        for digest in digests:
            granted = found.get(digest)
            if granted is not None:
                return owner_of(digest), granted
        raise AuthorizationError()

    async def check(self, owner: str) -> None:
        limits = self.limits
        if not self.state.up:
            self.fallback.check(owner)  # spend locally while down; the next create tells us when it is back
            return
        try:
            result = await self.state.run(
                "rate",
                self.state._spend(
                    keys=[self.state.name("bucket", owner), self.state.name("bucket")],
                    args=[limits.per_key, limits.key_burst, limits.total, limits.total_burst],
                ),
            )
        except ServiceUnavailableError:
            self.fallback.check(owner)
            return
        if int(result[0]) != 0:
            scope = "this key" if int(result[2]) == 1 else "this service"
            raise RateLimitedError(f"too many requests for {scope}", retry_after=float(result[1]))


def _permissions(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    granted = frozenset(value.split()) & PERMISSIONS
    return granted


@attrs.define(eq=False)
class RedisQuota:
    """The service's `StreamQuota` over Redis: `per_key` live streams per key and `total` in the cluster."""

    state: RedisState
    per_key: int
    total: int
    retry_after: float = 10.0
    _live: dict[str, str] = attrs.field(factory=dict, init=False)  # stream id -> owner, renewed by upkeep

    def __attrs_post_init__(self) -> None:
        self.state._quotas.append(self)

    async def acquire(self, owner: str, stream_id: str) -> None:
        state = self.state
        verdict = await state.run(
            "quota",
            state._acquire(
                keys=[state.name("streams", owner), state.name("streams")],
                args=[stream_id, self.per_key, self.total, int(state.lease * 1000)],
            ),
        )
        if int(verdict) == 1:
            raise RateLimitedError("too many live streams for this key", retry_after=self.retry_after)
        if int(verdict) == 2:
            raise RateLimitedError(
                "the service holds its maximum of live streams", retry_after=self.retry_after
            )
        self._live[stream_id] = owner

    async def release(self, owner: str, stream_id: str) -> None:
        self._live.pop(stream_id, None)
        state = self.state
        pipe = state.client.pipeline(transaction=True)
        pipe.zrem(state.name("streams", owner), stream_id)
        pipe.zrem(state.name("streams"), stream_id)
        with contextlib.suppress(ServiceUnavailableError):  # its lease runs out instead
            await state.run("release", pipe.execute())

    async def renew(self) -> None:
        """Extend every live stream's lease (and re-add what Redis lost)."""
        live = list(self._live.items())
        for start in range(0, len(live), 500):
            batch = live[start : start + 500]
            keys = [self.state.name("streams", owner) for _, owner in batch] + [self.state.name("streams")]
            args = [int(self.state.lease * 1000), *(stream_id for stream_id, _ in batch)]
            await self.state.run("renew", self.state._renew(keys=keys, args=args))


@attrs.define(eq=False)
class RedisTalkStore:
    """`engine.talks.TalkStore` over Redis: ``talk:<id>`` (the body, with who renders it) expiring with the
    talk, ``talks:<owner>`` (ids by creation time) for listing and counting."""

    state: RedisState

    async def put(self, owner: str, talk_id: str, body: dict[str, Any], keep: float) -> None:
        state = self.state
        record = {**body, "_worker": state.worker, "_incarnation": state.incarnation}
        index = state.name("talks", owner)
        pipe = state.client.pipeline(transaction=True)
        pipe.set(state.name("talk", talk_id), json.dumps(record), px=int(keep * 1000))
        pipe.zadd(index, {talk_id: _created_ms(body)}, nx=True)
        pipe.pexpire(index, int(keep * 1000), gt=True)
        pipe.expire(index, int(keep) + 1, nx=True)
        await state.run("talk put", pipe.execute())

    async def get(self, owner: str, talk_id: str) -> dict[str, Any] | None:
        raw = await self.state.run("talk get", self.state.client.get(self.state.name("talk", talk_id)))
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        if record.get("user_id") != owner:
            return None
        return (await self._as_seen([record]))[0]

    async def listing(self, owner: str) -> list[dict[str, Any]]:
        state = self.state
        index = state.name("talks", owner)
        ids = await state.run("talk list", state.client.zrevrange(index, 0, -1))
        if not ids:
            return []
        raws = await state.run("talk list", state.client.mget([state.name("talk", i) for i in ids]))
        gone = [talk_id for talk_id, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:  # expired or deleted: the index follows
            await state.run("talk prune", state.client.zrem(index, *gone))
        return await self._as_seen([json.loads(raw) for raw in raws if raw is not None])

    async def count(self, owner: str) -> int:
        return len(await self.listing(owner))

    async def remove(self, owner: str, talk_id: str) -> None:
        state = self.state
        pipe = state.client.pipeline(transaction=True)
        pipe.delete(state.name("talk", talk_id))
        pipe.zrem(state.name("talks", owner), talk_id)
        await state.run("talk remove", pipe.execute())

    async def _as_seen(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bodies as clients see them: internal fields dropped, and a talk left unfinished by a worker that
        is gone (no heartbeat of the incarnation that took it) reported as failed."""
        unfinished = [r for r in records if r.get("status") in ("created", "started")]
        workers = sorted({str(r.get("_worker", "")) for r in unfinished})
        beats: dict[str, str | None] = {}
        if workers:
            names = [self.state.name("worker", w) for w in workers]
            beats = dict(
                zip(workers, await self.state.run("heartbeats", self.state.client.mget(names)), strict=True)
            )
        waiting = {id(r) for r in unfinished}
        seen = []
        for record in records:
            worker, incarnation = record.pop("_worker", ""), record.pop("_incarnation", None)
            if id(record) in waiting and beats.get(worker) != incarnation:
                record["status"] = "error"
                record["error"] = {
                    "kind": "InternalServerError",
                    "description": "the server rendering this talk stopped before it was done",
                }
            seen.append(record)
        return seen


def _created_ms(body: dict[str, Any]) -> float:
    created = str(body.get("created_at", ""))
    try:
        return datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return time.time() * 1000
