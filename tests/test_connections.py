"""Connections: a flood of silent ones, the header deadline, the cap and its evictions."""

from __future__ import annotations

import logging
import re
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import trio
import trio.testing
from pydantic import ValidationError

from cc2api.connections import Connection, Pressure
from cc2api.descriptors import (
    DEFAULT_MAX_CONNECTIONS,
    MIN_CONNECTIONS,
    attainable_limit,
    default_cap,
    reserved,
)
from cc2api.settings import explain

from .helpers import (
    AUTH,
    REPO,
    Event,
    chat_body,
    make_settings,
    post_chat,
    running_server,
    server_environment,
    sse_events,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

CONSOLE_SCRIPT = Path(sys.executable).parent / "cc2api"
FAST_CLAUDE = REPO / "tests" / "fast_claude.sh"
FLOOD_ADDRESS = "127.0.0.2"  # the flood's source address, so its connections can be told apart
FLOOD_SIZE = 1100  # more than a default soft RLIMIT_NOFILE of 1024
FLOOD_AHEAD = 50  # connections at most waiting to be accepted: half the listen backlog
HEADER_TIMEOUT = 0.5
# Public, and larger than what the kernel's socket buffers take in (1.7 MB).
LARGE_ASSET = "/docs/assets/swagger-ui-bundle.js"
# What the finding saw: a server that hit EMFILE, or trio's accept loop complaining of it.
EMFILE_SIGNS = ("EMFILE", "Too many open files", "Traceback")


@pytest.fixture(name="descriptors", autouse=True)
def _descriptors() -> Iterator[None]:
    """Give the test process room for the flood's sockets (CI's soft limit may be 1024)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    needed = FLOOD_SIZE + 512
    if hard != resource.RLIM_INFINITY and hard < needed:
        hard = needed  # root may raise it; anyone else gets the error, not a skipped test
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


@dataclass
class Server:
    """A cc2api server process and what a test needs of it."""

    proc: trio.Process
    url: str
    log: Path

    @property
    def process(self) -> psutil.Process:
        """Return the server as psutil sees it."""
        return psutil.Process(self.proc.pid)

    @property
    def address(self) -> tuple[str, int]:
        """Return the host and port it listens on."""
        found = re.fullmatch(r"http://([\d.]+):(\d+)", self.url)
        assert found is not None
        return found.group(1), int(found.group(2))

    def peers(self) -> set[tuple[str, int]]:
        """Return the addresses of the clients the server holds a connection with."""
        return {
            (conn.raddr.ip, conn.raddr.port)
            for conn in self.process.net_connections("tcp")
            if conn.raddr
        }

    def flood_connections(self) -> int:
        """Return how many of the server's connections come from the flood's address."""
        return sum(1 for ip, _ in self.peers() if ip == FLOOD_ADDRESS)

    async def wait_for_log(self, pattern: str, timeout: float = 20) -> str:
        """Return the first log line matching ``pattern``, once there is one."""
        with trio.fail_after(timeout):
            while not (found := re.search(f"^.*{pattern}.*$", self.log.read_text(), re.M)):
                await trio.sleep(0.05)
        return found.group(0)

    def client(self) -> httpx.AsyncClient:
        """Return a client that opens a new connection for each request, as a new caller does."""
        limits = httpx.Limits(max_keepalive_connections=0)
        return httpx.AsyncClient(base_url=self.url, auth=AUTH, timeout=60, limits=limits)


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a server process that runs the fast fake CLI."""
    # Quiet streams stay quiet.
    return server_environment(home, FAST_CLAUDE, HEARTBEAT_SECONDS="3600", **extra)


def limited(nofile: tuple[int, int] | None, argv: list[str]) -> list[str]:
    """Return ``argv`` run under RLIMIT_NOFILE ``nofile`` (soft, hard), if given."""
    if nofile is None:
        return argv
    return ["prlimit", f"--nofile={nofile[0]}:{nofile[1]}", "--", *argv]


@asynccontextmanager
async def server(
    tmp_path: Path, nofile: tuple[int, int] | None = None, **settings: str
) -> AsyncIterator[Server]:
    """Run ``python -m cc2api serve`` for the block, under ``nofile`` if given."""
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    argv = limited(nofile, [sys.executable, "-m", "cc2api", "serve"])
    async with running_server(argv, tmp_path, server_env(home, **settings)) as (proc, url):
        yield Server(proc, url, tmp_path / "server.log")


async def connect(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    """Open a connection that sends nothing; return once its handshake is done."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((source, 0))
        sock.connect_ex(address)
        await trio.lowlevel.wait_writable(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    except BaseException:
        sock.close()
        raise
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Return whether the server has closed this connection, without waiting."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


async def read_until_closed(sock: socket.socket) -> bytes:
    """Return what the server sends on this connection until it closes it."""
    received = b""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            data = sock.recv(65536)
        except ConnectionError:
            return received
        if not data:
            return received
        received += data


async def get_health(stream: trio.SocketStream) -> int:
    """Send GET /health on a kept-alive connection; return the status once the answer is in."""
    await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some()
    head, body = received.split(b"\r\n\r\n", 1)
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        body += await stream.receive_some()
    return int(head.split()[1])


class Flood:
    """Connections from FLOOD_ADDRESS that never send a byte."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sockets: list[socket.socket] = []

    async def open(self, count: int) -> None:
        """Open ``count`` connections, as fast as the server takes them in.

        A handshake the kernel completed is not yet a connection the server took: past
        the listen backlog the kernel drops the client's ACK and retries only after a
        second or more. So no more than FLOOD_AHEAD connections are ever waiting.
        """

        async def one() -> None:
            self.sockets.append(await connect(self.server.address, FLOOD_ADDRESS))

        while (waiting := len(self.sockets) - self.landed()) or len(self.sockets) < count:
            ahead = min(FLOOD_AHEAD - waiting, count - len(self.sockets))
            async with trio.open_nursery() as nursery:
                for _ in range(ahead):
                    nursery.start_soon(one)
            await trio.sleep(0.01)

    def landed(self) -> int:
        """Return how many connections the server holds or has closed."""
        closed = sum(closed_by_server(sock) for sock in self.sockets)
        return self.server.flood_connections() + closed

    def close(self) -> None:
        """Close every connection from this side."""
        for sock in self.sockets:
            sock.close()


@asynccontextmanager
async def flood(server: Server, count: int) -> AsyncIterator[Flood]:
    """Open a flood of ``count`` silent connections for the block, then close them."""
    connections = Flood(server)
    try:
        with trio.move_on_after(30):
            await connections.open(count)
        landed = connections.landed()
        assert landed == count, f"the server took in {landed} of {count} connections"
        yield connections
    finally:
        connections.close()


@dataclass
class Stream:
    """A POST /chat stream read in the background, on a connection of its own."""

    process_id: str = ""
    events: list[Event] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def final(self) -> Event:
        """Return the stream's last event."""
        return self.events[-1]


async def open_stream(gw: Server, nursery: trio.Nursery, prompt: str, workdir: Path) -> Stream:
    """Start a stream and return once its run has printed its first line."""
    stream = Stream()

    async def read(task_status: trio.TaskStatus[None]) -> None:
        with stream.cancel_scope:
            async with gw.client() as client:
                body = chat_body(prompt, workdir)
                async with client.stream("POST", "/chat", json=body) as response:
                    assert response.status_code == 200, await response.aread()
                    stream.process_id = response.headers["x-process-id"]
                    async with aclosing(sse_events(response)) as events:
                        async for event in events:
                            stream.events.append(event)
                            if event.event == "message" and len(stream.events) == 2:
                                task_status.started()
        stream.done.set()

    await nursery.start(read)
    return stream


async def cancel_run(gw: Server, stream: Stream) -> None:
    """DELETE a stream's run and wait for the stream to end."""
    async with gw.client() as client:
        assert (await client.delete(f"/chat/{stream.process_id}")).status_code == 200
    with trio.fail_after(20):
        await stream.done.wait()


class TestFlood:
    @pytest.mark.parametrize(
        "hard",
        [1024, resource.RLIM_INFINITY],
        ids=["hard-limit-1024", "hard-limit-above"],
    )
    async def test_silent_connections_leave_the_server_responsive(
        self, tmp_path: Path, workdir: Path, hard: int
    ) -> None:
        """Under 1,100 silent connections /health and a run answer, with no EMFILE, and after."""
        if hard == resource.RLIM_INFINITY:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # A deadline longer than the test: connections the flood closes must go at once.
        # No limit per address: the flood must meet the cap itself.
        settings = {"HEADER_TIMEOUT_SECONDS": "600", "MAX_CONNECTIONS_PER_ADDRESS": "0"}
        async with server(tmp_path, (1024, hard), **settings) as gw:
            descriptors = gw.process.num_fds()
            async with flood(gw, FLOOD_SIZE), gw.client() as client:
                with trio.fail_after(10):
                    health = await client.get("/health")
                assert health.status_code == 200
                with trio.fail_after(20):
                    response, events = await post_chat(client, chat_body("hi", workdir))
                assert response.status_code == 200
                assert events[-1].json()["status"] == "completed"
            await wait_until(lambda: gw.flood_connections() == 0, 20)
            assert gw.process.num_fds() <= descriptors + 5
            async with gw.client() as client:
                with trio.fail_after(10):
                    assert (await client.get("/health")).status_code == 200
                    response, events = await post_chat(client, chat_body("again", workdir))
                assert events[-1].json()["status"] == "completed"
            log = gw.log.read_text()
        assert not [sign for sign in EMFILE_SIGNS if sign in log], log[-3000:]
        assert len(re.findall("connection pressure", log)) <= 3, log[-3000:]


class TestPerAddress:
    async def test_an_address_at_its_limit_gets_no_more_connections(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """Past MAX_CONNECTIONS_PER_ADDRESS from one address, a new one is closed at once;
        other addresses, and that one's streams, go on."""
        async with (
            server(tmp_path, MAX_CONNECTIONS_PER_ADDRESS="2") as gw,
            trio.open_nursery() as nursery,
        ):
            stream = await open_stream(gw, nursery, "hang", workdir)
            with await connect(gw.address, FLOOD_ADDRESS) as first:
                await wait_until(lambda: first.getsockname() in gw.peers(), 10)
                with await connect(gw.address, FLOOD_ADDRESS) as second:
                    await wait_until(lambda: second.getsockname() in gw.peers(), 10)
                    with await connect(gw.address, FLOOD_ADDRESS) as third:
                        with trio.fail_after(10):
                            assert await read_until_closed(third) == b""
                    assert not closed_by_server(first)
                    assert not closed_by_server(second)
                    async with gw.client() as client:  # from 127.0.0.1
                        with trio.fail_after(10):
                            assert (await client.get("/health")).status_code == 200
            line = await gw.wait_for_log("connection pressure")
            assert "closed 1 new connection(s) from addresses at their limit" in line
            assert not stream.done.is_set()
            await cancel_run(gw, stream)
        assert stream.final().json()["status"] == "cancelled"


class TestHeaderDeadline:
    async def test_half_a_request_head_is_closed_at_the_deadline(self, tmp_path: Path) -> None:
        """A connection that sends half a request head is closed, unanswered, at the deadline."""
        async with server(tmp_path, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)) as gw:
            start = trio.current_time()
            with await connect(gw.address) as sock:
                sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                with trio.fail_after(10):
                    answer = await read_until_closed(sock)
            assert trio.current_time() - start >= HEADER_TIMEOUT
            assert answer == b""

    async def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_deadline(
        self, tmp_path: Path
    ) -> None:
        """Dribbling a request head does not put off the deadline, which runs from connect."""
        async with server(tmp_path, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)) as gw:
            head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10_000
            with await connect(gw.address) as sock, trio.fail_after(10):
                for byte in head:
                    if closed_by_server(sock):
                        break
                    try:
                        sock.send(bytes([byte]))
                    except OSError:  # closed between the check and the send
                        break
                    await trio.sleep(0.02)
                assert closed_by_server(sock)

    async def test_a_quiet_stream_outlives_the_deadline(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A stream whose run prints nothing for longer than the deadline is not cut."""
        async with (
            server(tmp_path, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)) as gw,
            trio.open_nursery() as nursery,
        ):
            stream = await open_stream(gw, nursery, "hang", workdir)
            quiet_since = len(stream.events)
            # A later connection closed at its deadline: the stream has been quiet longer.
            with await connect(gw.address) as probe, trio.fail_after(10):
                await read_until_closed(probe)
            assert len(stream.events) == quiet_since
            assert not stream.done.is_set()
            await cancel_run(gw, stream)
        assert stream.final().event == "done"
        assert stream.final().json()["status"] == "cancelled"

    async def test_a_kept_alive_connection_waits_for_its_next_request(self, tmp_path: Path) -> None:
        """After a response, the connection waits the keep-alive time, not the header deadline."""
        async with server(tmp_path, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)) as gw:
            stream = await trio.open_tcp_stream(*gw.address)
            async with stream:
                with trio.fail_after(10):
                    assert await get_health(stream) == 200
                    with await connect(gw.address) as probe:
                        await read_until_closed(probe)
                    assert await get_health(stream) == 200


class TestCap:
    async def test_a_new_connection_evicts_the_longest_idle_one(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """At the cap a new connection closes the oldest silent one, never a stream in flight."""
        async with server(tmp_path, MAX_CONNECTIONS="3") as gw, trio.open_nursery() as nursery:
            stream = await open_stream(gw, nursery, "hang", workdir)
            with await connect(gw.address) as older:
                await wait_until(lambda: older.getsockname() in gw.peers(), 10)
                with await connect(gw.address) as newer:
                    await wait_until(lambda: newer.getsockname() in gw.peers(), 10)
                    async with gw.client() as client:
                        with trio.fail_after(10):
                            assert (await client.get("/health")).status_code == 200
                    assert closed_by_server(older)
                    assert not closed_by_server(newer)
            assert not stream.done.is_set()
            line = await gw.wait_for_log("connection pressure")
            assert "closed 1 connection(s) that had sent no request" in line
            await cancel_run(gw, stream)
        assert stream.final().json()["status"] == "cancelled"

    async def test_a_connection_kept_alive_between_requests_is_idle_too(
        self, tmp_path: Path
    ) -> None:
        """At a cap of one, a connection idle since its response makes way for a new one."""
        async with server(tmp_path, MAX_CONNECTIONS="1") as gw:
            kept = await trio.open_tcp_stream(*gw.address)
            async with kept:
                with trio.fail_after(10):
                    assert await get_health(kept) == 200
                async with gw.client() as client:
                    with trio.fail_after(10):  # a busy one would never make way
                        assert (await client.get("/health")).status_code == 200
                        assert await kept.receive_some() == b""  # closed by the server

    async def test_with_every_connection_busy_a_new_one_waits_for_a_slot(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """When every connection has a request in flight, a new one waits until one ends."""
        async with server(tmp_path, MAX_CONNECTIONS="2") as gw, trio.open_nursery() as nursery:
            first = await open_stream(gw, nursery, "hang", workdir)
            second = await open_stream(gw, nursery, "hang", workdir)
            answered = trio.Event()

            async def health() -> None:
                async with gw.client() as client:
                    assert (await client.get("/health")).status_code == 200
                answered.set()

            nursery.start_soon(health)
            await gw.wait_for_log("new connections waited 1 time")
            assert not answered.is_set()
            first.cancel_scope.cancel()  # its client hangs up
            with trio.fail_after(20):
                await answered.wait()
            assert not second.done.is_set()
            await cancel_run(gw, second)
        assert second.final().json()["status"] == "cancelled"


class TestShutdown:
    async def test_an_idle_kept_alive_connection_does_not_hold_up_the_stop(
        self, tmp_path: Path
    ) -> None:
        """On SIGTERM a connection idle between requests is closed at once, not after the
        5 s the server gives streams to send their last events."""
        async with server(tmp_path) as gw:
            kept = await trio.open_tcp_stream(*gw.address)
            async with kept:
                with trio.fail_after(10):
                    assert await get_health(kept) == 200
                gw.proc.terminate()
                with trio.fail_after(4):  # under the 5 s grace
                    assert await kept.receive_some() == b""
                    await gw.proc.wait()
        assert gw.proc.returncode == 0


class TestSendDeadline:
    async def test_a_client_that_never_reads_loses_its_connection(self, tmp_path: Path) -> None:
        """A client that asks for a large answer and reads none of it is closed after a while."""
        async with server(tmp_path, CLIENT_STALL_SECONDS="1") as gw:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(gw.address)
                sock.sendall(f"GET {LARGE_ASSET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await wait_until(lambda: sock.getsockname() in gw.peers(), 10)
                await wait_until(lambda: sock.getsockname() not in gw.peers(), 20)
            line = await gw.wait_for_log("connection pressure")
            assert "closed 1 connection(s) whose client took no data" in line

    async def test_a_slow_reader_keeps_its_connection(self, tmp_path: Path) -> None:
        """A client that reads slowly, but reads, gets its whole answer."""
        async with server(tmp_path, CLIENT_STALL_SECONDS="3") as gw:
            stream = await trio.open_tcp_stream(*gw.address)
            async with stream:
                await stream.send_all(f"GET {LARGE_ASSET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                received = b""
                with trio.fail_after(60):
                    while b"\r\n\r\n" not in received:
                        received += await stream.receive_some()
                    head, body = received.split(b"\r\n\r\n", 1)
                    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                    assert length is not None, head
                    while len(body) < int(length.group(1)):
                        await trio.sleep(0.1)  # the pace of a slow client, far within 3 s
                        chunk = await stream.receive_some(64 * 1024)
                        assert chunk, f"closed after {len(body)} bytes"
                        body += chunk
            assert head.startswith(b"HTTP/1.1 200")


class TestStartup:
    async def test_the_soft_limit_is_raised_and_the_cap_logged(self, tmp_path: Path) -> None:
        """A server started with a soft limit of 1024 raises it to the hard limit and says so."""
        async with server(tmp_path, (1024, 4096)) as gw:
            assert gw.process.rlimit(psutil.RLIMIT_NOFILE) == (4096, 4096)
            line = await gw.wait_for_log("descriptor limit")
            cap = default_cap(4096, 16)
            assert f"descriptor limit 4096 (raised from 1024): at most {cap} connections" in line

    def test_a_cap_without_room_for_the_runs_refuses_to_start(self, tmp_path: Path) -> None:
        """MAX_CONNECTIONS beyond what the descriptor limit leaves for it: exit 2, saying so."""
        env = server_env(tmp_path, MAX_CONNECTIONS="1000")
        done = subprocess.run(
            limited((1024, 1024), [str(CONSOLE_SCRIPT), "serve"]),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert "MAX_CONNECTIONS: 1000 connections leave no room" in done.stderr
        assert f"at most {1024 - reserved(16)}" in done.stderr
        assert "Traceback" not in done.stderr

    def test_check_reports_the_cap(self, tmp_path: Path) -> None:
        """`cc2api check` says how many connections the limit leaves room for."""
        done = subprocess.run(
            limited((1024, 1024), [str(CONSOLE_SCRIPT), "check"]),
            env=server_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        cap = default_cap(1024, 16)
        expected = f"ok: at most {cap} connections at once, with {reserved(16)} descriptors"
        assert any(line.startswith(expected) for line in done.stdout.splitlines()), done.stdout


class TestBudget:
    def test_default_cap_leaves_room_for_the_runs(self) -> None:
        """The derived cap is what the runs leave, at most 4096 and never below the floor."""
        assert default_cap(1024, 16) == 1024 - 128 - 16 * 16
        assert default_cap(65536, 16) == DEFAULT_MAX_CONNECTIONS
        assert default_cap(256, 16) == MIN_CONNECTIONS

    def test_settings_refuse_a_cap_beyond_the_limit(self) -> None:
        """Settings validation names MAX_CONNECTIONS when it exceeds what the limit allows."""
        limit = attainable_limit()
        with pytest.raises(ValidationError) as raised:
            make_settings(max_connections=limit)
        message = explain(raised.value)
        assert message.startswith(f"MAX_CONNECTIONS: {limit} connections leave no room"), message
        assert f"at most {limit - reserved(16)}," in message


class TestPressure:
    async def test_one_line_per_period_counting_what_came_between(
        self, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The first eviction is logged at once; later ones wait for the period, counted."""
        caplog.set_level(logging.WARNING, logger="cc2api.connections")
        pressure = Pressure(640, period=10)
        silent, idle = Connection(), Connection()
        idle.requested = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pressure.run)
            pressure.evicted(silent)
            await trio.testing.wait_all_tasks_blocked()
            assert len(caplog.records) == 1
            for _ in range(500):
                pressure.evicted(silent)
            pressure.evicted(idle)
            pressure.full()
            await trio.sleep(9)
            assert len(caplog.records) == 1
            await trio.sleep(2)
            nursery.cancel_scope.cancel()
        first, second = (record.getMessage() for record in caplog.records)
        assert "closed 1 connection(s) that had sent no request" in first
        assert "closed 500 connection(s) that had sent no request" in second
        assert "closed 1 connection(s) idle between requests" in second
        assert "new connections waited 1 time(s), every one busy" in second
