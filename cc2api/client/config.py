"""Where the client finds the server and its credential: arguments first, then the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

DEFAULT_URL = "http://127.0.0.1:9876"  # the server's own default HOST and PORT


@dataclass(frozen=True)
class ClientConfig:
    """The server's base URL and how to authenticate to it (``auth`` None: not at all)."""

    url: str
    auth: httpx.Auth | None

    def __repr__(self) -> str:
        # Never print a credential, not even in a traceback's locals.
        kind = type(self.auth).__name__ if self.auth is not None else "none"
        return f"ClientConfig(url={self.url!r}, auth={kind})"


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>``, as a cc2api key is sent."""

    def __init__(self, key: str) -> None:
        self._header = f"Bearer {key}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request


def resolve(
    url: str | None = None,
    *,
    key: str | None = None,
    user: str | None = None,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Return the configuration: each argument, else ``CC2API_URL``, ``CC2API_KEY``,
    ``CC2API_USER`` and ``CC2API_PASSWORD``. A key wins over a user and password."""
    env = os.environ if environ is None else environ
    base = (url or env.get("CC2API_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the server URL must start with http:// or https://, got {base!r}")
    token = key or env.get("CC2API_KEY")
    if token:
        return ClientConfig(base, BearerAuth(token))
    name = user or env.get("CC2API_USER")
    secret = password or env.get("CC2API_PASSWORD")
    if name and secret:
        return ClientConfig(base, httpx.BasicAuth(name, secret))
    if name or secret:
        raise ValueError("a user needs a password (CC2API_USER with CC2API_PASSWORD)")
    return ClientConfig(base, None)
