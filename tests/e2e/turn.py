"""coturn for the relay tests: deploy/turnserver.conf rendered onto free ports on 127.0.0.1 with a fresh
secret appended, started with ``turnserver -c``, waited for until it listens, stopped afterwards.

Debian's coturn (`make cluster-deps` installs it) is not started as a service; each test module starts its
own and nothing else talks to it. Its log (verbose: one line per request) goes to a file in the test's
temporary folder, for the tests to read and for whoever debugs them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from talkstream.adapters.cluster import free_port, render_coturn

__all__ = ["DEPLOYED_CONF", "TURNSERVER", "Coturn", "coturn"]

DEPLOYED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "turnserver.conf"
TURNSERVER = shutil.which("turnserver")

# Relay ports are taken from above Linux's ephemeral range (32768-60999 by default), where no outgoing
# socket of another program lands; a random window, so two runs at once rarely share ports (coturn skips
# a port in use anyway).
_RELAY_LOW, _RELAY_HIGH, _RELAY_PORTS = 61000, 65535, 40


@attrs.frozen(kw_only=True)
class Coturn:
    port: int  # UDP and TCP, on 127.0.0.1
    secret: str = attrs.field(repr=False)
    relay_ports: tuple[int, int]
    log: Path

    @property
    def urls(self) -> tuple[str, str]:
        """TURN over UDP and over TCP, as a client is handed them."""
        return (
            f"turn:127.0.0.1:{self.port}?transport=udp",
            f"turn:127.0.0.1:{self.port}?transport=tcp",
        )

    def log_text(self, since: int = 0) -> str:
        """coturn's log from character `since` on (a `mark`)."""
        return self.log.read_text(errors="replace")[since:] if self.log.exists() else ""

    def mark(self) -> int:
        """Where the log ends now: what a test reads from, when coturn served others before it."""
        return len(self.log_text())

    def relay_addresses(self, since: int = 0) -> list[str]:
        """The relayed addresses coturn allocated, in order (``127.0.0.1:61234``)."""
        return re.findall(r"Local relay addr: (\S+)", self.log_text(since))

    def answers(self, since: int = 0) -> list[tuple[str, str, str]]:
        """Each request coturn answered, in order: (username, what (``ALLOCATE``, ``REFRESH``... or
        ``message`` for one it refused before reading it), outcome (``success``, ``error 401``...))."""
        return re.findall(
            r"user <([^>]*)>: incoming packet (\S+) processed, (success|error \d+)", self.log_text(since)
        )


def _taken(port: int) -> bool:
    """Whether something holds `port` on 127.0.0.1 for both UDP and TCP (coturn listening), found by binding
    rather than by sending it anything."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return False
    return True


@contextlib.contextmanager
def coturn(folder: Path, *, secret: str | None = None, within: float = 15.0) -> Iterator[Coturn]:
    """Run coturn on deploy/turnserver.conf, on free ports of 127.0.0.1, with `secret` (default: a fresh
    one); its configuration, log and output in `folder`. Stopped, and waited for, on leaving."""
    if TURNSERVER is None:
        raise RuntimeError("coturn's turnserver is not installed (`make cluster-deps` installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port((socket.SOCK_STREAM, socket.SOCK_DGRAM))
    low = random.randrange(_RELAY_LOW, _RELAY_HIGH - _RELAY_PORTS)
    server = Coturn(
        port=port,
        secret=secret or secrets.token_urlsafe(24),
        relay_ports=(low, low + _RELAY_PORTS - 1),
        log=folder / "turnserver.log",
    )
    conf = render_coturn(
        DEPLOYED_CONF.read_text(),
        {
            "listening-port": str(port),
            "min-port": str(low),
            "max-port": str(low + _RELAY_PORTS - 1),
            "log-file": str(server.log),
            "pidfile": str(folder / "turnserver.pid"),
            "userdb": str(folder / "turndb"),
            "verbose": "",  # a line per request: what the tests read
            "static-auth-secret": server.secret,
        },
    )
    conf_path = folder / "turnserver.conf"
    with os.fdopen(os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(conf)
    with open(folder / "turnserver.out", "wb") as output:
        process = subprocess.Popen([TURNSERVER, "-c", str(conf_path)], stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + within
            while not _taken(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"coturn did not start: {server.log_text()[-2000:]}")
                time.sleep(0.02)  # a synchronous fixture waiting on another process: real time, no loop
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()
