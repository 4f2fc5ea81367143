"""Write a first ``.env`` with a generated password, never through argv or a shell."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dotenv import dotenv_values

# systemd's EnvironmentFile= and python-dotenv disagree on quoting, escapes, comments
# and ${...}: a password holding any of these would differ between the two.
UNSAFE_PASSWORD_CHARS = frozenset(" \t\"'\\#$`")


def environment_with(env_file: Path | None) -> dict[str, str]:
    """Return this process's environment over the variables of ``env_file``.

    So that ``ANTHROPIC_API_KEY`` and the like put in ``.env`` reach the CLI whether
    systemd loaded the file (EnvironmentFile=) or not; the real environment wins.
    """
    values = dotenv_values(env_file) if env_file is not None else {}
    from_file = {k: v for k, v in values.items() if v is not None}
    return {**from_file, **os.environ}


def init_env(
    path: Path,
    *,
    user: str = "admin",
    password: str | None = None,
    claude_path: Path | None = None,
    extra: dict[str, str] | None = None,
) -> str | None:
    """Create ``path`` (mode 600) and return the password; None if the file exists.

    Without ``password`` a strong one is generated. The file is created exclusively,
    so an existing ``.env`` is never overwritten.
    """
    if password is not None and (
        set(password) & UNSAFE_PASSWORD_CHARS or not password.isprintable()
    ):
        raise ValueError(
            "the password may not hold spaces, quotes, backslashes, '#' or '$': "
            "systemd and .env readers parse those differently"
        )
    password = password or secrets.token_urlsafe(24)
    lines = [
        "# Written by `cc2api init-env`; .env.example lists every setting.",
        f"AUTH_USER={user}",
        f"AUTH_PASSWORD={password}",
    ]
    if claude_path is not None:
        lines.append(f"CLAUDE_PATH={claude_path}")
    lines.extend(f"{name}={value}" for name, value in (extra or {}).items())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as env:
        env.write("\n".join(lines) + "\n")
    return password
