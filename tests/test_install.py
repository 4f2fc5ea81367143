"""install.sh: shellcheck clean, installs for real without systemd, dry-runs on apt and dnf."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from .helpers import FAKE_CLAUDE, REPO, chat_body, collect, start_server_process

pytestmark = pytest.mark.timeout(300)

INSTALL = REPO / "install.sh"
PASSWORD = "install-test-password"


def install(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def me() -> str:
    return subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()


def test_shell_scripts_pass_shellcheck() -> None:
    """install.sh and the project's other shell scripts (fake CLIs too) are shellcheck clean."""
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    scripts = [
        INSTALL,
        *sorted((REPO / "scripts").iterdir()),
        REPO / ".ci" / "run",
        *sorted(REPO.glob("*/*.sh")),
    ]
    done = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("manager", "command"), [("apt", "apt-get install -y -q"), ("dnf", "dnf install -y")]
)
def test_dry_run_changes_nothing(tmp_path: Path, manager: str, command: str) -> None:
    """--dry-run prints each step, package installs by apt or dnf included, and changes nothing."""
    prefix = tmp_path / "prefix"
    done = install(
        "--dry-run",
        "--install-deps",
        "--pkg-manager",
        manager,
        "--prefix",
        str(prefix),
        "--user",
        me(),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"+ {command}" in out or f"+ env DEBIAN_FRONTEND=noninteractive {command}" in out
    assert re.search(rf"\+ .*{command}.* nodejs npm", out)
    assert f"+ {sys.executable}" in out or "-m venv" in out
    (cli,) = [line for line in out.splitlines() if "@anthropic-ai/claude-code@2.1.197" in line]
    assert "--ignore-scripts" not in cli  # its install script puts the native binary in place
    # The docs pages' scripts come inside cc2api's wheel: no npm folder, no DOCS_ASSETS_DIR.
    assert "redoc@" not in out
    assert "DOCS_ASSETS_DIR" not in out
    assert "cc2api init-env" in out
    assert "+ write /etc/systemd/system/cc2api.service" in out
    assert re.search(r"^==> (the store goes in|keeping the store in) /var/lib/cc2api\b", out, re.M)
    assert "systemctl enable cc2api" in out
    assert not prefix.exists()
    assert not Path("/etc/systemd/system/cc2api.service").exists()


async def test_install_serve_update_uninstall(tmp_path: Path, workdir: Path) -> None:
    """--no-service installs a working gateway; a rerun updates it keeping .env; uninstall
    keeps .env, the install's record and the store of a server run in the prefix (.data);
    purge removes them."""
    prefix = tmp_path / "cc2api"
    args = (
        "--no-service",
        "--prefix",
        str(prefix),
        "--user",
        me(),
        "--claude-path",
        str(FAKE_CLAUDE),
    )
    first = await trio.to_thread.run_sync(lambda: install(*args, CC2API_AUTH_PASSWORD=PASSWORD))
    assert first.returncode == 0, first.stdout + first.stderr
    env_file = prefix / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert f"AUTH_PASSWORD={PASSWORD}" in env_file.read_text()
    assert PASSWORD not in first.stdout + first.stderr
    unit = (prefix / "cc2api.service").read_text()
    assert "\nStateDirectory=cc2api\nStateDirectoryMode=0700\n" in unit
    assert "\nEnvironment=DATA_DIR=/var/lib/cc2api\n" in unit
    # No unit installed, so no store's folder recorded for --purge to remove.
    assert (prefix / ".cc2api-install").read_text() == f"service=cc2api\nuser={me()}\n"

    await serve_and_chat(prefix, workdir)

    again = await trio.to_thread.run_sync(lambda: install(*args, CC2API_AUTH_PASSWORD="other"))
    assert again.returncode == 0, again.stderr
    assert "updating the install" in again.stdout
    assert f"AUTH_PASSWORD={PASSWORD}" in env_file.read_text()

    # The store the server makes when it starts in the prefix (DATA_DIR's default).
    (prefix / ".data").mkdir(exist_ok=True)
    (prefix / ".data" / "cc2api.db").touch()
    removed = install("--uninstall", "--no-service", "--prefix", str(prefix))
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in prefix.iterdir()) == [".cc2api-install", ".data", ".env"]
    assert (prefix / ".data" / "cc2api.db").exists()
    purged = install("--uninstall", "--purge", "--no-service", "--prefix", str(prefix))
    assert purged.returncode == 0, purged.stderr
    assert not prefix.exists()


def test_piped_install_fetches_the_sources(tmp_path: Path) -> None:
    """Piped into bash (curl | bash) it clones CC2API_REPO_URL; with no credentials and no
    terminal it generates a strong password and shows it once."""
    prefix = tmp_path / "cc2api"
    args = [
        "--no-service",
        "--prefix",
        str(prefix),
        "--user",
        me(),
        "--claude-path",
        str(FAKE_CLAUDE),
    ]
    done = subprocess.run(
        ["bash", "-s", "--", *args],
        input=INSTALL.read_text(),
        env={**os.environ, "CC2API_REPO_URL": str(REPO), "CC2API_AUTH_PASSWORD": ""},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"fetching cc2api from {REPO}" in done.stdout
    shown = re.search(r"user admin, password (\S+) \(shown only now\)", done.stdout)
    assert shown
    assert len(shown.group(1)) >= 32
    assert f"AUTH_PASSWORD={shown.group(1)}\n" in (prefix / ".env").read_text()
    assert (prefix / "venv" / "bin" / "cc2api").exists()


def test_refuses_a_folder_that_is_not_an_install(tmp_path: Path) -> None:
    """It will not install into, or uninstall from, a folder that is not a cc2api install."""
    (tmp_path / "precious.txt").write_text("keep me")
    for extra in ([], ["--uninstall"]):
        done = install(
            *extra,
            "--no-service",
            "--prefix",
            str(tmp_path),
            "--user",
            me(),
            "--claude-path",
            str(FAKE_CLAUDE),
        )
        assert done.returncode != 0
        assert "is not a cc2api install" in done.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_renamed_or_odd_unit_name_is_refused(tmp_path: Path) -> None:
    """A rerun may not rename an install's unit, and a unit name is letters, digits and _.:-."""
    prefix = tmp_path / "cc2api"
    prefix.mkdir()
    (prefix / ".cc2api-install").write_text(f"service=cc2api-a\nuser={me()}\n")
    common = ("--no-service", "--claude-path", str(FAKE_CLAUDE))
    renamed = install(*common, "--prefix", str(prefix), "--name", "cc2api-b")
    # The name is the store's folder too (/var/lib/NAME): never .., never a colon, which
    # StateDirectory= reads as a link.
    odd = [
        install(*common, "--prefix", str(tmp_path / "other"), "--name", name)
        for name in ("cc2api b", "..", ".cc2api", "cc2api:b")
    ]
    assert renamed.returncode != 0
    assert "is installed as the unit cc2api-a" in renamed.stderr
    for done in odd:
        assert done.returncode != 0
        assert "--name: use letters, digits" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc2api"]


def test_uninstall_keeps_the_store_and_purge_removes_only_its_own(tmp_path: Path) -> None:
    """--uninstall keeps the store's folder the install recorded; --purge removes it, but
    not a folder the record names that is not the unit's /var/lib/NAME."""
    prefix = tmp_path / "cc2api"
    prefix.mkdir()
    marker = prefix / ".cc2api-install"
    common = ("--dry-run", "--uninstall", "--prefix", str(prefix))
    marker.write_text(f"service=cc2api-t\nuser={me()}\nstate_dir=/var/lib/cc2api-t\n")
    kept = install(*common)
    purged = install(*common, "--purge")
    marker.write_text(f"service=cc2api-t\nuser={me()}\nstate_dir=/var/lib/elsewhere\n")
    odd = install(*common, "--purge")
    assert kept.returncode == 0, kept.stderr
    assert "==> keeping the store in /var/lib/cc2api-t (--uninstall --purge removes it)" in (
        kept.stdout
    )
    assert "rm -rf -- /var/lib/cc2api-t" not in kept.stdout
    assert purged.returncode == 0, purged.stderr
    assert "==> removing the store /var/lib/cc2api-t\n" in purged.stdout
    assert re.search(r"^\+ (sudo )?rm -rf -- /var/lib/cc2api-t$", purged.stdout, re.M)
    assert odd.returncode == 0, odd.stderr
    assert "leaving /var/lib/elsewhere alone" in odd.stderr
    assert "/var/lib/elsewhere" not in odd.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc2api"]


async def serve_and_chat(prefix: Path, workdir: Path) -> None:
    """Start the installed server on a free port, then call /health and /chat."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(prefix),
        "PORT": "0",
        "ALLOW_ROOT_FULL_ACCESS": "true",  # CI runs as root; the test stands in for a sandbox
    }
    argv = [str(prefix / "venv" / "bin" / "cc2api"), "serve"]
    proc, url = await start_server_process(argv, prefix, env)
    try:
        async with httpx.AsyncClient(base_url=url, auth=("admin", PASSWORD), timeout=30) as client:
            health = (await client.get("/health")).json()
            async with client.stream("POST", "/chat", json=chat_body("echo hi", workdir)) as r:
                events = await collect(r)
        assert health["status"] == "ok"
        assert health["claude_version"] == "9.9.9"
        assert events[-2].json()["result"] == "echo hi"
        assert events[-1].json()["status"] == "completed"
    finally:
        proc.terminate()
        with trio.fail_after(30):
            await proc.wait()
