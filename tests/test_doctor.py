"""`cc2api check`: one line per finding, a fix with every problem, exit 1 on any problem."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import FAKE_CLAUDE

pytestmark = pytest.mark.timeout(60)

CLI = Path(sys.executable).parent / "cc2api"


def check(cwd: Path, **env: str) -> tuple[int, list[str]]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    done = subprocess.run(
        [str(CLI), "check"],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TestCheck:
    def test_all_good(self, tmp_path: Path) -> None:
        """With valid settings, a CLI with an API key and a free port, it exits 0."""
        code, lines = check(
            tmp_path,
            AUTH_PASSWORD="pw",
            CLAUDE_PATH=str(FAKE_CLAUDE),
            ANTHROPIC_API_KEY="k",
            PORT=str(free_port()),
            ALLOW_ROOT_FULL_ACCESS="true",
        )
        assert code == 0, lines
        assert "ok: settings are valid" in lines
        assert f"ok: claude 9.9.9 at {FAKE_CLAUDE}" in lines
        assert "ok: the CLI can authenticate (api_key)" in lines
        assert "ok: /health would say ok" in lines
        assert not any(line.startswith("problem") for line in lines)

    def test_api_key_from_env_file_counts(self, tmp_path: Path) -> None:
        """An ANTHROPIC_API_KEY in .env reaches the CLI, as it does for runs."""
        (tmp_path / ".env").write_text(
            f"AUTH_PASSWORD=pw\nANTHROPIC_API_KEY=k\nPORT={free_port()}\n"
        )
        code, lines = check(tmp_path, CLAUDE_PATH=str(FAKE_CLAUDE), ALLOW_ROOT_FULL_ACCESS="true")
        assert code == 0, lines

    def test_names_the_password_source_never_the_password(self, tmp_path: Path) -> None:
        """It says which setting the password came from, AUTH_PASSWORD_FILE here, not what it is."""
        password_file = tmp_path / "auth_password"
        password_file.write_text("doctor-file-password\n")
        code, lines = check(
            tmp_path,
            AUTH_PASSWORD_FILE=str(password_file),
            CLAUDE_PATH=str(FAKE_CLAUDE),
            ANTHROPIC_API_KEY="k",
            PORT=str(free_port()),
            ALLOW_ROOT_FULL_ACCESS="true",
        )
        assert code == 0, lines
        assert f"ok: the password comes from AUTH_PASSWORD_FILE: {password_file}" in lines
        assert not any("doctor-file-password" in line for line in lines)
        _, plain = check(tmp_path, AUTH_PASSWORD="pw", CLAUDE_PATH=str(FAKE_CLAUDE))
        assert "ok: the password comes from AUTH_PASSWORD" in plain

    def test_bad_settings(self, tmp_path: Path) -> None:
        """A missing password is a problem naming the variable, and exit status 1."""
        code, lines = check(tmp_path, CLAUDE_PATH=str(FAKE_CLAUDE))
        assert code == 1
        assert lines[0].startswith("problem: AUTH_PASSWORD")

    def test_missing_cli_and_login(self, tmp_path: Path) -> None:
        """A missing CLI is a problem with the install command as its fix."""
        code, lines = check(
            tmp_path, AUTH_PASSWORD="pw", CLAUDE_PATH=str(tmp_path / "none"), PORT=str(free_port())
        )
        assert code == 1
        (problem,) = [line for line in lines if line.startswith("problem")]
        assert "npm install -g @anthropic-ai/claude-code" in problem
        assert any(line.startswith("note: /health would say degraded") for line in lines)

    def test_not_logged_in(self, tmp_path: Path) -> None:
        """A CLI with neither login nor API key is a problem saying how to fix it."""
        code, lines = check(
            tmp_path, AUTH_PASSWORD="pw", CLAUDE_PATH=str(FAKE_CLAUDE), PORT=str(free_port())
        )
        assert code == 1
        assert any("not logged in" in line and "ANTHROPIC_API_KEY" in line for line in lines)

    def test_port_in_use(self, tmp_path: Path) -> None:
        """A port something else listens on is a problem."""
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            code, lines = check(
                tmp_path,
                AUTH_PASSWORD="pw",
                CLAUDE_PATH=str(FAKE_CLAUDE),
                ANTHROPIC_API_KEY="k",
                PORT=str(port),
            )
        assert code == 1
        assert any(line.startswith(f"problem: cannot listen on 127.0.0.1:{port}") for line in lines)

    def test_real_cli_login_state(self, real_claude: Path, tmp_path: Path) -> None:
        """With the real CLI, an API key makes it able to authenticate and none does not."""
        port = str(free_port())
        _, without = check(tmp_path, AUTH_PASSWORD="pw", CLAUDE_PATH=str(real_claude), PORT=port)
        _, with_key = check(
            tmp_path,
            AUTH_PASSWORD="pw",
            CLAUDE_PATH=str(real_claude),
            PORT=port,
            ANTHROPIC_API_KEY="sk-test",
        )
        assert any("not logged in" in line for line in without)
        assert "ok: the CLI can authenticate (ANTHROPIC_API_KEY)" in with_key


def test_running_gateway_on_the_port_is_reported_not_a_problem(tmp_path: Path) -> None:
    """When cc2api itself already listens on the port, check reports its health instead."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AUTH_PASSWORD": "pw",
        "CLAUDE_PATH": str(FAKE_CLAUDE),
        "PORT": str(port),
        "ANTHROPIC_API_KEY": "k",
        "ALLOW_ROOT_FULL_ACCESS": "true",
    }
    server = subprocess.Popen([str(CLI), "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if b"listening on" in line:
                break
        code, lines = check(tmp_path, **{k: v for k, v in env.items() if k not in ("PATH", "HOME")})
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
    assert code == 0, lines
    assert f"ok: cc2api already runs on 127.0.0.1:{port}: /health says ok" in lines


class TestStore:
    def settings(self, tmp_path: Path) -> dict[str, str]:
        """Settings for a check whose only question is the store."""
        return {
            "AUTH_PASSWORD": "pw",
            "CLAUDE_PATH": str(FAKE_CLAUDE),
            "ANTHROPIC_API_KEY": "k",
            "PORT": str(free_port()),
            "ALLOW_ROOT_FULL_ACCESS": "true",
            "DATA_DIR": str(tmp_path / "data"),
        }

    def test_a_store_not_made_yet_is_said_so(self, tmp_path: Path) -> None:
        """Before the first start, check says where the store will be made."""
        code, lines = check(tmp_path, **self.settings(tmp_path))
        assert code == 0, lines
        assert f"ok: the store will be made in {tmp_path / 'data'} at the first start" in lines
        assert not (tmp_path / "data").exists()

    def test_a_store_in_use_is_reported_with_its_runs(self, tmp_path: Path) -> None:
        """With a gateway serving, check reports the store's runs and who holds it."""
        env = {**os.environ, **self.settings(tmp_path), "PORT": "0"}
        server = subprocess.Popen(
            [sys.executable, "-m", "cc2api", "serve"],
            env=env,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stderr is not None
            for line in server.stderr:
                if "listening on" in line:
                    break
            code, lines = check(tmp_path, **self.settings(tmp_path))
        finally:
            server.terminate()
            server.wait(15)
            if server.stderr is not None:
                server.stderr.close()
        assert code == 0, lines
        store_line = next(line for line in lines if line.startswith("ok: the store "))
        assert "schema version" in store_line
        assert f"ok: a gateway (pid {server.pid}) has the store open" in lines

    def test_a_corrupt_store_is_a_problem_with_its_fix(self, tmp_path: Path) -> None:
        """A corrupt database is a problem, with what to do."""
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "cc2api.db").write_bytes(b"garbage " * 1024)
        code, lines = check(tmp_path, **self.settings(tmp_path))
        assert code == 1
        problem = next(line for line in lines if line.startswith("problem:"))
        assert "corrupt" in problem
        assert ".backup" in problem

    def test_memory_is_a_note(self, tmp_path: Path) -> None:
        """STORE=memory is noted: nothing outlives the process."""
        code, lines = check(tmp_path, **self.settings(tmp_path), STORE="memory")
        assert code == 0
        assert "note: STORE=memory: no run, event or record outlives the process" in lines
