"""Start and stop the servers under test: the real gateway and the baseline app, as processes."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
import trio

from .client import Address, basic_auth
from .fake import FAKE_CLI

USER = "bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 (a throwaway server on 127.0.0.1)
AUTH = basic_auth(USER, PASSWORD)
BASELINE_APP = Path(__file__).resolve().parent / "baseline_app.py"
# The checkout the bench lives in: its gateway is the one measured, not an installed one.
REPO = Path(__file__).resolve().parent.parent
START_SECONDS = 30.0
START_POLL_SECONDS = 0.05
STOP_SECONDS = 15.0
# A server is quiet once it uses less than this share of a CPU (its store's writer
# done with what a figure left it), checked over SETTLE_STEP_SECONDS at a time.
QUIET_SHARE = 0.05
SETTLE_STEP_SECONDS = 0.1
SETTLE_SECONDS = 60.0
LISTENING = re.compile(rb"listening on http://([\d.]+):(\d+)")

# STORE=sqlite keeps every run in DATA_DIR; STORE=memory keeps nothing past the process.
StoreKind = Literal["sqlite", "memory"]


@dataclass
class Server:
    """A server process listening on ``address``."""

    proc: trio.Process
    address: Address
    log: Path
    spawned: float  # time.perf_counter() just before the process was started

    def rss(self) -> int:
        """Return the server's resident memory in bytes."""
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """Return the CPU time the server has used, user and system, its threads' too."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)


def gateway_environment(home: Path, store: StoreKind, data_dir: Path | None) -> dict[str, str]:
    """Return the environment of a gateway under test, with the store it keeps runs in."""
    store_settings: dict[str, str] = {"STORE": store}
    if data_dir is not None:
        store_settings["DATA_DIR"] = str(data_dir)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
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
        # Runs as the admin are never confined here; a key's would be, under auto. The key
        # rounds of the parallel figure compare authentication alone, so none is.
        "CONFINE_RUNS": "off",
        **store_settings,
    }


async def start(
    argv: list[str], cwd: Path, env: Mapping[str, str], poll: float = START_POLL_SECONDS
) -> Server:
    """Start a server that logs ``listening on http://HOST:PORT`` to stderr; return it.

    Its log is read every ``poll`` seconds until the line is there.
    """
    log_path = cwd / "server.log"
    # Logs go to a file: a chatty server never blocks on a full pipe.
    with log_path.open("wb") as log_file:
        spawned = time.perf_counter()
        proc = await trio.lowlevel.open_process(argv, env=env, cwd=cwd, stderr=log_file)
    with trio.fail_after(START_SECONDS):
        while not (found := LISTENING.search(log_path.read_bytes())):
            if proc.returncode is not None:
                raise RuntimeError(f"{argv} exited: {log_path.read_text()}")
            await trio.sleep(poll)
    return Server(proc, (found.group(1).decode(), int(found.group(2))), log_path, spawned)


async def start_gateway(
    folder: Path,
    store: StoreKind,
    data_dir: Path | None = None,
    poll: float = START_POLL_SECONDS,
    extra: Mapping[str, str] | None = None,
) -> Server:
    """Start ``python -m cc2api serve`` with the fake CLI in ``folder`` (made if missing).

    ``data_dir`` is its DATA_DIR (the default: ``.data`` in ``folder``); ``extra`` adds
    to its environment or overrides it (another CLI, the pool's settings).
    """
    home = folder / "home"
    await trio.Path(home).mkdir(parents=True)
    argv = [sys.executable, "-m", "cc2api", "serve"]
    env = {**gateway_environment(home, store, data_dir), **(extra or {})}
    return await start(argv, folder, env, poll)


async def start_baseline(folder: Path) -> Server:
    """Start the baseline app (bench/baseline_app.py) in the existing ``folder``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return await start([sys.executable, str(BASELINE_APP)], folder, env)


async def stop(server: Server) -> bool:
    """Stop a server with SIGTERM (the gateway drains), SIGKILL if it takes too long.

    Returns whether it stopped on its own, with exit status 0.
    """
    if server.proc.returncode is None:
        server.proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_SECONDS):
        return await server.proc.wait() == 0
    server.proc.kill()
    await server.proc.wait()
    return False


async def settle(*servers: Server) -> bool:
    """Return once every server is quiet (see QUIET_SHARE); False if one is not in time.

    What a figure leaves a server to do (a store's writes, say) must not be counted
    against the next measurement, on this server or another.
    """
    with trio.move_on_after(SETTLE_SECONDS):
        for server in servers:
            while True:
                before, start = server.cpu_seconds(), time.perf_counter()
                await trio.sleep(SETTLE_STEP_SECONDS)
                used = server.cpu_seconds() - before
                if used < QUIET_SHARE * (time.perf_counter() - start):
                    break
        return True
    return False
