"""The warm pool with the real Claude Code CLI, offline against the scripted model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from .helpers import (
    AUTH,
    Event,
    Served,
    alive,
    chat_body,
    exists,
    make_settings,
    post_chat,
    processes_with_marker,
    running_server,
    served,
    server_environment,
    sse_events,
    wait_until,
)
from .scripted_api import ScriptedAPI, all_user_text
from .test_keys import as_key, make_key, start_detached

pytestmark = pytest.mark.timeout(180)


def pooled_pids(gateway: int | None = None) -> dict[int, str]:
    """Return the live pooled CLIs a gateway (this process by default) spawned, with
    their marks."""
    found = {}
    for proc in psutil.Process(gateway or os.getpid()).children():
        try:
            mark = proc.environ().get("CC2API_RUN_ID", "")
            if mark.startswith("pool-") and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = mark
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def pool_folders(marks: Iterable[str]) -> list[Path]:
    """Return the private folders of the pooled CLIs with these marks."""
    temp = Path(tempfile.gettempdir())
    return [folder for mark in marks for folder in temp.glob(f"cc2api-run-{mark}-*")]


def stored_statuses(data_dir: Path) -> list[str]:
    """Return the statuses of the runs a store's database holds now (read-only)."""
    uri = f"file:{data_dir / 'cc2api.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return [status for (status,) in db.execute("SELECT status FROM runs")]


async def pool_of(client: httpx.AsyncClient) -> dict[str, Any]:
    """Return the pool as /health shows it."""
    pool: dict[str, Any] = (await client.get("/health")).json()["pool"]
    return pool


async def wait_pool(
    client: httpx.AsyncClient, predicate: Any, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the pool's /health figures satisfy ``predicate``; return them."""
    pool: dict[str, Any] = {}
    try:
        with trio.fail_after(timeout):
            while not predicate(pool := await pool_of(client)):
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"the pool never got there: {pool}") from None
    return pool


async def chat(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Event]:
    response, events = await post_chat(client, body)
    assert response.status_code == 200, response.text
    return events


async def warmed(gw: Served, body: dict[str, Any], idle: int = 1) -> list[Event]:
    """Run ``body`` once (the pool learns its plan) and wait for ``idle`` waiting CLIs."""
    events = await chat(gw.client, body)
    assert events[-1].json()["status"] == "completed"
    await wait_pool(gw.client, lambda p: p["idle"] >= idle)
    return events


def shape(events: list[Event]) -> list[str]:
    """Return a stream's events as kinds, messages by their type and subtype."""
    kinds = []
    for event in events:
        if event.event == "message":
            line = event.json()
            kinds.append(f"message:{line['type']}:{line.get('subtype', '')}")
        else:
            kinds.append(event.event)
    return kinds


@asynccontextmanager
async def pool_server(
    tmp_path: Path, claude: Path, environ: dict[str, str], pool_size: str
) -> AsyncIterator[tuple[trio.Process, httpx.AsyncClient]]:
    """Run ``cc2api serve`` on ``tmp_path``'s DATA_DIR with POOL_SIZE; yield it and a client."""
    env = {
        **server_environment(tmp_path / "home", claude, POOL_SIZE=pool_size),
        **{name: value for name, value in environ.items() if name != "PATH"},
        "DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-m", "cc2api", "serve"]
    async with running_server(argv, tmp_path, env) as (proc, url):
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=60) as client:
            yield proc, client


async def warm_server(
    proc: trio.Process, client: httpx.AsyncClient, workdir: Path, tmp_path: Path
) -> list[int]:
    """Run once on a pool_server with POOL_SIZE=2, and wait for both CLIs and for the
    run's record in the database; return the CLIs' pids."""
    await chat(client, chat_body("hello", workdir))
    await wait_pool(client, lambda p: p["idle"] == 2)
    # Written: what a kill then loses is the pool's alone.
    await wait_until(lambda: stored_statuses(tmp_path / "data") == ["completed"], 10)
    return list(pooled_pids(proc.pid))


@pytest.fixture(name="settings")
def _settings(real_claude: Path) -> Any:
    return make_settings(claude_path=real_claude, pool_size=1, kill_grace_seconds=3.0)


class TestPooledRuns:
    async def test_a_pooled_run_streams_as_a_cold_one_each_in_its_own_session(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Pooled runs stream process, the CLI's lines and done as a cold run does, each in
        a session of its own."""
        async with served(settings, real_environ) as gw:
            cold = await warmed(gw, chat_body("hello there", workdir))
            pooled = []
            for prompt in ("hello again", "and again"):
                await wait_pool(gw.client, lambda p: p["idle"] == 1)
                pooled.append(await chat(gw.client, chat_body(prompt, workdir)))
            pool = await pool_of(gw.client)
        assert (pool["hits"], pool["misses"]) == (2, 1)
        for events in pooled:
            assert shape(events) == shape(cold)
            assert events[-2].json()["result"].startswith("echo: ")
            assert events[-1].json()["status"] == "completed"
        sessions = {events[-1].json()["session_id"] for events in [cold, *pooled]}
        assert len(sessions) == 3

    async def test_a_pooled_run_is_listed_as_pooled(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """/processes says which runs took a pooled CLI."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir, detach=True))
            response = await start_detached(gw.client, chat_body("SLOW 20", workdir, detach=True))
            run_id = response.headers["x-process-id"]
            listed = (await gw.client.get("/processes")).json()["processes"]
            await gw.client.delete(f"/chat/{run_id}")
        mine = next(p for p in listed if p["process_id"] == run_id)
        assert mine["pooled"] is True

    async def test_a_different_plan_spawns_cold(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A request whose options differ from the waiting CLI's spawns its own CLI."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            other = chat_body("hello", workdir, append_system_prompt="Be brief.")
            events = await chat(gw.client, other)
            pool = await pool_of(gw.client)
        assert events[-1].json()["status"] == "completed"
        assert (pool["hits"], pool["misses"]) == (0, 2)

    async def test_runs_of_two_keys_never_share_a_pooled_cli(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key's run does not take a CLI pooled for another key's equal plan."""
        settings = make_settings(claude_path=real_claude, pool_size=2, confine_runs="off")
        async with served(settings, real_environ) as gw:
            first = await make_key(gw.client, "first")
            second = await make_key(gw.client, "second")
            body = chat_body("hello", workdir)
            async with as_key(gw.url, first) as one, as_key(gw.url, second) as two:
                await chat(one, body)
                await wait_pool(gw.client, lambda p: p["idle"] == 2)
                await chat(two, body)
                assert (await pool_of(gw.client))["hits"] == 0
                # The second key's plan takes one of the first key's places.
                await wait_pool(
                    gw.client, lambda p: p["idle"] == 2 and p["retired"].get("rebalanced") == 1
                )
                await chat(one, body)
                await chat(two, body)
            pool = await pool_of(gw.client)
        assert (pool["hits"], pool["misses"]) == (2, 2)

    async def test_a_confined_run_takes_a_pooled_cli_and_its_session_is_brought_back(
        self,
        real_claude: Path,
        real_environ: dict[str, str],
        workdir: Path,
        scripted_api: ScriptedAPI,
    ) -> None:
        """A key's confined run takes a pooled CLI, and its session can be resumed after."""
        settings = make_settings(claude_path=real_claude, pool_size=1)  # auto: keys confined
        async with served(settings, real_environ) as gw:
            token = await make_key(gw.client, "boxed")
            async with as_key(gw.url, token) as client:
                await chat(client, chat_body("hello", workdir))
                await wait_pool(gw.client, lambda p: p["idle"] == 1)
                pooled = await chat(client, chat_body("remember KIWI", workdir))
                session = pooled[-1].json()["session_id"]
                resumed = await chat(client, chat_body("go on", workdir, session_id=session))
            pool = await pool_of(gw.client)
        assert pool["hits"] == 1
        assert resumed[-1].json()["status"] == "completed"
        assert "remember KIWI" in all_user_text(scripted_api.requests[-1])

    async def test_runs_that_name_a_session_are_never_pooled(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Resuming, continuing or naming a new session spawns cold and teaches no plan."""
        async with served(settings, real_environ) as gw:
            first = await warmed(gw, chat_body("hello", workdir))
            session = first[-1].json()["session_id"]
            bodies = [
                chat_body("again", workdir, session_id=session),
                chat_body("again", workdir, continue_conversation=True),
                chat_body("again", workdir, new_session_id="0b0e3f5e-4f7c-4c1b-9d35-7c1f4f2b6a10"),
            ]
            for body in bodies:
                events = await chat(gw.client, body)
                assert events[-1].json()["status"] == "completed"
            pool = await pool_of(gw.client)
        assert (pool["hits"], pool["misses"], pool["profiles"]) == (0, 1, 1)
        assert pool["idle"] == 1

    async def test_a_key_marked_unpoolable_never_takes_a_pooled_cli(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key whose policy says pooled: false spawns cold, and no CLI waits for it."""
        settings = make_settings(claude_path=real_claude, pool_size=1, confine_runs="off")
        async with served(settings, real_environ) as gw:
            token = await make_key(gw.client, "cold", pooled=False)
            async with as_key(gw.url, token) as client:
                for prompt in ("one", "two"):
                    events = await chat(client, chat_body(prompt, workdir))
                    assert events[-1].json()["status"] == "completed"
            pool = await pool_of(gw.client)
        assert (pool["hits"], pool["misses"], pool["profiles"], pool["spawned"]) == (0, 0, 0, 0)

    async def test_waiting_clis_take_no_run_slot(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """CLIs waiting in the pool hold none of MAX_CONCURRENT_RUNS: a run still starts."""
        settings = make_settings(claude_path=real_claude, pool_size=2, max_concurrent_runs=1)
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir), idle=2)
            health = (await gw.client.get("/health")).json()
            events = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert (health["running"], health["queued"], health["pool"]["idle"]) == (0, 0, 2)
        assert "queued" not in [event.event for event in events]
        assert events[-1].json()["status"] == "completed"
        assert pool["hits"] == 1

    async def test_the_least_recently_used_plan_is_dropped_past_pool_profiles_max(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """With POOL_PROFILES_MAX plans warm, a new one evicts the least recently used."""
        settings = make_settings(claude_path=real_claude, pool_size=2, pool_profiles_max=1)
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir), idle=2)
            await chat(gw.client, chat_body("hello", workdir, append_system_prompt="Be brief."))
            pool = await wait_pool(gw.client, lambda p: p["idle"] == 2)
            back = await chat(gw.client, chat_body("hello", workdir))
            after = await pool_of(gw.client)
        assert pool["retired"] == {"evicted": 2}
        assert pool["profiles"] == 1
        assert back[-1].json()["status"] == "completed"
        assert (after["hits"], after["misses"]) == (0, 3)

    async def test_a_key_changed_to_unpoolable_loses_its_waiting_clis(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """PATCHing a key to pooled: false ends the CLIs waiting for it, and none follow."""
        settings = make_settings(claude_path=real_claude, pool_size=1, confine_runs="off")
        async with served(settings, real_environ) as gw:
            token = await make_key(gw.client, "turns-cold")
            async with as_key(gw.url, token) as client:
                await chat(client, chat_body("hello", workdir))
                await wait_pool(gw.client, lambda p: p["idle"] == 1)
                answer = await gw.client.patch(
                    "/admin/keys/turns-cold", json={"policy": {"pooled": False}}
                )
                assert answer.status_code == 200, answer.text
                events = await chat(client, chat_body("hello", workdir))
                await trio.sleep(1.5)  # a fill pass or more: none may start for the key
            pool = await pool_of(gw.client)
        assert events[-1].json()["status"] == "completed"
        assert pool["retired"] == {"evicted": 1}
        assert (pool["hits"], pool["spawned"], pool["idle"] + pool["starting"]) == (0, 1, 0)


class TestFreshness:
    async def test_a_cli_idle_too_long_is_retired_and_replaced(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A pooled CLI older than POOL_MAX_IDLE_SECONDS is retired, and a fresh one serves."""
        settings = make_settings(claude_path=real_claude, pool_size=1, pool_max_idle_seconds=5)
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            first = set(pooled_pids())
            await wait_pool(gw.client, lambda p: p["retired"].get("idle", 0) >= 1)
            await wait_pool(gw.client, lambda p: p["idle"] == 1)
            assert not first & set(pooled_pids())
            events = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert events[-1].json()["status"] == "completed"
        assert pool["hits"] == 1

    async def test_a_changed_claude_md_retires_the_waiting_cli(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """After CLAUDE.md changes, no run gets a CLI that read the old one."""
        (workdir / "CLAUDE.md").write_text("Old rule: say APPLE.\n")
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            (workdir / "CLAUDE.md").write_text("New rule: say MANGO.\n")
            events = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert events[-1].json()["status"] == "completed"
        assert pool["retired"].get("stale", 0) >= 1
        sent = json.dumps(scripted_api.requests[-1])
        assert "MANGO" in sent
        assert "APPLE" not in sent

    async def test_a_changed_project_settings_file_retires_the_waiting_cli(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A new .claude/settings.json in cwd retires the CLI spawned before it."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            (workdir / ".claude").mkdir()
            (workdir / ".claude" / "settings.json").write_text("{}\n")
            pool = await wait_pool(gw.client, lambda p: p["retired"].get("stale", 0) >= 1)
        assert pool["hits"] == 0

    async def test_a_pooled_cli_killed_while_idle_is_replaced_unseen(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A waiting CLI killed by SIGKILL is reaped and replaced, and the next run completes."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            (victim,) = pooled_pids()
            os.kill(victim, signal.SIGKILL)
            await wait_pool(gw.client, lambda p: p["retired"].get("exited", 0) == 1)
            await wait_pool(gw.client, lambda p: p["idle"] == 1, timeout=40)
            events = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert events[-1].json()["status"] == "completed"
        assert pool["hits"] == 1
        assert not exists(victim)


class TestTeardown:
    async def test_cancelling_a_pooled_run_leaves_no_process(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """DELETE of a pooled run in a Bash tool call answers once every process is gone."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            (mark,) = pooled_pids().values()
            body = chat_body("RUN_BASH: sleep 600", workdir, detach=True)
            run_id = (await start_detached(gw.client, body)).headers["x-process-id"]
            await wait_until(lambda: len(processes_with_marker(mark)) > 1, 60)
            answer = await gw.client.delete(f"/chat/{run_id}")
            left = processes_with_marker(mark)
            pool = await pool_of(gw.client)
        assert answer.status_code == 200
        assert answer.json()["status"] == "cancelled"
        assert pool["hits"] == 1
        assert left == []

    async def test_hanging_up_on_a_pooled_run_leaves_no_process(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A client that hangs up on a pooled run leaves no process of it behind."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            (mark,) = pooled_pids().values()
            body = chat_body("RUN_BASH: sleep 600", workdir)
            async with gw.client.stream("POST", "/chat", json=body) as r:
                await wait_until(lambda: len(processes_with_marker(mark)) > 1, 60)
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == "message":
                            break
            await wait_until(lambda: not processes_with_marker(mark), 10)
            with trio.fail_after(10):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)
            assert (await pool_of(gw.client))["hits"] == 1

    async def test_shutdown_leaves_no_pooled_cli(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """When the app stops, every waiting CLI is ended before it returns."""
        settings = make_settings(claude_path=real_claude, pool_size=2)
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir), idle=2)
            waiting = pooled_pids()
            assert len(waiting) == 2
        assert not [pid for pid in waiting if exists(pid)]
        assert not pooled_pids()

    async def test_sigterm_to_the_server_ends_its_pooled_clis(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """A server process stopped by SIGTERM leaves no pooled CLI behind."""
        async with pool_server(tmp_path, real_claude, real_environ, "2") as (proc, client):
            waiting = await warm_server(proc, client, workdir, tmp_path)
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await proc.wait()
        assert proc.returncode == 0
        assert len(waiting) == 2
        assert not [pid for pid in waiting if exists(pid)]

    async def test_pooled_clis_of_a_killed_server_end_and_are_no_lost_runs(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """After kill -9 of the server, its pooled CLIs end, and the next start records no
        run for them."""
        async with pool_server(tmp_path, real_claude, real_environ, "2") as (proc, client):
            waiting = await warm_server(proc, client, workdir, tmp_path)
            folders = pool_folders(pooled_pids(proc.pid).values())
            proc.kill()
            await proc.wait()
            # Their input ends with the server: they exit, as a cold CLI would.
            await wait_until(lambda: not [pid for pid in waiting if alive(pid)], 30)
        assert len(folders) == 2
        assert all(folder.exists() for folder in folders)  # nobody left to remove them
        async with pool_server(tmp_path, real_claude, real_environ, "0") as (_, client):
            runs = (await client.get("/runs")).json()["runs"]
        assert [run["status"] for run in runs] == ["completed"]
        assert not [folder for folder in folders if folder.exists()]

    async def test_pooled_clis_that_outlive_a_killed_server_are_ended_at_the_next_start(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """Pooled CLIs deaf to the end of their input are ended by the next start on the
        DATA_DIR, which records no run for them."""
        deaf = tmp_path / "deaf-claude"
        deaf.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi\n'
            # The end of its input (its gateway gone) leaves it running, as a hung CLI.
            "read -r line || exec sleep 600\n"
            'echo \'{"type":"result","subtype":"success","result":"ok"}\'\n'
        )
        deaf.chmod(0o755)
        async with pool_server(tmp_path, deaf, {}, "2") as (proc, client):
            waiting = await warm_server(proc, client, workdir, tmp_path)
            proc.kill()
            await proc.wait()
        await trio.sleep(0.5)
        assert len([pid for pid in waiting if alive(pid)]) == 2
        async with pool_server(tmp_path, deaf, {}, "0") as (_, client):
            assert not [pid for pid in waiting if alive(pid)]
            runs = (await client.get("/runs")).json()["runs"]
        assert [run["status"] for run in runs] == ["completed"]


class TestBounds:
    async def test_declared_profiles_are_warm_before_any_run(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """POOL_PROFILES_FILE's profiles are spawned at start, and a matching run takes one."""
        profiles = tmp_path / "pool.json"
        profiles.write_text(json.dumps([{"cwd": str(workdir), "size": 2}]))
        settings = make_settings(claude_path=real_claude, pool_size=2, pool_profiles_file=profiles)
        async with served(settings, real_environ) as gw:
            before = await wait_pool(gw.client, lambda p: p["idle"] == 2)
            events = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert before["profiles"] == 1
        assert events[-1].json()["status"] == "completed"
        assert (pool["hits"], pool["misses"]) == (1, 0)

    async def test_the_memory_budget_caps_the_pool(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """With room for one CLI's memory in POOL_MAX_RSS_MB, one CLI waits, not POOL_SIZE."""
        settings = make_settings(claude_path=real_claude, pool_size=3, pool_max_rss_mb=250)
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            await wait_pool(gw.client, lambda p: p["idle"] == 1 and p["rss_bytes"] > 50 * 2**20)
            seen = []
            for _ in range(30):  # several fills: none may add a second CLI
                seen.append(await pool_of(gw.client))
                await trio.sleep(0.1)
        assert {pool["idle"] for pool in seen} <= {0, 1}
        last = seen[-1]
        assert last["spawned"] - sum(last["retired"].values()) == 1
        assert last["rss_bytes"] <= 250 * 2**20

    async def test_clis_bigger_than_the_estimate_are_not_started_only_to_be_retired(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """Once a profile's CLIs are known to hold 300 MB, no more start than fit the budget."""
        big = tmp_path / "big-claude"
        big.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi\n'
            f"exec {sys.executable} -c "
            "\"import sys; held = b'x' * (300 << 20); sys.stdin.readline()\"\n"
        )
        big.chmod(0o755)
        profiles = tmp_path / "pool.json"
        profiles.write_text(json.dumps([{"cwd": str(workdir), "size": 4}]))
        settings = make_settings(
            claude_path=big, pool_size=4, pool_profiles_file=profiles, pool_max_rss_mb=800
        )
        async with served(settings, {"PATH": os.environ["PATH"]}) as gw:
            await wait_pool(gw.client, lambda p: p["idle"] == 2)
            await trio.sleep(3)  # several fill passes
            pool = await pool_of(gw.client)
        assert (pool["idle"], pool["starting"], pool["spawned"]) == (2, 0, 2)
        assert pool["retired"] == {}
        assert 600 * 2**20 <= pool["rss_bytes"] <= 800 * 2**20

    async def test_metrics_show_the_pool(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """/metrics counts the pool's hits and misses and shows its size, idle CLIs and RSS."""
        async with served(settings, real_environ) as gw:
            await warmed(gw, chat_body("hello", workdir))
            await chat(gw.client, chat_body("hello", workdir))
            await wait_pool(gw.client, lambda p: p["idle"] == 1)
            text = (await gw.client.get("/metrics")).text
        assert "cc2api_pool_hits_total 1.0" in text
        assert "cc2api_pool_misses_total 1.0" in text
        assert "cc2api_pool_size 1.0" in text
        assert "cc2api_pool_idle 1.0" in text
        assert "cc2api_pool_rss_bytes " in text


class TestSpoiled:
    async def test_a_cli_that_prints_before_its_message_is_never_handed_out(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A pooled CLI that writes on stdout before its message is retired, never used."""
        noisy = tmp_path / "noisy-claude"
        noisy.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi\n'
            'echo \'{"type":"system","subtype":"noise"}\'\n'
            "read -r line\n"
            'echo \'{"type":"result","subtype":"success","result":"cold"}\'\n'
        )
        noisy.chmod(0o755)
        settings = make_settings(claude_path=noisy, pool_size=1)
        async with served(settings, {"PATH": os.environ["PATH"]}) as gw:
            first = await chat(gw.client, chat_body("hello", workdir))
            await wait_pool(gw.client, lambda p: p["retired"].get("printed", 0) >= 1)
            again = await chat(gw.client, chat_body("hello", workdir))
            pool = await pool_of(gw.client)
        assert shape(again) == shape(first)
        assert (pool["hits"], pool["misses"]) == (0, 2)

    async def test_clis_that_keep_failing_are_retried_with_backoff(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """A CLI that dies before its message is retried ever more slowly, not in a loop."""
        dying = tmp_path / "dying-claude"
        dying.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi\n'
            "exit 3\n"
        )
        dying.chmod(0o755)
        profiles = tmp_path / "pool.json"
        profiles.write_text(json.dumps([{"cwd": str(workdir)}]))
        settings = make_settings(claude_path=dying, pool_size=1, pool_profiles_file=profiles)
        async with served(settings, {"PATH": os.environ["PATH"]}) as gw:
            await wait_pool(gw.client, lambda p: p["retired"].get("exited", 0) >= 1)
            await trio.sleep(4)
            pool = await pool_of(gw.client)
        # Tried again 1 s, 2 s, then 4 s later: three tries in four seconds, not hundreds.
        assert 2 <= pool["retired"]["exited"] <= 4
        assert pool["spawned"] == pool["retired"]["exited"]
