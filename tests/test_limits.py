"""The operator's limits: concurrent runs and their queue, timeouts, body size, failed logins."""

from __future__ import annotations

import os
import sys
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
import trio

from cc2api.auth import LoginThrottle
from cc2api.errors import TooManyFailedLogins

from .helpers import (
    AUTH,
    PASSWORD,
    Event,
    Served,
    Shared,
    alive,
    chat_body,
    listing,
    make_settings,
    post_chat,
    served,
    sse_events,
    start_server_process,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


class Streams:
    """Streams read to their end in the background; each one's events by name."""

    def __init__(self, gw: Served, nursery: trio.Nursery) -> None:
        self.gw = gw
        self.nursery = nursery
        self.events: dict[str, list[Event]] = {}
        self.ids: dict[str, str] = {}

    async def open(self, name: str, body: dict[str, object]) -> None:
        """Start a stream and return once its first event (``process``) is in."""

        async def read(task_status: trio.TaskStatus[None]) -> None:
            self.events[name] = []
            async with self.gw.client.stream("POST", "/chat", json=body) as response:
                assert response.status_code == 200, await response.aread()
                self.ids[name] = response.headers["x-process-id"]
                async with aclosing(sse_events(response)) as stream:
                    started = False
                    async for event in stream:
                        if event.event != ":":
                            self.events[name].append(event)
                        if not started:
                            started = True
                            task_status.started()

        await self.nursery.start(read)

    async def started(self, name: str) -> None:
        """Return once a stream has had a line from its CLI."""
        await wait_until(lambda: "message" in self.names(name), 20)

    def names(self, name: str) -> list[str]:
        """Return the event names a stream has had so far."""
        return [event.event for event in self.events[name]]

    async def status(self, name: str) -> str:
        """Return a run's status as GET /processes lists it."""
        runs = await listing(self.gw.client)
        return str(next(p["status"] for p in runs if p["process_id"] == self.ids[name]))


class TestQueue:
    async def test_run_over_the_limit_waits_and_says_so(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run over MAX_CONCURRENT_RUNS gets a queued event with its place and waits."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=2)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("a", chat_body("hang", workdir))
            await streams.open("b", chat_body("echo b", workdir))
            await wait_until(lambda: "queued" in streams.names("b"), 10)
            queued = streams.events["b"][1]
            assert queued.json() == {"position": 1, "running": 1, "max_concurrent_runs": 1}
            assert await streams.status("b") == "queued"
            # The wait is the check: b must not start meanwhile, and no event marks that.
            await trio.sleep(0.3)
            assert "message" not in streams.names("b")
            await gw.client.delete(f"/chat/{streams.ids['a']}")
            await wait_until(lambda: "done" in streams.names("b"), 20)
            assert streams.events["b"][-1].json()["status"] == "completed"

    async def test_queue_is_first_in_first_out(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Queued runs start in the order they came in."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=5)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("first", chat_body("hang", workdir))
            for name in "bcde":
                await streams.open(name, chat_body("hang", workdir))
            positions = [p["queue_position"] for p in (await listing(gw.client))]
            assert positions == [0, 1, 2, 3, 4]
            order = ["first", *"bcde"]
            for index, name in enumerate(order):
                await streams.started(name)
                later = order[index + 1 :]
                assert [await streams.status(n) for n in later] == ["queued"] * len(later)
                await gw.client.delete(f"/chat/{streams.ids[name]}")

    async def test_full_queue_is_429_with_retry_after(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With every slot held and the queue full, POST /chat gets 429 JSON and Retry-After."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=1)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("a", chat_body("hang", workdir))
            await streams.open("b", chat_body("hang", workdir))
            response, _ = await post_chat(gw.client, chat_body("echo", workdir))
            assert response.status_code == 429
            assert response.json()["code"] == "queue_full"
            assert "MAX_QUEUED_RUNS=1" in response.json()["detail"]
            assert int(response.headers["retry-after"]) > 0
            assert len(await listing(gw.client)) == 2
            for name in "ab":
                await gw.client.delete(f"/chat/{streams.ids[name]}")

    async def test_cancelled_while_queued_never_starts(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """DELETE on a queued run ends it as cancelled without starting the CLI."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=1)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("a", chat_body("hang", workdir))
            await streams.open("b", chat_body("echo", workdir))
            answer = await gw.client.delete(f"/chat/{streams.ids['b']}")
            assert answer.json()["status"] == "cancelled"
            await wait_until(lambda: "done" in streams.names("b"), 10)
            assert streams.names("b") == ["process", "queued", "done"]
            assert streams.events["b"][-1].json()["exit_code"] is None
            # Its place is free again: another run may queue.
            await streams.open("c", chat_body("echo", workdir))
            await gw.client.delete(f"/chat/{streams.ids['a']}")
            await wait_until(lambda: "done" in streams.names("c"), 20)
            assert streams.events["c"][-1].json()["status"] == "completed"

    async def test_hanging_up_while_queued_frees_the_place(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A client that hangs up while its run is queued leaves no run behind."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=1)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("a", chat_body("hang", workdir))
            async with gw.client.stream("POST", "/chat", json=chat_body("echo", workdir)) as r:
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == "queued":
                            break

            async def one_run() -> bool:
                return len(await listing(gw.client)) == 1

            with trio.fail_after(10):
                while not await one_run():
                    await trio.sleep(0.05)
            await gw.client.delete(f"/chat/{streams.ids['a']}")


class TestTimeout:
    async def test_request_timeout_tears_down_and_says_timeout(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A run past its timeout_seconds is torn down and done says timeout."""
        start = trio.current_time()
        response, events = await post_chat(gw.client, chat_body("hang", workdir, timeout_seconds=1))
        took = trio.current_time() - start
        assert response.status_code == 200
        pid = next(e.json()["pid"] for e in events if e.event == "message" and "pid" in e.json())
        assert not alive(pid)
        assert [e.event for e in events[-2:]] == ["error", "done"]
        assert events[-2].json()["code"] == "timeout"
        assert events[-1].json()["status"] == "timeout"
        assert took < 10

    async def test_server_timeout_applies_without_a_request_timeout(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """RUN_TIMEOUT_SECONDS ends a run that asked for no timeout."""
        async with served(make_settings(run_timeout_seconds=1), fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("silent", workdir))
        assert events[-1].json()["status"] == "timeout"

    async def test_request_timeout_over_the_server_limit_is_422(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A timeout_seconds over RUN_TIMEOUT_SECONDS is refused, naming both."""
        async with served(make_settings(run_timeout_seconds=60), fake_environ) as gw:
            response, _ = await post_chat(gw.client, chat_body("echo", workdir, timeout_seconds=61))
        assert response.status_code == 422
        assert "timeout_seconds" in response.json()["detail"]
        assert "RUN_TIMEOUT_SECONDS=60" in response.json()["detail"]

    async def test_time_queued_does_not_count(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run's timeout starts when its CLI does, not while it waits in the queue."""
        settings = make_settings(max_concurrent_runs=1, max_queued_runs=1)
        async with served(settings, fake_environ) as gw, trio.open_nursery() as nursery:
            streams = Streams(gw, nursery)
            await streams.open("a", chat_body("hang", workdir))
            await streams.open("b", chat_body("echo", workdir, timeout_seconds=1))
            await trio.sleep(1.5)  # the wait is the check: b queues past its timeout
            await gw.client.delete(f"/chat/{streams.ids['a']}")
            await wait_until(lambda: "done" in streams.names("b"), 20)
        assert streams.events["b"][-1].json()["status"] == "completed"


class TestBodyLimit:
    @pytest.mark.parametrize("chunked", [False, True])
    async def test_body_over_the_setting_is_413(
        self, fake_environ: dict[str, str], workdir: Path, chunked: bool
    ) -> None:
        """A body over MAX_BODY_BYTES gets 413 JSON, with or without a Content-Length."""
        body = b'{"prompt": "' + b"x" * 8192 + b'", "cwd": "' + str(workdir).encode() + b'"}'

        async def chunks() -> object:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        async with served(make_settings(max_body_bytes=4096), fake_environ) as gw:
            content = chunks() if chunked else body
            response = await gw.client.post("/chat", content=content)  # type: ignore[arg-type]
            healthy = await gw.client.get("/health")
        assert response.status_code == 413
        assert response.json()["code"] == "request_entity_too_large"
        assert "4096 bytes" in response.json()["detail"]
        assert healthy.status_code == 200


class TestFailedLogins:
    def test_throttle_counts_failures_in_the_window_only(self) -> None:
        """Failures older than the window do not count toward a lockout."""
        now = [0.0]
        throttle = LoginThrottle(3, window=10, lockout=30, clock=lambda: now[0])
        for moment in (0, 5, 11, 16):
            now[0] = moment
            throttle.check("a")  # never three within 10 s so far
            throttle.failed("a")
        now[0] = 17
        throttle.failed("a")  # 11, 16 and 17
        with pytest.raises(TooManyFailedLogins) as raised:
            throttle.check("a")
        assert raised.value.headers() == {"Retry-After": "30"}
        throttle.check("b")  # other addresses are not affected
        now[0] = 47.5
        throttle.check("a")

    def test_success_clears_the_count(self) -> None:
        """A successful login forgets the address's earlier failures."""
        throttle = LoginThrottle(2, window=60, lockout=60, clock=lambda: 0.0)
        throttle.failed("a")
        throttle.succeeded("a")
        throttle.failed("a")
        throttle.check("a")

    async def test_repeated_failures_lock_the_address_out(
        self, fake_environ: dict[str, str]
    ) -> None:
        """After AUTH_MAX_FAILURES wrong passwords, even the right one gets 429 for a while."""
        settings = make_settings(auth_max_failures=3, auth_lockout_seconds=1.5)
        async with served(settings, fake_environ) as gw:
            async with httpx.AsyncClient(base_url=gw.url, auth=("admin", "wrong")) as bad:
                codes = [(await bad.get("/processes")).status_code for _ in range(3)]
            locked = await gw.client.get("/processes")
            health = await gw.client.get("/health")
            with trio.fail_after(10):
                while (after := await gw.client.get("/processes")).status_code == 429:
                    await trio.sleep(0.05)
        assert codes == [401, 401, 401]
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_failed_logins"
        assert 1 <= int(locked.headers["retry-after"]) <= 2
        assert health.status_code == 200
        assert after.status_code == 200

    async def test_requests_without_credentials_do_not_count(
        self, fake_environ: dict[str, str]
    ) -> None:
        """Requests that send no credentials at all never lock an address out."""
        settings = make_settings(auth_max_failures=2)
        async with served(settings, fake_environ) as gw:
            async with httpx.AsyncClient(base_url=gw.url) as anonymous:
                for _ in range(5):
                    assert (await anonymous.get("/processes")).status_code == 401
            assert (await gw.client.get("/processes")).status_code == 200

    async def test_passwords_never_reach_the_log(self, tmp_path: Path) -> None:
        """Neither a wrong nor the right password appears in the server's log, even at DEBUG."""
        wrong = "hunter2-wrong-password-XYZ"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "AUTH_USER": "admin",
            "AUTH_PASSWORD": PASSWORD,
            "CLAUDE_PATH": sys.executable,
            "PORT": "0",
            "LOG_LEVEL": "DEBUG",
            "AUTH_MAX_FAILURES": "3",
        }
        proc, url = await start_server_process(
            [sys.executable, "-m", "cc2api", "serve"], tmp_path, env
        )
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(4):
                    await client.get("/processes", auth=("admin", wrong))
                await client.get("/processes", auth=AUTH)
                await client.get("/processes", headers={"Authorization": f"Bearer {wrong}"})
        finally:
            proc.terminate()
            await proc.wait()
        log = (tmp_path / "server.log").read_text()
        assert "failed login" in log
        assert wrong not in log
        assert PASSWORD not in log
