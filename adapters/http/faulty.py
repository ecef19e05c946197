"""An HTTP port between a client and its server that can answer in the server's place (injected HTTP errors
and network failures), and counts the attempts that went through it. For scenarios and tests.
"""

from __future__ import annotations

from collections import deque

from talkstream.engine.errors import ConnectionFailedError
from talkstream.engine.ports import HttpPort, HttpRequest, HttpResponse

__all__ = ["FaultyAdapter"]


class FaultyAdapter:
    """An `HttpPort` between client and server that can answer in the server's place, and counts attempts."""

    def __init__(self, inner: HttpPort) -> None:
        self.inner = inner
        self.attempts = 0
        self._faults: deque[tuple[str, int, float | None]] = deque()

    def inject_http(self, status: int, retry_after: float | None, times: int) -> None:
        self._faults.extend([("http", status, retry_after)] * times)

    def inject_network(self, times: int) -> None:
        self._faults.extend([("network", 0, None)] * times)

    def clear(self) -> None:
        self._faults.clear()

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.attempts += 1
        if self._faults:
            kind, status, retry_after = self._faults.popleft()
            if kind == "network":
                raise ConnectionFailedError(f"{request.method} {request.path}: injected network error")
            headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
            body = {"kind": "InjectedFault", "description": f"injected HTTP {status}"}
            return HttpResponse(status=status, body=body, headers=headers)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
