"""The CLI's session files, as it keeps them: one transcript per session, by project.

The CLI writes ``<config>/projects/<key>/<session id>.jsonl``, where ``<config>`` is
``$CLAUDE_CONFIG_DIR`` or ``~/.claude`` and ``<key>`` is the folder it ran in with every
character but letters and digits replaced by ``-`` (so ``/a/b`` and ``/a-b`` share a
key). Every line carries ``sessionId``; the ``user`` and ``assistant`` lines carry the
``cwd`` they were recorded in. Big tool outputs and subagents' transcripts go in a
folder ``<session id>/`` beside the file.

Everything here does blocking file I/O: call it from a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

from .safecopy import CopyBudget, CopyTooLarge, copy_file, open_regular, tree_files

# A transcript's recorded cwd is looked for in its first lines only.
HEAD_BYTES = 4 * 1024 * 1024
# How many of a project's transcripts, newest first, are searched for the latest of
# a folder (continue_conversation).
LATEST_SCAN = 200
# The most one session's files may hold, in all, to be copied (a run's private config
# folder in, and back out).
MAX_SESSION_BYTES = 512 * 1024 * 1024
# What the CLI keeps beside a transcript; nothing else there is copied.
SESSION_FOLDERS = ("subagents", "tool-results")


def project_key(cwd: str) -> str:
    """Return the CLI's name for a folder's project (where it keeps its sessions).

    Every character but letters and digits becomes '-', so /a/b and /a-b share a
    project, and --continue in one can pick a session of the other.
    """
    return re.sub(r"[^A-Za-z0-9]", "-", os.path.realpath(cwd))


def config_dir(environ: Mapping[str, str]) -> Path:
    """Return the CLI's configuration folder for the environment it runs in."""
    configured = environ.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured)
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".claude"


def transcript(config: Path, cwd: str, session_id: str) -> Path:
    """Return where the CLI keeps a session of ``cwd``."""
    return config / "projects" / project_key(cwd) / f"{session_id}.jsonl"


def recorded_cwd(path: Path) -> str | None:
    """Return the folder a transcript's first turn was recorded in; None if unknown."""
    try:
        with open_regular(path) as file:
            read = 0
            for line in file:
                read += len(line)
                if read > HEAD_BYTES:
                    return None
                if b'"cwd"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("cwd"), str):
                    return str(entry["cwd"])
    except OSError:
        return None
    return None


def latest_for(config: Path, cwd: str) -> str | None:
    """Return the id of the newest session recorded in exactly ``cwd``, if any.

    The CLI's own --continue takes the newest of the project, which may have been
    recorded in another folder of the same key.
    """
    folder = config / "projects" / project_key(cwd)
    try:
        entries = [
            (entry.stat(follow_symlinks=False).st_mtime, entry)
            for entry in os.scandir(folder)
            if entry.name.endswith(".jsonl") and is_session_id(entry.name[:-6])
        ]
    except OSError:
        return None
    entries.sort(key=lambda pair: pair[0], reverse=True)
    real = os.path.realpath(cwd)
    for _, entry in entries[:LATEST_SCAN]:
        if recorded_cwd(Path(entry.path)) == real:
            return entry.name[:-6]
    return None


def copy_session(
    source: Path, target: Path, key: str, session_id: str, *, trusted: bool = False
) -> bool:
    """Copy a session's transcript, and its subagents and tool results, between config folders.

    An untrusted ``source`` (a run's private folder) is read only through real folders
    and as regular files: a link anywhere below ``source`` is not followed. Everything
    is measured before anything is written, so a session is copied whole or not at all.
    Returns whether there was a transcript to copy.

    Raises:
        CopyTooLarge: its files hold more than MAX_SESSION_BYTES, or too many files.
        OSError: a folder on the way is a link, or reading or writing failed.
    """
    if not is_session_id(session_id):
        raise ValueError(f"{session_id!r} is not a session id")
    source_dir = source / "projects" / key
    if not trusted and os.path.realpath(source_dir) != str(
        Path(os.path.realpath(source)) / "projects" / key
    ):
        raise OSError(f"{source_dir} is reached through a symbolic link")
    name = f"{session_id}.jsonl"
    try:
        with open_regular(source_dir / name, follow=trusted) as file:
            parts = [(Path(name), os.fstat(file.fileno()).st_size)]
    except FileNotFoundError:
        return False
    folder = source_dir / session_id
    if trusted or (os.path.lexists(folder) and not os.path.islink(folder)):
        for sub in SESSION_FOLDERS:
            parts += [
                (Path(session_id) / sub / relative, size)
                for relative, size in tree_files(folder / sub, follow=trusted)
            ]
    if sum(size for _, size in parts) > MAX_SESSION_BYTES:
        raise CopyTooLarge(f"session {session_id} holds more than {MAX_SESSION_BYTES} bytes")
    budget = CopyBudget(MAX_SESSION_BYTES)
    target_dir = target / "projects" / key
    for relative, _ in parts:
        copy_file(source_dir / relative, target_dir / relative, budget, follow=trusted)
    return True


def is_session_id(value: str) -> bool:
    """Return whether ``value`` is a session id as the CLI writes them (a UUID)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
