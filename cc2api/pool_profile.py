"""What makes two runs' CLIs interchangeable, and what would make a waiting one stale.

A :class:`Profile` is a run's launch with what is its own taken out: the run id and
its private folder. Two requests with the same profile (and the same key) would
spawn the very same CLI, byte for byte: same argv, environment, cwd and option
files. Only then may one take the other's pooled CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .launch import Launch
from .models import ChatRequest
from .policy import Plan
from .proctree import MARKER_VAR

__all__ = ["Profile", "Signature", "profile_of", "signature"]

_FOLDER = "\0run-folder\0"  # what stands for a run's private folder in a profile
# The instructions and settings the CLI reads once, at start, from cwd and its parents
# (CLAUDE.md) and from its config folder: a change after spawn would not reach it.
_PROJECT_FILES = ("CLAUDE.md", "CLAUDE.local.md", ".claude/CLAUDE.md")
# Folders count by their own stat: an agent, command or skill made or removed in one.
_CWD_FILES = (
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".mcp.json",
    ".claude/agents",
    ".claude/commands",
    ".claude/skills",
)
_CONFIG_FILES = ("CLAUDE.md", "settings.json", "agents", "commands", "skills")
# The operator's managed policy, which overrides every other settings file.
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")


@dataclass(frozen=True, eq=False)
class Profile:
    """A plan the pool can spawn ahead: everything of a launch but the run's own parts.

    Equal profiles have equal ``digest``; ``request`` has no prompt (it goes to stdin).
    """

    digest: str
    key_id: str | None  # whose runs may take its CLIs: a key's never go to another
    request: ChatRequest
    plan: Plan
    claude: Path
    cwd: str

    @property
    def ident(self) -> tuple[str | None, str]:
        """Return what pooled CLIs are filed under."""
        return self.key_id, self.digest


def profile_of(launch: Launch, request: ChatRequest, plan: Plan, key_id: str | None) -> Profile:
    """Return the profile of a launch (pure; ``request`` and ``plan`` are what made it)."""
    folder = str(launch.workdir)

    def general(text: str) -> str:
        return text.replace(folder, _FOLDER)

    env = sorted((k, general(v)) for k, v in launch.env.items() if k != MARKER_VAR)
    files = sorted(
        (general(str(path)), text) for path, text in launch.files.texts(request, plan).items()
    )
    whole = [key_id, [general(arg) for arg in launch.argv], env, launch.cwd, files]
    digest = hashlib.sha256(json.dumps(whole, ensure_ascii=False).encode()).hexdigest()
    # The prompt is the run's, not the profile's; kept, it would sit in memory for long.
    bare = request.model_copy(update={"prompt": ""})
    return Profile(digest, key_id, bare, plan, launch.claude, launch.cwd)


Signature = tuple[tuple[str, int, int, int], ...]


def signature(cwd: str, config: Path, claude: Path) -> Signature:
    """Return what the files a CLI (``claude``) reads at start in ``cwd`` look like now.

    Stat only. Equal signatures mean no such file was made, removed, replaced or
    written since, and the CLI itself was not upgraded.
    """
    places: list[Path] = [claude, MANAGED_SETTINGS]
    folder = Path(cwd)
    for parent in (folder, *folder.parents):
        places.extend(parent / name for name in _PROJECT_FILES)
    places.extend(folder / name for name in _CWD_FILES)
    places.extend(config / name for name in _CONFIG_FILES)
    seen = []
    for place in places:
        try:
            info = os.stat(place)
        except OSError:
            continue  # absent, or unreadable: its appearing changes the signature
        seen.append((str(place), info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(seen)
