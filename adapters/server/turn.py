"""Time-limited TURN credentials for the clients, in the shared-secret scheme of coturn's ``use-auth-secret``
(the "TURN REST API"): username ``"<unix expiry>:<name>"``, password base64(HMAC-SHA1(secret, username)).

Why it exists: a client that can only reach the server through a relay (``iceTransportPolicy: "relay"``, a
strict firewall) needs a TURN server and credentials for it in the create answer's ``ice_servers``. The TURN
server and talkstream share a secret and nothing else: each create answer carries a fresh username and
password that the TURN server checks by itself, and that stop working for new allocations at their expiry.

What it must never do: show the secret (repr, logs), put the API key in a username (coturn logs usernames),
or give the server's own peers a TURN entry (see `transports.aiortc_server.without_turn`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import attrs

from talkstream.engine.messages import IceServer

__all__ = ["DEFAULT_TURN_TTL", "TurnCredentials"]

#: Seconds a username stays good for new allocations. coturn checks the expiry when an allocation is made,
#: never again for that allocation (a relayed talk may last longer; measured with coturn 4.6.1: a refresh
#: and a new permission after the expiry succeed, a new allocation is refused with 401). So it must cover
#: the time from the create answer to the client's allocation: the stream's idle timeout (300 s by default)
#: plus the connect timeout (30 s) at most, with room for the clocks of the two hosts to differ. An hour is
#: that with ample margin, and bounds what a leaked credential is good for: relaying, for an hour.
DEFAULT_TURN_TTL = 3600

_SCHEMES = ("turn:", "turns:")


def _as_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    return (urls,) if isinstance(urls, str) else tuple(urls)


def _check_urls(instance: object, attribute: attrs.Attribute[tuple[str, ...]], urls: tuple[str, ...]) -> None:
    if not urls:
        raise ValueError("TURN credentials need at least one turn: or turns: URL")
    for url in urls:
        if not url.lower().startswith(_SCHEMES) or len(url) <= len("turns:"):
            raise ValueError(f"{url!r} is not a turn: or turns: URL")


def _check_secret(instance: object, attribute: attrs.Attribute[str], secret: str) -> None:
    if not secret:
        raise ValueError("the TURN shared secret is empty")


def _check_ttl(instance: object, attribute: attrs.Attribute[int], ttl: int) -> None:
    if ttl < 1:
        raise ValueError(f"the TURN credentials' ttl must be at least 1 s (got {ttl})")


@attrs.frozen(kw_only=True)
class TurnCredentials:
    """The TURN servers clients are handed, and how their per-stream credentials are made.

    `urls`: the TURN server's URLs, e.g. ``turn:turn.example.com:3478?transport=udp`` and ``...=tcp``.
    `secret`: coturn's ``static-auth-secret`` (never shown). `ttl`: seconds a username is good for new
    allocations. `clock`: Unix time in seconds (the TURN server compares the expiry with its own wall clock,
    so this is wall-clock time, not the engine's monotonic clock).
    """

    urls: tuple[str, ...] = attrs.field(converter=_as_urls, validator=_check_urls)
    secret: str = attrs.field(repr=False, validator=_check_secret)
    ttl: int = attrs.field(default=DEFAULT_TURN_TTL, validator=_check_ttl)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False, eq=False)

    def ice_server(self, name: str) -> IceServer:
        """A fresh ICE server entry with credentials for `name` (a stream id: no API key), good for new
        allocations until `ttl` seconds from now."""
        if not name or ":" in name:
            raise ValueError(f"a TURN username's name must be non-empty and free of ':' (got {name!r})")
        username = f"{int(self.clock()) + self.ttl}:{name}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return IceServer(urls=self.urls, username=username, credential=base64.b64encode(digest).decode())

    def handed_out(self, static: Sequence[IceServer]) -> Callable[[str], tuple[IceServer, ...]]:
        """What each create answer carries, given the stream's id: `static` (the operator's other ICE
        servers), then that stream's own TURN entry (`engine.service.StreamService`'s `ice_servers`)."""
        kept = tuple(static)
        return lambda stream_id: (*kept, self.ice_server(stream_id))
