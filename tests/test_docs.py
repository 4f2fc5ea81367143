"""The documents tell the truth: README examples run, .env.example lists every setting."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from cc2api.envfile import init_env
from cc2api.settings import Settings
from cc2api.sse import frame, frame_json

from .helpers import PASSWORD, REPO, USER, Shared, make_settings, served

pytestmark = pytest.mark.timeout(60)


def readme_block(language: str) -> str:
    """Return the first fenced code block of ``language`` in the README."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert found, f"no {language} example in README.md"
    return found.group(1)


async def run_example(argv: list[str], url: str, cwd: Path) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CC2API_URL": url,
        "CC2API_USER": USER,
        "CC2API_PASSWORD": PASSWORD,
    }
    done = await trio.run_process(argv, env=env, cwd=cwd, capture_stdout=True, check=True)
    return done.stdout.decode()


class TestReadmeExamples:
    async def test_python_example(self, gw: Shared, workdir: Path) -> None:
        """The README's Python example streams a run to its done event."""
        script = workdir / "example.py"
        script.write_text(readme_block("python"))
        out = await run_example([sys.executable, str(script)], gw.url, workdir)
        assert out.splitlines() == [
            "process None",
            "message system",
            "message result",
            "done completed",
        ]

    async def test_python_client_example(self, gw: Shared, workdir: Path) -> None:
        """The README's cc2api.client example prints the run's result, then its status."""
        script = workdir / "client_example.py"
        script.write_text(readme_block("python client"))
        out = await run_example([sys.executable, str(script)], gw.url, workdir)
        assert out.splitlines() == ["Say hello", "completed"]

    async def test_async_client_example(self, gw: Shared, workdir: Path) -> None:
        """The README's AsyncClient example waits for done, then reads the run's record."""
        script = workdir / "async_client_example.py"
        script.write_text(readme_block("python async-client"))
        out = await run_example([sys.executable, str(script)], gw.url, workdir)
        assert out.splitlines() == ["completed", "completed None"]

    async def test_command_line_example(self, gw: Shared, workdir: Path) -> None:
        """The README's cc2api command-line example runs to its end under bash -e."""
        script = workdir / "cli_example.sh"
        script.write_text("set -euo pipefail\n" + readme_block("sh cli"))
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "CC2API_URL": gw.url,
            "CC2API_USER": USER,
            "CC2API_PASSWORD": PASSWORD,
        }
        done = await trio.run_process(
            ["bash", str(script)], env=env, cwd=workdir, capture_stdout=True, check=True
        )
        out = done.stdout.decode().splitlines()
        assert out[0].startswith("run ")
        assert out[2] == "Say hello"
        assert out[3].startswith("completed · ")
        last = json.loads(out[4])  # the detached run's done event, from logs -f --json
        assert last["status"] == "completed"
        assert any(line.split()[:2] == [last["process_id"], "completed"] for line in out[5:])

    async def test_javascript_example(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """The README's JavaScript example streams a run to its done event under Node.js."""
        node = shutil.which("node")
        assert node, "Node.js is needed for this test (and for the Claude Code CLI)"
        script = workdir / "example.mjs"
        script.write_text(readme_block("javascript"))
        async with served(make_settings(heartbeat_seconds=0.05), fake_environ) as gw:
            out = await run_example([node, str(script)], gw.url, workdir)
        assert out.splitlines() == [
            "process undefined",
            "message system",
            "message result",
            "done completed",
        ]


DRIBBLED = b"".join(
    [
        frame_json(1, "process", {"process_id": "p"}),
        b": ping\n\n",
        frame(2, "message", '{"type":"assistant","text":"ünïcödé ✓"}'.encode()),
        frame_json(3, "done", {"process_id": "p", "status": "completed"}),
    ]
)


async def dribbling_server(*, task_status: trio.TaskStatus[str]) -> None:
    """Serve one SSE answer three bytes at a time, splitting events and characters."""

    async def answer(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        for start in range(0, len(DRIBBLED), 3):
            await stream.send_all(DRIBBLED[start : start + 3])
            await trio.sleep(0.002)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        task_status.started(f"http://127.0.0.1:{port}")


class TestReadmeExamplesOnSplitFrames:
    @pytest.mark.parametrize("language", ["python", "javascript"])
    async def test_events_split_across_chunks(self, workdir: Path, language: str) -> None:
        """Each README example reads events whose bytes arrive in 3-byte network chunks."""
        suffix, runner = {"python": (".py", sys.executable), "javascript": (".mjs", "node")}[
            language
        ]
        script = workdir / f"example{suffix}"
        script.write_text(readme_block(language))
        async with trio.open_nursery() as nursery:
            url = await nursery.start(dribbling_server)
            out = await run_example([runner, str(script)], url, workdir)
            nursery.cancel_scope.cancel()
        assert out.splitlines()[1:] == ["message assistant", "done completed"]


class TestEnvFiles:
    def test_env_example_lists_every_setting(self) -> None:
        """Every setting appears in .env.example, so operators can find it."""
        text = (REPO / ".env.example").read_text()
        for name in Settings.model_fields:
            assert re.search(rf"^#? ?{name.upper()}=", text, re.MULTILINE), name

    def test_readme_lists_every_setting(self) -> None:
        """Every setting has a row in the README's configuration table."""
        text = (REPO / "README.md").read_text()
        for name in Settings.model_fields:
            assert f"| `{name.upper()}` |" in text, name

    def test_env_example_placeholder_is_refused(self) -> None:
        """The password .env.example ships with is the one the server refuses."""
        text = (REPO / ".env.example").read_text()
        assert "AUTH_PASSWORD=change-me\n" in text

    @pytest.mark.parametrize("password", ["with space", 'quo"te', "back\\slash", "hash#", "$HOME"])
    def test_init_env_refuses_passwords_readers_disagree_on(
        self, tmp_path: Path, password: str
    ) -> None:
        """A password that systemd and .env readers would parse differently is refused."""
        with pytest.raises(ValueError, match="may not hold"):
            init_env(tmp_path / ".env", password=password)
        assert not (tmp_path / ".env").exists()

    def test_server_process_is_undumpable(self) -> None:
        """The server makes its /proc files unreadable to its own user (and so to tools)."""
        code = (
            "import ctypes; from cc2api.proctree import make_undumpable; "
            "assert make_undumpable(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "0"

    def test_init_env_writes_private_file_once(self, tmp_path: Path) -> None:
        """init-env writes a mode-600 .env with a strong password, and never overwrites it."""
        path = tmp_path / ".env"
        password = init_env(path, claude_path=Path("/opt/claude"))
        assert password is not None
        assert len(password) >= 32
        assert path.stat().st_mode & 0o777 == 0o600
        settings = Settings(_env_file=path)  # type: ignore[call-arg]
        assert settings.auth_password.get_secret_value() == password
        assert settings.claude_path == Path("/opt/claude")
        assert init_env(path) is None
        assert password in path.read_text()
