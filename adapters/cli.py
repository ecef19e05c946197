"""The `talkstream` command: ``serve`` (the embedded server), ``talk`` (the client against it or another
server, to an MP4), ``replay`` (scenario files), ``simulate`` (one session's life on the virtual clock) and
``states`` (the transition table).

What it must never do: hold protocol logic of its own; it wires parts together and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from talkstream.adapters.server.app import DEFAULT_BODY_TIMEOUT
from talkstream.adapters.server.auth import RequestLimits
from talkstream.adapters.server.serving import ConnectionLimits
from talkstream.adapters.server.turn import DEFAULT_TURN_TTL, TurnCredentials
from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import IllegalTransition, TalkstreamError
from talkstream.engine.events import SessionClosed, SessionEvent, SessionOpened, StateChanged
from talkstream.engine.messages import IceServer
from talkstream.engine.service import Limits
from talkstream.engine.session import WORKER_ID, SessionEngine
from talkstream.engine.states import TRANSITIONS, Input, mermaid_diagram
from talkstream.specs import SCENARIOS

__all__ = ["main"]


def _describe(event: SessionEvent) -> str:
    if isinstance(event, SessionOpened):
        return f"opened for {event.owner}"
    if isinstance(event, StateChanged):
        return f"{event.old.value} -> {event.new.value} on {event.input.value}"
    if isinstance(event, SessionClosed):
        return f"closed ({event.reason.value})"
    state = getattr(event, "state", None)
    inp = getattr(event, "input", None)
    return f"{getattr(state, 'value', state)} stays on {getattr(inp, 'value', inp)}"


async def simulate(idle_timeout: float, out: list[str]) -> int:
    """One server-side session's life on the virtual clock; lines go to `out`. Returns an exit code."""
    clock = VirtualClock()
    engine = SessionEngine(clock=clock, idle_timeout=idle_timeout)
    engine.subscribe(lambda event: out.append(f"t={event.at:8.3f}s  {event.stream_id}  {_describe(event)}"))
    session = engine.open("demo-key")

    async def step(inp: Input, after: float = 0.0) -> None:
        await clock.advance(after)
        await session.apply(inp)

    await step(Input.OFFER_SENT, 0.012)
    await step(Input.CANDIDATE_RECEIVED, 0.030)  # a browser trickles before its answer lands
    await step(Input.ANSWER_RECEIVED, 0.015)
    await step(Input.CANDIDATE_RECEIVED, 0.004)
    await step(Input.ICE_CONNECTED, 0.080)
    await step(Input.TALK_REQUESTED, 1.0)
    await step(Input.TALK_REQUESTED, 0.5)  # queued behind the first
    await step(Input.TALK_STARTED, 0.1)
    await clock.advance(2.4)
    await session.finish_talk()
    await step(Input.TALK_STARTED)
    await clock.advance(3.1)
    await session.finish_talk()
    try:
        await session.apply(Input.ANSWER_RECEIVED)
    except IllegalTransition as exc:
        out.append(
            f"t={clock.now():8.3f}s  {session.stream_id}  refused: {exc} -> HTTP {exc.status} {exc.kind}"
        )
    out.append(f"... no message for {idle_timeout:g} s (virtual time) ...")
    await clock.advance(idle_timeout)
    out.append(f"history kept: {len(session.history)} transitions; live sessions: {len(engine)}")
    return 0 if session.close_reason is not None else 1


TURN_SECRET_ENV = "TALKSTREAM_TURN_SECRET"


def turn_credentials(args: argparse.Namespace, environ: Mapping[str, str]) -> TurnCredentials | None:
    """`serve`'s TURN settings: --turn-url (repeatable), the shared secret from --turn-secret-file or else
    the environment's TALKSTREAM_TURN_SECRET (never the command line: other users see it there), --turn-ttl.
    None without --turn-url; ValueError, with a message that never holds the secret, for a bad setting."""
    urls = tuple(args.turn_url or ())
    if not urls:
        if args.turn_secret_file:
            raise ValueError("--turn-secret-file needs --turn-url")
        return None
    if args.turn_secret_file:
        named = f"--turn-secret-file {args.turn_secret_file}"
        try:
            secret = Path(args.turn_secret_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{named}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:  # its message would quote a byte of the secret
            raise ValueError(f"{named}: not UTF-8 text") from None
        if not secret:
            raise ValueError(f"{named}: empty")
    else:
        secret = environ.get(TURN_SECRET_ENV, "").strip()
        if not secret:
            raise ValueError(f"--turn-url needs the shared secret: --turn-secret-file or {TURN_SECRET_ENV}")
    return TurnCredentials(urls=urls, secret=secret, ttl=args.turn_ttl)


def serve(args: argparse.Namespace) -> int:
    """Run the embedded server until interrupted (SIGINT/SIGTERM close every stream first)."""
    from talkstream.avatar.fetch import FetchPolicy
    from talkstream.avatar.presenters import BUNDLED_PRESENTER, DEMO_PRESENTER_IDS

    from .server.app import SERVICE
    from .server.build import ServerSettings, build_app, drain_app
    from .server.serving import (
        ConnectionLimits,
        MemoryKeeper,
        default_max_connections,
        raise_descriptor_limit,
        serve_app,
        tune_process,
    )

    tuned = tune_process()  # before any thread starts: few malloc arenas, one FFmpeg thread per graph

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # its per-callback lines drown ours
    keys = list(args.key or [])
    keys += [k.strip() for k in os.environ.get("TALKSTREAM_API_KEYS", "").split(",") if k.strip()]
    if args.keys_file:
        lines = Path(args.keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    generated = not keys
    if generated:
        keys = [f"demo:{secrets.token_urlsafe(18)}"]
    ice_servers = tuple(IceServer(urls=url) for url in args.ice_server or ())
    for url in args.ice_server or ():
        if url.lower().startswith(("turn:", "turns:")):
            print(
                f"warning: --ice-server {url} is handed out without credentials (browsers refuse it); "
                "give a TURN server with --turn-url and a shared secret",
                file=sys.stderr,
            )
    try:
        turn = turn_credentials(args, os.environ)
    except ValueError as exc:
        print(f"talkstream serve: {exc}", file=sys.stderr)
        return 2
    presenters: list[tuple[str, Path]] = []
    taken = {BUNDLED_PRESENTER, *DEMO_PRESENTER_IDS}
    for given in args.presenter or ():
        presenter_id, _, photo = given.partition("=")
        root = Path(args.media_root).resolve() if args.media_root else None
        path = Path(photo).resolve()
        if presenter_id in taken:
            print(f"--presenter {given!r}: the id {presenter_id!r} is already taken", file=sys.stderr)
            return 2
        taken.add(presenter_id)
        if not presenter_id or root is None or not path.is_file() or not path.is_relative_to(root):
            print(
                f"--presenter {given!r}: give ID=PHOTO, the photo a file inside --media-root", file=sys.stderr
            )
            return 2
        presenters.append((presenter_id, path))
    descriptors = raise_descriptor_limit()
    connections = args.max_connections or default_max_connections(descriptors, args.max_streams)
    settings = ServerSettings(
        keys=tuple(keys),
        ice_servers=ice_servers,
        turn=turn,
        host_addresses=tuple(args.ice_host) if args.ice_host else ("127.0.0.1",),
        media_root=Path(args.media_root) if args.media_root else None,
        presenters=tuple(presenters),
        fetch_policy=(
            FetchPolicy.none()
            if args.no_fetch
            else FetchPolicy.local()
            if args.allow_local_urls
            else FetchPolicy()
        ),
        limits=Limits(streams_per_key=args.max_streams_per_key, streams_total=args.max_streams),
        request_limits=RequestLimits(
            per_key=args.requests_per_second, key_burst=args.requests_per_second * 3
        ),
        body_timeout=args.body_timeout,
        render_workers=args.render_workers,
        talk_ttl=args.talk_ttl,
        results_dir=Path(args.results_dir) if args.results_dir else None,
        worker=args.worker_id,
        redis_url=args.redis or os.environ.get("TALKSTREAM_REDIS_URL") or None,
        cluster_streams=args.max_cluster_streams,
        lease=args.lease,
        drain_timeout=args.drain_timeout,
    )
    app = build_app(settings)
    base = f"http://{args.host}:{args.port}"

    def started(site: object) -> None:
        print(f"talkstream serving D-ID's /talks/streams at {base}/talks/streams", flush=True)
        if generated:
            print(f"API key (send as `Authorization: Basic <key>`): {keys[0]}", flush=True)
            print(f"demo page: {base}/#key={keys[0]}", flush=True)
        else:
            print(f"demo page: {base}/ (type your key there)", flush=True)
        print(f'try: source_url "bundled:astronaut"; OpenAPI at {base}/openapi.json', flush=True)
        if turn is not None:
            logging.getLogger("talkstream").info(
                "TURN: each stream's client gets credentials good for %d s at %s",
                turn.ttl,
                " ".join(turn.urls),
            )
        logging.getLogger("talkstream").info(
            "open files allowed: %d; connections served at once: %d; process tuning: %s",
            descriptors,
            connections,
            ", ".join(name for name, done in tuned.items() if done) or "none available",
        )

    limits = ConnectionLimits(max_connections=connections, header_timeout=args.header_timeout)
    keeper = MemoryKeeper(lambda: app[SERVICE].closed_count)
    try:
        asyncio.run(
            serve_app(
                app,
                args.host,
                args.port,
                limits,
                started=started,
                keeper=keeper,
                drain=lambda: drain_app(app, settings.drain_timeout),
            )
        )
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(
            f"talkstream serve: cannot listen on {args.host}:{args.port}: {os.strerror(exc.errno)}",
            file=sys.stderr,
        )
        return 1
    return 0


async def manage_keys(args: argparse.Namespace) -> int:
    """`talkstream keys add|remove|count`: a cluster's keys in its Redis (as digests: Redis never holds one).
    The key is read from TALKSTREAM_KEY or standard input, so it never shows in a process list."""
    from .server.auth import KeyRing
    from .server.redis_state import RedisState, add_keys, remove_keys

    url = args.redis or os.environ.get("TALKSTREAM_REDIS_URL")
    if not url:
        print("talkstream keys: give --redis URL or TALKSTREAM_REDIS_URL", file=sys.stderr)
        return 2
    state = RedisState(url, timeout=5.0)
    try:
        if args.action == "count":
            print(await state.run("count keys", state.client.hlen(state.name("keys"))))
            return 0
        key = os.environ.get("TALKSTREAM_KEY") or sys.stdin.readline().strip()
        if not key or any(c.isspace() for c in key):
            print("talkstream keys: give one key, without spaces, on standard input", file=sys.stderr)
            return 2
        try:
            ((digest, granted),) = KeyRing([" ".join([key, *args.permissions])]).entries()
        except ValueError as exc:
            print(f"talkstream keys: {exc}", file=sys.stderr)
            return 2
        if args.action == "add":
            await add_keys(state, [(digest, granted)])
            print(f"added {digest[:16]}… ({' '.join(sorted(granted)) or 'no permissions'})")
        else:
            removed = await remove_keys(state, [digest])
            print(f"removed {removed} key(s)")
        return 0
    except TalkstreamError as exc:
        print(f"talkstream keys: {exc.description}", file=sys.stderr)
        return 1
    finally:
        await state.aclose()


def local_photo(source: str) -> Path | None:
    """The file a `--source` names on this machine (a path or a file: URL), or None for a URL or bundled:."""
    parts = urlsplit(source)
    if parts.scheme.lower() == "file":
        return Path(unquote(parts.path)).resolve()
    if parts.scheme and len(parts.scheme) > 1:  # http:, https:, bundled: (a one-letter scheme is a drive)
        return None
    return Path(source).expanduser().resolve()


async def talk(args: argparse.Namespace, out: list[str]) -> int:
    """Connect to a server (the embedded one, started here, unless --url), speak, and write an MP4."""
    from aiohttp import web

    from talkstream.engine.client import StreamClient
    from talkstream.transports.aiortc_client import AiortcClientTransport
    from talkstream.transports.sink import MediaSink

    from .http.network import AiohttpAdapter
    from .server.build import ServerSettings, build_app

    runner: web.AppRunner | None = None
    source, photo = args.source, local_photo(args.source)
    if args.url:
        key = os.environ.get("DID_API_KEY")
        if not key:
            out.append("--url needs the server's API key in DID_API_KEY")
            return 2
        if photo is not None:
            out.append("a photo on this machine works with the embedded server; give --url a URL to fetch")
            return 2
        base, host_addresses = args.url, None
    else:
        key = f"talk:{secrets.token_urlsafe(12)}"
        settings = ServerSettings(keys=(key,))
        if photo is not None:
            if not photo.is_file():
                out.append(f"no such photo: {photo}")
                return 2
            # The embedded server may read the photo's own folder, and only that.
            settings = attrs.evolve(settings, media_root=photo.parent)
            source = photo.as_uri()
        runner = web.AppRunner(build_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base, host_addresses = f"http://127.0.0.1:{port}", ("127.0.0.1",)
    sink = MediaSink(keep=True)
    try:
        client = StreamClient(AiohttpAdapter(base, key), AiortcClientTransport(host_addresses=host_addresses))
        async with client:
            stream = await client.create(source, sink=sink)
            await stream.connected(within=30)
            out.append(f"connected to {base} ({stream.stream_id})")
            spoken = await stream.talk(text=args.text, audio_url=args.audio_url, voice=args.voice)
            out.append(f"talk {spoken.video_id}: {spoken.duration or 0:.2f} s")
            await spoken.done(within=(spoken.duration or 60) + 30)
            await stream.close()
        summary = sink.write_mp4(Path(args.out))
        out.append(
            f"wrote {summary['path']}: {summary['frames']} video frames {summary['size']}, "
            f"{sink.samples / 48000:.2f} s of audio"
        )
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()


async def replay(args: argparse.Namespace, paths: list[Path]) -> int:
    """Run scenario files, with a line per scenario as it ends and a table at the end."""
    from .scenarios import run_scenario

    outcomes = []
    for number, path in enumerate(paths, 1):
        outcome = await run_scenario(path, target=args.target, transport=args.transport)
        outcomes.append(outcome)
        mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[outcome.status]
        note = f"  {outcome.detail}" if outcome.detail else ""
        print(
            f"[{number}/{len(paths)}] {mark} {outcome.name} ({outcome.seconds * 1000:.0f} ms){note}",
            flush=True,
        )
    width = max((len(o.name) for o in outcomes), default=10)
    print(f"\n{'scenario':<{width}}  {'result':<7}  {'steps':>5}  {'ms':>8}")
    for o in outcomes:
        print(f"{o.name:<{width}}  {o.status:<7}  {o.steps:>5}  {o.seconds * 1000:>8.1f}")
    counts = {status: sum(o.status == status for o in outcomes) for status in ("passed", "failed", "skipped")}
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] or not outcomes else 0


_DEFAULT_LIMITS = Limits()
_DEFAULT_RATE = RequestLimits()
_DEFAULT_CONNECTIONS = ConnectionLimits()


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    return value


def _worker_id(text: str) -> str:
    if not WORKER_ID.fullmatch(text):
        raise argparse.ArgumentTypeError("1 to 16 lowercase letters or digits")
    return text


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be more than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talkstream", description="talkstream: D-ID-compatible streams")
    commands = parser.add_subparsers(dest="command", required=True)
    srv = commands.add_parser("serve", help="run the embedded server (D-ID's streams API, real WebRTC)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument(
        "--key", action="append", help="an API key to accept (repeatable; also TALKSTREAM_API_KEYS)"
    )
    srv.add_argument(
        "--keys-file", help="a file with one API key per line, optionally followed by its permissions"
    )
    srv.add_argument("--media-root", help="folder whose files may be used as file:// sources")
    srv.add_argument(
        "--presenter",
        action="append",
        metavar="ID=PHOTO",
        help="a clips presenter: its id and a photo inside --media-root (repeatable)",
    )
    srv.add_argument(
        "--ice-server",
        action="append",
        help="an ICE server URL handed to clients (repeatable; default: none); the server's own peers use "
        "only the stun: ones",
    )
    srv.add_argument(
        "--turn-url",
        action="append",
        help="a TURN server URL (turn: or turns:) handed to each client with fresh credentials from the "
        "server's shared secret (coturn's use-auth-secret; repeatable)",
    )
    srv.add_argument(
        "--turn-secret-file",
        help=f"a file holding the TURN server's shared secret (else the environment's {TURN_SECRET_ENV})",
    )
    srv.add_argument(
        "--turn-ttl",
        type=_at_least_one,
        default=DEFAULT_TURN_TTL,
        help="seconds each client's TURN credentials are good for new allocations "
        f"(default {DEFAULT_TURN_TTL})",
    )
    srv.add_argument("--ice-host", action="append", help="an address the server offers as a host candidate")
    srv.add_argument(
        "--allow-local-urls", action="store_true", help="let source and audio URLs reach loopback"
    )
    srv.add_argument(
        "--no-fetch", action="store_true", help="fetch no source or audio URLs at all (refused with 400)"
    )
    srv.add_argument(
        "--max-streams-per-key",
        type=int,
        default=_DEFAULT_LIMITS.streams_per_key,
        help=f"live streams one key may hold (default {_DEFAULT_LIMITS.streams_per_key}; more get 429)",
    )
    srv.add_argument(
        "--max-streams",
        type=int,
        default=_DEFAULT_LIMITS.streams_total,
        help=f"live streams in all (default {_DEFAULT_LIMITS.streams_total})",
    )
    srv.add_argument(
        "--requests-per-second",
        type=float,
        default=_DEFAULT_RATE.per_key,
        help=f"requests a second per key, in bursts of 3 s worth (default {_DEFAULT_RATE.per_key:g})",
    )
    srv.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="HTTP connections open at once, more are answered 503 (default: what the open-files limit "
        "leaves after the streams' sockets)",
    )
    srv.add_argument(
        "--header-timeout",
        type=float,
        default=_DEFAULT_CONNECTIONS.header_timeout,
        help="seconds a connection may take to send a request's headers, or stay idle "
        f"(default {_DEFAULT_CONNECTIONS.header_timeout:g})",
    )
    srv.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        help=f"seconds for a request body to arrive in full, 408 after (default {DEFAULT_BODY_TIMEOUT:g})",
    )
    srv.add_argument(
        "--render-workers",
        type=_at_least_one,
        default=1,
        help="asynchronous talks (POST /talks) rendered at once; the rest wait their turn (default 1)",
    )
    srv.add_argument(
        "--talk-ttl",
        type=_positive,
        default=24 * 3600.0,
        help="seconds a rendered talk and its file are kept (default 86400)",
    )
    srv.add_argument("--results-dir", help="where rendered talks are written (default: a temporary folder)")
    srv.add_argument(
        "--worker-id",
        type=_worker_id,
        help="this worker's name in a cluster (1-16 lowercase letters or digits): it leads every stream, "
        "session and talk id, so a proxy routes their requests here",
    )
    srv.add_argument(
        "--redis",
        metavar="URL",
        help="share keys, stream quotas and request rates with other workers through this Redis "
        "(redis://host:port/db; also TALKSTREAM_REDIS_URL); the keys given are added to it",
    )
    srv.add_argument(
        "--max-cluster-streams",
        type=_at_least_one,
        default=1000,
        help="with --redis: live streams in the whole cluster (default 1000); --max-streams caps this worker",
    )
    srv.add_argument(
        "--lease",
        type=_positive,
        default=15.0,
        help="with --redis: seconds a dead worker's streams go on counting against the quotas (default 15)",
    )
    srv.add_argument(
        "--drain-timeout",
        type=_non_negative,
        default=30.0,
        help="on SIGTERM: seconds playing talks may take to finish before streams close (default 30; "
        "SIGINT or a second signal closes at once)",
    )
    spk = commands.add_parser("talk", help="connect with the client over WebRTC, speak, and write an MP4")
    said = spk.add_mutually_exclusive_group(required=True)
    said.add_argument("--text", help="what to say")
    said.add_argument("--audio-url", help="an audio file to play instead")
    spk.add_argument(
        "--source",
        default="bundled:astronaut",
        help="the photo: a file here, or a URL (default: the bundled one)",
    )
    spk.add_argument("--voice", help="a provider voice id (played with the local voice)")
    spk.add_argument("--out", default="talk.mp4", help="where to write the MP4 (default talk.mp4)")
    spk.add_argument(
        "--url", help="another compatible server (its key in DID_API_KEY) instead of the embedded one"
    )
    rep = commands.add_parser("replay", help="run scenario files against a server")
    rep.add_argument(
        "files", nargs="*", help="scenario files or folders of them (default: the scenarios talkstream ships)"
    )
    rep.add_argument("--target", default="inprocess", help="inprocess (default) or a server's base URL")
    rep.add_argument(
        "--transport",
        default=None,
        choices=["memory", "aiortc"],
        help="WebRTC transport (default: memory in process, aiortc for a URL)",
    )
    sim = commands.add_parser("simulate", help="drive one session through its life on the virtual clock")
    sim.add_argument("--idle-timeout", type=float, default=300.0, help="seconds (default 300)")
    clu = commands.add_parser(
        "cluster",
        help="Redis, coturn, HAProxy and N workers on this machine, from deploy/ (Ctrl-C stops them all)",
    )
    clu.add_argument("--workers", type=_at_least_one, default=3, help="talkstream serve workers (default 3)")
    clu.add_argument("--port", type=int, default=8000, help="HAProxy's API port on 127.0.0.1 (default 8000)")
    clu.add_argument("--stats-port", type=int, default=8404, help="HAProxy's statistics page (default 8404)")
    clu.add_argument(
        "--worker-port",
        type=int,
        default=8101,
        help="the first worker's port; the others follow (default 8101)",
    )
    clu.add_argument("--no-turn", action="store_true", help="no coturn, no TURN credentials")
    clu.add_argument("--folder", help="logs, configurations and Redis' data (default: a temporary folder)")
    clu.add_argument(
        "--drain-timeout", type=_non_negative, default=10.0, help="each worker's drain on stop (default 10)"
    )
    clu.add_argument(
        "serve_args", nargs="*", help="after --: more `talkstream serve` options for every worker"
    )
    keys = commands.add_parser("keys", help="add, remove or list the API keys a cluster's Redis holds")
    keys.add_argument("action", choices=["add", "remove", "count"])
    keys.add_argument(
        "permissions",
        nargs="*",
        help="with add: the key's permissions (default: all); the key comes from "
        "TALKSTREAM_KEY or standard input, never the command line",
    )
    keys.add_argument("--redis", metavar="URL", help="the cluster's Redis (default: TALKSTREAM_REDIS_URL)")
    states = commands.add_parser("states", help="print the transition table")
    states.add_argument("--mermaid", action="store_true", help="as a Mermaid state diagram")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args)
    if args.command == "cluster":
        from .cluster import ClusterPlan, run_cluster

        return run_cluster(
            ClusterPlan(
                workers=args.workers,
                port=args.port,
                stats_port=args.stats_port,
                worker_ports=tuple(range(args.worker_port, args.worker_port + args.workers)),
                turn=not args.no_turn,
                folder=Path(args.folder) if args.folder else None,
                drain_timeout=args.drain_timeout,
                serve_args=tuple(args.serve_args),
            )
        )
    if args.command == "keys":
        return asyncio.run(manage_keys(args))
    if args.command == "replay":
        if args.transport is None:
            args.transport = "memory" if args.target == "inprocess" else "aiortc"
        logging.basicConfig(level=logging.WARNING)
        paths: list[Path] = []
        for name in args.files or [str(SCENARIOS)]:
            path = Path(name)
            paths += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        return asyncio.run(replay(args, paths))
    if args.command == "talk":
        lines: list[str] = []
        try:
            code = asyncio.run(talk(args, lines))
        except TalkstreamError as exc:
            lines.append(f"failed: {exc.kind} ({exc.status}): {exc.description}")
            code = 1
        print("\n".join(lines))
        return code
    if args.command == "states":
        if args.mermaid:
            sys.stdout.write(mermaid_diagram())
        else:
            for (source, inp), dest in TRANSITIONS.items():
                print(f"{source.value:<12} {inp.value:<20} -> {dest.value}")
        return 0
    out: list[str] = []
    status = asyncio.run(simulate(args.idle_timeout, out))
    print("\n".join(out))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
