"""Fetching the URLs callers name (photos, audio): http(s) only, every resolved address checked where the
connection is made, redirects checked hop by hop, bytes and time capped (`Fetcher`, `FetchPolicy`).

What it must never do: connect before every address of a host has passed, follow a redirect unchecked, or
hold more than the cap in memory.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from talkstream.engine.errors import BadRequestError, TimeoutError_

__all__ = ["FetchPolicy", "Fetcher", "address_allowed", "unwrap_ipv4"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


def unwrap_ipv4(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to `address` really reaches, all of which must pass.

    IPv4-mapped and NAT64 addresses stand for the IPv4 address inside them (the IPv6 form is not itself
    routable); 6to4 and Teredo addresses are routed as IPv6 but tunnel to the IPv4 inside, so both count.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return [address.ipv4_mapped]
        if address in _NAT64 or address in _NAT64_LOCAL:
            return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
        if address in _6TO4 and address.sixtofour is not None:
            return [address, address.sixtofour]
        if address in _TEREDO and address.teredo is not None:
            return [address, *address.teredo]
    return [address]


def _public(address: IPAddress) -> bool:
    if not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    return not (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)


def address_allowed(address: IPAddress, allow_networks: Sequence[Network] = ()) -> bool:
    """Whether connecting to `address` is allowed: global unicast, or inside an allow-listed network."""
    if any(address in network for network in allow_networks if address.version == network.version):
        return True
    return all(_public(a) for a in unwrap_ipv4(address))


@attrs.frozen(kw_only=True)
class FetchPolicy:
    """What the fetcher may do. `allow_networks` is the local-use allow-list (empty: public only)."""

    schemes: frozenset[str] = frozenset({"http", "https"})
    ports: frozenset[int] | None = frozenset({80, 443})  # None: any port
    allow_networks: tuple[Network, ...] = ()
    max_redirects: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0

    @classmethod
    def none(cls) -> FetchPolicy:
        """A policy that fetches nothing: every URL is refused before any name is looked up (for servers
        with no business on the network, and for fuzzing a server with made-up URLs)."""
        return cls(schemes=frozenset())

    @classmethod
    def local(cls, networks: Iterable[str] = ("127.0.0.0/8", "::1/128")) -> FetchPolicy:
        """A policy that also allows the given networks, on any port (for local use and tests)."""
        return cls(ports=None, allow_networks=tuple(ipaddress.ip_network(n) for n in networks))


class _CheckingResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then refuses the host if any address is not allowed."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(ipaddress.ip_address(result["host"]), self._policy.allow_networks):
                raise BadRequestError(f"{host} resolves to an address that is not allowed")
        return results

    async def close(self) -> None:
        await self._inner.close()


_LEGACY_IPV4_CHARS = frozenset("0123456789abcdefx.")

# aiohttp's exceptions, most specific first, as a caller reading the 400 would put them
_CLIENT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientConnectorDNSError, "its host name does not resolve"),
    (aiohttp.ClientConnectorCertificateError, "its TLS certificate is not valid"),
    (aiohttp.ClientSSLError, "TLS failed"),
    (aiohttp.ClientConnectorError, "could not connect to its host"),
    (aiohttp.ServerDisconnectedError, "the server closed the connection"),
    (aiohttp.InvalidUrlClientError, "the url is not valid"),
)


def _client_error_reason(exc: BaseException) -> str:
    return next((reason for kind, reason in _CLIENT_ERRORS if isinstance(exc, kind)), type(exc).__name__)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a host such as ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` or ``127.1`` means to
    inet_aton (and to browsers and curl), or None for a name. `ipaddress` knows only the dotted quad."""
    lowered = host.lower().rstrip(".")
    if (
        not lowered
        or not set(lowered) <= _LEGACY_IPV4_CHARS
        or (not lowered[-1].isdigit() and "x" not in lowered)
    ):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(lowered))
    except OSError:
        return None


class Fetcher:
    """GET a URL's body under a `FetchPolicy` and a byte cap. One session per fetcher; `aclose` it."""

    def __init__(self, policy: FetchPolicy | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_CheckingResolver(self.policy), use_dns_cache=False)
            timeout = aiohttp.ClientTimeout(
                total=self.policy.total_timeout,
                sock_connect=self.policy.connect_timeout,
                sock_read=self.policy.read_timeout,
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    def check_url(self, url: str) -> None:
        """Refuse a URL whose form is not allowed (scheme, credentials, port, bare IP address)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadRequestError(f"invalid url: {exc}") from exc
        if not self.policy.schemes:
            raise BadRequestError(
                "this server fetches no urls: use a bundled: or file: source, or a text script"
            )
        if parts.scheme.lower() not in self.policy.schemes:
            raise BadRequestError(f"url scheme {parts.scheme or '(none)'!r} is not allowed")
        if parts.username is not None or parts.password is not None:
            raise BadRequestError("credentials in urls are not allowed")
        host = parts.hostname
        if not host:
            raise BadRequestError("url has no host")
        effective = port if port is not None else (443 if parts.scheme.lower() == "https" else 80)
        if self.policy.ports is not None and effective not in self.policy.ports:
            raise BadRequestError(f"port {effective} is not allowed")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            legacy = _legacy_ipv4(host)
            if legacy is None:
                return  # a name: the resolver checks every address it resolves to
            if not address_allowed(legacy, self.policy.allow_networks):
                raise BadRequestError("url points at an address that is not allowed") from None
            raise BadRequestError(
                f"url host {host!r} is an IPv4 address in a legacy form: write it as {legacy}"
            ) from None
        if not address_allowed(address, self.policy.allow_networks):
            raise BadRequestError("url points at an address that is not allowed")

    async def get(self, url: str, *, max_bytes: int) -> tuple[bytes, str | None]:
        """The body (at most `max_bytes`) and its content type, following at most 3 checked redirects."""
        for _ in range(self.policy.max_redirects + 1):
            self.check_url(url)
            try:
                async with self._client().get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise BadRequestError("redirect without a location")
                        url = urljoin(url, location)
                        continue
                    if response.status != 200:
                        raise BadRequestError(f"fetching the url gave HTTP {response.status}")
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise BadRequestError(f"the url's body is larger than {max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > max_bytes:
                            raise BadRequestError(f"the url's body is larger than {max_bytes} bytes")
                    return bytes(body), response.headers.get("Content-Type")
            except BadRequestError:
                raise
            except TimeoutError as exc:
                raise TimeoutError_(f"fetching the url timed out: {url[:200]}") from exc
            except aiohttp.ClientError as exc:
                cause: Any = exc.__cause__ or exc.__context__
                if isinstance(cause, BadRequestError):
                    raise cause from None
                raise BadRequestError(f"could not fetch the url: {_client_error_reason(exc)}") from exc
        raise BadRequestError(f"more than {self.policy.max_redirects} redirects")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
