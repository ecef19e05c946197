"""Cassettes: record one real session (HTTP exchanges, and the client peer's reports with their times) with
`Recorder`, and replay it with no server and no network (`ReplayAdapter`, `ReplayTransport`).

What it must never do: write a key or an Authorization header to a cassette, or answer a request that
differs from the recording (`CassetteMismatchError`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from talkstream.engine.clock import Clock
from talkstream.engine.errors import RequestError
from talkstream.engine.messages import IceServer
from talkstream.engine.ports import (
    ClientPeer,
    ClientTransport,
    HttpPort,
    HttpRequest,
    HttpResponse,
    MessageCallback,
    ReportCallback,
    Sink,
)
from talkstream.engine.states import Input

__all__ = ["CassetteMismatchError", "Recorder", "ReplayAdapter", "ReplayTransport", "load_cassette"]

VERSION = 1
_VOLATILE = frozenset({"sdp", "candidate", "sdpMid", "sdpMLineIndex"})


class CassetteMismatchError(RequestError):
    """The client sent something the recording did not."""

    kind = "CassetteMismatch"
    status = 400


class Recorder:
    """Records what goes through an HTTP port and what a client transport's peers report."""

    def __init__(self, http: HttpPort, transport: ClientTransport, clock: Clock) -> None:
        self.http = _RecordingPort(self, http)
        self.transport = _RecordingTransport(self, transport)
        self.clock = clock
        self.exchanges: list[dict[str, Any]] = []
        self.peers: list[dict[str, Any]] = []

    def save(self, path: Path) -> None:
        data = {"version": VERSION, "exchanges": self.exchanges, "peers": self.peers}
        path.write_text(json.dumps(data, indent=1) + "\n")


class _RecordingPort:
    def __init__(self, recorder: Recorder, inner: HttpPort) -> None:
        self._recorder = recorder
        self._inner = inner

    async def send(self, request: HttpRequest) -> HttpResponse:
        response = await self._inner.send(request)
        self._recorder.exchanges.append(
            {
                "request": {"method": request.method, "path": request.path, "body": request.body},
                "response": {
                    "status": response.status,
                    "body": response.body,
                    "headers": dict(response.headers),
                },
            }
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RecordingTransport:
    def __init__(self, recorder: Recorder, inner: ClientTransport) -> None:
        self._recorder = recorder
        self._inner = inner

    def create_peer(
        self,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
    ) -> ClientPeer:
        clock = self._recorder.clock
        started = clock.now()
        log: dict[str, Any] = {"stream_id": stream_id, "events": []}
        self._recorder.peers.append(log)

        def recorded_report(inp: Input, detail: str) -> None:
            log["events"].append({"at": clock.now() - started, "report": inp.value, "detail": detail})
            report(inp, detail)

        def recorded_message(text: str) -> None:
            log["events"].append({"at": clock.now() - started, "message": text})
            on_message(text)

        peer = self._inner.create_peer(stream_id, recorded_report, recorded_message, sink, ice_servers)
        return _RecordingPeer(peer, log)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RecordingPeer:
    """Delegates to the real peer, keeping the candidates it gave (the replay must post the same)."""

    def __init__(self, inner: ClientPeer, log: dict[str, Any]) -> None:
        self._inner = inner
        self._log = log

    async def answer(self, offer_sdp: str) -> str:
        return await self._inner.answer(offer_sdp)

    def candidates(self) -> list[tuple[str, str | None, int | None]]:
        found = self._inner.candidates()
        self._log["candidates"] = [list(c) for c in found]
        return found

    def send_message(self, text: str) -> bool:
        sent = self._inner.send_message(text)
        if sent:
            self._log.setdefault("sent", []).append(text)
        return sent

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:  # e.g. the sink, for whoever reads it
        return getattr(self._inner, name)


def load_cassette(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a talkstream cassette (version {VERSION})")
    return data


def _comparable(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _comparable(v) for k, v in body.items() if k not in _VOLATILE}
    return body


class ReplayAdapter:
    """Answers the recorded requests with the recorded responses, in order (implements `HttpPort`)."""

    def __init__(self, cassette: dict[str, Any]) -> None:
        self._exchanges = list(cassette["exchanges"])
        self.played = 0

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self.played >= len(self._exchanges):
            raise CassetteMismatchError(
                f"request {self.played + 1} ({request.method} {request.path}) was not recorded"
            )
        recorded = self._exchanges[self.played]
        expected = recorded["request"]
        sent = {"method": request.method, "path": request.path, "body": _comparable(request.body)}
        wanted = {
            "method": expected["method"],
            "path": expected["path"],
            "body": _comparable(expected["body"]),
        }
        if sent != wanted:
            raise CassetteMismatchError(
                f"request {self.played + 1} differs from the recording",
                details={"sent": sent, "recorded": wanted},
            )
        self.played += 1
        response = recorded["response"]
        return HttpResponse(status=response["status"], body=response["body"], headers=response["headers"])

    @property
    def finished(self) -> bool:
        return self.played == len(self._exchanges)

    async def aclose(self) -> None:
        pass


def _replayer(
    event: dict[str, Any], report: ReportCallback, on_message: MessageCallback
) -> Callable[[], None]:
    if "report" in event:
        inp, detail = Input(event["report"]), str(event["detail"])
        return lambda: report(inp, detail)
    text = str(event["message"])
    return lambda: on_message(text)


class _ReplayPeer:
    def __init__(
        self, log: dict[str, Any], clock: Clock, report: ReportCallback, on_message: MessageCallback
    ) -> None:
        self._candidates = [(c, mid, index) for c, mid, index in log.get("candidates", [])]
        self._recorded_sends = len(log.get("sent", []))
        self.sent: list[str] = []
        self._timers: list[Any] = []
        for event in log["events"]:
            self._timers.append(clock.call_later(event["at"], _replayer(event, report, on_message)))

    async def answer(self, offer_sdp: str) -> str:
        return "v=0\r\ns=talkstream-replay\r\n"

    def candidates(self) -> list[tuple[str, str | None, int | None]]:
        return list(self._candidates)

    def send_message(self, text: str) -> bool:
        """Taken as the recording's peer took it (its answers are among the recorded events); one more
        message than were recorded is a mismatch."""
        if len(self.sent) >= self._recorded_sends:
            raise CassetteMismatchError(f"a data-channel message that was not recorded: {text[:80]!r}")
        self.sent.append(text)
        return True

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


class ReplayTransport:
    """Client peers that report what the recorded ones did (implements `ClientTransport`)."""

    def __init__(self, cassette: dict[str, Any], clock: Clock) -> None:
        self._peers = {peer["stream_id"]: peer for peer in cassette["peers"]}
        self._clock = clock

    def create_peer(
        self,
        stream_id: str,
        report: ReportCallback,
        on_message: MessageCallback,
        sink: Sink | None,
        ice_servers: Sequence[IceServer] = (),
    ) -> ClientPeer:
        if stream_id not in self._peers:
            raise CassetteMismatchError(f"no peer was recorded for {stream_id}")
        return _ReplayPeer(self._peers[stream_id], self._clock, report, on_message)

    async def aclose(self) -> None:
        pass
