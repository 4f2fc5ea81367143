"""Fixtures: fresh folders and CLI homes, the shared gateway, the scripted model, the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from .helpers import (
    AUTH,
    PINNED_CLI_VERSION,
    REAL_CLAUDE,
    TEST_DATA,
    Shared,
    SharedServer,
    listing,
    make_settings,
    serve_in_thread,
)
from .scripted_api import ScriptedAPI


@pytest.fixture(scope="session", autouse=True)
def _test_data() -> Iterator[None]:
    """Remove the test gateways' DATA_DIRs once the session is over."""
    yield
    shutil.rmtree(TEST_DATA, ignore_errors=True)


@pytest.fixture(name="workdir")
def _workdir(tmp_path: Path) -> Path:
    """A fresh folder for the CLI to work in."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture(name="fake_environ")
def _fake_environ(tmp_path: Path) -> dict[str, str]:
    """The environment a gateway hands the fake CLI."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


@pytest.fixture(scope="session", name="shared_server")
def _shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    """One gateway with default settings and the fake CLI, for every test that needs no other.

    No login lockout: one address's wrong passwords in one test must not lock the
    next tests out (tests/test_bad_input.py sends many on purpose).
    """
    home = tmp_path_factory.mktemp("shared-home")
    workdir = tmp_path_factory.mktemp("shared-work")
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    with serve_in_thread(make_settings(auth_max_failures=0), environ) as url:
        yield SharedServer(url, home, workdir)


@pytest.fixture(name="gw")
async def _gw(shared_server: SharedServer) -> AsyncIterator[Shared]:
    """A client of the session's gateway; runs the test left going are cancelled after it."""
    async with httpx.AsyncClient(base_url=shared_server.url, auth=AUTH, timeout=60) as client:
        yield Shared(shared_server.url, client, shared_server.home)
        # The next test must find every slot free, as on a gateway of its own.
        for run in await listing(client):
            if run["status"] in ("running", "queued"):
                await client.delete(f"/chat/{run['process_id']}")
        with trio.fail_after(30):
            while (await client.get("/health")).json()["active_processes"]:
                await trio.sleep(0.02)


@pytest.fixture(scope="session", name="real_claude")
def _real_claude() -> Path:
    """The pinned Claude Code CLI that the test command installs; fails loudly without it."""
    if not REAL_CLAUDE.exists():
        pytest.fail(
            f"the Claude Code CLI is not installed at {REAL_CLAUDE}: run ./scripts/test, "
            f"which installs @anthropic-ai/claude-code@{PINNED_CLI_VERSION} there",
            pytrace=False,
        )
    version = subprocess.run(
        [str(REAL_CLAUDE), "--version"], capture_output=True, text=True, check=False, timeout=60
    ).stdout
    if not version.startswith(PINNED_CLI_VERSION):
        pytest.fail(f"expected CLI {PINNED_CLI_VERSION}, found {version!r}", pytrace=False)
    return REAL_CLAUDE


@pytest.fixture(name="scripted_api")
def _scripted_api() -> Iterator[ScriptedAPI]:
    """The scripted Messages API on 127.0.0.1, fresh for each test."""
    with ScriptedAPI() as api:
        yield api


@pytest.fixture(name="real_environ")
def _real_environ(tmp_path: Path, scripted_api: ScriptedAPI) -> dict[str, str]:
    """The environment that runs the real CLI offline against the scripted model."""
    home = tmp_path / "cli-home"
    home.mkdir()
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": scripted_api.url,
        "ANTHROPIC_API_KEY": "sk-test-not-a-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if os.geteuid() == 0:
        # The CLI refuses full access under root without it; the root case has its own test.
        environ["IS_SANDBOX"] = "1"
    return environ
