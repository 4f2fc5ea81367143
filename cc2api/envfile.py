"""Write a first ``.env`` with a generated password, never through argv or a shell."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def init_env(path: Path, *, user: str = "admin", claude_path: Path | None = None) -> str | None:
    """Create ``path`` (mode 600) with a fresh password and return it; None if it exists.

    The file is created exclusively, so an existing ``.env`` is never overwritten.
    """
    password = secrets.token_urlsafe(24)
    lines = [
        "# Written by `cc2api init-env`; .env.example lists every setting.",
        f"AUTH_USER={user}",
        f"AUTH_PASSWORD={password}",
    ]
    if claude_path is not None:
        lines.append(f"CLAUDE_PATH={claude_path}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as env:
        env.write("\n".join(lines) + "\n")
    return password
