"""The Python client (cc2api.client) against a real gateway and the fake CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from cc2api.client import ApiError, AsyncClient, Client, ConnectionLost, Event, Run, resolve
from cc2api.models import ApprovalAnswer
from cc2api.wire import DoneEvent, ProcessEvent

from .cutting_proxy import CuttingProxy
from .helpers import PASSWORD, USER, Served, alive, make_settings, serve_in_thread, served
from .test_keys import make_key

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def gateway(environ: dict[str, str], **settings: Any) -> AsyncIterator[Served]:
    """Serve a gateway of the test's own with the fake CLI."""
    async with served(make_settings(**settings), environ) as gw:
        yield gw


def admin(url: str, **options: Any) -> AsyncClient:
    """Return an async client that logs in as the admin."""
    return AsyncClient(url, user=USER, password=PASSWORD, **options)


def ids(events: list[Event]) -> list[int | None]:
    """Return the events' ids in order."""
    return [event.id for event in events]


async def run_status(gw: Served, process_id: str) -> str:
    """Return the run's status as its record says it."""
    status: str = (await gw.client.get(f"/runs/{process_id}")).json()["status"]
    return status


class TestChat:
    async def test_chat_yields_every_event_once_in_order(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """chat() yields process first, each CLI line, then done, with ids 1, 2, 3, ... ."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            async with client.chat("lines 5", cwd=str(workdir)) as run:
                events = [event async for event in run]
        assert [e.event for e in events] == ["process"] + ["message"] * 7 + ["done"]
        assert ids(events) == list(range(1, 10))
        assert run.status == "completed"
        assert run.process_id == events[0].data["process_id"]

    async def test_events_carry_the_cores_typed_models(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """process and done events give the core's wire models; CLI lines are parsed dicts."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            async with client.chat("echo hi", cwd=str(workdir)) as run:
                events = [event async for event in run]
        assert isinstance(events[0].model, ProcessEvent)
        done = events[-1].model
        assert isinstance(done, DoneEvent)
        assert done.exit_code == 0
        lines = [event for event in events if event.event == "message"]
        assert lines[0].type == "system"
        assert lines[0].data["subtype"] == "init"
        assert json.loads(lines[-1].line) == lines[-1].data
        assert lines[-1].model is None

    async def test_wait_returns_the_done_payload(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """run.wait() takes the stream to its end and returns done's data."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            async with client.chat("echo hi", cwd=str(workdir)) as run:
                done = await run.wait()
        assert done["status"] == "completed"
        assert done["process_id"] == run.process_id

    async def test_a_refusal_raises_api_error_with_code_and_detail(
        self, fake_environ: dict[str, str]
    ) -> None:
        """A 400 before the stream raises ApiError carrying the server's status, code and detail."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            with pytest.raises(ApiError) as raised:
                async with client.chat("echo hi", cwd="relative/path"):
                    pass
        assert raised.value.status == 400
        assert raised.value.code == "invalid_cwd"
        assert "cwd" in raised.value.detail

    async def test_a_wrong_password_raises_unauthorized(self, fake_environ: dict[str, str]) -> None:
        """Wrong credentials raise ApiError 401 unauthorized."""
        async with gateway(fake_environ) as gw:
            async with AsyncClient(gw.url, user=USER, password="wrong") as client:
                with pytest.raises(ApiError) as raised:
                    await client.processes()
        assert (raised.value.status, raised.value.code) == (401, "unauthorized")

    async def test_an_unreachable_server_raises_connection_lost(self) -> None:
        """A server nobody listens for raises ConnectionLost, for calls and runs alike."""
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()
        async with admin(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(ConnectionLost):
                await client.health()
            with pytest.raises(ConnectionLost):
                async with client.chat("echo hi", cwd="/tmp"):
                    pass


class TestNeverLosesAnEvent:
    async def test_cuts_mid_stream_lose_and_repeat_nothing(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Connections cut mid-stream four times: every event comes once, in order, run complete."""
        async with gateway(fake_environ) as gw, trio.open_nursery() as nursery:
            proxy = CuttingProxy(int(gw.url.rsplit(":", 1)[1]), cut_after_bytes=30_000, cuts=4)
            await nursery.start(proxy.serve)
            async with admin(proxy.url) as client:
                async with client.chat("lines 200 1000", cwd=str(workdir)) as run:
                    events = [event async for event in run]
            assert await run_status(gw, events[0].data["process_id"]) == "completed"
            nursery.cancel_scope.cancel()
        assert proxy.cut_count >= 4
        assert proxy.accepted >= 5
        assert ids(events) == list(range(1, len(events) + 1))
        numbers = [e.data["n"] for e in events if e.event == "message" and "n" in e.data]
        assert numbers == list(range(200))
        assert run.status == "completed"

    async def test_follow_picks_up_after_a_given_event(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """follow(id, after=N) yields the run's events from N + 1 on."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            process_id = await client.start("lines 3", cwd=str(workdir))
            with trio.fail_after(20):
                while (await client.run(process_id))["status"] != "completed":
                    await trio.sleep(0.05)
            async with client.follow(process_id, after=2) as run:
                events = [event async for event in run]
        assert ids(events)[0] == 3
        assert events[-1].event == "done"

    async def test_events_returns_what_a_live_run_has_so_far(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """events(id) of a run still going returns its events so far and does not wait for more."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            process_id = await client.start("hang", cwd=str(workdir))
            with trio.fail_after(20):
                while (await client.run(process_id))["last_event_id"] < 3:
                    await trio.sleep(0.05)
            with trio.fail_after(20):
                events = await client.events(process_id)
            assert [e.event for e in events[:2]] == ["process", "message"]
            assert events[-1].event != "done"
            await client.cancel(process_id)

    async def test_giving_up_on_a_vanished_server_raises_connection_lost(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A stream whose server stays unreachable past reconnect_timeout raises ConnectionLost."""
        async with gateway(fake_environ) as gw, trio.open_nursery() as nursery:
            proxy = CuttingProxy(int(gw.url.rsplit(":", 1)[1]))
            listening = trio.CancelScope()

            async def serve_proxy(task_status: trio.TaskStatus[str]) -> None:
                with listening:
                    await proxy.serve(task_status=task_status)

            await nursery.start(serve_proxy)
            client = admin(proxy.url, reconnect_timeout=1.0, cancel_timeout=1.0)
            async with client, client.chat("hang", cwd=str(workdir)) as run:

                async def follow() -> None:
                    async for event in run:
                        if event.event == "message" and "pid" in event.data:
                            listening.cancel()  # the proxy's connections and port go

                with pytest.raises(ConnectionLost):
                    await follow()
            assert await run_status(gw, run.process_id or "") == "running"
            await gw.client.delete(f"/chat/{run.process_id}")


class TestLeavingEarly:
    async def test_breaking_out_cancels_the_run_and_its_processes(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Leaving the block before done cancels the run; when it returns no process is left."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            async with client.chat("hang", cwd=str(workdir)) as run:
                async for event in run:
                    if event.event == "message" and "pid" in event.data:
                        pid = event.data["pid"]
                        break
            assert not alive(pid)
            assert await run_status(gw, run.process_id or "") == "cancelled"
            assert run.status == "cancelled"

    async def test_cancelling_the_task_cancels_the_run(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Cancelling the task that follows a run cancels the run, and waits for its processes."""
        pids: list[int] = []
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            with trio.CancelScope() as scope:
                async with client.chat("hang", cwd=str(workdir)) as run:
                    async for event in run:
                        if event.event == "message" and "pid" in event.data:
                            pids.append(event.data["pid"])
                            scope.cancel()
            assert pids
            assert not alive(pids[0])
            assert await run_status(gw, run.process_id or "") == "cancelled"

    async def test_leaving_a_followed_run_leaves_it_running(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Leaving follow() early does not cancel a run the client did not start."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            process_id = await client.start("hang", cwd=str(workdir))
            async with client.follow(process_id) as run:
                async for event in run:
                    if event.event == "message" and "pid" in event.data:
                        break
            assert await run_status(gw, process_id) == "running"
            assert (await client.cancel(process_id))["status"] == "cancelled"


class TestApprovals:
    async def test_on_approval_allows_a_tool_call(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A plain on_approval returning True answers each pending approval with allow."""
        seen: list[dict[str, Any]] = []

        def approve(approval: dict[str, Any]) -> bool:
            seen.append(approval)
            return True

        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            run = client.chat("ask touch x", cwd=str(workdir), approval="http", on_approval=approve)
            async with run:
                events = [event async for event in run]
        assert seen[0]["tool_name"] == "Bash"
        assert seen[0]["input"] == {"command": "touch x"}
        answered = [e.data for e in events if e.event == "approval_answered"]
        assert answered[0]["answer"] == "allow"
        decisions = [e.data["decision"] for e in events if "decision" in e.data]
        assert decisions[0]["behavior"] == "allow"
        assert run.status == "completed"

    async def test_an_async_on_approval_can_deny_with_a_message(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """An async on_approval returning an ApprovalAnswer denies with its message."""

        async def deny(approval: dict[str, Any]) -> ApprovalAnswer:
            return ApprovalAnswer(behavior="deny", message="not today")

        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            run = client.chat("ask rm -rf /", cwd=str(workdir), approval="http", on_approval=deny)
            async with run:
                events = [event async for event in run]
        decisions = [e.data["decision"] for e in events if "decision" in e.data]
        assert decisions[0]["behavior"] == "deny"
        assert decisions[0]["message"] == "not today"

    async def test_an_approval_answered_across_a_drop_is_sent_once_the_server_is_back(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A drop while on_approval decides does not cancel the run: the answer is retried."""
        async with gateway(fake_environ) as gw, trio.open_nursery() as nursery:
            proxy = CuttingProxy(int(gw.url.rsplit(":", 1)[1]))
            await nursery.start(proxy.serve)

            async def back_later() -> None:
                await trio.sleep(1)
                proxy.refuse = False

            async def approve_while_down(approval: dict[str, Any]) -> bool:
                proxy.refuse = True  # the server is unreachable for a second...
                proxy.cut()  # ...and the stream drops
                nursery.start_soon(back_later)
                return True

            async with admin(proxy.url) as client:
                run = client.chat(
                    "ask touch x", cwd=str(workdir), approval="http", on_approval=approve_while_down
                )
                async with run:
                    events = [event async for event in run]
            nursery.cancel_scope.cancel()
        answered = [e.data["answer"] for e in events if e.event == "approval_answered"]
        assert answered == ["allow"]
        assert run.status == "completed"
        assert ids(events) == list(range(1, len(events) + 1))

    async def test_a_replayed_approval_answered_long_ago_is_not_asked_again(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Following a run replays its old approvals; on_approval hears only pending ones."""
        asked: list[dict[str, Any]] = []
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            process_id = await client.start("ask ls", cwd=str(workdir), approval="http")
            with trio.fail_after(20):
                while not (pending := await client.approvals(process_id)):
                    await trio.sleep(0.05)
            await client.approve(process_id, pending[0]["approval_id"], allow=True)

            def ask(approval: dict[str, Any]) -> bool:
                asked.append(approval)
                return True

            async with client.follow(process_id, on_approval=ask) as run:
                events = [event async for event in run]
        assert [e.event for e in events].count("approval") == 1
        assert asked == []
        assert run.status == "completed"

    async def test_approve_answers_a_pending_approval(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """approvals() lists a detached run's pending approval and approve() answers it."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            process_id = await client.start("ask ls", cwd=str(workdir), approval="http")
            with trio.fail_after(20):
                while not (pending := await client.approvals(process_id)):
                    await trio.sleep(0.05)
            answer = await client.approve(process_id, pending[0]["approval_id"], allow=False)
            assert answer["answer"] == "deny"
            async with client.follow(process_id) as run:
                assert (await run.wait())["status"] == "completed"


class TestIds:
    async def test_an_id_cannot_reach_another_route(self, fake_environ: dict[str, str]) -> None:
        """An id holding slashes and dots stays one path segment: 404, never /admin/keys."""
        async with gateway(fake_environ) as gw, admin(gw.url) as client:
            for bad in ("../admin/keys", "..", "x/../../admin/keys"):
                with pytest.raises(ApiError) as raised:
                    await client.run(bad)
                assert raised.value.status == 404, bad


class TestConfiguration:
    async def test_a_key_from_the_environment_sees_only_its_own_runs(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """CC2API_URL and CC2API_KEY configure the client; a key lists only its own runs."""
        async with gateway(fake_environ, confine_runs="off") as gw:
            token = await make_key(gw.client, "bot")
            async with admin(gw.url) as boss:
                theirs = await boss.start("echo hi", cwd=str(workdir))
            environ = {"CC2API_URL": gw.url, "CC2API_KEY": token}
            async with AsyncClient(environ=environ) as client:
                async with client.chat("echo hi", cwd=str(workdir)) as run:
                    await run.wait()
                listed = [entry["process_id"] for entry in (await client.runs())["runs"]]
                with pytest.raises(ApiError) as raised:
                    await client.run(theirs)
        assert listed == [run.process_id]
        assert (raised.value.status, raised.value.code) == (404, "process_not_found")

    def test_a_user_without_a_password_is_refused(self) -> None:
        """CC2API_USER without CC2API_PASSWORD is a configuration error, not a silent no-auth."""
        with pytest.raises(ValueError, match="password"):
            AsyncClient(environ={"CC2API_USER": "admin"})

    def test_the_configuration_never_shows_the_credential(self) -> None:
        """The client's configuration prints without the key it holds."""
        config = resolve(environ={"CC2API_KEY": "cc2_secret-token"})
        assert "secret" not in repr(config)
        assert "BearerAuth" in repr(config)


class TestBlocking:
    def test_the_blocking_client_streams_and_cancels(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Client streams a run to done, and leaving a second run early cancels it."""
        with serve_in_thread(make_settings(), fake_environ) as url:
            with Client(url, user=USER, password=PASSWORD) as client:
                with client.chat("lines 3", cwd=str(workdir)) as run:
                    events = list(run)
                    assert list(run) == []  # taken already: a second loop ends at once
                    assert run.wait()["status"] == "completed"
                with client.chat("hang", cwd=str(workdir)) as hung:
                    for event in hung:
                        if event.event == "message" and "pid" in event.data:
                            pid = event.data["pid"]
                            break
                record = client.run(hung.process_id or "")
        assert ids(events) == list(range(1, 8))
        assert run.status == "completed"
        assert record["status"] == "cancelled"
        assert not alive(pid)

    def test_an_exception_in_the_block_cancels_the_run(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """An exception raised while following a run cancels it before it propagates."""
        with serve_in_thread(make_settings(), fake_environ) as url:
            with Client(url, user=USER, password=PASSWORD) as client:
                pids: list[int] = []

                def follow() -> None:
                    with client.chat("hang", cwd=str(workdir)) as run:
                        runs.append(run)
                        for event in run:
                            if event.event == "message" and "pid" in event.data:
                                pids.append(event.data["pid"])
                                raise LookupError

                runs: list[Run] = []
                with pytest.raises(LookupError):
                    follow()
                run = runs[0]
                assert client.run(run.process_id or "")["status"] == "cancelled"
        assert not alive(pids[0])

    def test_the_async_client_works_under_asyncio(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """AsyncClient runs a chat to done under asyncio as under trio."""

        async def main(url: str) -> list[Event]:
            async with admin(url) as client, client.chat("lines 2", cwd=str(workdir)) as run:
                return [event async for event in run]

        with serve_in_thread(make_settings(), fake_environ) as url:
            events = asyncio.run(main(url))
        assert ids(events) == list(range(1, 7))
        assert events[-1].data["status"] == "completed"
