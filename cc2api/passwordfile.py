"""Where the gateway's password comes from: AUTH_PASSWORD, a file, or a systemd credential.

A password in the environment can be read from ``/proc/PID/environ`` by root, and it
travels wherever the environment does (crash reports, ``systemctl show`` for
``Environment=``, child processes that are not cleaned). Read from a file, it lives
in this process's memory only. systemd's ``LoadCredential=auth_password:SOURCE`` copies
SOURCE, which may be root's alone, to ``$CREDENTIALS_DIRECTORY/auth_password``, which
only the service's user can read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

CREDENTIAL = "auth_password"
PLACEHOLDER_PASSWORD = "change-me"  # noqa: S105 (the value .env.example ships with)
MAX_PASSWORD_FILE_BYTES = 4096


@dataclass(frozen=True)
class FoundPassword:
    """A password read from a file, and which setting named the file."""

    password: str
    source: str  # for `cc2api check`, e.g. "AUTH_PASSWORD_FILE: /etc/cc2api/pw"


def check_password(secret: str, name: str) -> None:
    """Raise ValueError, naming ``name``, if ``secret`` is not a real password."""
    if not secret.strip():
        raise ValueError(f"{name} is empty")
    if secret == PLACEHOLDER_PASSWORD:
        raise ValueError(f"{name} is still the placeholder from .env.example")


def read_password_file(path: Path, name: str) -> str:
    """Return the password ``path`` holds: its content, less one trailing newline.

    Raises:
        ValueError: naming ``name``; the file cannot be read, is not a regular file,
            is too long, is not UTF-8 or holds no real password. The message never
            repeats the content.
    """
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ValueError(f"{name}: cannot read {path}: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{name}: {path} is not a regular file")
        data = os.read(fd, MAX_PASSWORD_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"{name}: {path} is over {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{name}: {path} is not UTF-8 text") from None
    password = text.removesuffix("\n")
    check_password(password, f"{name}: the password in {path}")
    return password


def password_from_files(
    *, password_set: bool, password_file: Path | None, credentials_directory: Path | None
) -> FoundPassword | None:
    """Return the password of AUTH_PASSWORD_FILE, else of the credential; None: neither.

    AUTH_PASSWORD_FILE wins over the credential (``Environment=AUTH_PASSWORD_FILE=%d/...``
    names the credential itself). Only one source may be set: a password left in the
    environment next to a file would defeat the file.

    Raises:
        ValueError: two sources are set, or the file is unusable (read_password_file).
    """
    credential = None if credentials_directory is None else credentials_directory / CREDENTIAL
    if password_file is not None:
        name = "AUTH_PASSWORD_FILE"
        path = password_file
    elif credential is not None and os.path.lexists(credential):
        name = f"the systemd credential {CREDENTIAL}"
        path = credential
    else:
        return None
    if password_set:
        raise ValueError(
            f"AUTH_PASSWORD is set and so is {name}: remove AUTH_PASSWORD from the "
            "environment and .env, so that the password stays out of the environment"
        )
    return FoundPassword(read_password_file(path, name), f"{name}: {path}")
