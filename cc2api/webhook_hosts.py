"""Where a webhook may go: the SSRF rules of WEBHOOK_ALLOWED_HOSTS.

A URL's host must be listed. Its addresses are resolved, and one that is not
public (loopback, private, link-local, reserved, multicast, unspecified) is refused
unless that address itself is listed: listing ``hooks.example.com`` does not let a
DNS answer of ``10.0.0.5`` reach the internal network, listing ``127.0.0.1`` lets a
test receiver on it be reached. The check is made at ``POST /chat`` and again before
each attempt, and the attempt connects to the address that was checked (pinned), so
a DNS answer that changes in between cannot move it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import trio

from .codes import ErrorCode
from .errors import ApiError

__all__ = ["WebhookForbidden", "WebhookTarget", "allowed_address", "check_url", "resolve"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookForbidden(ApiError):
    """Raised when a webhook URL's host is not listed, or resolves where it may not go."""

    status = 400
    code = ErrorCode.WEBHOOK_FORBIDDEN


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: its host (as listed), port, and the URL with the host pinned."""

    url: str
    host: str
    port: int

    def pinned(self, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Return the URL to connect to ``address``, the Host header, and httpx extensions.

        The Host header (and for https, the TLS server name) stay the URL's own host.
        """
        parts = urlsplit(self.url)
        ip = ipaddress.ip_address(address)
        shown = f"[{address}]" if ip.version == 6 else address
        netloc = f"{shown}:{self.port}"
        default = 443 if parts.scheme == "https" else 80
        host_header = parts.hostname or self.host
        if ":" in host_header:
            host_header = f"[{host_header}]"
        if self.port != default:
            host_header = f"{host_header}:{self.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        extensions = {"sni_hostname": self.host} if parts.scheme == "https" else {}
        return pinned, {"Host": host_header}, extensions


def check_url(url: str, allowed: Sequence[str]) -> WebhookTarget:
    """Return the target of ``url`` if its host is listed (no DNS is asked).

    Raises:
        WebhookForbidden: webhooks are off (nothing listed), or the host is not listed.
        ValueError: ``url`` is not an http(s) URL with a host (the model checks it first).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an http or https URL with a host")
    if not allowed:
        raise WebhookForbidden(
            "webhooks are off on this server: the operator lists the hosts they may go "
            "to in WEBHOOK_ALLOWED_HOSTS"
        )
    if host not in allowed:
        raise WebhookForbidden(f"webhook_url: {host} is not among WEBHOOK_ALLOWED_HOSTS")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return WebhookTarget(url=url, host=host, port=port)


def allowed_address(address: IpAddress, allowed: Sequence[str]) -> bool:
    """Return whether a webhook may connect to ``address``: public, or listed itself."""
    mapped = getattr(address, "ipv4_mapped", None)
    plain = mapped if mapped is not None else address
    if str(plain) in allowed or str(address) in allowed:
        return True
    return plain.is_global and not plain.is_multicast


async def resolve(target: WebhookTarget, allowed: Sequence[str]) -> str:
    """Return the address to connect to for ``target``: the first one the rules allow.

    Raises:
        WebhookForbidden: the host does not resolve, or an address it resolves to is
            refused (any refused address refuses the host: the client must not pick).

    Cancellation: the lookup (in a worker thread) is abandoned.
    """
    try:
        literal: IpAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await trio.socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError:
            raise WebhookForbidden(f"webhook_url: {target.host} does not resolve") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [str(address) for address in found if not allowed_address(address, allowed)]
    if refused or not found:
        raise WebhookForbidden(
            f"webhook_url: {target.host} resolves to {', '.join(refused) or 'nothing'}, a "
            "loopback, private, link-local or reserved address; list that address in "
            "WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    return str(found[0])
