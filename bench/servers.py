"""Start and stop the servers under test: the real gateway and the baseline app, as processes."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio

from .client import Address, basic_auth
from .fake import FAKE_CLI

USER = "bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 (a throwaway server on 127.0.0.1)
AUTH = basic_auth(USER, PASSWORD)
BASELINE_APP = Path(__file__).resolve().parent / "baseline_app.py"
START_SECONDS = 30.0
STOP_SECONDS = 15.0


@dataclass
class Server:
    """A server process listening on ``address``."""

    proc: trio.Process
    address: Address
    log: Path

    def rss(self) -> int:
        """Return the server's resident memory in bytes."""
        return int(psutil.Process(self.proc.pid).memory_info().rss)


def gateway_environment(home: Path) -> dict[str, str]:
    """Return the environment of a gateway under test."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HOST": "127.0.0.1",
        "PORT": "0",
        "AUTH_USER": USER,
        "AUTH_PASSWORD": PASSWORD,
        "CLAUDE_PATH": str(FAKE_CLI),
        # The benchmark may run as root; the fake needs no sandbox.
        "ALLOW_ROOT_FULL_ACCESS": "true",
        # No ": ping" comments in a stream, so that byte counts are exact.
        "HEARTBEAT_SECONDS": "3600",
        # Room for the parallel figures, where the gateway has such limits.
        "MAX_CONCURRENT_RUNS": "1024",
        "MAX_QUEUED_RUNS": "1024",
    }


async def start(argv: list[str], cwd: Path, env: Mapping[str, str]) -> Server:
    """Start a server that logs ``listening on http://HOST:PORT`` to stderr; return it."""
    log_path = cwd / "server.log"
    # Logs go to a file: a chatty server never blocks on a full pipe.
    with log_path.open("wb") as log_file:
        proc = await trio.lowlevel.open_process(argv, env=env, cwd=cwd, stderr=log_file)
    with trio.fail_after(START_SECONDS):
        while not (
            found := re.search(rb"listening on http://([\d.]+):(\d+)", log_path.read_bytes())
        ):
            if proc.returncode is not None:
                raise RuntimeError(f"{argv} exited: {log_path.read_text()}")
            await trio.sleep(0.05)
    return Server(proc, (found.group(1).decode(), int(found.group(2))), log_path)


async def start_gateway(folder: Path) -> Server:
    """Start ``python -m cc2api serve`` with the fake CLI in ``folder`` (made if missing)."""
    home = folder / "home"
    await trio.Path(home).mkdir(parents=True)
    argv = [sys.executable, "-m", "cc2api", "serve"]
    return await start(argv, folder, gateway_environment(home))


async def start_baseline(folder: Path) -> Server:
    """Start the baseline app (bench/baseline_app.py) in the existing ``folder``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return await start([sys.executable, str(BASELINE_APP)], folder, env)


async def stop(server: Server) -> None:
    """Stop a server with SIGTERM (the gateway drains), SIGKILL if it takes too long."""
    if server.proc.returncode is None:
        server.proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_SECONDS):
        await server.proc.wait()
        return
    server.proc.kill()
    await server.proc.wait()
