"""The command line's way to the running server: its admin API, with the .env credential."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from .settings import Settings

__all__ = ["CommandFailed", "request"]

HTTP_TIMEOUT = 120.0  # revoking with --cancel-runs waits for the runs' teardown


class CommandFailed(Exception):
    """Raised with what to tell the user; the command exits 1."""


def request(
    settings: Settings, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Send one request with the admin's credential; return its JSON answer.

    Returns None when no server listens on HOST:PORT.

    Raises:
        CommandFailed: the server refused the request (with its detail), or could
            not be reached for another reason.
    """
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    credential = f"{settings.auth_user}:{settings.auth_password.get_secret_value()}"
    sent = urllib.request.Request(
        f"http://{host}:{settings.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(credential.encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(sent, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            found: dict[str, Any] = json.load(response)
            return found
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error).get("detail", error.reason)
        except ValueError:
            detail = error.reason
        raise CommandFailed(f"{detail} (HTTP {error.code})") from None
    except (ConnectionRefusedError, urllib.error.URLError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ConnectionRefusedError) or isinstance(error, ConnectionRefusedError):
            return None
        raise CommandFailed(f"cannot reach the server: {reason}") from None
