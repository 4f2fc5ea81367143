"""Which gateway the terminal client talks to, and as whom.

``--url`` else ``CC2API_URL``; ``--key`` else ``CC2API_KEY``, else ``CC2API_USER`` and
``CC2API_PASSWORD``. When none of these is given, the operator is taken to be on the
gateway's own host: the ``.env`` of the folder it runs in gives HOST (one of this
machine's), PORT and the admin's AUTH_USER and AUTH_PASSWORD. Secrets reach only the
HTTP client's memory, never output; ``--key`` puts one in argv, where ``ps`` shows it,
so CC2API_KEY is the better place.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

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
    """Return the gateway to talk to: the options, else the environment, else ``.env``.

    Raises:
        ValueError: the ``.env`` names another machine, or no port.
    """
    from .client.config import DEFAULT_URL  # noqa: PLC0415 (the server never loads the client)

    url = getattr(args, "url", None) or environ.get("CC2API_URL")
    key = getattr(args, "api_key", None) or environ.get("CC2API_KEY")
    user, password = environ.get("CC2API_USER"), environ.get("CC2API_PASSWORD")
    if url or key or user or password:
        return Target(url or DEFAULT_URL, key or None, user or None, password or None)
    return _local(env_file)


# Hosts a .env's HOST may name for its admin credential to be sent there: this machine.
LOCAL_HOSTS = {"127.0.0.1": "127.0.0.1", "::1": "[::1]", "localhost": "127.0.0.1",
               "0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # fmt: skip  # noqa: S104


def _local(env_file: Path) -> Target:
    """Return the gateway of this folder's ``.env``, with the admin credential it holds.

    Only the file's own HOST, PORT, AUTH_USER and AUTH_PASSWORD count: not the
    environment (a password exported in the shell must not follow a ``.env`` someone
    else wrote), not ``AUTH_PASSWORD_FILE`` (it could name any file), and only a HOST of
    this machine, so the credential never leaves it.

    Raises:
        ValueError: the ``.env`` names another host.
    """
    from .client.config import DEFAULT_URL  # noqa: PLC0415 (the server never loads the client)

    if not os.access(env_file, os.R_OK):
        return Target(DEFAULT_URL)
    values = {name: value for name, value in dotenv_values(env_file).items() if value is not None}
    host = values.get("HOST", "127.0.0.1").strip().strip("[]")
    if host not in LOCAL_HOSTS:
        raise ValueError(
            f"{env_file} names HOST={host}, not this machine: set CC2API_URL (and "
            "CC2API_KEY, or CC2API_USER and CC2API_PASSWORD) to talk to that gateway"
        )
    port = values.get("PORT", "9876").strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{env_file} holds PORT={port!r}, not a port number")
    password = values.get("AUTH_PASSWORD") or None
    return Target(
        f"http://{LOCAL_HOSTS[host]}:{port}",
        user=(values.get("AUTH_USER") or "admin") if password else None,
        password=password,
    )
