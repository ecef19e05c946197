"""`talkstream cluster`: Redis, coturn, HAProxy and N `talkstream serve` workers on this machine, from the
configurations in ``deploy/`` (installed as ``talkstream.deploy``), each in a process of its own with its
log in one folder; up in one call, down in reverse order.

`Cluster` is also what the cluster tests and bench/cluster.py start: they kill, drain and restart its parts.
Every service listens on 127.0.0.1 only; the ports are chosen free unless given.

What it must never do: put a secret on a command line (the key and the TURN secret go through the
environment and mode-600 files), leave a process running after `stop`, or start anything but Debian's own
redis-server, haproxy and turnserver and this interpreter's talkstream.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.resources
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs

__all__ = [
    "DEBIAN_PACKAGES",
    "Cluster",
    "ClusterPlan",
    "deploy_file",
    "ensure_packages",
    "free_port",
    "haproxy_config",
    "missing_programs",
    "render_coturn",
]

#: The Debian package of each program the cluster runs.
DEBIAN_PACKAGES = {"redis-server": "redis-server", "haproxy": "haproxy", "turnserver": "coturn"}
_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def deploy_file(name: str) -> str:
    """The text of ``deploy/<name>`` as installed with talkstream."""
    return importlib.resources.files("talkstream.deploy").joinpath(name).read_text()


def program(name: str) -> str | None:
    """Where `name` is installed (Debian puts haproxy in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def missing_programs(names: Sequence[str] = tuple(DEBIAN_PACKAGES)) -> list[str]:
    return [name for name in names if program(name) is None]


def ensure_packages(names: Sequence[str] = tuple(DEBIAN_PACKAGES)) -> None:
    """Install the Debian packages of whichever of `names` is missing (as root, with apt-get); RuntimeError
    saying what to run when that cannot be done here."""
    missing = missing_programs(names)
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES[name] for name in missing})
    command = ["apt-get", "install", "-y", "-qq", *packages]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing {', '.join(missing)}: install them with `sudo {' '.join(command)}`")
    print(f"installing {' '.join(packages)} (Debian)", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
    subprocess.run(command, check=True, env=environment)


def free_port(kinds: Sequence[int] = (socket.SOCK_STREAM,)) -> int:
    """A port on 127.0.0.1 free a moment ago for each socket kind in `kinds` (TCP; or TCP and UDP)."""
    for _ in range(200):
        with contextlib.ExitStack() as held:
            first = held.enter_context(socket.socket(socket.AF_INET, kinds[0]))
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                for kind in kinds[1:]:
                    held.enter_context(socket.socket(socket.AF_INET, kind)).bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def render_coturn(template: str, settings: Mapping[str, str]) -> str:
    """coturn's configuration `template` (``name=value`` and bare ``name`` lines) with the lines `settings`
    names set to its values (an empty value: a bare flag), and the names it lacks added at the end."""
    left = dict(settings)
    out = []
    for line in template.splitlines():
        name = line.split("=", 1)[0].strip()
        if not line.lstrip().startswith("#") and name in left:
            value = left.pop(name)
            line = f"{name}={value}" if value else name
        out.append(line)
    out += [f"{name}={value}" if value else name for name, value in left.items()]
    return "\n".join(out) + "\n"


_BLOCK = re.compile(r"(    # --- WORKERS: (\w+)[^\n]*\n).*?(    # --- end WORKERS: \2 ---\n)", re.S)


def haproxy_config(template: str, *, port: int, stats_port: int, workers: Sequence[tuple[str, int]]) -> str:
    """deploy/haproxy.cfg for these `workers` ((id, port) on 127.0.0.1), the API on `port` and statistics
    on `stats_port`: the two WORKERS blocks rewritten, the frontends' binds moved."""

    def block(match: re.Match[str]) -> str:
        lines = []
        for worker, worker_port in workers:
            if match.group(2) == "routing":
                lines += [
                    f"    acl to_{worker} path_reg "
                    f"^/(talks|clips)/streams/strm_{worker}\\. ^/talks/tlk_{worker}\\.",
                    f"    acl to_{worker} url_param(stream_id) -m beg strm_{worker}.",
                    f"    use-server {worker} if to_{worker}",
                ]
            else:
                lines.append(f"    server {worker} 127.0.0.1:{worker_port} check")
        return match.group(1) + "".join(line + "\n" for line in lines) + match.group(3)

    config, blocks = _BLOCK.subn(block, template)
    if blocks != 2:
        raise ValueError("the HAProxy template lacks its two WORKERS blocks")
    config = re.sub(r"(frontend api\n(?:.*\n)*?    bind )\S+", rf"\g<1>127.0.0.1:{port}", config, count=1)
    return re.sub(
        r"(frontend stats\n(?:.*\n)*?    bind )\S+", rf"\g<1>127.0.0.1:{stats_port}", config, count=1
    )


@attrs.frozen(kw_only=True)
class ClusterPlan:
    """What `Cluster` starts. Ports left at 0 are chosen free."""

    workers: int = 3
    port: int = 8000  # HAProxy: the API clients use
    stats_port: int = 0  # HAProxy's statistics page
    worker_ports: tuple[int, ...] = ()
    redis_port: int = 0
    turn: bool = True  # coturn, and TURN credentials in every create answer
    turn_port: int = 0
    key: str = attrs.field(factory=lambda: f"cluster:{secrets.token_urlsafe(18)}", repr=False)
    folder: Path | None = None  # logs, configurations, Redis' data (default: a temporary folder)
    lease: float = 15.0
    drain_timeout: float = 10.0
    serve_args: tuple[str, ...] = ()  # more `talkstream serve` options, for every worker
    python: str = sys.executable

    def worker_ids(self) -> list[str]:
        return [f"w{i + 1}" for i in range(self.workers)]


@attrs.define(eq=False)
class Cluster:
    """The running cluster of `plan`: `start`, `stop` (also as a context manager: `running`)."""

    plan: ClusterPlan
    folder: Path = attrs.field(init=False)
    ports: dict[str, int] = attrs.field(factory=dict, init=False)  # service name -> port
    processes: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict, init=False)
    _own_folder: bool = attrs.field(default=False, init=False)
    _turn_secret: str = attrs.field(factory=lambda: secrets.token_urlsafe(32), init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.plan.folder is not None:
            self.folder = self.plan.folder
            self.folder.mkdir(parents=True, exist_ok=True)
        else:
            self.folder = Path(tempfile.mkdtemp(prefix="talkstream-cluster-"))
            self._own_folder = True

    # -- what clients use --

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy']}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['stats']}/"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def worker_url(self, worker: str) -> str:
        return f"http://127.0.0.1:{self.ports[worker]}"

    @property
    def turn_urls(self) -> tuple[str, ...]:
        if "coturn" not in self.ports:
            return ()
        port = self.ports["coturn"]
        return (f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp")

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    # -- up and down --

    def start(self, within: float = 60.0) -> None:
        """Start everything and wait until HAProxy sees every worker up; on any failure, stop what started."""
        plan = self.plan
        ensure_packages(["redis-server", "haproxy", *(["turnserver"] if plan.turn else [])])
        try:
            self.start_redis(within)
            if plan.turn:
                self._start_coturn(within)
            for index, worker in enumerate(plan.worker_ids()):
                given = plan.worker_ports[index] if index < len(plan.worker_ports) else 0
                self.ports[worker] = given or free_port()
                self.start_worker(worker, wait=False)
            for worker in plan.worker_ids():
                self.wait_worker(worker, within)
            self._start_haproxy(within)
            self.wait_balanced(within)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Workers first (SIGTERM: they drain, bounded by the plan's drain timeout), then HAProxy, coturn,
        Redis; anything still running after its time is killed."""
        workers = [name for name in self.processes if name.startswith("w")]
        for name in workers:
            self.signal(name, signal.SIGTERM)
        for name in workers:
            self._reap(name, self.plan.drain_timeout + 15)
        for name in ("haproxy", "coturn", "redis"):
            self.signal(name, signal.SIGTERM)
            self._reap(name, 15)
        if self._own_folder and not os.environ.get("TALKSTREAM_KEEP_CLUSTER"):
            shutil.rmtree(self.folder, ignore_errors=True)

    @contextlib.contextmanager
    def running(self, within: float = 60.0) -> Iterator[Cluster]:
        self.start(within)
        try:
            yield self
        finally:
            self.stop()

    def signal(self, name: str, signum: int) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    def _reap(self, name: str, within: float) -> int | None:
        process = self.processes.get(name)
        if process is None:
            return None
        try:
            return process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def wait_exit(self, name: str, within: float) -> int:
        """Wait for `name`'s process to end; its exit code (negative: the signal that ended it)."""
        return self.processes[name].wait(timeout=within)

    def _spawn(self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        with open(self.log(name), "ab") as out:
            # a session of its own: a Ctrl-C in the terminal reaches `talkstream cluster` alone, which then
            # stops the services in order (workers drain first)
            self.processes[name] = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env or os.environ),
                start_new_session=True,
            )

    def _wait(self, name: str, within: float, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + within
        while True:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}): {self._tail(name)}")
            if check():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within {within:g} s: {self._tail(name)}")
            time.sleep(0.05)  # waiting on another process: real time

    def _tail(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"

    # -- the services --

    def start_redis(self, within: float = 30.0) -> None:
        """Start Redis (again, after `stop_redis`, on the same port and data)."""
        port = self.ports.setdefault("redis", self.plan.redis_port or free_port())
        data = self.folder / "redis"
        data.mkdir(exist_ok=True)
        conf = self.folder / "redis.conf"
        conf.write_text(deploy_file("redis.conf"))
        binary = program("redis-server")
        assert binary is not None
        self._spawn("redis", [binary, str(conf), "--port", str(port), "--dir", str(data)])
        self._wait("redis", within, lambda: _redis_ping(port))

    def stop_redis(self, *, kill: bool = False) -> None:
        self.signal("redis", signal.SIGKILL if kill else signal.SIGTERM)
        self._reap("redis", 15)

    def _start_coturn(self, within: float) -> None:
        port = self.ports.setdefault(
            "coturn", self.plan.turn_port or free_port((socket.SOCK_STREAM, socket.SOCK_DGRAM))
        )
        low = 61000 + secrets.randbelow(4000)
        secret_file = self.folder / "turn-secret"
        _private(secret_file, self._turn_secret + "\n")
        conf = self.folder / "turnserver.conf"
        _private(
            conf,
            render_coturn(
                deploy_file("turnserver.conf"),
                {
                    "listening-port": str(port),
                    "min-port": str(low),
                    "max-port": str(low + 199),
                    "log-file": str(self.log("coturn-requests")),
                    "pidfile": str(self.folder / "turnserver.pid"),
                    "userdb": str(self.folder / "turndb"),
                    "static-auth-secret": self._turn_secret,
                },
            ),
        )
        binary = program("turnserver")
        assert binary is not None
        self._spawn("coturn", [binary, "-c", str(conf)])
        self._wait("coturn", within, lambda: _listening(port))

    def start_worker(self, worker: str, *, wait: bool = True, within: float = 60.0) -> None:
        """Start worker `worker` (again, after it exited, on the same port: one still draining is waited
        for, up to its drain timeout, then killed)."""
        plan = self.plan
        self._reap(worker, plan.drain_timeout + 5)
        command = [
            plan.python, "-m", "talkstream.adapters.cli", "serve",
            "--port", str(self.ports[worker]),
            "--worker-id", worker,
            "--redis", self.redis_url,
            "--lease", f"{plan.lease:g}",
            "--drain-timeout", f"{plan.drain_timeout:g}",
        ]  # fmt: skip
        for url in self.turn_urls:
            command += ["--turn-url", url]
        if self.turn_urls:
            command += ["--turn-secret-file", str(self.folder / "turn-secret")]
        command += plan.serve_args
        self._spawn(worker, command, {**os.environ, "TALKSTREAM_API_KEYS": plan.key})
        if wait:
            self.wait_worker(worker, within)

    def wait_worker(self, worker: str, within: float = 60.0) -> None:
        self._wait(worker, within, lambda: _get(f"{self.worker_url(worker)}/readyz") == 200)

    def _start_haproxy(self, within: float) -> None:
        self.ports.setdefault("haproxy", self.plan.port or free_port())
        self.ports.setdefault("stats", self.plan.stats_port or free_port())
        conf = self.folder / "haproxy.cfg"
        conf.write_text(
            haproxy_config(
                deploy_file("haproxy.cfg"),
                port=self.ports["haproxy"],
                stats_port=self.ports["stats"],
                workers=[(w, self.ports[w]) for w in self.plan.worker_ids()],
            )
        )
        binary = program("haproxy")
        assert binary is not None
        check = subprocess.run([binary, "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"HAProxy refuses its configuration: {check.stderr or check.stdout}")
        self._spawn("haproxy", [binary, "-db", "-f", str(conf)])
        self._wait("haproxy", within, lambda: _listening(self.ports["haproxy"]))

    def server_states(self) -> dict[str, str]:
        """HAProxy's view of each worker: ``UP``, ``DOWN``, ``UP 1/2``... (from its statistics, as CSV)."""
        try:
            with urllib.request.urlopen(f"{self.stats_url};csv", timeout=2) as response:
                rows = response.read().decode().splitlines()
        except OSError:
            return {}
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            fields = dict(zip(header, row.split(","), strict=False))
            if fields.get("pxname") == "workers" and fields.get("svname") not in ("BACKEND", "FRONTEND"):
                states[fields["svname"]] = fields.get("status", "")
        return states

    def wait_balanced(self, within: float = 30.0, workers: Sequence[str] | None = None) -> None:
        """Wait until HAProxy's checks see each of `workers` (default: all that run) up."""
        names = list(workers) if workers is not None else [
            w for w in self.plan.worker_ids() if self.processes[w].poll() is None
        ]  # fmt: skip
        self._wait("haproxy", within, lambda: all(self.server_states().get(w) == "UP" for w in names))

    def describe(self) -> dict[str, object]:
        return {
            "url": self.url,
            "stats": self.stats_url,
            "redis": self.redis_url,
            "turn": list(self.turn_urls),
            "workers": {w: self.worker_url(w) for w in self.plan.worker_ids()},
            "logs": str(self.folder),
        }


def _private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def run_cluster(plan: ClusterPlan) -> int:
    """`talkstream cluster`: start, print where everything is, wait for Ctrl-C or SIGTERM, stop."""
    cluster = Cluster(plan)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            cluster.start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:  # a missing package, a port taken
            print(f"talkstream cluster: {exc}", file=sys.stderr, flush=True)
            return 1
        print(f"talkstream cluster: {plan.workers} workers behind HAProxy at {cluster.url}", flush=True)
        print(f"API key (send as `Authorization: Basic <key>`): {plan.key}", flush=True)
        print(f"demo page: {cluster.url}/#key={plan.key}", flush=True)
        print(f"HAProxy statistics: {cluster.stats_url}", flush=True)
        print(json.dumps(cluster.describe(), indent=2), flush=True)
        print("Ctrl-C stops everything", flush=True)
        gone: set[str] = set()
        while not stop:
            for name, process in cluster.processes.items():
                if process.poll() is not None and name not in gone:
                    gone.add(name)
                    print(f"{name} exited ({process.returncode}); see {cluster.log(name)}", flush=True)
            time.sleep(0.2)  # a foreground command watching its children: real time, no event loop
        print("stopping: workers drain, then HAProxy, coturn and Redis stop", flush=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        cluster.stop()
    return 0
