"""HTTP over the network with aiohttp: `AiohttpAdapter` sends the client's requests to a base URL with D-ID's
auth and per-request timeouts, and turns aiohttp's exceptions into `ConnectionFailedError` and
`TimeoutError_`.

What it must never do: log the key, follow a redirect to another host, or raise an aiohttp exception.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from talkstream.engine.errors import ConnectionFailedError, TimeoutError_
from talkstream.engine.ports import HttpRequest, HttpResponse

__all__ = ["AiohttpAdapter"]


class AiohttpAdapter:
    """Protocol requests to `base_url` (e.g. ``https://api.d-id.com`` or ``http://127.0.0.1:8000``)."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 45.0, connect_timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Basic {api_key}", "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AiohttpAdapter({self.base_url!r})"  # never the key

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        data = None if request.body is None else json.dumps(request.body)
        try:
            async with self._session.request(
                request.method, self.base_url + request.path, data=data, allow_redirects=False
            ) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                if response.content_type.startswith(("video/", "application/octet-stream")):
                    return HttpResponse(status=response.status, body=await response.read(), headers=headers)
                text = await response.text()
                return HttpResponse(status=response.status, body=_parse(text), headers=headers)
        except TimeoutError as exc:
            raise TimeoutError_(f"{request.method} {request.path} timed out") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionFailedError(f"{request.method} {request.path}: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _parse(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
