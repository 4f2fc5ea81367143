"""Where a webhook may go: the SSRF rules of WEBHOOK_ALLOWED_HOSTS.

A URL's host must be listed: an entry ``host`` allows any port on it, ``host:port``
(``[v6]:port``) only that port. Its addresses are resolved, and one that is not public
(loopback, private, link-local, site-local, reserved, multicast, unspecified, or an
IPv6 address embedding such an IPv4 one: IPv4-mapped, IPv4-compatible, NAT64, 6to4)
is refused unless that address itself is listed (for that port): listing
``hooks.example.com`` does not let a DNS answer of ``10.0.0.5`` reach the internal
network, listing ``127.0.0.1:8080`` lets a test receiver on it be reached. The check
is made at ``POST /chat`` and again before each attempt, and the attempt connects to
the address that was checked (pinned), so a DNS answer that changes in between cannot
move it elsewhere.

Names compare in their ASCII (IDNA) form, lower case, without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import trio

from .codes import ErrorCode
from .errors import ApiError

__all__ = [
    "AllowedHost",
    "HostList",
    "WebhookForbidden",
    "WebhookTarget",
    "check_url",
    "normal_host",
    "public_address",
    "resolve",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still not public
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix, RFC 6052
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use, RFC 8215
_NAT64_LOCAL_96 = ipaddress.ip_network("64:ff9b:1::/96")  # its one unambiguous layout


class WebhookForbidden(ApiError):
    """Raised when a webhook URL's host is not listed, or resolves where it may not go."""

    status = 400
    code = ErrorCode.WEBHOOK_FORBIDDEN


def normal_host(host: str) -> str:
    """Return ``host`` as compared: an address's own text, else the lower-case IDNA name.

    Raises:
        ValueError: ``host`` is empty or not a valid name.
    """
    text = host.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise ValueError("a host is empty")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None


@dataclass(frozen=True)
class AllowedHost:
    """One entry of WEBHOOK_ALLOWED_HOSTS: a host, and the one port it allows (None: any)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowedHost:
        """Return the entry ``host``, ``host:port``, ``v6`` or ``[v6]:port``, normalised.

        Raises:
            ValueError: the host is not valid, or the port is not 1 to 65535.
        """
        text = entry.strip()
        port_text: str | None = None
        if text.startswith("["):
            close = text.find("]")
            rest = text[close + 1 :] if close > 0 else "?"
            if rest and not rest.startswith(":"):
                raise ValueError(f"{entry!r}: expected [address] or [address]:port")
            host, port_text = text[1:close], rest[1:] if rest else None
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host = text  # a name, or an IPv6 address without brackets (any port)
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
            port = int(port_text)
        return cls(normal_host(host), port)

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host and self.port is not None else self.host
        return shown if self.port is None else f"{shown}:{self.port}"


class HostList:
    """WEBHOOK_ALLOWED_HOSTS, parsed: which hosts and addresses a webhook may reach."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(AllowedHost.parse(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lists(self, host: str, port: int) -> bool:
        """Return whether ``host`` (normalised) is listed for ``port``."""
        return any(e.host == host and e.port in (None, port) for e in self.entries)

    def allows_address(self, address: IpAddress, port: int) -> bool:
        """Return whether a webhook may connect to ``address:port``: public, or listed."""
        if self.lists(str(address), port):
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None and self.lists(str(mapped), port):
            return True
        return public_address(address)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # The IPv4 address an IPv6 one reaches through a translator or tunnel, if any.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002::/16, the IPv4 address in bits 16 to 48
        return address.sixtofour
    value = int(address)
    if address in _NAT64 or address in _NAT64_LOCAL_96 or value >> 32 == 0:  # ::/96 too
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def public_address(address: IpAddress) -> bool:
    """Return whether ``address`` is public: global, not multicast, embedding no other kind."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _SITE_LOCAL:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return public_address(embedded)
        if address in _NAT64_LOCAL:
            return False  # a layout where the IPv4 address's place is not known
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: its host (normalised, ASCII), port, and the URL itself."""

    url: str
    host: str
    port: int

    def pinned(self, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Return the URL to connect to ``address``, the Host header, and httpx extensions.

        The Host header (and for https, the TLS server name) stay the URL's own host,
        in its ASCII form.
        """
        parts = urlsplit(self.url)
        ip = ipaddress.ip_address(address)
        shown = f"[{address}]" if ip.version == 6 else address
        netloc = f"{shown}:{self.port}"
        default = 443 if parts.scheme == "https" else 80
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default:
            host_header = f"{host_header}:{self.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        extensions = {"sni_hostname": self.host} if parts.scheme == "https" else {}
        return pinned, {"Host": host_header}, extensions


def check_url(url: str, allowed: HostList) -> WebhookTarget:
    """Return the target of ``url`` if its host is listed for its port (no DNS is asked).

    Raises:
        WebhookForbidden: webhooks are off (nothing listed), the host is not a valid
            name, or it is not listed for the URL's port.
        ValueError: ``url`` is not an http(s) URL with a host (the model checks it first).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not (parts.hostname or "").rstrip("."):
        raise ValueError("must be an http or https URL with a host")
    if not allowed:
        raise WebhookForbidden(
            "webhooks are off on this server: the operator lists the hosts they may go "
            "to in WEBHOOK_ALLOWED_HOSTS"
        )
    try:
        host = normal_host(parts.hostname or "")
    except ValueError:
        raise WebhookForbidden(f"webhook_url: {parts.hostname!r} is not a valid host") from None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not allowed.lists(host, port):
        raise WebhookForbidden(
            f"webhook_url: {host} (port {port}) is not among WEBHOOK_ALLOWED_HOSTS"
        )
    return WebhookTarget(url=url, host=host, port=port)


async def resolve(target: WebhookTarget, allowed: HostList, limiter: trio.CapacityLimiter) -> str:
    """Return the address to connect to for ``target``: the first one the rules allow.

    The lookup runs in a worker thread taken from ``limiter``; it has no time limit
    of its own (the caller bounds it).

    Raises:
        WebhookForbidden: the host does not resolve, or an address it resolves to is
            refused (any refused address refuses the host: the client must not pick).

    Cancellation: the lookup (in its worker thread) is abandoned.
    """
    try:
        literal: IpAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        lookup = partial(socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM)
        try:
            infos = await trio.to_thread.run_sync(lookup, abandon_on_cancel=True, limiter=limiter)
        except (OSError, UnicodeError):
            raise WebhookForbidden(f"webhook_url: {target.host} does not resolve") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [str(a) for a in found if not allowed.allows_address(a, target.port)]
    if refused or not found:
        raise WebhookForbidden(
            f"webhook_url: {target.host} resolves to {', '.join(refused) or 'nothing'}, a "
            "loopback, private, link-local or reserved address; list that address (with "
            "its port) in WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    return str(found[0])
