"""``cc2api keys``: with the server down (the store's files) and up (the admin API)."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import httpx
import pytest

from .helpers import FAKE_CLAUDE, Ran, run_cc2api, running_server, server_environment

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    """Return a port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def keys(env: dict[str, str], cwd: Path, *args: str, command: str = "keys") -> Ran:
    """Run ``cc2api keys ARGS`` (or another ``command``) as the operator would."""
    return await run_cc2api(env, cwd, command, *args, timeout=60)


def token_of(output: str) -> str:
    """Return the token ``keys create`` printed."""
    found = re.search(r"token: (cc2_\S+)", output)
    assert found, output
    return found.group(1)


class TestKeysCommand:
    async def test_a_key_made_offline_works_once_the_server_is_up(self, tmp_path: Path) -> None:
        """``keys create`` with the server down writes the store; the started server takes it."""
        home = tmp_path / "home"
        home.mkdir()
        env = server_environment(
            home, FAKE_CLAUDE, PORT=str(free_port()), DATA_DIR=str(tmp_path / "data")
        )
        made = await keys(
            env, tmp_path, "create", "bot", "--max-runs", "2", "--disallow", "WebFetch"
        )
        assert made.returncode == 0, made.stderr
        token = token_of(made.stdout)
        argv = [sys.executable, "-m", "cc2api", "serve"]
        async with running_server(argv, tmp_path, env) as (_, url):
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                answer = await client.get("/processes")
        assert answer.status_code == 200
        assert "max_runs: 2" in made.stdout

    async def test_with_the_server_up_changes_apply_at_once(self, tmp_path: Path) -> None:
        """``keys create``, ``list``, ``update`` and ``revoke`` go through the running server."""
        home = tmp_path / "home"
        home.mkdir()
        env = server_environment(
            home, FAKE_CLAUDE, PORT=str(free_port()), DATA_DIR=str(tmp_path / "data")
        )
        argv = [sys.executable, "-m", "cc2api", "serve"]
        async with running_server(argv, tmp_path, env) as (_, url):
            made = await keys(env, tmp_path, "create", "ci")
            token = token_of(made.stdout)
            listed = await keys(env, tmp_path, "list")
            updated = await keys(env, tmp_path, "--json", "update", "ci", "--runs-per-minute", "5")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                before = await client.get("/processes")
                revoked = await keys(env, tmp_path, "revoke", "ci", "--cancel-runs")
                after = await client.get("/processes")
            missing = await keys(env, tmp_path, "show", "nobody")
        assert made.returncode == 0, made.stderr
        assert "ci" in listed.stdout
        assert '"runs_per_minute": 5' in updated.stdout
        assert before.status_code == 200
        assert revoked.returncode == 0, revoked.stderr
        assert after.status_code == 401
        assert missing.returncode == 1
        assert "no key named 'nobody'" in missing.stderr
        assert token not in listed.stdout + updated.stdout + revoked.stdout
        assert token not in (tmp_path / "server.log").read_text()


class TestUsageCommand:
    async def test_usage_is_printed_with_the_server_up_and_down(
        self, tmp_path: Path, workdir: Path
    ) -> None:
        """``cc2api usage`` prints the runs by key from the server, and the same from its store."""
        home = tmp_path / "home"
        home.mkdir()
        env = server_environment(
            home, FAKE_CLAUDE, PORT=str(free_port()), DATA_DIR=str(tmp_path / "data")
        )
        token = token_of((await keys(env, tmp_path, "create", "bot")).stdout)
        argv = [sys.executable, "-m", "cc2api", "serve"]
        async with running_server(argv, tmp_path, env) as (_, url):
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                body = {"prompt": "spend 0.75", "cwd": str(workdir), "stream": False}
                assert (await client.post("/chat", json=body)).status_code == 200
            up = await keys(env, tmp_path, "--group-by", "key", command="usage")
        down = await keys(env, tmp_path, "--json", "--key", "bot", command="usage")
        unknown = await keys(env, tmp_path, "--key", "nobody", command="usage")
        assert up.returncode == 0, up.stderr
        bot = next(line for line in up.stdout.splitlines() if line.startswith("bot "))
        assert "0.7500" in bot
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["groups"][0]["cost_usd"] == 0.75
        assert unknown.returncode == 1
