"""The Landlock launcher: a confined process tree reaches only what it was given."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cc2api import landlock

LAUNCHER = Path(landlock.__file__)
pytestmark = pytest.mark.timeout(60)


def confined(*rules: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c command`` under the launcher with ``rules`` (its options)."""
    argv = [sys.executable, "-I", "-S", str(LAUNCHER), *rules, "--", "/bin/sh", "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(name="space")
def _space(tmp_path: Path) -> Path:
    """A folder the sandbox may use, with a secret beside it that it may not."""
    (tmp_path / "inside").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s3cret\n")
    return tmp_path


def test_this_kernel_has_landlock() -> None:
    """The machine the tests run on offers Landlock ABI 3 or later, as the tests below need."""
    assert landlock.abi_version() >= landlock.MIN_ABI


def test_reads_and_writes_stay_inside(space: Path) -> None:
    """The confined shell writes in its --rw folder; reading and writing outside it fail."""
    inside, outside = space / "inside", space / "outside"
    done = confined(
        "--rw",
        str(inside),
        command=f"echo ok > {inside}/made; cat {outside}/secret; echo x > {outside}/planted",
    )
    assert (inside / "made").read_text() == "ok\n"
    assert "s3cret" not in done.stdout
    assert "Permission denied" in done.stderr
    assert not (outside / "planted").exists()


def test_children_inherit_the_confinement(space: Path) -> None:
    """A process started by the confined one, in a session of its own, is confined too."""
    script = f"setsid sh -c 'cat {space}/outside/secret' || true"
    done = confined("--rw", str(space / "inside"), command=script)
    assert "s3cret" not in done.stdout
    assert "Permission denied" in done.stderr


def test_the_gateways_environment_is_out_of_reach(space: Path) -> None:
    """/proc of other processes (the gateway's environ) cannot be read from inside."""
    done = confined("--rw", str(space / "inside"), command=f"cat /proc/{os.getpid()}/environ")
    assert done.returncode != 0
    assert done.stdout == ""


def test_signals_to_the_outside_are_refused(space: Path) -> None:
    """With ABI 6 the confined process cannot signal processes outside its domain."""
    if landlock.abi_version() < 6:
        pytest.fail("this kernel's Landlock has no signal scoping (ABI 6)")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        done = confined("--rw", str(space / "inside"), command=f"kill -TERM {sleeper.pid}")
        assert done.returncode != 0
        assert sleeper.poll() is None
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


def test_a_missing_read_write_folder_refuses_to_run(space: Path) -> None:
    """A --rw folder that does not exist stops the launcher before the command runs."""
    done = confined("--rw", str(space / "gone"), command=f"echo ran > {space}/inside/ran")
    assert done.returncode == landlock.SETUP_FAILED
    assert done.stderr.startswith(f"{landlock.PREFIX}: cannot confine the run:")
    assert not (space / "inside" / "ran").exists()


def test_bad_options_refuse_to_run() -> None:
    """An unknown option, or no command, is refused with the setup failure status."""
    argv = [sys.executable, "-I", "-S", str(LAUNCHER), "--write", "/", "--", "true"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == landlock.SETUP_FAILED
    assert "bad option" in done.stderr
