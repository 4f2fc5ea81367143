"""The terminal client in a real terminal: tmux runs ``cc2api run`` on a pty, keys are sent
to it and its screen is read back (``capture-pane``)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from .helpers import PASSWORD, USER, Shared, alive, chat_body, listing, make_settings, served

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


@dataclass
class Terminal:
    """A tmux server of the test's own (a private socket), with one 120x40 window."""

    socket: str
    env: dict[str, str]
    status_file: Path

    async def tmux(self, *args: str) -> str:
        """Run a tmux command against this server and return its output."""
        with trio.fail_after(30):
            done = await trio.run_process(
                ["tmux", "-L", self.socket, *args], env=self.env, capture_stdout=True
            )
        return done.stdout.decode()

    async def start(self, cwd: Path, *args: str) -> None:
        """Run ``cc2api ARGS`` in the window; its exit status goes to ``status_file``."""
        command = shlex.join([sys.executable, "-m", "cc2api", *args])
        # The shell stays after the command, so its last screen can still be read.
        script = (
            f"cd {shlex.quote(str(cwd))}; {command}; echo $? > {self.status_file}; exec sleep 600"
        )
        # The credential reaches the window through the environment, not argv.
        await self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "t", script)

    async def screen(self, *, colour: bool = False) -> str:
        """Return what the window shows (``colour``: with its escape sequences)."""
        return await self.tmux("capture-pane", "-p", *(["-e"] if colour else []), "-t", "t")

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        """Wait until the screen satisfies ``predicate``; return it."""
        screen = ""
        try:
            with trio.fail_after(timeout):
                while not predicate(screen := await self.screen()):
                    await trio.sleep(0.1)
        except trio.TooSlowError:
            raise AssertionError(f"the screen never matched:\n{screen}") from None
        return screen

    async def exit_status(self, timeout: float = 60) -> int:
        """Wait for the command to end and return its exit status."""
        with trio.fail_after(timeout):
            while not self.status_file.exists() or not self.status_file.read_text().strip():
                await trio.sleep(0.1)
        return int(self.status_file.read_text())


@pytest.fixture(name="terminal")
async def _terminal(tmp_path: Path) -> AsyncIterator[Any]:
    """Yield a function opening a terminal on a gateway's URL; the tmux server is killed after."""
    socket = f"cc2api-test-{uuid.uuid4().hex[:12]}"
    opened: list[Terminal] = []

    def open_terminal(url: str) -> Terminal:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "TERM": "xterm-256color",
            "CC2API_URL": url,
            "CC2API_USER": USER,
            "CC2API_PASSWORD": PASSWORD,
        }
        terminal = Terminal(socket, env, tmp_path / "status")
        opened.append(terminal)
        return terminal

    try:
        yield open_terminal
    finally:
        for terminal in opened:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await trio.run_process(
                    ["tmux", "-L", terminal.socket, "kill-server"], env=terminal.env, check=False
                )


async def running(client: Any) -> list[dict[str, Any]]:
    """Return the gateway's running runs whose CLI has started."""
    return [r for r in await listing(client) if r["status"] == "running" and r["pid"]]


class TestTerminal:
    async def test_a_run_renders_in_colour_with_a_spinner_while_it_waits(
        self, terminal: Any, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """On a terminal: a spinner until the CLI starts, then coloured text and summary."""
        async with served(make_settings(max_concurrent_runs=1), fake_environ) as gateway:
            # One slot, taken: the terminal's run waits in the queue, its CLI not started.
            body = chat_body("hang", workdir, detach=True)
            async with gateway.client.stream("POST", "/chat", json=body) as blocker:
                blocker_id = blocker.headers["X-Process-ID"]  # detached: it goes on
            with trio.fail_after(30):
                while not await running(gateway.client):
                    await trio.sleep(0.05)
            tty = terminal(gateway.url)
            await tty.start(workdir, "run", "priced")
            waiting = await tty.wait_for(
                lambda screen: (
                    "starting Claude Code" in screen and "queued: number 1 in line" in screen
                )
            )
            await gateway.client.delete(f"/chat/{blocker_id}")
            status = await tty.exit_status()
            screen = await tty.screen()
            coloured = await tty.screen(colour=True)
        assert "queued: number 1 in line" in waiting
        assert status == 0
        assert "starting Claude Code" not in screen
        assert "ok" in screen.splitlines()
        assert "completed · " in screen
        assert "$0.0123 · 11 in, 22 out tokens" in screen
        assert "\x1b[" in coloured  # colour, on a terminal

    async def test_an_approval_is_answered_by_a_keypress(
        self, terminal: Any, gw: Shared, workdir: Path
    ) -> None:
        """``--approve ask`` shows the tool and its input; pressing y (no Enter) allows it."""
        tty = terminal(gw.url)
        await tty.start(workdir, "run", "ask touch x", "--approve", "ask")
        asked = await tty.wait_for(lambda screen: "[y] allow  [n] deny:" in screen)
        await tty.tmux("send-keys", "-t", "t", "y")
        status = await tty.exit_status()
        screen = await tty.screen()
        assert "Allow Bash?" in asked
        assert '"command": "touch x"' in asked
        assert status == 0
        assert "[y] allow  [n] deny: allowed" in screen
        assert "approval: allow" in screen
        assert "completed · " in screen

    async def test_n_denies_and_other_keys_ask_again(
        self, terminal: Any, gw: Shared, workdir: Path
    ) -> None:
        """A key other than y or n asks again; n denies the tool call."""
        tty = terminal(gw.url)
        await tty.start(workdir, "run", "ask touch x", "--approve", "ask")
        await tty.wait_for(lambda screen: "[y] allow  [n] deny:" in screen)
        await tty.tmux("send-keys", "-t", "t", "q")
        await tty.wait_for(lambda screen: screen.count("[y] allow  [n] deny:") == 2)
        await tty.tmux("send-keys", "-t", "t", "n")
        status = await tty.exit_status()
        screen = await tty.screen()
        assert status == 0
        assert "[y] allow  [n] deny: denied" in screen
        assert "approval: deny" in screen

    async def test_ctrl_c_cancels_the_run_and_leaves_no_process(
        self, terminal: Any, gw: Shared, workdir: Path
    ) -> None:
        """Ctrl-C cancels the run; the command exits 130 once its CLI is gone."""
        tty = terminal(gw.url)
        await tty.start(workdir, "run", "hang")
        with trio.fail_after(30):
            while not (runs := await running(gw.client)):
                await trio.sleep(0.05)
        await tty.wait_for(lambda screen: "session " in screen)
        await tty.tmux("send-keys", "-t", "t", "C-c")
        status = await tty.exit_status()
        screen = await tty.screen()
        assert status == 130
        assert "cancelled" in screen.splitlines()
        assert not alive(runs[0]["pid"])
        record = (await gw.client.get(f"/runs/{runs[0]['process_id']}")).json()
        assert record["status"] == "cancelled"
