"""Durable runs: records and events outlive the gateway, through stops, kill -9 and restarts.

Real server processes (``python -m cc2api serve``) on one DATA_DIR, started again
after a graceful stop or a SIGKILL, with the fake CLI for what must be made to happen.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

from .helpers import (
    AUTH,
    FAKE_CLAUDE,
    Event,
    alive,
    chat_body,
    collect,
    post_chat,
    processes_with_marker,
    running_server,
    server_environment,
    sse_events,
    start_server_process,
)
from .store_faults import tmpfs

SERVE = [sys.executable, "-m", "cc2api", "serve"]


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a test's server: its CLI home, and DATA_DIR in tmp_path."""
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    return server_environment(home, FAKE_CLAUDE, DATA_DIR=str(tmp_path / "data"), **settings)


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: str) -> AsyncIterator[httpx.AsyncClient]:
    """Run a server process on tmp_path's DATA_DIR for the block; stop it gracefully after."""
    async with running_server(SERVE, tmp_path, environment(tmp_path, **settings)) as (_, url):
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            yield client


async def replay(client: httpx.AsyncClient, run_id: str, after: int | None = None) -> list[Event]:
    """Return every event of a replay of the run (after ``after``), comments left out."""
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    async with client.stream("GET", f"/chat/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return await collect(response)


async def stored_until(data: Path, run_id: str, column: str, done: Callable[[Any], bool]) -> None:
    """Wait until the database in ``data`` holds the run with ``done(its column)``."""

    def stored() -> Any:
        with sqlite3.connect(data / "cc2api.db") as db:
            query = f"SELECT {column} FROM runs WHERE run_id = ?"  # noqa: S608 (ours)
            found = db.execute(query, (run_id,)).fetchall()
        return found[0][0] if found else None

    with trio.fail_after(20):
        while not done(await trio.to_thread.run_sync(stored)):
            await trio.sleep(0.02)


async def written(data: Path, run_id: str, status: str) -> None:
    """Wait until the database in ``data`` holds the run with ``status``."""
    await stored_until(data, run_id, "status", lambda found: found == status)


async def events_written(data: Path, run_id: str, count: int) -> None:
    """Wait until the database in ``data`` holds the run's first ``count`` events."""
    await stored_until(data, run_id, "last_event_id", lambda found: (found or 0) >= count)


def leftover_folders(run_id: str) -> list[Path]:
    """Return the run's private folders still in the temporary folder."""
    return list(Path(tempfile.gettempdir()).glob(f"cc2api-run-{run_id}-*"))


def ids(events: list[Event]) -> list[int | None]:
    """Return the events' ids in order."""
    return [event.id for event in events]


class TestRestart:
    async def test_a_finished_run_replays_whole_after_a_restart(self, tmp_path: Path) -> None:
        """A run's events replay after a restart as they streamed: same ids, names and data."""
        work = tmp_path / "work"
        work.mkdir()
        async with gateway(tmp_path) as client:
            response, streamed = await post_chat(client, chat_body("lines 50 100", work))
            run_id = response.headers["X-Process-ID"]
        async with gateway(tmp_path) as client:
            replayed = await replay(client, run_id)
        assert [(e.id, e.event, e.data) for e in replayed] == [
            (e.id, e.event, e.data) for e in streamed
        ]
        assert replayed[-1].event == "done"

    async def test_last_event_id_resumes_after_a_restart(self, tmp_path: Path) -> None:
        """After a restart, a replay from Last-Event-ID gets exactly the events after it."""
        work = tmp_path / "work"
        work.mkdir()
        async with gateway(tmp_path) as client:
            response, streamed = await post_chat(client, chat_body("lines 30", work))
            run_id = response.headers["X-Process-ID"]
        async with gateway(tmp_path) as client:
            replayed = await replay(client, run_id, after=10)
        assert ids(replayed) == ids(streamed)[10:]

    async def test_the_record_survives_a_restart(self, tmp_path: Path) -> None:
        """GET /runs/{id} answers a run's record after a restart, with its result's figures."""
        work = tmp_path / "work"
        work.mkdir()
        async with gateway(tmp_path) as client:
            response, _ = await post_chat(client, chat_body("priced", work, model="sonnet"))
            run_id = response.headers["X-Process-ID"]
        async with gateway(tmp_path) as client:
            record = (await client.get(f"/runs/{run_id}")).json()
            listed = (await client.get("/runs")).json()
        assert record["status"] == "completed"
        assert record["cwd"] == str(work)
        assert record["model"] == "sonnet"
        assert record["exit_code"] == 0
        assert record["total_cost_usd"] == 0.0123
        assert record["usage"] == {"input_tokens": 11, "output_tokens": 22}
        assert (record["num_turns"], record["duration_api_ms"]) == (3, 456)
        assert record["started_at"] is not None
        assert record["ended_at"] is not None
        assert [run["process_id"] for run in listed["runs"]] == [run_id]

    async def test_an_unknown_run_is_404_after_a_restart(self, tmp_path: Path) -> None:
        """A replay of a run the store never knew answers 404 process_not_found."""
        async with gateway(tmp_path) as client:
            response = await client.get("/chat/00000000-0000-4000-8000-000000000000/events")
        assert response.status_code == 404
        assert response.json()["code"] == "process_not_found"

    async def test_prompts_are_kept_only_when_the_operator_says(self, tmp_path: Path) -> None:
        """A record holds its prompt only with STORE_PROMPTS=true."""
        work = tmp_path / "work"
        work.mkdir()
        async with gateway(tmp_path) as client:
            plain, _ = await post_chat(client, chat_body("echo secret-1", work))
            plain_record = (await client.get(f"/runs/{plain.headers['X-Process-ID']}")).json()
        async with gateway(tmp_path, STORE_PROMPTS="true") as client:
            kept, _ = await post_chat(client, chat_body("echo secret-2", work))
            kept_record = (await client.get(f"/runs/{kept.headers['X-Process-ID']}")).json()
        assert "prompt" not in plain_record
        assert kept_record["prompt"] == "echo secret-2"
        with sqlite3.connect(tmp_path / "data" / "cc2api.db") as db:
            text = b"".join(
                str(row).encode() for row in db.execute("SELECT * FROM runs").fetchall()
            )
        assert b"secret-1" not in text


async def stream_until(
    client: httpx.AsyncClient, body: dict[str, object], count: int
) -> tuple[str, list[Event]]:
    """Start a detached run and read its stream until ``count`` message events came."""
    seen: list[Event] = []
    async with client.stream("POST", "/chat", json={**body, "detach": True}) as response:
        run_id = response.headers["X-Process-ID"]
        async with aclosing(sse_events(response)) as events:
            async for event in events:
                if event.event != ":":
                    seen.append(event)
                if sum(e.event == "message" for e in seen) >= count:
                    break
    return run_id, seen


async def killed_mid_run(
    tmp_path: Path, body: dict[str, object], *, written: int = 0
) -> tuple[str, list[Event]]:
    """Start a gateway and a detached run, read two of its lines, then kill -9 the gateway.

    With ``written``, the kill waits until the store has the run's first events.
    """
    proc, url = await start_server_process(SERVE, tmp_path, environment(tmp_path))
    async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
        run_id, seen = await stream_until(client, body, 2)
    if written:
        await events_written(tmp_path / "data", run_id, written)
    proc.kill()
    await proc.wait()
    return run_id, seen


class TestKilled:
    async def test_a_run_live_at_a_kill_is_lost_and_its_processes_end(self, tmp_path: Path) -> None:
        """After kill -9, the next start ends the run's CLI and setsid tool, then marks it lost."""
        work = tmp_path / "work"
        work.mkdir()
        env = environment(tmp_path)
        proc, url = await start_server_process(SERVE, tmp_path, env)
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            run_id, seen = await stream_until(client, chat_body("escape", work), 2)
            child = seen[-1].json()["child_pid"]
            cli = (await client.get("/processes")).json()["processes"][0]["pid"]
        await events_written(tmp_path / "data", run_id, 3)  # the writer's batch reached the disk
        proc.kill()
        await proc.wait()
        assert alive(cli), "the CLI outlives a killed gateway"
        assert alive(child), "so does its tool"
        async with gateway(tmp_path) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            assert not alive(cli)
            assert not alive(child)
            assert processes_with_marker(run_id) == []
            record = (await client.get(f"/runs/{run_id}")).json()
            replayed = await replay(client, run_id)
        assert record["status"] == "lost"
        assert [e.event for e in replayed[:3]] == ["process", "message", "message"]
        assert replayed[-1].event == "done"
        assert replayed[-1].json()["status"] == "lost"
        assert ids(replayed) == list(range(1, len(replayed) + 1))
        assert record["last_event_id"] == replayed[-1].id
        assert not leftover_folders(run_id)

    async def test_a_reattached_client_gets_the_stored_events_then_lost(
        self, tmp_path: Path
    ) -> None:
        """A client reattaching with Last-Event-ID after the restart gets the rest, then lost."""
        work = tmp_path / "work"
        work.mkdir()
        run_id, seen = await killed_mid_run(tmp_path, chat_body("escape", work), written=3)
        async with gateway(tmp_path) as client:
            rest = await replay(client, run_id, after=seen[-1].id)
        assert [e.event for e in rest] == ["done"]
        assert rest[0].id == seen[-1].id + 1  # type: ignore[operator]
        assert rest[0].json()["status"] == "lost"

    async def test_a_client_ahead_of_the_store_still_learns_the_run_was_lost(
        self, tmp_path: Path
    ) -> None:
        """Killed before the store caught up, a run's reattaching client still gets done lost."""
        work = tmp_path / "work"
        work.mkdir()
        # Killed at once: the writer may not have written what the client saw.
        run_id, seen = await killed_mid_run(tmp_path, chat_body("escape", work))
        seen_last = seen[-1].id
        assert seen_last is not None
        async with gateway(tmp_path) as client:
            rest = await replay(client, run_id, after=seen_last)
        assert [e.event for e in rest] == ["done"]
        assert rest[0].json()["status"] == "lost"
        assert rest[0].id is None or rest[0].id > seen_last

    async def test_a_run_the_store_never_recorded_leaves_nothing_running(
        self, tmp_path: Path
    ) -> None:
        """A run started on a full disk, so never recorded, is ended and lost after kill -9."""
        work = tmp_path / "work"
        work.mkdir()
        with tmpfs(tmp_path / "data", "4m") as disk:
            proc, url = await start_server_process(SERVE, tmp_path, environment(tmp_path))
            async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
                await trio.to_thread.run_sync(disk.fill)
                run_id, seen = await stream_until(client, chat_body("escape", work), 2)
                child = seen[-1].json()["child_pid"]
                cli = (await client.get("/processes")).json()["processes"][0]["pid"]
            proc.kill()
            await proc.wait()
            disk.free()
            assert alive(cli)
            async with gateway(tmp_path) as client:
                assert not alive(cli)
                assert not alive(child)
                record = (await client.get(f"/runs/{run_id}")).json()
                rest = await replay(client, run_id, after=seen[-1].id)
        assert record["status"] == "lost"
        assert record["cwd"] == str(work)
        assert [(e.event, e.json()["status"]) for e in rest] == [("done", "lost")]

    async def test_the_session_of_a_lost_run_is_free(self, tmp_path: Path) -> None:
        """A session a lost run held can be resumed at once after the restart."""
        work = tmp_path / "work"
        work.mkdir()
        session = "6f9c3f0e-2a55-4c3e-9a63-3d1f1f0c2b11"
        await killed_mid_run(tmp_path, chat_body("escape", work, new_session_id=session))
        async with gateway(tmp_path) as client:
            body = chat_body("echo again", work, new_session_id=session)
            response, events = await post_chat(client, body)
        assert response.status_code == 200
        assert events[-1].json()["status"] == "completed"

    async def test_another_data_dirs_processes_are_never_touched(self, tmp_path: Path) -> None:
        """A process with the lost run's marker but another store's id survives the restart."""
        work = tmp_path / "work"
        work.mkdir()
        run_id, _ = await killed_mid_run(tmp_path, chat_body("escape", work), written=1)
        stranger_env = {**os.environ, "CC2API_RUN_ID": run_id, "CC2API_STORE_ID": "another"}
        stranger = await trio.lowlevel.open_process(["sleep", "600"], env=stranger_env)
        try:
            async with gateway(tmp_path) as client:
                record = (await client.get(f"/runs/{run_id}")).json()
            assert record["status"] == "lost"
            assert alive(stranger.pid)
        finally:
            stranger.kill()
            await stranger.wait()

    async def test_kill_during_heavy_streaming_leaves_a_consistent_store(
        self, tmp_path: Path
    ) -> None:
        """kill -9 while runs stream hard: the database checks out, every replay has no gap."""
        work = tmp_path / "work"
        work.mkdir()
        proc, url = await start_server_process(SERVE, tmp_path, environment(tmp_path))
        run_ids: list[str] = []
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:

            async def flood() -> None:
                run_id, _ = await stream_until(client, chat_body("flood 100", work), 2000)
                run_ids.append(run_id)

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(flood)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with sqlite3.connect(tmp_path / "data" / "cc2api.db") as db:
            assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
        async with gateway(tmp_path) as client:
            for run_id in run_ids:
                record = (await client.get(f"/runs/{run_id}")).json()
                replayed = await replay(client, run_id)
                assert record["status"] == "lost"
                assert ids(replayed) == list(range(1, len(replayed) + 1))
                assert replayed[-1].json()["status"] == "lost"
            for leftover in psutil.process_iter(["environ"]):
                environ = leftover.info["environ"] or {}
                assert environ.get("CC2API_RUN_ID") not in run_ids


async def refused_start(tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """Try to start a server on tmp_path's DATA_DIR; return how it ended, its stderr kept."""
    return await trio.run_process(
        SERVE,
        env=environment(tmp_path),
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


class TestRefusals:
    async def test_a_second_gateway_on_the_same_data_dir_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        """A gateway pointed at a DATA_DIR another one uses exits 2, saying so."""
        async with gateway(tmp_path):
            second = await refused_start(tmp_path)
        assert second.returncode == 2
        assert b"in use by another cc2api gateway" in second.stderr
        assert b"DATA_DIR" in second.stderr

    async def test_a_corrupt_database_stops_the_start(self, tmp_path: Path) -> None:
        """A database file that is not one stops the server with what to do."""
        data = tmp_path / "data"
        data.mkdir()
        (data / "cc2api.db").write_bytes(b"not a database at all " * 512)
        done = await refused_start(tmp_path)
        assert done.returncode == 2
        assert b"corrupt" in done.stderr
        assert b".backup" in done.stderr


class TestRetention:
    async def test_a_pruned_run_replays_as_dropped_then_done(self, tmp_path: Path) -> None:
        """Past STORE_MAX_BYTES the oldest run keeps only done: its replay says what is gone."""
        work = tmp_path / "work"
        work.mkdir()
        async with gateway(tmp_path) as client:
            big, streamed = await post_chat(client, chat_body("lines 1500 1000", work))
            await post_chat(client, chat_body("lines 1200 1000", work))
        async with gateway(tmp_path, STORE_MAX_BYTES=str(1024 * 1024)) as client:
            run_id = big.headers["X-Process-ID"]
            replayed = await replay(client, run_id)
            record = (await client.get(f"/runs/{run_id}")).json()
        last = streamed[-1].id
        assert last is not None
        assert [e.event for e in replayed] == ["dropped", "done"]
        assert replayed[0].json() == {"dropped": last - 1, "first_id": last}
        assert replayed[1].data == streamed[-1].data
        assert record["events_pruned"] is True
        assert record["status"] == "completed"


class TestBackup:
    async def test_an_online_backup_holds_the_runs_and_replays(self, tmp_path: Path) -> None:
        """README's sqlite3 .backup, taken while the gateway serves, restores a working store."""
        work = tmp_path / "work"
        work.mkdir()
        copy = tmp_path / "copy.db"
        async with gateway(tmp_path) as client:
            response, streamed = await post_chat(client, chat_body("lines 40", work))
            # A backup holds what is written: wait for the writer's batch (every 50 ms).
            await written(tmp_path / "data", response.headers["X-Process-ID"], "completed")
            await trio.run_process(
                ["sqlite3", str(tmp_path / "data" / "cc2api.db"), f".backup {copy}"]
            )
        restored = tmp_path / "restored"
        (restored / "data").mkdir(parents=True)
        (restored / "data" / "cc2api.db").write_bytes(copy.read_bytes())
        async with gateway(restored) as client:
            replayed = await replay(client, response.headers["X-Process-ID"])
        assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in streamed]
