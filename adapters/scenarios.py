"""Scenarios: YAML files of steps and expectations (the format is `specs/scenario.schema.json`, explained in
specs/README.md) played with talkstream's client against a server in this process (memory or aiortc
transport) or at a URL, with faults injected between them.

What it must never do: contact anything but the target, or pass a scenario whose expectation it could not
check (an unmet requirement skips it, with the reason).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import av
import jsonschema
import yaml
from aiohttp import web

from talkstream.avatar.fetch import FetchPolicy
from talkstream.engine.client import ClientStream, ClientTalk, StreamClient
from talkstream.engine.clock import Clock, SystemClock, VirtualClock, run_with_timeout
from talkstream.engine.errors import (
    TalkstreamError,
    ValidationError,
    error_from_response,
)
from talkstream.engine.messages import AudioScript, CreateStreamRequest, TextScript
from talkstream.engine.ports import Face, HttpPort, HttpRequest, Sink, SpeechFeed, SpeechStream, Studio
from talkstream.engine.retry import RetryPolicy
from talkstream.engine.states import State
from talkstream.specs import MEDIA, SCENARIO_SCHEMA

from .http.faulty import FaultyAdapter
from .http.inprocess import InProcessAdapter
from .http.network import AiohttpAdapter
from .server.build import ServerSettings, build_app

__all__ = ["Outcome", "load_scenario", "run_scenario"]

T = TypeVar("T")

DEFAULT_KEY = "replay:default-key"
OTHER_KEY = "replay:other-key"
WRONG_KEY = "replay:wrong-key"
LIMITED_KEY = "replay:limited-key"  # may not use local files (in process)


class ScenarioError(Exception):
    """The scenario file is not a valid scenario."""


class Skipped(Exception):
    """The world cannot run this scenario (a requirement it does not meet)."""


class Failed(AssertionError):
    """An expectation did not hold."""


def load_scenario(path: Path) -> dict[str, Any]:
    """Read and validate one scenario file against the JSON Schema."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not YAML: {exc}") from exc
    schema = json.loads(SCENARIO_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise ScenarioError(f"{path}: {where}: {first.message}")
    return data  # type: ignore[no-any-return]


@attrs.define
class World:
    """Where a scenario runs: the client, raw adapters per key, the clock and the memory network."""

    client: StreamClient
    faulty: FaultyAdapter
    raw: dict[str, HttpPort]
    clock: Clock
    network: Any = None  # transports.memory.MemoryNetwork when the transport is memory
    sink: Callable[[], Sink] | None = None  # makes a media sink for each stream
    media_url: str | None = None  # where specs/scenarios/media is served, for {media} in scenarios
    restart: Callable[[], Awaitable[None]] | None = None  # restarts the in-process server
    closers: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)

    @property
    def virtual(self) -> VirtualClock | None:
        return self.clock if isinstance(self.clock, VirtualClock) else None

    async def run(self, awaitable: Awaitable[T], within: float | None = None) -> T:
        if self.virtual is not None:
            return await self.virtual.run(awaitable)
        if within is None:
            return await awaitable
        return await run_with_timeout(self.clock, within, awaitable)

    async def aclose(self) -> None:
        self.faulty.clear()  # faults left over are not for the clean-up
        await self.run(self.client.aclose(), 30)
        for port in self.raw.values():
            await port.aclose()
        for close in reversed(self.closers):
            await close()


async def _serve_media() -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve specs/scenarios/media on 127.0.0.1 (a port of its own) for the server to fetch."""
    app = web.Application()
    app.router.add_static("/media", MEDIA)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}/media", runner.cleanup


def _retry(spec: dict[str, Any]) -> RetryPolicy:
    value = spec.get("retry", "did_demo")
    if value == "did_sdk":
        return RetryPolicy.did_sdk()
    if value == "none":
        return RetryPolicy.none()
    if value == "did_demo":
        return RetryPolicy.did_demo()
    return RetryPolicy(**value)


class HeldStudio:
    """A studio whose work holds a virtual clock still: fetching a photo or an audio file is real-world I/O
    that `VirtualClock.run` cannot see, and time must not jump (and expire sessions) meanwhile."""

    def __init__(self, inner: Studio, clock: VirtualClock) -> None:
        self.inner, self.clock = inner, clock

    async def face(self, request: CreateStreamRequest) -> Face:
        with self.clock.hold():
            return await self.inner.face(request)

    async def speech(self, script: TextScript | AudioScript, *, pad_audio: float) -> SpeechStream:
        with self.clock.hold():
            return await self.inner.speech(script, pad_audio=pad_audio)

    def pcm_feed(self, sample_rate: int) -> SpeechFeed:
        return self.inner.pcm_feed(sample_rate)


def _holding_studio(clock: Clock) -> Callable[[Studio], Studio] | None:
    if not isinstance(clock, VirtualClock):
        return None
    return lambda studio: HeldStudio(studio, clock)


async def make_world(spec: dict[str, Any], target: str, transport: str) -> World:
    """Build the world the scenario asks for, or raise Skipped."""
    requires = set(spec.get("requires", []))
    if target != "inprocess" and transport == "memory":
        raise ValueError("the memory transport needs the in-process target")
    if "memory" in requires and transport != "memory":
        raise Skipped("needs the memory transport")
    if "virtual_clock" in requires and transport != "memory":
        raise Skipped("needs the virtual clock (memory transport)")
    from talkstream.transports.aiortc_client import AiortcClientTransport
    from talkstream.transports.memory import MemoryNetwork, MemorySink, NetworkKnobs
    from talkstream.transports.sink import MediaSink

    if spec.get("api") == "websocket":
        return await _websocket_world(spec, target, transport)
    if target == "inprocess":
        clock: Clock = VirtualClock() if transport == "memory" else SystemClock()
        network = MemoryNetwork(clock, NetworkKnobs()) if transport == "memory" else None
        media_url, stop_media = await _serve_media()
        # The in-process server may fetch the scenario media served on 127.0.0.1, and nothing else local.
        settings = ServerSettings(
            keys=(DEFAULT_KEY, OTHER_KEY, f"{LIMITED_KEY} session_timeout"),
            fetch_policy=FetchPolicy.local(("127.0.0.1/32",)),
        )
        held = _holding_studio(clock)
        app = build_app(
            settings,
            clock=clock,
            transport=network.server_transport() if network else None,
            wrap_studio=held,
        )
        server = InProcessAdapter(app, DEFAULT_KEY)
        raw: dict[str, HttpPort] = {
            "default": server.with_key(DEFAULT_KEY),
            "other": server.with_key(OTHER_KEY),
            "wrong": server.with_key(WRONG_KEY),
            "limited": server.with_key(LIMITED_KEY),
        }
        client_transport: Any = network.client_transport() if network else AiortcClientTransport()
        faulty = FaultyAdapter(server)
        client = StreamClient(faulty, client_transport, clock=clock, retry=_retry(spec))
        # A fluent stream sends video as long as it lives: keep the last frames only (all are counted).
        sink: Callable[[], Sink] = (lambda: MemorySink(keep=100)) if network else MediaSink
        world = World(client, faulty, raw, clock, network, sink=sink)

        async def restart() -> None:
            # The server process "restarts": every stream it held is gone (peers closed), a new one starts.
            server_transport = network.server_transport() if network else None
            await server.replace_app(
                build_app(settings, clock=clock, transport=server_transport, wrap_studio=held)
            )

        world.restart = restart
        world.media_url = media_url
        world.closers.append(stop_media)
        return world
    key = os.environ.get("TALKSTREAM_REPLAY_KEY") or os.environ.get("DID_API_KEY")
    if not key:
        raise Skipped("a URL target needs its key in TALKSTREAM_REPLAY_KEY")
    other = os.environ.get("TALKSTREAM_REPLAY_OTHER_KEY")
    raw = {"default": AiohttpAdapter(target, key), "wrong": AiohttpAdapter(target, WRONG_KEY)}
    if other:
        raw["other"] = AiohttpAdapter(target, other)
    local = re.match(r"https?://(127\.|localhost|\[::1\])", target) is not None
    faulty = FaultyAdapter(AiohttpAdapter(target, key))
    client = StreamClient(
        faulty, AiortcClientTransport(host_addresses=("127.0.0.1",) if local else None), retry=_retry(spec)
    )
    return World(client, faulty, raw, SystemClock(), sink=MediaSink)


async def _websocket_world(spec: dict[str, Any], target: str, transport: str) -> World:
    """A client on D-ID's WebSocket API: the in-process server behind a real socket on 127.0.0.1 (so real
    time and aiortc), or the target URL."""
    from talkstream.transports.aiortc_client import AiortcClientTransport
    from talkstream.transports.sink import MediaSink

    from .http.websocket import WebSocketAdapter

    if (
        transport == "memory"
        or "virtual_clock" in spec.get("requires", [])
        or "memory" in spec.get("requires", [])
    ):
        raise Skipped("the WebSocket API needs real sockets: the aiortc transport and the real clock")
    closers: list[Callable[[], Awaitable[None]]] = []
    if target == "inprocess":
        media_url, stop_media = await _serve_media()
        closers.append(stop_media)
        settings = ServerSettings(
            keys=(DEFAULT_KEY, OTHER_KEY, f"{LIMITED_KEY} session_timeout"),
            fetch_policy=FetchPolicy.local(("127.0.0.1/32",)),
        )
        runner = web.AppRunner(build_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        closers.append(runner.cleanup)
        base, key = f"http://127.0.0.1:{runner.addresses[0][1]}", DEFAULT_KEY
        raw: dict[str, HttpPort] = {
            name: AiohttpAdapter(base, value)
            for name, value in (("default", DEFAULT_KEY), ("other", OTHER_KEY), ("wrong", WRONG_KEY))
        }
        local = True
    else:
        found = os.environ.get("TALKSTREAM_REPLAY_KEY") or os.environ.get("DID_API_KEY")
        if not found:
            raise Skipped("a URL target needs its key in TALKSTREAM_REPLAY_KEY")
        base, key, media_url = target, found, None
        raw = {"default": AiohttpAdapter(base, key), "wrong": AiohttpAdapter(base, WRONG_KEY)}
        local = re.match(r"https?://(127\.|localhost|\[::1\])", target) is not None
    adapter = WebSocketAdapter(base, key)
    peers = AiortcClientTransport(host_addresses=("127.0.0.1",) if local else None)
    client = StreamClient(adapter, peers, retry=_retry(spec))
    world = World(client, FaultyAdapter(adapter), raw, SystemClock(), sink=MediaSink)
    world.media_url = media_url
    world.closers.extend(closers)
    return world


@attrs.define
class Outcome:
    """How a scenario went: passed, failed (with why) or skipped (with why), and how long it took."""

    name: str
    path: str
    status: str  # passed | failed | skipped
    detail: str = ""
    seconds: float = 0.0
    steps: int = 0


class _Runner:
    def __init__(self, world: World) -> None:
        self.world = world
        self.streams: dict[str, ClientStream] = {}
        self.talks: dict[str, ClientTalk] = {}
        self.talk_streams: dict[str, str] = {}  # talk name -> the name of its stream

    def stream(self, name: str) -> ClientStream:
        if name not in self.streams:
            raise Failed(f"no stream named {name!r} (create it first)")
        return self.streams[name]

    async def step(self, step: dict[str, Any]) -> None:
        ((verb, args),) = step.items()
        handler = getattr(self, f"do_{verb}")
        expect_error = args.get("expect_error") if isinstance(args, dict) else None
        self.world.faulty.attempts = 0
        try:
            await handler(args)
        except TalkstreamError as exc:
            if expect_error is None:
                raise Failed(f"{verb}: unexpected {exc.kind} ({exc.status}): {exc.description}") from exc
            self.check_error(verb, exc, expect_error)
        else:
            if expect_error is not None:
                raise Failed(f"{verb}: expected {expect_error}, but it succeeded")
        if isinstance(args, dict) and "attempts" in args and self.world.faulty.attempts != args["attempts"]:
            raise Failed(f"{verb}: {self.world.faulty.attempts} attempts, expected {args['attempts']}")

    @staticmethod
    def check_error(verb: str, exc: TalkstreamError, expected: dict[str, Any]) -> None:
        problems = []
        if "status" in expected and exc.status != expected["status"]:
            problems.append(f"status {exc.status} != {expected['status']}")
        if "kind" in expected and exc.kind != expected["kind"]:
            problems.append(f"kind {exc.kind} != {expected['kind']}")
        if "description_contains" in expected and expected["description_contains"] not in exc.description:
            problems.append(f"description {exc.description!r} lacks {expected['description_contains']!r}")
        if "path" in expected and (not isinstance(exc, ValidationError) or exc.path != expected["path"]):
            problems.append(f"path {getattr(exc, 'path', None)!r} != {expected['path']!r}")
        if problems:
            raise Failed(f"{verb}: " + "; ".join(problems))

    def media(self, url: str) -> str:
        if self.world.media_url is None:
            raise Skipped("scenario media is served only to the in-process target")
        return url.replace("{media}", self.world.media_url)

    async def raw(self, key: str, method: str, path: str, body: Any) -> Any:
        port = self.world.raw.get(key)
        if port is None:
            raise Skipped(f"no {key!r} key for this target")
        response = await port.send(HttpRequest(method=method, path=path, body=body))
        if response.status >= 400:
            raise error_from_response(response.status, response.body)
        return response.body

    # -- steps ------------------------------------------------------------------------------------------

    async def do_create(self, args: dict[str, Any]) -> None:
        body = dict(args.get("body", {"source_url": "bundled:astronaut"}))
        if isinstance(body.get("source_url"), str) and "{media}" in body["source_url"]:
            body["source_url"] = self.media(body["source_url"])
        key = args.get("key", "default")
        api = "clips" if "presenter_id" in body else "talks"  # a presenter makes it a clips stream
        if key != "default":
            await self.raw(key, "POST", f"/{api}/streams", body)
            return
        if api == "clips":
            presenter = body.pop("presenter_id")
            if not isinstance(presenter, str):
                await self.raw("default", "POST", "/clips/streams", {"presenter_id": presenter, **body})
                return
            sink = self.world.sink() if self.world.sink else None
            clip = self.world.client.create_clip(presenter, sink=sink, negotiate=False, **body)
            self.streams[args["as"]] = await self.world.run(clip)
            return
        source = body.pop("source_url", None)
        if not isinstance(source, str):
            # Let the server judge a body the client's models would refuse before sending.
            await self.raw("default", "POST", "/talks/streams", {"source_url": source, **body})
            return
        sink = self.world.sink() if self.world.sink else None
        stream = await self.world.run(self.world.client.create(source, sink=sink, negotiate=False, **body))
        self.streams[args["as"]] = stream

    async def do_connect(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        await self.world.run(stream.negotiate(early_candidates=bool(args.get("early_candidates"))))
        await self.world.run(stream.connected(), args.get("within", 30))

    async def do_talk(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        key = args.get("key", "default")
        if key != "default" or "session_id" in args or "body" in args:
            body = dict(
                args.get("body", {"script": {"type": "text", "input": args.get("text", "hello there")}})
            )
            body["session_id"] = args.get("session_id", stream.session.session_id)
            await self.raw(key, "POST", f"/{stream.api}/streams/{stream.stream_id}", body)
            return
        audio_url = args.get("audio_url")
        if audio_url is not None and "{media}" in audio_url:
            audio_url = self.media(audio_url)
        talk = await self.world.run(
            stream.talk(text=args.get("text"), audio_url=audio_url, background=args.get("background"))
        )
        if "as" in args:
            self.talks[args["as"]] = talk
            self.talk_streams[args["as"]] = args["stream"]

    async def do_delete(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        key = args.get("key", "default")
        if key != "default" or stream.state is State.CLOSED:
            body = {"session_id": stream.session.session_id}
            await self.raw(key, "DELETE", f"/{stream.api}/streams/{stream.stream_id}", body)
            return
        await self.world.run(stream.close())

    async def do_wait(self, args: dict[str, Any]) -> None:
        within = args.get("within", 30)
        if "talk" in args:
            talk = self.talks.get(args["talk"])
            if talk is None:
                raise Failed(f"no talk named {args['talk']!r}")
            await self.world.run(talk.done(), within)
            return
        stream = self.stream(args["stream"])

        async def until() -> None:
            while True:
                if "state" in args and stream.state.value == args["state"]:
                    return
                if "event" in args and any(m.split(":", 1)[0] == args["event"] for _, m in stream.messages):
                    return
                await self.world.clock.sleep(0.005)

        try:
            await self.world.run(until(), within)
        except TimeoutError as exc:
            raise Failed(f"wait: {args} not reached within {within} s (state {stream.state.value})") from exc

    async def do_interrupt(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        within = args.get("within", 30)
        stopped = await self.world.run(stream.interrupt(within=within), within)
        if "stops" in args:
            expected = self.talks.get(args["stops"]) if args["stops"] is not None else None
            if args["stops"] is not None and expected is None:
                raise Failed(f"interrupt: no talk named {args['stops']!r}")
            if stopped is not expected:
                named = {id(t): n for n, t in self.talks.items()}
                got = named.get(id(stopped), "an unnamed talk") if stopped is not None else "nothing"
                raise Failed(f"interrupt: stopped {got}, expected {args['stops'] or 'nothing'}")

    async def do_stream_text(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        talk = await self.world.run(stream.stream_text(args["chunks"], ssml=bool(args.get("ssml"))), 60)
        if talk is None:
            raise Failed("stream_text: the chunks held nothing to say")
        if "as" in args:
            self.talks[args["as"]] = talk
            self.talk_streams[args["as"]] = args["stream"]

    async def do_stream_audio(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        pcm = _media_pcm(args["media"])
        size = args.get("chunk_bytes", 8000)
        pieces = [pcm[at : at + size] for at in range(0, len(pcm), size)]
        talk = await self.world.run(stream.stream_audio(pieces), 60)
        if talk is None:
            raise Failed("stream_audio: the file held no sound")
        if "as" in args:
            self.talks[args["as"]] = talk
            self.talk_streams[args["as"]] = args["stream"]

    async def do_message(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        if not stream.peer.send_message(args["text"]):
            raise Failed("message: no data channel is open")

    async def do_advance(self, seconds: float) -> None:
        clock = self.world.virtual
        if clock is None:
            raise Skipped("advance needs the virtual clock")
        await clock.advance(seconds)

    async def do_fault(self, args: dict[str, Any]) -> None:
        faulty = self.world.faulty
        if "http" in args:
            http = args["http"]
            faulty.inject_http(http["status"], http.get("retry_after"), http.get("times", 1))
        if "network" in args:
            faulty.inject_network(args["network"].get("times", 1))
        network = self.world.network
        memory_only = {"ice", "lose_messages", "vanish"} & set(args)
        if memory_only and network is None:
            raise Skipped(f"{', '.join(sorted(memory_only))} faults need the memory transport")
        if args.get("ice") == "fail":
            network.knobs.ice_fails = True
        if "lose_messages" in args:
            network.knobs.lose_messages = frozenset(args["lose_messages"])
        if "vanish" in args:
            network.vanish(self.stream(args["vanish"]).peer)
        if args.get("restart"):
            if self.world.restart is None:
                raise Skipped("restart needs the in-process target")
            await self.world.run(self.world.restart())

    async def do_expect(self, args: dict[str, Any]) -> None:
        stream = self.stream(args["stream"])
        session = stream.session
        if "state" in args and session.state.value != args["state"]:
            raise Failed(f"expect: state {session.state.value}, expected {args['state']}")
        if "reason" in args:
            reason = session.close_reason.value if session.close_reason else None
            if reason != args["reason"]:
                raise Failed(f"expect: close reason {reason}, expected {args['reason']}")
        if "events" in args:
            subjects = [m.split(":", 1)[0] for _, m in stream.messages]
            if subjects != args["events"]:
                raise Failed(f"expect: events {subjects}, expected {args['events']}")
        if "inputs" in args:
            inputs = _fold([e.input.value for e in session.history])
            if inputs != _fold(args["inputs"]):
                raise Failed(f"expect: inputs {inputs}, expected {_fold(args['inputs'])}")
        if "interrupted" in args:
            mine = {n: t for n, t in self.talks.items() if self.talk_streams.get(n) == args["stream"]}
            unknown = set(args["interrupted"]) - set(mine)
            if unknown:
                raise Failed(f"expect: no talks named {sorted(unknown)} on {args['stream']}")
            got = sorted(n for n, t in mine.items() if t.interrupted)
            if got != sorted(args["interrupted"]):
                raise Failed(f"expect: interrupted {got}, expected {sorted(args['interrupted'])}")
        if "create_answer" in args:
            said = {"fluent": stream.fluent, "interrupt_enabled": stream.interrupt_enabled}
            for name, value in args["create_answer"].items():
                if said[name] != value:
                    raise Failed(f"expect: the create answer said {name} {said[name]}, expected {value}")
        if "frames_grow" in args:
            if stream.sink is None:
                raise Failed("expect: frames_grow needs a stream with a sink")
            before = stream.received_frames
            await self.world.run(self.world.clock.sleep(args["frames_grow"]))
            if stream.received_frames <= before:
                raise Failed(f"expect: no video frame arrived within {args['frames_grow']} s")
        if "frames_at_least" in args:
            frames = stream.received_frames if stream.sink is not None else None
            if frames is None or frames < args["frames_at_least"]:
                raise Failed(f"expect: {frames} frames, expected at least {args['frames_at_least']}")


def _media_pcm(name: str) -> bytes:
    """A file of the scenario media as 16 kHz 16-bit mono PCM, what a WebSocket client streams."""
    from talkstream.avatar.speech import decode_audio

    path = (MEDIA / name).resolve()
    if path.parent != MEDIA.resolve() or not path.is_file():
        raise Failed(f"no scenario media named {name!r}")
    pcm = decode_audio(path.read_bytes())  # 48 kHz
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 48_000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    parts = [*resampler.resample(frame), *resampler.resample(None)]
    return b"".join(part.to_ndarray().astype("<i2").tobytes() for part in parts)


def _fold(inputs: list[str]) -> list[str]:
    """The inputs with every `candidate_sent` after the first left out.

    How many candidates a peer gathers is the machine's business, and so is where the later ones land:
    they trickle while the connectivity checks run, so over real WebRTC ICE can connect (from the server's
    own candidate and our peer-reflexive address) before the last candidate or the end marker is posted.
    The first one stays where it came: before or after the answer is the client's choice, and a scenario
    checks it.
    """
    out: list[str] = []
    for name in inputs:
        if not (name == "candidate_sent" and name in out):
            out.append(name)
    return out


async def run_scenario(path: Path, *, target: str = "inprocess", transport: str = "memory") -> Outcome:
    """Run one scenario file; never raises for the scenario's own failure (see `Outcome`)."""
    started = time.perf_counter()
    try:
        spec = load_scenario(path)
    except ScenarioError as exc:
        return Outcome(path.stem, str(path), "failed", str(exc))
    name = spec["name"]
    try:
        world = await make_world(spec, target, transport)
    except Skipped as exc:
        return Outcome(name, str(path), "skipped", str(exc))
    runner = _Runner(world)
    done = 0
    try:
        for step in spec["steps"]:
            done += 1
            await runner.step(step)
    except Skipped as exc:
        return Outcome(name, str(path), "skipped", str(exc), time.perf_counter() - started, done)
    except (Failed, TalkstreamError, TimeoutError) as exc:
        detail = f"step {done} ({next(iter(spec['steps'][done - 1]))}): {exc or type(exc).__name__}"
        return Outcome(name, str(path), "failed", detail, time.perf_counter() - started, done)
    finally:
        await world.aclose()
    return Outcome(name, str(path), "passed", "", time.perf_counter() - started, done)
