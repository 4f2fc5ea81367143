"""Which gateway the terminal client talks to, and as whom.

``--url`` else ``CC2API_URL``; ``--key`` else ``CC2API_KEY``, else ``CC2API_USER`` and
``CC2API_PASSWORD``. When none of these is given, the operator is taken to be on the
gateway's own host: its ``.env`` (and environment) give HOST, PORT and the admin's
AUTH_USER and AUTH_PASSWORD, as for ``cc2api keys``. Secrets only ever reach the HTTP
client's memory: never argv, never output.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .client.config import DEFAULT_URL
from .settings import Settings

__all__ = ["Target", "add_connection_options", "target", "url_given"]

CREDENTIAL_VARIABLES = ("CC2API_KEY", "CC2API_USER", "CC2API_PASSWORD")


@dataclass(frozen=True)
class Target:
    """A gateway's URL and the credential to use there (a key, or a user and password)."""

    url: str
    key: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def add_connection_options(parser: argparse.ArgumentParser, *, key: bool = True) -> None:
    """Add ``--url`` (and ``--key``, unless the command uses that name for something else)."""
    parser.add_argument("--url", help="the gateway's URL (default: CC2API_URL, else .env's)")
    if key:
        parser.add_argument(
            "--key",
            dest="api_key",
            help="an API key (default: CC2API_KEY; better there: argv is visible to `ps`)",
        )


def url_given(args: argparse.Namespace, environ: Mapping[str, str]) -> bool:
    """Return whether a gateway URL is configured (``--url`` or ``CC2API_URL``)."""
    return bool(getattr(args, "url", None) or environ.get("CC2API_URL"))


def target(
    args: argparse.Namespace, environ: Mapping[str, str], env_file: Path = Path(".env")
) -> Target:
    """Return the gateway to talk to: the options, else the environment, else ``.env``."""
    url = getattr(args, "url", None) or environ.get("CC2API_URL")
    key = getattr(args, "api_key", None) or environ.get("CC2API_KEY")
    user, password = environ.get("CC2API_USER"), environ.get("CC2API_PASSWORD")
    if url or key or user or password:
        return Target(url or DEFAULT_URL, key or None, user or None, password or None)
    return _local(env_file)


def _local(env_file: Path) -> Target:
    """Return the gateway of this host's ``.env`` (and environment), with its admin credential."""
    readable = env_file if os.access(env_file, os.R_OK) else None
    try:
        settings = Settings(_env_file=readable)  # type: ignore[call-arg]
    except ValidationError:
        return Target(DEFAULT_URL)  # no .env here, or not one of a gateway: the defaults
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return Target(
        f"http://{host}:{settings.port}",
        user=settings.auth_user,
        password=settings.auth_password.get_secret_value(),
    )
