"""install.sh end to end on a booted Debian 12 host with systemd 252 (systemd-nspawn).

One container is booted for the module from a cached Debian root (see tests/nspawn.py), over
a tmpfs, so that it starts clean every time. The real install.sh installs, as
``sudo ./install.sh`` would, from a copy of this checkout bound read-only into it; the
service then runs the real CLI against the scripted model, which serves on this machine's
127.0.0.1 (the container shares its network). The tests follow that one machine's life in
file order (install, runs, the store across a restart, stop, upgrade, a second install,
uninstall, purge), each stating one behaviour; the figures worth reporting are printed
(``-rP`` shows them).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import stat
import string
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from cc2api.envfile import UNSAFE_PASSWORD_CHARS
from cc2api.proctree import MARKER_VAR

from .helpers import (
    REPO,
    Event,
    chat_body,
    collect,
    exists,
    parse_block,
    post_chat,
    processes_with_marker,
)
from .nspawn import CACHE, Bind, Container, cache_lock, debian_root
from .scripted_api import ScriptedAPI
from .test_e2e_real_cli import tool_process

pytestmark = pytest.mark.timeout(1800)

# Every printable ASCII punctuation character that a password may hold.
SPECIALS = "".join(c for c in string.punctuation if c not in UNSAFE_PASSWORD_CHARS)
PASSWORD = f"Cc2{SPECIALS}api9"
ALT_PASSWORD = f"alt{SPECIALS}"
WORKDIR = "/srv/work"
ALT_PREFIX = "/srv/cc2api-alt"
# Each unit's state directory, where its store lives (DATA_DIR); the first is also the home
# of the system user cc2api that install.sh made.
STATE_DIR = "/var/lib/cc2api"
ALT_STATE_DIR = "/var/lib/cc2api-alt"
# What the store writes in DATA_DIR: the database, SQLite's WAL files, the gateway's lock.
STORE_FILES = ("cc2api.db", "cc2api.db-wal", "cc2api.db-shm", "cc2api.lock")
# Each step's own bound: a cold install downloads Node.js, npm and the CLI (about 400 MB).
INSTALL_SECONDS = 900
STEP_SECONDS = 120
TOOLS = {"tools": ["Bash"], "allowed_tools": ["Bash"]}


@dataclass
class Install:
    """One install.sh install in the container, and how it went."""

    unit: str
    prefix: str
    user: str
    port: int
    password: str
    done: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def url(self) -> str:
        """Return the service's address, as seen from this machine and the container."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        """Return the Basic auth credentials of its .env."""
        return ("admin", self.password)


@dataclass
class Machine:
    """The booted container and the scripted model its services use."""

    container: Container
    api: ScriptedAPI


def require_nspawn() -> None:
    """Fail (not skip) when this machine cannot build or boot the container."""
    if os.geteuid() != 0:
        pytest.fail("the systemd host tests boot a container: run them as root", pytrace=False)
    missing = [tool for tool in ("debootstrap", "systemd-nspawn") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: ./scripts/test installs them "
            "(apt-get install debootstrap systemd-container)",
            pytrace=False,
        )


def copy_checkout(target: Path) -> Path:
    """Copy the files a clone of this checkout holds, as they are now, into ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet committed is still listed
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def free_port() -> int:
    """Return a port free on 127.0.0.1 now (the container shares this machine's).

    Below the ephemeral range: the service binds it minutes later, and by then the kernel
    may have handed an ephemeral port to any outgoing connection on the machine.
    """
    lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10000, lowest_ephemeral), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def install_sh(
    container: Container, *args: str, password: str | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``sudo ./install.sh ARGS`` in the read-only clone; return it and its seconds."""
    script = 'cd /root/src && exec sudo --preserve-env=CC2API_AUTH_PASSWORD ./install.sh "$@"'
    env = {} if password is None else {"CC2API_AUTH_PASSWORD": password}
    started = time.monotonic()
    done = container.run(
        ["bash", "-c", script, "install.sh", *args], env=env, timeout=INSTALL_SECONDS, check=False
    )
    return done, time.monotonic() - started


def output(done: subprocess.CompletedProcess[str]) -> str:
    """Return a finished command's output, for assertion messages."""
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def wait_healthy(url: str, timeout: float = STEP_SECONDS) -> dict[str, Any]:
    """Wait until ``url``/health answers ok and return its body."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/health", timeout=5).json()
        except httpx.HTTPError as error:
            last = error
        else:
            if isinstance(last, dict) and last.get("status") == "ok":
                return last
        time.sleep(0.1)
    raise AssertionError(f"{url}/health never said ok; last: {last!r}")


def serve_scripted_model(machine: Machine, install: Install) -> None:
    """Point the install's CLI at the scripted model (in its .env), restart, wait until up."""
    settings = (
        f"ANTHROPIC_BASE_URL={machine.api.url}\n"
        "ANTHROPIC_API_KEY=sk-test-not-a-key\n"
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n"
        "DISABLE_AUTOUPDATER=1\n"
    )
    env_file = f"{install.prefix}/.env"
    machine.container.run(["sh", "-c", 'cat >>"$1"', "sh", env_file], input=settings, timeout=30)
    systemctl(machine, "restart", install.unit)
    wait_healthy(install.url)


def state_dir_of(machine: Machine, path: str, user: str) -> tuple[bool, int, bool]:
    """Return whether ``path`` is a folder, its permission bits, and whether ``user`` owns it."""
    info = machine.container.path(path).stat()
    uid = int(machine.container.run(["id", "-u", user], timeout=30).stdout)
    return stat.S_ISDIR(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid == uid


def lasting_files(machine: Machine, path: str) -> dict[str, int]:
    """Return the inode of each entry of a folder, but of those SQLite and the gateway
    remove when the store closes (WAL files, the lock)."""
    passing = ("cc2api.db-wal", "cc2api.db-shm", "cc2api.lock")
    folder = machine.container.path(path)
    return {p.name: p.stat().st_ino for p in folder.iterdir() if p.name not in passing}


def systemctl(machine: Machine, *args: str) -> subprocess.CompletedProcess[str]:
    """Run systemctl in the container; it must succeed."""
    return machine.container.run(["systemctl", *args], timeout=STEP_SECONDS)


def unit_state(machine: Machine, unit: str, *names: str) -> dict[str, str]:
    """Return properties of a unit, as ``systemctl show`` gives them."""
    shown = systemctl(machine, "show", unit, *(f"--property={name}" for name in names))
    return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)


def unit_journal(machine: Machine, invocation: str) -> str:
    """Return the journal of one run of a unit: systemd's lines about it and its own."""
    return machine.container.run(
        [
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            f"INVOCATION_ID={invocation}",
            "+",
            f"_SYSTEMD_INVOCATION_ID={invocation}",
        ],
        timeout=STEP_SECONDS,
    ).stdout


def stopped_journal(machine: Machine, unit: str, invocation: str) -> str:
    """Return the journal of a unit's run once systemd has logged that it stopped."""
    deadline = time.monotonic() + STEP_SECONDS
    while "Stopped " not in (journal := unit_journal(machine, invocation)):
        assert time.monotonic() < deadline, journal
        time.sleep(0.05)
    return journal


def start_again(machine: Machine, install: Install) -> None:
    """Start a stopped unit again and wait until it is up."""
    systemctl(machine, "start", install.unit)
    wait_healthy(install.url)


@asynccontextmanager
async def client_of(install: Install) -> AsyncIterator[httpx.AsyncClient]:
    """Yield a client of the installed service."""
    async with httpx.AsyncClient(base_url=install.url, auth=install.auth, timeout=60) as client:
        yield client


async def chat(install: Install, prompt: str, cwd: str = WORKDIR) -> list[Event]:
    """Run one prompt (Bash allowed) through the service and return its events."""
    async with client_of(install) as client:
        response, events = await post_chat(client, chat_body(prompt, cwd, **TOOLS))
    assert response.status_code == 200, response.text
    return events


def result_of(events: list[Event]) -> str:
    """Return the text of a run's result line."""
    results = [e.json() for e in events if e.event == "message" and '"result"' in e.data]
    (result,) = [r for r in results if r.get("type") == "result"]
    text: str = result["result"]
    return text


async def wait_for(predicate: Callable[[], object], timeout: float) -> float:
    """Wait until ``predicate()`` holds (checking every 50 ms); return the seconds it took."""
    started = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
    return trio.current_time() - started


@pytest.fixture(scope="module", name="machine")
def _machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A freshly booted Debian 12 container with the checkout bound read-only at /root/src."""
    require_nspawn()
    logs = tmp_path_factory.mktemp("nspawn")
    root = debian_root(logs / "debootstrap.log")
    source = copy_checkout(tmp_path_factory.mktemp("src"))
    # The test's own shortcut: downloads are kept between runs; install.sh is unchanged.
    caches = {"apt-archives": "/var/cache/apt/archives", "npm": "/root/.npm"}
    binds = [Bind(source, "/root/src")]
    for name, target in caches.items():
        (CACHE / name).mkdir(parents=True, exist_ok=True)
        binds.append(Bind(CACHE / name, target, read_only=False))
    with (
        ScriptedAPI() as api,
        Container(root, f"cc2api-{os.getpid()}", binds, logs / "console.log") as container,
    ):
        yield Machine(container, api)


@pytest.fixture(scope="module", name="first")
def _first(machine: Machine) -> Install:
    """The first install, as a new user makes it: defaults, a password and a work folder."""
    container = machine.container
    container.run(["mkdir", "-p", WORKDIR], timeout=30)
    port = free_port()
    # apt in two containers at once would trip over the shared archive's lock.
    with cache_lock("apt-archives"):
        done, seconds = install_sh(
            container, "--work-dir", WORKDIR, "--port", str(port), password=PASSWORD
        )
    assert done.returncode == 0, output(done)
    install = Install("cc2api", "/opt/cc2api", "cc2api", port, PASSWORD, done, seconds)
    container.run(["chown", "cc2api:", WORKDIR], timeout=30)
    serve_scripted_model(machine, install)
    return install


class TestInstall:
    def test_install_exits_zero_and_says_how_to_call_it(self, first: Install) -> None:
        """`sudo ./install.sh` exits 0 and prints the URL, curl lines and where things are."""
        out = first.done.stdout
        print(f"first install: {first.seconds:.1f} s")
        assert first.done.returncode == 0
        assert "==> cc2api is up. Try:" in out
        assert f"  curl {first.url}/health\n" in out
        assert f"  curl -N -u USER:PASSWORD {first.url}/chat " in out
        assert "Credentials are in /opt/cc2api/.env; logs: journalctl -u cc2api -f" in out
        assert PASSWORD not in out + first.done.stderr

    def test_unit_is_enabled_and_active_as_written(self, machine: Machine, first: Install) -> None:
        """The unit is enabled and active, runs as cc2api with KillMode=mixed and 65536
        descriptors, and /health says ok."""
        state = unit_state(
            machine,
            "cc2api",
            "ActiveState",
            "UnitFileState",
            "User",
            "KillMode",
            "LimitNOFILE",
        )
        assert state == {
            "ActiveState": "active",
            "UnitFileState": "enabled",
            "User": "cc2api",
            "KillMode": "mixed",
            "LimitNOFILE": "65536",
        }
        assert wait_healthy(first.url)["claude_version"] == "2.1.197"

    def test_state_directory_is_the_services_own(self, machine: Machine, first: Install) -> None:
        """The unit's state directory /var/lib/cc2api is a folder of mode 0700 that the
        service's user owns, the service's DATA_DIR points there, and the install says so."""
        state = unit_state(machine, "cc2api", "StateDirectory", "StateDirectoryMode", "Environment")
        assert state_dir_of(machine, STATE_DIR, "cc2api") == (True, 0o700, True)
        assert state["StateDirectory"] == "cc2api"
        assert state["StateDirectoryMode"] == "0700"
        assert f"DATA_DIR={STATE_DIR}" in state["Environment"].split()
        assert f"Its store (runs and their events) is in {STATE_DIR}\n" in first.done.stdout

    def test_printed_curl_lines_work(self, machine: Machine, first: Install) -> None:
        """The curl lines the install printed, with the real credentials put in, work."""
        lines = first.done.stdout.replace("\\\n", "").splitlines()
        (health,) = [line for line in lines if line.startswith(f"  curl {first.url}/health")]
        (call,) = [line for line in lines if line.startswith("  curl -N -u USER:PASSWORD")]
        credentials = {"CREDENTIALS": f"admin:{PASSWORD}"}
        call = call.replace("USER:PASSWORD", '"$CREDENTIALS"')
        answered = machine.container.run(["bash", "-c", health], timeout=STEP_SECONDS).stdout
        streamed = machine.container.run(
            ["bash", "-c", call], env=credentials, timeout=STEP_SECONDS
        ).stdout
        events = [parse_block(block) for block in streamed.split("\n\n") if block.strip()]
        assert '"status": "ok"' in answered
        assert result_of(events) == "echo: Hello"
        assert events[-1].json()["status"] == "completed"

    async def test_password_with_every_allowed_special_character(
        self, machine: Machine, first: Install
    ) -> None:
        """A password holding every allowed special character reaches .env verbatim and
        works for Basic auth, while the same password one character short does not."""
        env_file = machine.container.path("/opt/cc2api/.env").read_text()
        async with client_of(first) as client:
            good = await client.get("/processes")
            bad = await client.get("/processes", auth=("admin", PASSWORD[:-1]))
        assert set(SPECIALS) == set(string.punctuation) - UNSAFE_PASSWORD_CHARS
        assert f"\nAUTH_PASSWORD={PASSWORD}\n" in env_file
        assert good.status_code == 200
        assert bad.status_code == 401


class TestRuns:
    async def test_run_writes_in_its_work_dir_but_not_in_the_prefix(
        self, machine: Machine, first: Install
    ) -> None:
        """Under the unit, a Bash tool writes in the --work-dir as cc2api, and the prefix is
        a read-only file system to it."""
        wrote = await chat(first, f"RUN_BASH: id -un > {WORKDIR}/made.txt")
        planted = await chat(first, "RUN_BASH: touch /opt/cc2api/planted")
        assert wrote[-1].json()["status"] == "completed"
        assert machine.container.path(f"{WORKDIR}/made.txt").read_text() == "cc2api\n"
        assert "/opt/cc2api/planted': Read-only file system" in result_of(planted)
        assert not machine.container.path("/opt/cc2api/planted").exists()

    async def test_delete_leaves_none_of_the_tools_processes(self, first: Install) -> None:
        """DELETE ends the run `cancelled` and leaves none of its processes (the Bash tool's
        `sleep` in its own session included)."""
        command = ["sleep", "3000"]
        async with client_of(first) as client:
            body = chat_body(" ".join(["RUN_BASH:", *command]), WORKDIR, **TOOLS)
            async with client.stream("POST", "/chat", json=body) as stream:
                process_id = stream.headers["x-process-id"]
                await wait_for(lambda: tool_process(process_id, command) is not None, 60)
                processes = processes_with_marker(process_id)
                started = trio.current_time()
                answer = await client.delete(f"/chat/{process_id}")
                answered = trio.current_time() - started

                def all_gone() -> bool:
                    return not any(map(exists, processes)) and not processes_with_marker(process_id)

                await wait_for(all_gone, 15)
                gone = trio.current_time() - started
                rest = await collect(stream)
        print(
            f"DELETE answered after {answered:.2f} s; its {len(processes)} processes "
            f"(CLI, Bash, sleep) gone {gone:.2f} s after it was sent"
        )
        assert answer.status_code == 200
        assert rest[-1].json()["status"] == "cancelled"
        assert gone < 10

    async def test_a_confined_run_under_the_unit_stays_in_its_folder(
        self, machine: Machine, first: Install
    ) -> None:
        """With ALLOWED_CWD_ROOTS set, runs under the unit are confined (the filter lets
        Landlock through): Bash writes in the work dir, not in the service's home."""
        container = machine.container
        env_file = f"{first.prefix}/.env"
        before = container.path(env_file).read_text()
        planted = "/var/lib/cc2api/planted"
        bash = f"echo in > {WORKDIR}/confined.txt; echo x > {planted}; cat {env_file}"
        container.run(
            ["sh", "-c", 'cat >>"$1"', "sh", env_file],
            input=f"ALLOWED_CWD_ROOTS={WORKDIR}\n",
            timeout=30,
        )
        try:
            systemctl(machine, "restart", first.unit)
            assert wait_healthy(first.url)["status"] == "ok"
            events = await chat(first, f"RUN_BASH: {bash}")
        finally:
            container.run(["sh", "-c", 'cat >"$1"', "sh", env_file], input=before, timeout=30)
            systemctl(machine, "restart", first.unit)
            wait_healthy(first.url)
        assert events[-1].json()["status"] == "completed"
        assert container.path(f"{WORKDIR}/confined.txt").read_text() == "in\n"
        assert not container.path(planted).exists()
        said = result_of(events)
        assert f"{planted}: Permission denied" in said
        assert "AUTH_PASSWORD" not in said


class TestStore:
    async def test_the_store_is_made_in_the_state_directory(
        self, machine: Machine, first: Install
    ) -> None:
        """Once the service has run something, its SQLite store is cc2api.db in the state
        directory, the service user's and private to it; the read-only prefix holds none."""
        events = await chat(first, "Hello store")
        db = machine.container.path(f"{STATE_DIR}/cc2api.db")
        deadline = time.monotonic() + 15
        while not db.exists() and time.monotonic() < deadline:
            await trio.sleep(0.1)
        held = sorted(p.name for p in db.parent.iterdir())
        assert events[-1].json()["status"] == "completed"
        assert db.exists(), (
            f"no cc2api.db in {STATE_DIR} after a run (it holds {held}): the server does not "
            "open its SQLite store in DATA_DIR yet (issue 12's store is not in this build?)"
        )
        uid = int(machine.container.run(["id", "-u", "cc2api"], timeout=30).stdout)
        assert db.stat().st_uid == uid
        assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0
        assert not machine.container.path(f"{first.prefix}/.data").exists()

    async def test_a_runs_record_survives_a_restart(self, machine: Machine, first: Install) -> None:
        """A finished run's record outlives `systemctl restart`: GET /runs/{process_id}
        then answers 200 with the run's id and status completed."""
        async with client_of(first) as client:
            response, events = await post_chat(client, chat_body("Hello record", WORKDIR))
        assert response.status_code == 200, response.text
        assert events[-1].json()["status"] == "completed"
        process_id = response.headers["x-process-id"]
        await trio.to_thread.run_sync(systemctl, machine, "restart", first.unit)
        await trio.to_thread.run_sync(wait_healthy, first.url)
        async with client_of(first) as client:
            answer = await client.get(f"/runs/{process_id}")
        assert answer.status_code == 200, (
            f"GET /runs/{process_id} after `systemctl restart` answered {answer.status_code} "
            f"{answer.text[:300]!r}: the run's record did not outlive the restart, or this "
            "build has no GET /runs/{process_id} yet (issue 12: the store read back at start)"
        )
        record = answer.json()
        assert record["process_id"] == process_id
        assert record["status"] == "completed"


class TestStop:
    async def test_stop_ends_every_open_stream_cancelled(
        self, machine: Machine, first: Install
    ) -> None:
        """`systemctl stop` with four runs' Bash tools running ends each open stream with
        `done` `cancelled`, and nothing of the unit's control group survives it."""
        commands = [["sleep", str(3001 + n)] for n in range(4)]
        ended: dict[int, list[Event]] = {}
        ended_at: dict[int, float] = {}
        ids: dict[int, str] = {}
        invocation = unit_state(machine, "cc2api", "InvocationID")["InvocationID"]
        stopped_after: list[float] = []

        async def stream(n: int, client: httpx.AsyncClient) -> None:
            body = chat_body(" ".join(["RUN_BASH:", *commands[n]]), WORKDIR, **TOOLS)
            async with client.stream("POST", "/chat", json=body) as response:
                ids[n] = response.headers["x-process-id"]
                ended[n] = await collect(response)
                ended_at[n] = trio.current_time()

        def all_tools_running() -> bool:
            return len(ids) == 4 and all(tool_process(ids[n], commands[n]) for n in range(4))

        async def stop(started: float) -> None:
            await trio.to_thread.run_sync(systemctl, machine, "stop", "cc2api")
            stopped_after.append(trio.current_time() - started)

        async with trio.open_nursery() as nursery:
            # The client goes once its streams have ended, as curl would: an idle
            # keep-alive connection would hold Hypercorn's shutdown for its grace time.
            async with client_of(first) as client, trio.open_nursery() as streams:
                for n in range(4):
                    streams.start_soon(stream, n, client)
                await wait_for(all_tools_running, 90)
                in_unit = machine.container.unit_pids("cc2api.service")
                started = trio.current_time()
                nursery.start_soon(stop, started)
        try:
            journal = stopped_journal(machine, "cc2api", invocation)
            left = machine.container.unit_pids("cc2api.service")
            survivors = [pid for pid in in_unit if exists(pid)]
            state = unit_state(machine, "cc2api", "ActiveState", "Result")
        finally:
            start_again(machine, first)
        drained = max(ended_at.values()) - started
        print(
            f"systemctl stop with 4 open streams ({len(in_unit)} processes in the unit): "
            f"last done after {drained:.2f} s, stop returned after {stopped_after[0]:.2f} s"
        )
        assert [ended[n][-1].event for n in range(4)] == ["done"] * 4
        assert [ended[n][-1].json()["status"] for n in range(4)] == ["cancelled"] * 4
        assert left == []
        assert survivors == []
        assert state == {"ActiveState": "inactive", "Result": "success"}
        assert "Killing process" not in journal  # the gateway tore every run down itself
        assert stopped_after[0] < 20

    async def test_stop_kills_what_a_tool_detached(self, machine: Machine, first: Install) -> None:
        """A process a tool detached from its run (own session, marker dropped) outlives the
        run, but not `systemctl stop`: systemd SIGKILLs it once the gateway has exited."""
        invocation = unit_state(machine, "cc2api", "InvocationID")["InvocationID"]
        detach = f"env -u {MARKER_VAR} setsid sleep 3100 >/dev/null 2>&1 </dev/null &"
        events = await chat(first, f"RUN_BASH: {detach}")

        def detached() -> list[int]:
            found = []
            for pid in machine.container.unit_pids("cc2api.service"):
                with contextlib.suppress(psutil.Error):
                    if psutil.Process(pid).cmdline() == ["sleep", "3100"]:
                        found.append(pid)
            return found

        await wait_for(detached, 30)
        (pid,) = detached()
        environ = psutil.Process(pid).environ()
        try:
            await trio.to_thread.run_sync(systemctl, machine, "stop", "cc2api")
            journal = await trio.to_thread.run_sync(stopped_journal, machine, "cc2api", invocation)
        finally:
            await trio.to_thread.run_sync(start_again, machine, first)
        assert events[-1].json()["status"] == "completed"
        assert MARKER_VAR not in environ
        assert not exists(pid)
        assert "(sleep) with signal SIGKILL" in journal


class TestUpgrade:
    async def test_rerun_updates_in_place_and_keeps_env(
        self, machine: Machine, first: Install
    ) -> None:
        """`sudo ./install.sh` again, with no options, exits 0, keeps .env byte for byte, the
        unit as it was (user, work folder, port) and every file of the state directory
        (the store's database the same file), and runs still work."""
        container = machine.container
        env_before = container.path("/opt/cc2api/.env").read_bytes()
        unit_file = container.path("/etc/systemd/system/cc2api.service")
        unit_before = unit_file.read_text()
        # A file of the service's own beside the store, which no install step may touch.
        container.run(
            ["install", "-o", "cc2api", "-m", "600", "/dev/null", f"{STATE_DIR}/kept.txt"],
            timeout=30,
        )
        state_before = lasting_files(machine, STATE_DIR)
        done, seconds = await trio.to_thread.run_sync(
            lambda: install_sh(container, password="a-different-password")
        )
        print(f"rerun (upgrade): {seconds:.1f} s")
        assert done.returncode == 0, output(done)
        assert "==> updating the install in /opt/cc2api (its .env is kept)" in done.stdout
        assert "==> keeping /opt/cc2api/.env" in done.stdout
        assert container.path("/opt/cc2api/.env").read_bytes() == env_before
        assert unit_file.read_text() == unit_before
        assert lasting_files(machine, STATE_DIR) == state_before
        assert state_dir_of(machine, STATE_DIR, "cc2api") == (True, 0o700, True)
        events = await chat(first, f"RUN_BASH: touch {WORKDIR}/after-upgrade")
        assert events[-1].json()["status"] == "completed"
        assert container.path(f"{WORKDIR}/after-upgrade").exists()


@pytest.fixture(scope="module", name="second")
def _second(machine: Machine, first: Install) -> Install:
    """A second install beside the first: its own user, prefix and port (the unit follows)."""
    port = free_port()
    done, seconds = install_sh(
        machine.container,
        "--user",
        "alt",
        "--prefix",
        ALT_PREFIX,
        "--port",
        str(port),
        password=ALT_PASSWORD,
    )
    assert done.returncode == 0, output(done)
    install = Install("cc2api-alt", ALT_PREFIX, "alt", port, ALT_PASSWORD, done, seconds)
    serve_scripted_model(machine, install)
    return install


class TestSecondInstall:
    def test_second_install_cannot_take_the_first_ones_unit(
        self, machine: Machine, first: Install
    ) -> None:
        """A second install naming the first's unit is refused before it changes anything:
        the first unit keeps running untouched."""
        before = unit_state(machine, "cc2api", "MainPID")
        unit_file = machine.container.path("/etc/systemd/system/cc2api.service")
        unit_before = unit_file.read_text()
        done, _ = install_sh(
            machine.container,
            "--name",
            "cc2api",
            "--user",
            "alt2",
            "--prefix",
            "/srv/cc2api-b",
            "--port",
            "1",
        )
        assert done.returncode != 0
        assert (
            "/etc/systemd/system/cc2api.service belongs to the install in /opt/cc2api"
            in done.stderr
        )
        assert not machine.container.path("/srv/cc2api-b").exists()
        assert machine.container.run(["id", "alt2"], timeout=30, check=False).returncode != 0
        assert unit_file.read_text() == unit_before
        assert unit_state(machine, "cc2api", "MainPID") == before

    async def test_second_install_runs_beside_the_first(
        self, machine: Machine, first: Install, second: Install
    ) -> None:
        """With its own --user, --prefix and --port, a second install runs beside the first
        as the unit cc2api-alt: each answers with its own password, as its own user."""
        print(f"second install: {second.seconds:.1f} s")
        async with client_of(second) as client:
            wrong = await client.get("/processes", auth=first.auth)
        mine = await chat(second, "RUN_BASH: id -un", cwd="/var/lib/alt")
        theirs = await chat(first, "RUN_BASH: id -un")
        assert "this one is cc2api-alt" in second.done.stdout
        assert "==> cc2api is up. Try:" in second.done.stdout
        assert "logs: journalctl -u cc2api-alt -f" in second.done.stdout
        assert wrong.status_code == 401
        assert "alt" in result_of(mine).split()
        assert "cc2api" in result_of(theirs).split()
        for unit in ("cc2api", "cc2api-alt"):
            assert unit_state(machine, unit, "ActiveState") == {"ActiveState": "active"}

    async def test_second_install_has_a_store_of_its_own(
        self, machine: Machine, first: Install, second: Install
    ) -> None:
        """The unit cc2api-alt keeps its store in /var/lib/cc2api-alt, alt's and mode 0700,
        apart from the first's and from alt's home; under the unit's ProtectSystem=strict
        that folder is writable, and /var/lib beside it is not."""
        state = unit_state(machine, "cc2api-alt", "StateDirectory", "Environment")
        probe = f"{ALT_STATE_DIR}/written-by-a-run"
        beside = "/var/lib/cc2api-alt-not-mine"
        events = await chat(second, f"RUN_BASH: touch {probe}; touch {beside}", cwd="/var/lib/alt")
        assert state["StateDirectory"] == "cc2api-alt"
        assert f"DATA_DIR={ALT_STATE_DIR}" in state["Environment"].split()
        assert state_dir_of(machine, ALT_STATE_DIR, "alt") == (True, 0o700, True)
        assert f"Its store (runs and their events) is in {ALT_STATE_DIR}\n" in second.done.stdout
        assert machine.container.path(probe).exists()
        assert f"{beside}': Read-only file system" in result_of(events)


class TestUninstall:
    def test_uninstall_of_the_second_leaves_the_first(
        self, machine: Machine, first: Install, second: Install
    ) -> None:
        """`--uninstall --prefix` removes that install's unit and files except .env, and the
        first install keeps running untouched."""
        container = machine.container
        before = unit_state(machine, "cc2api", "MainPID")
        done, _ = install_sh(container, "--uninstall", "--prefix", ALT_PREFIX)
        assert done.returncode == 0, output(done)
        assert not container.path("/etc/systemd/system/cc2api-alt.service").exists()
        assert container.unit_pids("cc2api-alt.service") == []
        assert sorted(p.name for p in container.path(ALT_PREFIX).iterdir()) == [
            ".cc2api-install",
            ".env",
        ]
        assert f"==> keeping the store in {ALT_STATE_DIR}" in done.stdout
        assert state_dir_of(machine, ALT_STATE_DIR, "alt") == (True, 0o700, True)
        assert unit_state(machine, "cc2api", "MainPID") == before
        wait_healthy(first.url)

    def test_purge_of_the_second_leaves_the_first(
        self, machine: Machine, first: Install, second: Install
    ) -> None:
        """`--uninstall --purge --prefix` then removes the folder, .env too, and its store's
        folder (not alt's home), and still leaves the first install's unit and store alone."""
        container = machine.container
        before = unit_state(machine, "cc2api", "MainPID")
        first_state = lasting_files(machine, STATE_DIR)
        done, _ = install_sh(container, "--uninstall", "--purge", "--prefix", ALT_PREFIX)
        assert done.returncode == 0, output(done)
        assert not container.path(ALT_PREFIX).exists()
        assert not container.path(ALT_STATE_DIR).exists()
        assert container.path("/var/lib/alt").is_dir()
        assert lasting_files(machine, STATE_DIR) == first_state
        assert unit_state(machine, "cc2api", "MainPID") == before
        wait_healthy(first.url)

    def test_uninstall_keeps_env_user_home_and_store(
        self, machine: Machine, first: Install
    ) -> None:
        """`--uninstall` stops and removes the unit and every file but .env and the install's
        record, as --help says; the service's user, its home and the store stay."""
        container = machine.container
        env_before = container.path("/opt/cc2api/.env").read_bytes()
        state_before = lasting_files(machine, STATE_DIR)
        done, _ = install_sh(container, "--uninstall")
        assert done.returncode == 0, output(done)
        assert not container.path("/etc/systemd/system/cc2api.service").exists()
        assert not container.path(
            "/etc/systemd/system/multi-user.target.wants/cc2api.service"
        ).exists()
        assert container.unit_pids("cc2api.service") == []
        assert sorted(p.name for p in container.path("/opt/cc2api").iterdir()) == [
            ".cc2api-install",
            ".env",
        ]
        assert container.path("/opt/cc2api/.env").read_bytes() == env_before
        assert container.run(["id", "-un", "cc2api"], timeout=30).stdout == "cc2api\n"
        assert container.path("/var/lib/cc2api/.claude").is_dir()
        assert f"==> keeping the store in {STATE_DIR}" in done.stdout
        assert lasting_files(machine, STATE_DIR) == state_before
        assert state_dir_of(machine, STATE_DIR, "cc2api") == (True, 0o700, True)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/health", timeout=5)

    def test_purge_removes_env_and_store_too(self, machine: Machine, first: Install) -> None:
        """`--uninstall --purge` removes the prefix, .env included, and the store; since the
        store's folder is also cc2api's home, the home and the user stay, with the rest."""
        container = machine.container
        held = sorted(p.name for p in container.path(STATE_DIR).iterdir())
        done, _ = install_sh(container, "--uninstall", "--purge")
        assert done.returncode == 0, output(done)
        assert not container.path("/opt/cc2api").exists()
        assert container.run(["id", "cc2api"], timeout=30, check=False).returncode == 0
        assert f"==> removing the store's files from {STATE_DIR} (the home of cc2api stays)" in (
            done.stdout
        )
        left = sorted(p.name for p in container.path(STATE_DIR).iterdir())
        assert left == [name for name in held if name not in STORE_FILES]
        assert {".claude", "kept.txt"} <= set(left)
