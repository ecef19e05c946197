"""Who is calling and how often: API keys with their permissions, and request-rate limits.

What it must never do: log or store a key (owners are digests), or let the time a lookup takes tell which
key matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs

from talkstream.engine.errors import AuthorizationError, RateLimitedError

__all__ = [
    "PERMISSIONS",
    "Gate",
    "KeyRing",
    "LocalGate",
    "RequestLimits",
    "key_digest",
    "owner_of",
    "presented_keys",
]


#: What a key may do beyond the basics. A key given without a list may do all of it.
PERMISSIONS = frozenset({"local_files", "session_timeout"})


class KeyRing:
    """The API keys a server accepts, each with its permissions; lookups take the same time for any key.

    Entries are ``KEY`` (every permission) or ``KEY PERMISSION ...`` (only those), as in a keys file:
    ``local_files`` lets ``file://`` sources be used, ``session_timeout`` lets a stream choose its idle
    timeout (D-ID reserves that to permitted accounts too). Using one without it is 403 PermissionError.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._keys: list[tuple[bytes, frozenset[str]]] = []
        for entry in entries:
            key, *granted = entry.split()
            unknown = set(granted) - PERMISSIONS
            if unknown:
                raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")
            self._keys.append((key.encode(), frozenset(granted) if granted else PERMISSIONS))
        if not self._keys:
            raise ValueError("at least one API key is needed")

    def owner(self, authorization: str | None) -> str:
        """The owner id for an Authorization header, or raise 401."""
        return self.caller(authorization)[0]

    def caller(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        """(owner id, permissions) for an Authorization header, or raise 401."""
        match: tuple[bytes, frozenset[str]] | None = None
        for candidate in presented_keys(authorization):
            for key, granted in self._keys:  # no early exit: the time does not tell which key matched
                if hmac.compare_digest(candidate, key):
                    match = (key, granted)
        if match is None:
            raise AuthorizationError()
        key, granted = match
        return owner_of(key_digest(key)), granted

    def entries(self) -> list[tuple[str, frozenset[str]]]:
        """(digest, permissions) of every key, for a shared store (`redis_state.RedisState.seed_keys`)."""
        return [(key_digest(key), granted) for key, granted in self._keys]


def key_digest(key: bytes) -> str:
    """A key's SHA-256, hex: what a shared store keeps instead of the key."""
    return hashlib.sha256(key).hexdigest()


def owner_of(digest: str) -> str:
    """The owner id of the key with this digest: what logs, limits and streams name instead of the key."""
    return "key_" + digest[:16]


class Gate(Protocol):
    """Who is calling, and whether they may ask now: `caller` (401, or 503 when the keys cannot be read) and
    `check` (429 over a request rate). `LocalGate` in one process; `redis_state.RedisGate` in a cluster."""

    async def caller(self, authorization: str | None) -> tuple[str, frozenset[str]]: ...

    async def check(self, owner: str) -> None: ...


@attrs.define
class LocalGate:
    """A `Gate` from this process's own `KeyRing` and `RequestLimits`."""

    keys: KeyRing
    limits: RequestLimits

    async def caller(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        return self.keys.caller(authorization)

    async def check(self, owner: str) -> None:
        self.limits.check(owner)


@attrs.define
class _Bucket:
    tokens: float
    at: float


@attrs.define
class RequestLimits:
    """Request rate per key and in all, as token buckets: `per_key` requests a second with bursts of
    `key_burst`, `total` a second with bursts of `total_burst`. Over either: 429 with ``Retry-After``.

    Only authenticated requests count (a request with a wrong key is 401 before any bucket is touched, so
    strangers cannot spend a key's allowance), and the buckets are keyed by the owner digest, never the key.
    A page connecting through D-ID's five steps makes about a dozen requests at once, and a service often
    holds one key for all its users: the defaults allow a dozen pages connecting in the same second.
    """

    per_key: float = 50.0
    key_burst: float = 150.0
    total: float = 1000.0
    total_burst: float = 2000.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = attrs.field(factory=dict, init=False)

    def check(self, owner: str) -> None:
        """Spend one request of `owner`'s and of the total allowance, or raise 429 and spend nothing."""
        now = self.clock()
        key = self._refill(owner, self.per_key, self.key_burst, now)
        total = self._refill("", self.total, self.total_burst, now)
        for bucket, rate, scope in ((key, self.per_key, "this key"), (total, self.total, "this server")):
            if bucket.tokens < 1.0:
                raise RateLimitedError(
                    f"too many requests for {scope}", retry_after=(1.0 - bucket.tokens) / rate
                )
        key.tokens -= 1.0
        total.tokens -= 1.0

    def _refill(self, name: str, rate: float, burst: float, now: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(tokens=burst, at=now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket


def presented_keys(header: str | None) -> tuple[bytes, ...]:
    """The keys an Authorization header may carry, as bytes: none, one, or for ``key:`` in standard Basic
    both ``key:`` and ``key`` (``curl -u KEY:`` sends a colon-less key with an empty password).

    Any bytes may arrive: aiohttp hands undecodable header bytes over as lone surrogates, which are turned
    back into the bytes sent (so they simply match no key), and base64 that is not ASCII is not base64.
    """
    if not header:
        return ()
    try:
        raw = header.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no bytes decode to: it came from no client
        return ()
    scheme, _, value = raw.strip().partition(b" ")
    value = value.strip()
    if scheme.lower() == b"bearer" and value:
        return (value,)
    if scheme.lower() != b"basic" or not value:
        return ()
    if b":" in value:
        return (value,)  # D-ID's demo sends `Basic user:password` as is
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return (value,)  # a key without a colon, sent as is
    if b":" not in decoded:
        return (value,)
    user, _, password = decoded.partition(b":")
    return (decoded, user) if user and not password else (decoded,)
