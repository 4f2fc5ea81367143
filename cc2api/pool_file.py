"""POOL_PROFILES_FILE: the plans an operator wants warm from the start.

The file is a JSON array. Each entry holds the fields of a ``POST /chat`` body but
``prompt`` (``cwd`` and the options), and two of its own: ``size``, how many CLIs of
it wait (default 1), and ``key``, the name of the API key whose runs it is for
(default: the admin's). It is read when the settings are, so a malformed one stops
the server from starting, naming the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .key_wire import KEY_NAME_PATTERN
from .models import ChatRequest

__all__ = ["MAX_FILE_BYTES", "PoolEntry", "read_pool_file"]

MAX_FILE_BYTES = 1024 * 1024
# What stands for the prompt while an entry is checked: a run's own comes on stdin.
PLACEHOLDER_PROMPT = "(pooled)"
_KEY_NAME = re.compile(KEY_NAME_PATTERN)


@dataclass(frozen=True)
class PoolEntry:
    """One declared profile: its request (prompt aside), size and key."""

    request: ChatRequest
    size: int
    key: str | None


def read_pool_file(path: Path) -> list[PoolEntry]:
    """Return the file's entries.

    Raises:
        ValueError: the file cannot be read, is not a JSON array of objects, or an
            entry is not a valid poolable request; the message names the entry.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(f"POOL_PROFILES_FILE {path}: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"POOL_PROFILES_FILE {path}: over {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"POOL_PROFILES_FILE {path}: not JSON: {error}") from None
    if not isinstance(data, list):
        raise ValueError(f"POOL_PROFILES_FILE {path}: must be a JSON array of objects")
    return [_entry(path, index, item) for index, item in enumerate(data)]


def _entry(path: Path, index: int, item: Any) -> PoolEntry:
    where = f"POOL_PROFILES_FILE {path}: entry {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object")
    fields = dict(item)
    if "prompt" in fields:
        raise ValueError(f"{where}: has a prompt; a run's prompt is its own")
    size, key = fields.pop("size", 1), fields.pop("key", None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{where}: size must be a whole number of at least 1")
    if key is not None and not (isinstance(key, str) and _KEY_NAME.fullmatch(key)):
        raise ValueError(f"{where}: key must be the name of an API key")
    try:
        request = ChatRequest.model_validate({**fields, "prompt": PLACEHOLDER_PROMPT})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ValueError(f"{where}: {problems}") from None
    if request.names_session:
        raise ValueError(
            f"{where}: names a session (session_id, continue_conversation or "
            "new_session_id), which no CLI can be spawned ahead for"
        )
    return PoolEntry(request, size, key)
