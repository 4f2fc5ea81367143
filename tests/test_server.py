"""The server process: refuses bad settings, and shuts down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
import trio

from .helpers import (
    AUTH,
    FAKE_CLAUDE,
    chat_body,
    exists,
    server_environment,
    sse_events,
    start_server_process,
)

pytestmark = pytest.mark.timeout(90)

CONSOLE_SCRIPT = Path(sys.executable).parent / "cc2api"


def server_env(home: Path, **extra: str) -> dict[str, str]:
    return server_environment(home, FAKE_CLAUDE, KILL_GRACE_SECONDS="1.5", **extra)


class TestStartup:
    @pytest.mark.parametrize("password", ["", "change-me"])
    def test_refuses_to_start_without_real_password(self, tmp_path: Path, password: str) -> None:
        """With AUTH_PASSWORD empty or the placeholder the server exits 2, saying so."""
        env = server_env(tmp_path, AUTH_PASSWORD=password)
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), "serve"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert "AUTH_PASSWORD" in done.stderr
        assert "Traceback" not in done.stderr

    def test_console_script_version(self) -> None:
        """The cc2api console script is installed and answers --version."""
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0
        assert done.stdout.startswith("cc2api ")


async def start_server(tmp_path: Path) -> tuple[trio.Process, str]:
    """Start `python -m cc2api serve` on a free port."""
    argv = [sys.executable, "-m", "cc2api", "serve"]
    return await start_server_process(argv, tmp_path, server_env(tmp_path))


class TestShutdown:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    async def test_signal_ends_every_stream_and_process(
        self, tmp_path: Path, workdir: Path, signum: signal.Signals
    ) -> None:
        """On SIGTERM or SIGINT each open stream gets done 'cancelled', every tree dies, exit 0."""
        proc, url = await start_server(tmp_path)
        finals: dict[str, dict[str, object]] = {}
        children: list[int] = []
        ready = trio.Event()

        async def watch(prompt: str, client: httpx.AsyncClient) -> None:
            async with client.stream("POST", "/chat", json=chat_body(prompt, workdir)) as r:
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == "message" and "child_pid" in event.json():
                            children.append(event.json()["child_pid"])
                            if len(children) == 2:
                                ready.set()
                        if event.event == "done":
                            finals[prompt] = event.json()

        try:
            async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch, "escape", client)
                        nursery.start_soon(watch, "escape-stubborn", client)
                        await ready.wait()
                        proc.send_signal(signum)
                    assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert {prompt: final["status"] for prompt, final in finals.items()} == {
            "escape": "cancelled",
            "escape-stubborn": "cancelled",
        }
        assert not any(exists(child) for child in children)

    async def test_second_signal_stops_without_waiting_for_the_grace(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A second SIGTERM during the drain ends the server; stubborn processes still die."""
        proc, url = await start_server(tmp_path)
        child = None
        try:
            async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
                body = chat_body("escape-stubborn", workdir)
                async with client.stream("POST", "/chat", json=body) as r:
                    async with aclosing(sse_events(r)) as events:
                        async for event in events:
                            if event.event == "message" and "child_pid" in event.json():
                                child = event.json()["child_pid"]
                                break
                        proc.send_signal(signal.SIGTERM)
                        await trio.sleep(0.2)
                        proc.send_signal(signal.SIGTERM)
                        with trio.fail_after(10):
                            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert child is not None
        assert not exists(child)


async def test_env_file_variables_reach_the_cli(tmp_path: Path, workdir: Path) -> None:
    """Variables in .env beside the server (ANTHROPIC_API_KEY, say) reach the CLI."""
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=from-env-file\n")
    proc, url = await start_server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            async with client.stream("POST", "/chat", json=chat_body("argv", workdir)) as r:
                events = [e async for e in sse_events(r) if e.event == "message"]
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await proc.wait()
    seen = events[1].json()
    assert seen["api_key"] == "from-env-file"
    assert seen["leaked"] == []
