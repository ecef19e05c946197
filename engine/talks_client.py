"""The client of D-ID's asynchronous talks (``/talks``): `TalksClient` asks for a talk rendered to a file,
waits for it, fetches the file, lists and deletes talks, on any compatible server through an `HttpPort`.

What it must never do: import a backend, poll faster than its interval, or hide an error answer.
"""

from __future__ import annotations

import time
from typing import Any

from .clock import Clock, SystemClock, run_with_timeout
from .errors import TalkstreamError, error_from_response
from .messages import AudioScript, CreateTalkRequest, Provider, TalkConfig, TalkInfo, TextScript
from .ports import HttpPort, HttpRequest
from .retry import RetryPolicy, parse_retry_after

__all__ = ["TalkRenderFailedError", "TalksClient"]


class TalkRenderFailedError(TalkstreamError):
    """The server reported the talk's status as ``error`` (or ``rejected``)."""

    kind = "TalkFailed"
    status = 500
    default_description = "the talk could not be rendered"


class TalksClient:
    """Asynchronous talks on one server. ``async with TalksClient(AiohttpAdapter(url, key)) as talks``."""

    def __init__(
        self, http: HttpPort, *, retry: RetryPolicy | None = None, clock: Clock | None = None
    ) -> None:
        self.http = http
        self.retry = retry if retry is not None else RetryPolicy.did_demo()
        self.clock = clock or SystemClock()

    async def __aenter__(self) -> TalksClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def create(
        self,
        *,
        text: str | None = None,
        audio_url: str | None = None,
        source_url: str | None = None,
        voice: str | None = None,
        provider: str = "microsoft",
        pad_audio: float | None = None,
        result_format: str | None = None,
        name: str | None = None,
        user_data: str | None = None,
    ) -> TalkInfo:
        """Ask for a talk (text or an audio file's URL) of `source_url`'s face (the server's default one
        without it); it renders in the background: `wait` for it."""
        if (text is None) == (audio_url is None):
            raise ValueError("give either text or audio_url")
        script: TextScript | AudioScript
        if text is not None:
            script = TextScript(
                input=text, provider=Provider(type=provider, voice_id=voice) if voice else None
            )
        else:
            assert audio_url is not None
            script = AudioScript(audio_url=audio_url)
        config = None
        if pad_audio is not None or result_format is not None:
            config = TalkConfig(pad_audio=pad_audio, result_format=result_format)  # type: ignore[arg-type]
        body = CreateTalkRequest(script=script, config=config, name=name, user_data=user_data).to_json()
        if source_url is None:
            del body["source_url"]
        else:
            body["source_url"] = source_url
        created = await self._call("POST", "/talks", body)
        return TalkInfo.from_json(created)

    async def get(self, talk_id: str) -> TalkInfo:
        return TalkInfo.from_json(await self._call("GET", f"/talks/{talk_id}", None))

    async def list(self, *, limit: int = 100) -> list[TalkInfo]:
        """Every talk of this key, newest first (all the pages)."""
        talks: list[TalkInfo] = []
        token: str | None = None
        while True:
            query = f"?limit={limit}" + (f"&token={token}" if token else "")
            page = await self._call("GET", f"/talks{query}", None)
            talks += [TalkInfo.from_json(t, f"talks[{i}]") for i, t in enumerate(page.get("talks", []))]
            token = page.get("token")
            if not token:
                return talks

    async def delete(self, talk_id: str) -> TalkInfo:
        return TalkInfo.from_json(await self._call("DELETE", f"/talks/{talk_id}", None))

    async def wait(self, talk_id: str, *, within: float = 300.0, every: float = 0.5) -> TalkInfo:
        """Poll until the talk is done (its `result_url` set); raise `TalkRenderFailedError` if it failed,
        ``TimeoutError`` after `within` seconds."""

        async def poll() -> TalkInfo:
            while True:
                info = await self.get(talk_id)
                if info.status == "done":
                    return info
                if info.status in ("error", "rejected"):
                    error = info.error
                    raise TalkRenderFailedError(
                        error.description if error else None, details=error.to_json() if error else None
                    )
                await self.clock.sleep(every)

        return await run_with_timeout(self.clock, within, poll())

    async def result(self, talk_id: str) -> bytes:
        """The rendered file's bytes (the server gives them to the talk's own key only)."""
        body = await self._call("GET", f"/talks/{talk_id}/result", None)
        if not isinstance(body, bytes):
            raise TalkRenderFailedError("the server's result was not a video file")
        return body

    async def _call(self, method: str, path: str, body: Any) -> Any:
        async def attempt(_: int) -> Any:
            response = await self.http.send(HttpRequest(method=method, path=path, body=body))
            if 200 <= response.status < 300:
                return response.body
            retry_after = parse_retry_after(response.headers.get("retry-after"), now_wall=time.time())
            raise error_from_response(response.status, response.body, retry_after=retry_after)

        return await self.retry.run(attempt, clock=self.clock)
