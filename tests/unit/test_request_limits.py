"""Request rate per key and in all: token buckets answered with D-ID's 429 and Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from talkstream.adapters.server.app import create_app
from talkstream.adapters.server.auth import KeyRing, RequestLimits
from talkstream.engine.errors import NotFoundError, RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_waits_for_tokens() -> None:
    clock = Clock()
    limits = RequestLimits(per_key=2.0, key_burst=3.0, clock=clock)
    for _ in range(3):
        limits.check("alice")
    with pytest.raises(RateLimitedError) as refused:
        limits.check("alice")
    assert refused.value.status == 429 and refused.value.headers() == {
        "Retry-After": "1"
    }  # 0.5 s, rounded up
    assert refused.value.to_body()["kind"] == "TooManyRequestsError"
    clock.now += 0.5
    limits.check("alice")  # one token back
    with pytest.raises(RateLimitedError):
        limits.check("alice")


def test_keys_do_not_share_an_allowance_and_refusals_spend_nothing() -> None:
    clock = Clock()
    limits = RequestLimits(per_key=1.0, key_burst=2.0, total=100.0, total_burst=3.0, clock=clock)
    limits.check("alice")
    limits.check("alice")
    for _ in range(5):  # refused: neither alice's nor the server's tokens are spent
        with pytest.raises(RateLimitedError, match="this key"):
            limits.check("alice")
    limits.check("bob")  # bob's own allowance, and the server's third token
    with pytest.raises(RateLimitedError, match="this server") as refused:
        limits.check("carol")
    assert refused.value.retry_after == pytest.approx(0.01)
    clock.now += 1.0
    limits.check("alice")


def test_idle_keys_never_bank_more_than_their_burst() -> None:
    clock = Clock()
    limits = RequestLimits(per_key=10.0, key_burst=4.0, clock=clock)
    limits.check("alice")
    clock.now += 3600
    for _ in range(4):
        limits.check("alice")
    with pytest.raises(RateLimitedError):
        limits.check("alice")


class Recording:
    """A stand-in service that counts the streams it was asked to create."""

    def __init__(self) -> None:
        self.created = 0

    async def create(self, owner: str, request: Any) -> Any:
        self.created += 1
        raise RateLimitedError("the service's own stream limit", retry_after=10)

    def check_kind(self, owner: str, stream_id: str, kind: str) -> None:
        """Every stream here is of the kind asked for (the app asks before each operation)."""

    async def delete(self, owner: str, stream_id: str, request: Any) -> Any:
        raise NotFoundError("no such stream")


async def test_over_the_rate_is_429_with_retry_after_and_reaches_nothing() -> None:
    clock = Clock()
    service = Recording()
    limits = RequestLimits(per_key=1.0, key_burst=2.0, clock=clock)
    app = create_app(service, KeyRing(["k:s", "other:key"]), limits=limits)  # type: ignore[arg-type]
    body = {"source_url": "bundled:astronaut"}
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        for _ in range(2):
            response = await client.post("/talks/streams", json=body, headers={"Authorization": "Basic k:s"})
            assert response.status == 429 and (await response.json())["description"].startswith("the service")
        response = await client.post("/talks/streams", json=body, headers={"Authorization": "Basic k:s"})
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert await response.json() == {
            "kind": "TooManyRequestsError",
            "description": "too many requests for this key",
        }
        assert service.created == 2, "a refused request reached the service"
        # A stranger's requests are 401 and spend nothing of anyone's allowance.
        for _ in range(5):
            response = await client.post(
                "/talks/streams", json=body, headers={"Authorization": "Basic k:wrong"}
            )
            assert response.status == 401
        response = await client.post(
            "/talks/streams", json=body, headers={"Authorization": "Basic other:key"}
        )
        assert response.status == 429 and service.created == 3  # the other key's own allowance
        clock.now += 1.0
        response = await client.delete(
            "/talks/streams/strm_x", json={}, headers={"Authorization": "Basic k:s"}
        )
        assert response.status == 404  # a token came back: the request reached the service
