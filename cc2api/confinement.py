"""Confined runs: the CLI's process tree under Landlock, in folders of the run's own.

A confined run's CLI and everything it starts can read and write only the run's own
folders (``cwd`` and ``add_dir``) and a private folder the gateway makes for it, and
read the system's programs and ``/etc``. The private folder holds the CLI's home,
temporary files and configuration folder (``CLAUDE_CONFIG_DIR``), into which the
gateway copies what the run needs: the user's settings and instructions, the
credentials when no API key is given, and the transcript of the session it resumes.
Once the run is over, the transcripts of the sessions it used are copied back, so
they can be resumed and listed like any other. The real configuration folder, other
sessions, shell rc files and git's user configuration are out of the run's reach.

The steps here do blocking file I/O: call them from a worker thread.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import landlock
from .policy import Plan
from .safecopy import CopyBudget, copy_file, copy_tree
from .sessions import copy_session, project_key, transcript

LAUNCHER = Path(landlock.__file__).resolve()
# What is copied from the real configuration folder: the user's settings and
# instructions (the operator's), and their agents, commands and skills.
CONFIG_FILES = ("settings.json", "CLAUDE.md")
CONFIG_FOLDERS = ("agents", "commands", "skills")
CONFIG_BYTES = 16 * 1024 * 1024
# With any of these in the environment the CLI needs no credentials file.
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


@dataclass(frozen=True)
class ConfineSetup:
    """What every confined run of a gateway shares."""

    real_config: Path  # the CLI's real configuration folder (sessions, settings)
    read_paths: tuple[Path, ...] = ()  # CONFINE_READ_PATHS: more to read and execute


@dataclass(frozen=True)
class RunFolders:
    """A confined run's private folders, inside its run folder."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def config(self) -> Path:
        return self.root / "config"

    def environment(self) -> dict[str, str]:
        """Return what the CLI's environment gets so that it uses the private folders."""
        return {
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "CLAUDE_CONFIG_DIR": str(self.config),
            # A run could plant instructions for later runs in the project's memory, or
            # a scheduled prompt (CronCreate, durable) in cwd.
            "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1",
            "CLAUDE_CODE_DISABLE_CRON": "1",
        }


def prepare(
    folders: RunFolders, real_config: Path, environ: Mapping[str, str], resume: str | None, cwd: str
) -> None:
    """Make the private folders and copy in what the run needs.

    Raises:
        OSError: a folder could not be made or a file copied.
        CopyTooLarge: the configuration or the session to resume is too large to copy.
    """
    for folder in (folders.home, folders.tmp, folders.config):
        folder.mkdir(mode=0o700)
    # The operator's own files: links, as dotfile managers make them, are followed.
    budget = CopyBudget(CONFIG_BYTES)
    for name in CONFIG_FILES:
        copy_file(real_config / name, folders.config / name, budget, missing_ok=True, follow=True)
    for name in CONFIG_FOLDERS:
        copy_tree(real_config / name, folders.config / name, budget, follow=True)
    if not any(environ.get(name) for name in KEY_VARIABLES):
        # A login's credentials: the CLI needs them, so its tools can read them too.
        credentials = ".credentials.json"
        copy_file(
            real_config / credentials,
            folders.config / credentials,
            budget,
            missing_ok=True,
            follow=True,
        )
    if resume is not None:
        copy_session(real_config, folders.config, project_key(cwd), resume, trusted=True)


def bring_back(
    folders: RunFolders, real_config: Path, cwd: str, sessions: Iterable[str], resumed: str | None
) -> list[str]:
    """Copy the transcripts of the run's own sessions back to the real config folder.

    Only the sessions the CLI reported for this run are copied, whatever else its
    tools wrote in the private folder, and only the one it resumed may replace a
    transcript there: a new session of the run that turns out to exist already
    (another run made it meanwhile) is left out. Returns the sessions left out.
    """
    key = project_key(cwd)
    left_out = []
    for session in dict.fromkeys(sessions):
        if session != resumed and os.path.lexists(transcript(real_config, cwd, session)):
            left_out.append(session)
            continue
        copy_session(folders.config, real_config, key, session)
    return left_out


def launcher_argv(claude: Path, plan: Plan, folders: RunFolders, read: Iterable[Path]) -> list[str]:
    """Return the argv that starts ``claude`` confined; the CLI's own argv follows it."""
    argv = [sys.executable, "-I", "-S", str(LAUNCHER), "--rx", os.path.realpath(claude)]
    for extra in read:
        argv += ["--rx", str(extra)]
    for plugins in plan.plugin_dir:
        argv += ["--rx", plugins]
    for folder in (str(folders.root), *plan.folders):
        argv += ["--rw", folder]
    return [*argv, "--"]


def readable_by_runs(path: Path, read_paths: Iterable[Path]) -> bool:
    """Return whether confined runs may read ``path`` (the system's folders, CONFINE_READ_PATHS)."""
    real = Path(os.path.realpath(path))
    folders = [*landlock.SYSTEM_RX, *landlock.SYSTEM_RO, *map(str, read_paths)]
    return any(real.is_relative_to(os.path.realpath(folder)) for folder in folders)


def uses_login(real_config: Path, environ: Mapping[str, str]) -> bool:
    """Return whether confined runs would copy a login's credentials (no key is set)."""
    has_key = any(environ.get(name) for name in KEY_VARIABLES)
    return not has_key and (real_config / ".credentials.json").exists()


def available() -> bool:
    """Return whether this kernel can confine runs (Landlock ABI 2 or later)."""
    return landlock.abi_version() >= landlock.MIN_ABI


def gaps() -> list[str]:
    """Return what a confined run can still do on this kernel, that a newer one stops."""
    return landlock.gaps(landlock.abi_version())
