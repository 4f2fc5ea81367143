"""Find the Claude Code CLI and ask it for its version."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from .cli_args import cli_environment

VERSION_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ClaudeInfo:
    """What startup learned about the CLI: where it is and its version, or why it is unusable."""

    path: Path | None
    version: str | None
    problem: str | None

    @property
    def usable(self) -> bool:
        """Return whether runs can be started."""
        return self.path is not None and self.problem is None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def candidates(environ: Mapping[str, str]) -> list[Path]:
    """Return the usual install places, in the order they are tried after PATH."""
    home = Path(environ.get("HOME") or Path.home())
    places = [
        home / ".local/bin/claude",
        home / ".claude/local/claude",
        home / ".npm-global/bin/claude",
        Path("/usr/local/bin/claude"),
    ]
    nvm = home / ".nvm/versions/node"
    if nvm.is_dir():
        places.extend(sorted(nvm.glob("*/bin/claude"), reverse=True))
    return places


def find_claude(configured: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """Return the CLI's path (``CLAUDE_PATH``, else PATH, else the usual places) or why not.

    The path is absolute: runs start in other folders, where a relative one would
    name another file or none.
    """
    if configured is not None:
        if _executable(configured):
            return Path(os.path.abspath(configured)), ""
        return None, f"CLAUDE_PATH={configured} is not an executable file"
    found = shutil.which("claude", path=environ.get("PATH"))
    if found:
        return Path(os.path.abspath(found)), ""
    for place in candidates(environ):
        if _executable(place):
            return place, ""
    return None, "the Claude Code CLI was not found: install it or set CLAUDE_PATH"


async def probe(configured: Path | None, environ: Mapping[str, str]) -> ClaudeInfo:
    """Locate the CLI and run ``claude --version``.

    Cancellation: the version check is a child process that trio kills and reaps.
    """
    path, problem = find_claude(configured, environ)
    if path is None:
        return ClaudeInfo(None, None, problem)
    env = cli_environment(environ)
    try:
        with trio.fail_after(VERSION_TIMEOUT_SECONDS):
            done = await trio.run_process(
                [str(path), "--version"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
                stdin=subprocess.DEVNULL,
            )
    except trio.TooSlowError:
        return ClaudeInfo(path, None, f"{path} --version did not answer")
    except OSError as error:
        return ClaudeInfo(path, None, f"{path} could not be run: {error.strerror or error}")
    if done.returncode != 0:
        return ClaudeInfo(path, None, f"{path} --version exited with status {done.returncode}")
    words = done.stdout.decode("utf-8", "replace").split()
    return ClaudeInfo(path, words[0] if words else "unknown", None)
