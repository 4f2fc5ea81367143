"""Secrets out of the environment: a password file, a systemd credential, withheld variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from pydantic import ValidationError

from cc2api.passwordfile import PLACEHOLDER_PASSWORD
from cc2api.settings import Settings, explain

from .helpers import FAKE_CLAUDE, USER, chat_body, sse_events, start_server_process

pytestmark = pytest.mark.timeout(90)

FILE_PASSWORD = "from-a-file-not-secret"


def load(**values: Any) -> Settings:
    """Build settings from keyword values and the environment, ignoring any .env file."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def refusal(**values: Any) -> tuple[str, str]:
    """Return what settings that cannot load say: explain()'s line and the error's text."""
    with pytest.raises(ValidationError) as caught:
        load(**values)
    return explain(caught.value), str(caught.value)


@pytest.fixture(name="password_file")
def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth_password"
    path.write_text(FILE_PASSWORD + "\n")
    return path


@pytest.fixture(name="credentials")
def _credentials(tmp_path: Path) -> Path:
    """A folder laid out as systemd's $CREDENTIALS_DIRECTORY with an auth_password."""
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "auth_password").write_text(FILE_PASSWORD)
    return folder


class TestPasswordFile:
    def test_file_holds_the_password(self, password_file: Path) -> None:
        """AUTH_PASSWORD_FILE's content, less its trailing newline, is the password."""
        settings = load(auth_password_file=password_file)
        assert settings.auth_password.get_secret_value() == FILE_PASSWORD
        assert settings.password_source == f"AUTH_PASSWORD_FILE: {password_file}"

    @pytest.mark.parametrize(
        ("content", "password"), [("pw", "pw"), ("pw\n\n", "pw\n"), (" pw \n", " pw ")]
    )
    def test_only_one_trailing_newline_goes(
        self, tmp_path: Path, content: str, password: str
    ) -> None:
        """Exactly one trailing newline is stripped; everything else is the password."""
        path = tmp_path / "pw"
        path.write_text(content)
        assert load(auth_password_file=path).auth_password.get_secret_value() == password

    @pytest.mark.parametrize(
        ("kind", "says"),
        [
            ("missing", "AUTH_PASSWORD_FILE: cannot read {path}: No such file or directory"),
            ("directory", "AUTH_PASSWORD_FILE: {path} is not a regular file"),
            ("fifo", "AUTH_PASSWORD_FILE: {path} is not a regular file"),
        ],
    )
    def test_must_be_a_readable_regular_file(self, tmp_path: Path, kind: str, says: str) -> None:
        """A missing file, a folder or a FIFO stops the start with a line naming the setting."""
        path = tmp_path / kind
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)  # no writer: a blocking open would hang
        line, _ = refusal(auth_password_file=path)
        assert line == says.format(path=path)

    @pytest.mark.parametrize("content", ["", "\n", "   \n", PLACEHOLDER_PASSWORD + "\n"])
    def test_empty_or_placeholder_refused(self, tmp_path: Path, content: str) -> None:
        """A file holding no real password is refused like an empty AUTH_PASSWORD."""
        path = tmp_path / "pw"
        path.write_text(content)
        line, _ = refusal(auth_password_file=path)
        assert line.startswith(f"AUTH_PASSWORD_FILE: the password in {path} is ")

    def test_password_and_file_together_refused(self, password_file: Path) -> None:
        """AUTH_PASSWORD next to AUTH_PASSWORD_FILE is an error that shows neither password."""
        line, text = refusal(auth_password="in-the-env-secret", auth_password_file=password_file)
        assert "AUTH_PASSWORD is set and so is AUTH_PASSWORD_FILE" in line
        for shown in (line, text):
            assert "in-the-env-secret" not in shown
            assert FILE_PASSWORD not in shown

    def test_empty_password_next_to_a_file_is_unset(self, password_file: Path) -> None:
        """An empty AUTH_PASSWORD (a blanked line in .env) does not conflict with a file."""
        settings = load(auth_password="", auth_password_file=password_file)
        assert settings.auth_password.get_secret_value() == FILE_PASSWORD


class TestSystemdCredential:
    def test_credential_is_used(self, credentials: Path) -> None:
        """With $CREDENTIALS_DIRECTORY holding auth_password, that is the password."""
        settings = load(credentials_directory=credentials)
        assert settings.auth_password.get_secret_value() == FILE_PASSWORD
        assert settings.password_source == (
            f"the systemd credential auth_password: {credentials / 'auth_password'}"
        )

    def test_other_credentials_leave_auth_password_in_charge(self, tmp_path: Path) -> None:
        """A credentials folder without auth_password leaves AUTH_PASSWORD as the source."""
        (tmp_path / "other").write_text("x")
        settings = load(auth_password="pw", credentials_directory=tmp_path)
        assert settings.auth_password.get_secret_value() == "pw"
        assert settings.password_source == "AUTH_PASSWORD"

    def test_credential_and_password_together_refused(self, credentials: Path) -> None:
        """The credential next to AUTH_PASSWORD is an error: the environment must not hold it."""
        line, _ = refusal(auth_password="pw", credentials_directory=credentials)
        assert line.startswith("AUTH_PASSWORD is set and so is the systemd credential")
        assert "remove AUTH_PASSWORD" in line

    def test_file_setting_wins_over_the_credential(
        self, credentials: Path, password_file: Path
    ) -> None:
        """AUTH_PASSWORD_FILE, named explicitly, is read rather than the credential."""
        settings = load(auth_password_file=password_file, credentials_directory=credentials)
        assert settings.password_source == f"AUTH_PASSWORD_FILE: {password_file}"


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The server's environment: no AUTH_PASSWORD unless given."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AUTH_USER": USER,
        "CLAUDE_PATH": str(FAKE_CLAUDE),
        "PORT": "0",
        "LOG_LEVEL": "DEBUG",
        "ALLOW_ROOT_FULL_ACCESS": "true",  # as make_settings: the tests stand in for a sandbox
        **extra,
    }


@asynccontextmanager
async def gateway(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[str]:
    """Run ``python -m cc2api serve`` with exactly ``env``; yield its URL."""
    proc, url = await start_server_process([sys.executable, "-m", "cc2api", "serve"], tmp_path, env)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await proc.wait()


async def what_the_cli_sees(url: str, password: str, workdir: Path) -> dict[str, Any]:
    """Run the fake CLI's ``argv`` prompt and return what it reports of its environment."""
    async with httpx.AsyncClient(base_url=url, auth=(USER, password), timeout=60) as client:
        async with client.stream("POST", "/chat", json=chat_body("argv", workdir)) as response:
            assert response.status_code == 200
            events = [e async for e in sse_events(response) if e.event == "message"]
    seen: dict[str, Any] = events[1].json()
    return seen


class TestServer:
    async def test_serves_with_the_file_password_and_tells_no_one(
        self, tmp_path: Path, workdir: Path, credentials: Path, password_file: Path
    ) -> None:
        """With AUTH_PASSWORD_FILE only, its password logs in, unseen by the CLI and the log."""
        env = base_env(
            tmp_path,
            AUTH_PASSWORD_FILE=str(password_file),
            CREDENTIALS_DIRECTORY=str(credentials),
        )
        async with gateway(tmp_path, env) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                wrong = await client.get("/processes", auth=(USER, "wrong"))
                right = await client.get("/processes", auth=(USER, FILE_PASSWORD))
            seen = await what_the_cli_sees(url, FILE_PASSWORD, workdir)
        assert (wrong.status_code, right.status_code) == (401, 200)
        assert seen["leaked"] == []
        assert FILE_PASSWORD not in (tmp_path / "server.log").read_text()

    def test_unusable_file_stops_the_start(self, tmp_path: Path) -> None:
        """A missing AUTH_PASSWORD_FILE makes `cc2api serve` exit 2 with one line saying so."""
        env = base_env(tmp_path, AUTH_PASSWORD_FILE=str(tmp_path / "none"))
        done = subprocess.run(
            [sys.executable, "-m", "cc2api", "serve"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert f"AUTH_PASSWORD_FILE: cannot read {tmp_path / 'none'}" in done.stderr
        assert "Traceback" not in done.stderr


class TestWithheld:
    async def test_installer_credentials_never_reach_the_cli(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """CC2API_AUTH_*, which ./scripts/serve leaves to the server, never reach the CLI."""
        env = base_env(
            tmp_path,
            AUTH_PASSWORD="pw-in-env",
            CC2API_AUTH_USER=USER,
            CC2API_AUTH_PASSWORD="pw-in-env",
        )
        async with gateway(tmp_path, env) as url:
            seen = await what_the_cli_sees(url, "pw-in-env", workdir)
        assert seen["leaked"] == []
