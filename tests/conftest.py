"""Fixtures: fresh working folders and CLI homes, the scripted model, the real CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import PINNED_CLI_VERSION, REAL_CLAUDE
from .scripted_api import ScriptedAPI


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
