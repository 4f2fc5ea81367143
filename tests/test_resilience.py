"""Faults and load: broken CLIs, huge lines, slow and vanished clients, thousands of runs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import psutil
import pytest
import trio

from .helpers import (
    AUTH,
    FAKE_CLAUDE,
    REPO,
    Shared,
    alive,
    chat_body,
    make_settings,
    peak_rss,
    post_chat,
    served,
    server_process,
    sse_events,
    started_run,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)

FAST_CLAUDE = REPO / "tests" / "fast_claude.sh"
MiB = 1024 * 1024


class TestBrokenCli:
    async def test_crash_mid_line_delivers_what_came_before(
        self, gw: Shared, workdir: Path
    ) -> None:
        """A CLI dying halfway through a line: whole lines, the cut one, then error and done."""
        _, events = await post_chat(gw.client, chat_body("crash-mid", workdir))
        assert [e.event for e in events] == ["process", *["message"] * 3, "error", "done"]
        assert events[2].json()["text"] == "before"
        assert events[3].data == '{"type":"assistant","text":"cut sh'
        assert events[4].json()["exit_code"] == 9
        assert events[5].json()["status"] == "failed"

    async def test_silent_cli_gets_heartbeats_then_its_timeout(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A CLI that never prints: the stream stays alive with pings until the timeout ends it."""
        settings = make_settings(heartbeat_seconds=0.3)
        async with served(settings, fake_environ) as gw:
            body = chat_body("silent", workdir, timeout_seconds=2)
            async with gw.client.stream("POST", "/chat", json=body) as response:
                events = [event async for event in sse_events(response)]
        names = [e.event for e in events]
        assert names.count(":") >= 3
        assert [n for n in names if n != ":"] == ["process", "error", "done"]
        assert events[-1].json()["status"] == "timeout"

    async def test_invalid_utf8_is_replaced_and_the_stream_goes_on(
        self, gw: Shared, workdir: Path
    ) -> None:
        """Bytes that are not UTF-8 reach the client as U+FFFD; the stream stays valid UTF-8."""
        body = chat_body("bad-utf8", workdir)
        async with gw.client.stream("POST", "/chat", json=body) as response:
            raw = await response.aread()
        text = raw.decode("utf-8")  # strict: would raise on a bad byte
        assert '"text":"bad \ufffd\ufffd bytes"' in text
        assert '"status":"completed"' in text


class TestMemoryStaysBounded:
    async def test_hundred_mebibyte_line_ends_the_run_and_memory_stays_bounded(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A 100 MiB line ends the run with line_too_long; the server never holds the line."""
        async with server_process(tmp_path, FAKE_CLAUDE) as (server, client):
            _, warm = await post_chat(client, chat_body("echo", workdir))
            assert warm[-1].json()["status"] == "completed"
            before = peak_rss(server)
            _, events = await post_chat(client, chat_body("huge-line 100", workdir))
            grown = peak_rss(server) - before
        assert events[-2].event == "error"
        assert events[-2].json()["code"] == "line_too_long"
        assert events[-1].json()["status"] == "failed"
        # MAX_LINE_BYTES (32 MiB) of partial line at most, never the 100 MiB.
        assert grown < 64 * MiB, f"peak memory grew by {grown / MiB:.0f} MiB"

    async def test_slow_reader_holds_back_the_cli_not_memory(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A client that stops reading blocks the CLI's output; the server does not buffer it."""
        count, size = 2000, 65536  # 128 MiB in all
        async with server_process(tmp_path, FAKE_CLAUDE) as (server, client):
            before = server.memory_info().rss
            body = chat_body(f"lines {count} {size}", workdir)
            async with client.stream("POST", "/chat", json=body) as response:
                pid = (await started_run(client))["pid"]
                await trio.sleep(3)  # reads nothing meanwhile
                grown = server.memory_info().rss - before
                still_writing = alive(pid)
                numbers = [
                    event.json()["n"]
                    async for event in sse_events(response)
                    if event.event == "message" and '"n":' in event.data[:40]
                ]
        assert still_writing, "the CLI finished: nothing held it back"
        assert grown < 32 * MiB, f"memory grew by {grown / MiB:.0f} MiB"
        assert numbers == list(range(count))

    async def test_vanished_client_is_noticed_and_its_run_torn_down(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A client that stops reading without closing its connection loses its run."""
        async with server_process(tmp_path, FAKE_CLAUDE, CLIENT_STALL_SECONDS="1") as (_, client):
            body = json.dumps(chat_body("lines 2000 65536", workdir)).encode()
            credentials = base64.b64encode(":".join(AUTH).encode()).decode()
            host = client.base_url.host
            port = client.base_url.port
            assert port is not None
            stream = await trio.open_tcp_stream(host, port)
            request = (
                f"POST /chat HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            await stream.send_all(request + body)
            pid = (await started_run(client))["pid"]

            async def no_runs() -> bool:
                return bool((await client.get("/processes")).json()["count"] == 0)

            with trio.fail_after(30):
                while not await no_runs():
                    await trio.sleep(0.1)
            assert not alive(pid)
            await stream.aclose()


def fds_threads_children(server: psutil.Process) -> tuple[int, int, list[psutil.Process]]:
    """Return the server's open descriptors, threads and child processes."""
    return server.num_fds(), server.num_threads(), server.children(recursive=True)


class TestSoak:
    async def test_two_thousand_runs_leave_nothing_behind(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """2,000 runs, 200 of them cancelled: descriptors, threads, children, memory at baseline."""
        total, every = 2000, 10  # each tenth run is cancelled mid-run
        outcomes: dict[str, int] = {}

        async def one(client: httpx.AsyncClient, index: int) -> None:
            cancel = index % every == 0
            body = chat_body("hang" if cancel else "hi", workdir)
            async with client.stream("POST", "/chat", json=body) as response:
                async for event in sse_events(response):
                    if cancel and event.event == "message":
                        pid = response.headers["x-process-id"]
                        await client.delete(f"/chat/{pid}")
                    if event.event == "done":
                        status = json.loads(event.data)["status"]
                        outcomes[status] = outcomes.get(status, 0) + 1

        async def batch(url: httpx.URL, indexes: range) -> None:
            # A client of its own, closed after: its pooled connections are not the
            # server's to account for.
            lanes = 4
            async with (
                httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client,
                trio.open_nursery() as nursery,
            ):
                for lane in range(lanes):

                    async def worker(lane: int = lane) -> None:
                        for index in indexes[lane::lanes]:
                            await one(client, index)

                    nursery.start_soon(worker)

        def settled(fds: int, threads: int) -> bool:
            now_fds, now_threads, children = fds_threads_children(server)
            # trio's idle worker threads exit after 10 s: fewer than at first is fine.
            return now_fds == fds and now_threads <= threads and children == []

        async with server_process(tmp_path, FAST_CLAUDE) as (server, client):
            await batch(client.base_url, range(1, 201))  # warm-up: caches, threads, allocator
            await wait_until(lambda: not server.children(recursive=True), 5)
            await trio.sleep(0.5)  # closed connections are gone on the server's side too
            fds, threads, _ = fds_threads_children(server)
            rss = server.memory_info().rss
            outcomes.clear()
            await batch(client.base_url, range(total))
            assert outcomes == {"completed": total - total // every, "cancelled": total // every}
            await wait_until(lambda: settled(fds, threads), 20)
            grown = server.memory_info().rss - rss
        assert grown < 16 * MiB, f"memory grew by {grown / MiB:.1f} MiB over {total} runs"

    async def test_memory_returns_after_rounds_of_queued_runs_with_follow_ups(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """Rounds of queued runs holding big follow-ups, all cancelled, leave memory at baseline."""
        queued, messages, size = 6, 4, 2 * MiB

        async def detached(client: httpx.AsyncClient, prompt: str) -> str:
            async with client.stream(
                "POST", "/chat", json=chat_body(prompt, workdir, detach=True)
            ) as response:
                return response.headers["x-process-id"]

        async def one_round(client: httpx.AsyncClient) -> None:
            first = await detached(client, "hang")
            waiting = [await detached(client, "hi") for _ in range(queued)]
            for process_id in waiting:
                for _ in range(messages):
                    answer = await client.post(
                        f"/chat/{process_id}/messages", json={"prompt": "x" * size}
                    )
                    assert answer.status_code == 202, answer.text
            for process_id in [*waiting, first]:
                assert (await client.delete(f"/chat/{process_id}")).status_code == 200

        settings = {
            "MAX_CONCURRENT_RUNS": "1",
            "DETACHED_TTL_SECONDS": "0",
            # glibc raises its mmap threshold after each large free, so whether a freed
            # 2 MiB body goes back to the system or stays in a (per-thread) heap would
            # depend on the order of frees: fixed, RSS shows what is held, not where.
            "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
        }
        async with server_process(tmp_path, FAST_CLAUDE, **settings) as (server, client):
            await one_round(client)  # warm-up: caches, threads, allocator
            rss = server.memory_info().rss
            for _ in range(10):
                await one_round(client)
            grown = server.memory_info().rss - rss
        held = 10 * queued * messages * size
        assert grown < 32 * MiB, f"grew {grown / MiB:.0f} MiB; the rounds held {held / MiB:.0f}"
