"""Shared test machinery: a real gateway on 127.0.0.1 port 0, an SSE reader, process checks."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import trio
from quart_trio import QuartTrio

from cc2api.app import create_app
from cc2api.limits import RunLimits
from cc2api.server import serve
from cc2api.sessions import transcript
from cc2api.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FAKE_CLAUDE = REPO / "tests" / "fake_claude.py"
REAL_CLAUDE = REPO / ".cli" / "node_modules" / ".bin" / "claude"
PINNED_CLI_VERSION = "2.1.197"
USER = "admin"
PASSWORD = "test-password-not-secret"
AUTH = (USER, PASSWORD)


def fake_cli_reads() -> list[Path]:
    """Return what the fake CLI (a script run by PATH's python3) reads when confined."""
    python3 = Path(shutil.which("python3") or sys.executable)
    reads = {REPO / "tests", Path(sys.base_prefix).resolve()}
    # A pyenv shim is a script that runs pyenv, which lives beside the versions.
    reads.update(parent for parent in python3.parents if parent.name == ".pyenv")
    return sorted(reads)


# Every test gateway's DATA_DIR is its own, below this (conftest removes it at the end).
TEST_DATA = Path(tempfile.gettempdir()) / "cc2api-test-data" / str(os.getpid())


def fresh_data_dir() -> Path:
    """Return a new, empty folder for one test gateway's store."""
    TEST_DATA.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=TEST_DATA))


def make_settings(**overrides: Any) -> Settings:
    """Return settings for a test gateway on a free port and its own DATA_DIR, ignoring .env."""
    values: dict[str, Any] = {
        "data_dir": fresh_data_dir(),
        "auth_user": USER,
        "auth_password": PASSWORD,
        "port": 0,
        "claude_path": FAKE_CLAUDE,
        "kill_grace_seconds": 2.0,
        # The tests may run as root (CI does); they stand in for a sandbox.
        "allow_root_full_access": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Gateway:
    """A gateway served by a real Hypercorn, and a client for it."""

    url: str
    client: httpx.AsyncClient


@dataclass
class Served(Gateway):
    """A gateway of the test's own, served in the test's trio run: its app may be inspected."""

    app: QuartTrio


@asynccontextmanager
async def served(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    limits: RunLimits | None = None,
    **config: Any,
) -> AsyncIterator[Served]:
    """Serve a fresh app (``limits`` and Quart ``config`` overrides applied) for the block."""
    app = create_app(settings, environ=environ, limits=limits)
    app.config.update(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve, app, stop)
        url = urls[0]
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            try:
                yield Served(url, client, app)
            finally:
                stop.set()


@dataclass(frozen=True)
class SharedServer:
    """The session's gateway (conftest's ``shared_server``): its URL, its CLI home, a cwd."""

    url: str
    home: Path
    workdir: Path


@dataclass
class Shared(Gateway):
    """A test's client of the session's gateway (conftest's ``gw``).

    Other tests' runs share it: finished detached runs stay listed, so a test
    picks its own runs out by process id, and leaves nothing running behind.
    """

    home: Path  # the HOME its CLIs get


@contextmanager
def serve_in_thread(settings: Settings, environ: Mapping[str, str]) -> Iterator[str]:
    """Serve a fresh app from a thread with a trio run of its own; yield its URL.

    httpx's tests serve their app this way: the server outlives any one test's trio
    run, so one gateway can serve many tests. It is stopped when the block ends,
    and any error it raised is reported then.
    """
    started: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()
    failure: list[BaseException] = []

    async def serve_until_stopped() -> None:
        stop = trio.Event()
        async with served(settings, environ) as gateway:
            started.put((gateway.url, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def main() -> None:
        try:
            trio.run(serve_until_stopped)
        except BaseException as error:  # reported by the caller, not lost in the thread
            failure.append(error)

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    try:
        url, token, stop = started.get(timeout=30)
    except queue.Empty:
        raise AssertionError(f"the gateway did not start: {failure}") from None
    try:
        yield url
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(30)
    assert not thread.is_alive(), "the gateway did not stop"
    assert not failure, failure


@dataclass
class Event:
    """One SSE event as a client sees it; comments have ``event == ":"``."""

    event: str
    data: str
    id: int | None

    def json(self) -> Any:
        """Return the data parsed as JSON."""
        return json.loads(self.data)


def parse_block(block: str) -> Event:
    """Parse one SSE event block (the text between blank lines)."""
    event, data, event_id = "message", [], None
    for line in block.split("\n"):
        if line.startswith(":"):
            return Event(":", line[1:].strip(), None)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = int(value)
    return Event(event, "\n".join(data), event_id)


async def sse_events(response: httpx.Response) -> AsyncGenerator[Event, None]:
    """Yield events from a streaming response, whatever the network chunking."""
    buffer = ""
    texts = response.aiter_text()
    async with aclosing(cast(AsyncGenerator[str, None], texts)):
        async for text in texts:
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                if block:
                    yield parse_block(block)


async def collect(response: httpx.Response) -> list[Event]:
    """Return every event of a stream, comments left out."""
    async with aclosing(sse_events(response)) as events:
        return [event async for event in events if event.event != ":"]


async def post_chat(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[httpx.Response, list[Event]]:
    """POST /chat and read the whole stream; no events when the answer is not 200."""
    async with client.stream("POST", "/chat", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response, []
        return response, await collect(response)


def chat_body(prompt: str, cwd: Path | str, **fields: Any) -> dict[str, Any]:
    """Return a POST /chat body."""
    return {"prompt": prompt, "cwd": str(cwd), **fields}


async def listing(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Return GET /processes' runs."""
    runs: list[dict[str, Any]] = (await client.get("/processes")).json()["processes"]
    return runs


async def started_run(client: httpx.AsyncClient, timeout: float = 20) -> dict[str, Any]:
    """Return the first listed run once its CLI has a pid (the run has really started)."""
    with trio.fail_after(timeout):
        while not (runs := [run for run in await listing(client) if run["pid"] is not None]):
            await trio.sleep(0.02)
    return runs[0]


def alive(pid: int) -> bool:
    """Return whether a process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def exists(pid: int) -> bool:
    """Return whether a pid is present at all, zombies included."""
    return psutil.pid_exists(pid)


async def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> float:
    """Wait until ``predicate()`` holds and return how long it took; fail after ``timeout``."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(poll)
    return trio.current_time() - start


def processes_with_marker(process_id: str) -> list[int]:
    """Return live pids whose environment carries the run's marker."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("CC2API_RUN_ID") == process_id:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


async def start_server_process(
    argv: list[str], cwd: Path, env: Mapping[str, str]
) -> tuple[trio.Process, str]:
    """Start a cc2api server process on a free port and return it with its URL.

    Its log goes to ``cwd/server.log``, so a chatty server never blocks on a full pipe.
    """
    log_path = cwd / "server.log"
    with log_path.open("wb") as log_file:
        proc = await trio.lowlevel.open_process(argv, env=env, cwd=cwd, stderr=log_file)
    with trio.fail_after(30):
        while not (found := re.search(rb"listening on (http://[\d.:]+)", log_path.read_bytes())):
            assert proc.returncode is None, log_path.read_text()
            await trio.sleep(0.05)
    return proc, found.group(1).decode()


@dataclass(frozen=True)
class Ran:
    """What a ``cc2api`` command did."""

    returncode: int
    stdout: str
    stderr: str


async def run_cc2api(env: Mapping[str, str], cwd: Path, *args: str, timeout: float = 90) -> Ran:
    """Run ``python -m cc2api ARGS`` in ``cwd`` with ``env``, and return what it did."""
    with trio.fail_after(timeout):
        done = await trio.run_process(
            [sys.executable, "-m", "cc2api", *args],
            env=env,
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


def is_root() -> bool:
    """Return whether the tests run as root (the CLI then refuses full access)."""
    return os.geteuid() == 0


def server_environment(home: Path, claude: Path, **settings: str) -> dict[str, str]:
    """Return the environment of a test's server process: no .env, a port of its own."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AUTH_USER": USER,
        "AUTH_PASSWORD": PASSWORD,
        "CLAUDE_PATH": str(claude),
        "PORT": "0",
        "KILL_GRACE_SECONDS": "2",
        "ALLOW_ROOT_FULL_ACCESS": "true",  # as make_settings: the tests stand in for a sandbox
        **settings,
    }


@asynccontextmanager
async def running_server(
    argv: list[str], cwd: Path, env: Mapping[str, str]
) -> AsyncIterator[tuple[trio.Process, str]]:
    """Run a server process (start_server_process) for the block, and stop it after."""
    proc, url = await start_server_process(argv, cwd, env)
    try:
        yield proc, url
    finally:
        proc.terminate()
        with trio.move_on_after(15):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def server_process(
    tmp_path: Path, claude: Path, **settings: str
) -> AsyncIterator[tuple[psutil.Process, httpx.AsyncClient]]:
    """Run ``python -m cc2api serve`` with the given settings; yield it and a client.

    A separate process, so that its memory, threads, descriptors and children can
    be measured apart from the test's.
    """
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    env = server_environment(home, claude, **settings)
    argv = [sys.executable, "-m", "cc2api", "serve"]
    async with running_server(argv, tmp_path, env) as (proc, url):
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            yield psutil.Process(proc.pid), client


def peak_rss(process: psutil.Process) -> int:
    """Return the most resident memory the process has had so far, in bytes (VmHWM)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


# -- sessions: a session as the CLI saves it (the gateway refuses to resume any other)


def saved_session(home: Path, cwd: Path | str, prompt: str = "hello") -> str:
    """Write a one-turn transcript of a new session of ``cwd`` where HOME's CLI keeps it."""
    session = str(uuid.uuid4())
    when = "2026-12-01T09:30:00.000Z"
    lines = [
        {
            "type": "queue-operation",
            "operation": "enqueue",
            "timestamp": when,
            "sessionId": session,
        },
        {
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "timestamp": when,
            "cwd": str(cwd),
            "sessionId": session,
        },
    ]
    path = transcript(home / ".claude", str(cwd), session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return session
