"""The Landlock launcher: a confined process tree reaches only what it was given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from cc2api import landlock
from cc2api.cli_args import BASE_FLAGS, user_message

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


def test_abi_two_still_confines_reads_and_writes(space: Path) -> None:
    """Held to ABI 2 (Debian 12's Linux 6.1), reads and writes outside still fail."""
    inside, outside = space / "inside", space / "outside"
    done = confined(
        "--max-abi",
        "2",
        "--rw",
        str(inside),
        command=f"echo ok > {inside}/made; cat {outside}/secret; echo x > {outside}/planted",
    )
    assert (inside / "made").read_text() == "ok\n"
    assert "s3cret" not in done.stdout
    assert not (outside / "planted").exists()


def test_what_abi_two_leaves_open_is_named(space: Path) -> None:
    """The gaps below ABI 3 and 6 are real: truncate(2) outside works, and gaps() says so."""
    secret = space / "outside" / "secret"
    # truncate(2) by path: what ABI 3 handles (the shell's truncate opens the file first).
    script = f"import os; os.truncate({str(secret)!r}, 1)"
    done = confined(
        "--max-abi", "2", "--rw", str(space / "inside"), command=f'python3 -c "{script}"'
    )
    assert done.returncode == 0
    assert secret.read_text() == "s"
    assert [gap.split(" (")[0] for gap in landlock.gaps(2)] == [
        "truncate(2) files outside its folders by path",
        "use ioctl(2) on device files",
        "signal processes outside it, the gateway among them, and connect to abstract Unix sockets",
    ]
    assert landlock.gaps(landlock.abi_version()) == []


def test_abi_one_is_refused(space: Path) -> None:
    """Below ABI 2 the CLI's links between its folders would fail: the launcher refuses."""
    done = confined("--max-abi", "1", "--rw", str(space / "inside"), command="true")
    assert done.returncode == landlock.SETUP_FAILED
    assert "ABI 1 is below 2" in done.stderr


async def test_the_real_cli_works_under_abi_two(
    real_claude: Path, real_environ: dict[str, str], tmp_path: Path
) -> None:
    """The CLI runs a Bash call, a Write and a large tool output confined at ABI 2."""
    work, private = tmp_path / "work", tmp_path / "private"
    for folder in (work, private / "home", private / "tmp", private / "config"):
        folder.mkdir(parents=True)
    env = {
        **real_environ,
        "HOME": str(private / "home"),
        "TMPDIR": str(private / "tmp"),
        "CLAUDE_CONFIG_DIR": str(private / "config"),
    }
    steps = [
        ["Bash", {"command": "echo in > a.txt; seq 1 60000", "description": "big"}],
        ["Write", {"file_path": str(work / "b.txt"), "content": "written"}],
    ]
    prompt = "SCRIPT: " + json.dumps(steps)
    binary = str(await trio.Path(real_claude).resolve())
    argv = [
        sys.executable, "-I", "-S", str(LAUNCHER), "--max-abi", "2",
        "--rx", binary, "--rw", str(work), "--rw", str(private),
        "--", str(real_claude), *BASE_FLAGS, "--permission-mode=bypassPermissions",
    ]  # fmt: skip
    done = await trio.run_process(
        argv, stdin=user_message(prompt), capture_stdout=True, capture_stderr=True,
        cwd=work, env=env, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["type"] == "result", done.stderr
    assert lines[-1]["subtype"] == "success"
    assert (work / "a.txt").read_text() == "in\n"
    assert (work / "b.txt").read_text() == "written"
