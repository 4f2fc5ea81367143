"""What starts one run's CLI: its argv, environment and folders, built once per run.

The gateway builds a :class:`Launch` when it accepts a request, measures it against
the kernel's limit there (a refusal is a 422, not a failed run), and hands the same
object to the run, which spawns exactly that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cli_args import RunFiles, build_argv, command_line_bytes
from .confinement import ConfineSetup, RunFolders, launcher_argv
from .models import ChatRequest
from .policy import Plan
from .proctree import MARKER_VAR

log = logging.getLogger(__name__)

WORKDIR_PREFIX = "cc2api-run-"
# Pooled CLIs' ids (their markers and folders) start so: they are no run's, until one
# takes them.
POOL_PREFIX = "pool-"


def pool_marker(store_id: str) -> str:
    """Return what the ids of a gateway's pooled CLIs start with: its store's is in it."""
    return f"{POOL_PREFIX}{store_id}-"


@dataclass(frozen=True)
class Launch:
    """One CLI's command line, environment and private folders."""

    run_id: str
    claude: Path  # the CLI itself, whatever launcher starts it
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    # The run's own folder: its option files and, when confined, its home. Made when
    # the run starts (not while it is queued) and removed when it ends.
    workdir: Path
    files: RunFiles
    folders: RunFolders | None  # the private home of a confined run

    def command_line_bytes(self) -> int:
        """Return what the argv and environment take of the kernel's ARG_MAX."""
        return command_line_bytes(list(self.argv), self.env)


def plan_launch(
    *,
    run_id: str,
    claude: Path,
    request: ChatRequest,
    plan: Plan,
    environ: Mapping[str, str],
    confine: ConfineSetup,
) -> Launch:
    """Return the launch of a run: pure but for resolving ``claude``'s real path when confined.

    ``environ`` is what every run inherits (already without the withheld names).
    """
    # The run id is told to clients while the run is queued, before the folder is made:
    # a secret part keeps anyone from taking the name first (mkdir would then fail).
    workdir = Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{run_id}-{secrets.token_hex(8)}"
    files = RunFiles(workdir)
    argv = build_argv(claude, request, plan, files)
    env = {**environ, **plan.extra_env}
    folders = RunFolders(workdir) if plan.confined else None
    if folders is not None:
        argv = [*launcher_argv(claude, plan, folders, confine.read_paths), *argv]
        env.update(folders.environment())
    # Every descendant inherits it: teardown finds even the processes that left the tree.
    env[MARKER_VAR] = run_id
    return Launch(run_id, claude, tuple(argv), env, plan.cwd, workdir, files, folders)


def remove_folder(folder: Path) -> None:
    """Remove a run's folder (if it was made), also where its tools took their own
    permissions away.

    A run may chmod what it made (Landlock does not cover metadata): the folder would
    otherwise stay behind, with whatever a confined run's private folder held.
    """

    def retry(function: Callable[..., object], path: str, _: object) -> None:
        # Never through a link: chmod would change the mode of what it points to.
        with contextlib.suppress(OSError):
            for place in (os.path.dirname(path), path):
                if os.path.isdir(place) and not os.path.islink(place):
                    os.chmod(place, 0o700)
            function(path)

    if not os.path.lexists(folder):
        return  # never made: the run ended before its CLI was to start
    shutil.rmtree(folder, onerror=retry)
    if os.path.lexists(folder):
        log.warning("could not remove the run folder %s", folder)
