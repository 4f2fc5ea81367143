"""How the pool starts one CLI: the run's own steps, done ahead, for a pool id."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import trio

from .cli_process import spawn_run
from .confinement import ConfineSetup, prepare
from .launch import plan_launch, remove_folder
from .limits import RunLimits
from .pool_member import Warm
from .pool_profile import Profile, profile_of, signature

__all__ = ["Mismatch", "start_warm"]

# A folder left by a start that failed is removed in this long; past it, it goes on alone.
REMOVE_SECONDS = 30.0


class Mismatch(Exception):
    """A profile planned again gave another launch: its CLIs would not be its runs'."""


async def start_warm(
    profile: Profile,
    marker: str,
    *,
    environ: Mapping[str, str],
    confine: ConfineSetup,
    limits: RunLimits,
    reap: Callable[[], None],
) -> Warm:
    """Make a pooled CLI's folder and files and spawn it, as a run of ``profile`` would.

    Its id (its processes' marker, and its folder's name) is ``marker`` and a UUID.

    Raises:
        Mismatch: the launch is not the profile's (it is never spawned).
        OSError, CopyTooLarge: a folder, file or the CLI itself could not be made.

    Cancellation: what was made is removed (shielded, bounded), and Cancelled raised.
    """
    launch = plan_launch(
        run_id=f"{marker}{uuid.uuid4()}",
        claude=profile.claude,
        request=profile.request,
        plan=profile.plan,
        environ=environ,
        confine=confine,
    )
    if profile_of(launch, profile.request, profile.plan, profile.key_id).ident != profile.ident:
        raise Mismatch(f"a plan for {profile.cwd} is not the same when made again")
    # Before the spawn: a file changed while the CLI reads it counts as changed.
    before = signature(profile.cwd, confine.real_config, profile.claude)
    try:
        launch.workdir.mkdir(mode=0o700)
        launch.files.write(profile.request, profile.plan)
        if launch.folders is not None:
            await trio.to_thread.run_sync(
                prepare, launch.folders, confine.real_config, dict(launch.env), None, launch.cwd
            )
        cli = await spawn_run(launch, limits, reap)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(REMOVE_SECONDS):
            await trio.to_thread.run_sync(remove_folder, launch.workdir, abandon_on_cancel=True)
        raise
    return Warm(profile, launch, cli, before)
