"""Finding the claude binary: CLAUDE_PATH, then PATH, then the usual install places."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cc2api import discovery
from cc2api.discovery import candidates, find_claude, probe

from .helpers import FAKE_CLAUDE


def install(at: Path) -> Path:
    at.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FAKE_CLAUDE, at)
    return at


class TestFindClaude:
    def test_configured_path_wins(self, tmp_path: Path) -> None:
        """CLAUDE_PATH is used when it is an executable file."""
        claude = install(tmp_path / "bin" / "claude")
        install(tmp_path / "home" / ".local/bin/claude")
        environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
        assert find_claude(claude, environ) == (claude, "")

    def test_relative_configured_path_made_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative CLAUDE_PATH is made absolute, since runs start in other folders."""
        claude = install(tmp_path / "bin" / "claude")
        monkeypatch.chdir(tmp_path)
        path, _ = find_claude(Path("bin/claude"), {"PATH": "", "HOME": str(tmp_path)})
        assert path == claude
        assert path.is_absolute()

    def test_bad_configured_path_is_a_problem(self, tmp_path: Path) -> None:
        """A CLAUDE_PATH that is not executable is reported, not silently replaced."""
        path, problem = find_claude(tmp_path / "missing", {"PATH": "", "HOME": str(tmp_path)})
        assert path is None
        assert "CLAUDE_PATH" in problem

    def test_path_before_install_places(self, tmp_path: Path) -> None:
        """`claude` on PATH comes before the usual install places."""
        on_path = install(tmp_path / "bin" / "claude")
        install(tmp_path / "home" / ".local/bin/claude")
        environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
        assert find_claude(None, environ) == (on_path, "")

    def test_install_places_in_order(self, tmp_path: Path) -> None:
        """Without PATH, ~/.local/bin comes before ~/.claude/local and nvm's folders."""
        home = tmp_path / "home"
        install(home / ".nvm/versions/node/v20.1.0/bin/claude")
        local = install(home / ".claude/local/claude")
        environ = {"PATH": str(tmp_path / "empty"), "HOME": str(home)}
        assert find_claude(None, environ) == (local, "")
        first = install(home / ".local/bin/claude")
        assert find_claude(None, environ) == (first, "")

    def test_candidate_order(self, tmp_path: Path) -> None:
        """The install places are tried in the documented order, nvm's newest node first."""
        home = tmp_path / "home"
        install(home / ".nvm/versions/node/v20.1.0/bin/claude")
        install(home / ".nvm/versions/node/v22.3.0/bin/claude")
        assert candidates({"HOME": str(home)}) == [
            home / ".local/bin/claude",
            home / ".claude/local/claude",
            home / ".npm-global/bin/claude",
            Path("/usr/local/bin/claude"),
            home / ".nvm/versions/node/v22.3.0/bin/claude",
            home / ".nvm/versions/node/v20.1.0/bin/claude",
        ]

    def test_nothing_found(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no claude anywhere the problem says to install it or set CLAUDE_PATH."""
        monkeypatch.setattr(discovery, "candidates", lambda environ: [tmp_path / "none"])
        path, problem = find_claude(None, {"PATH": str(tmp_path), "HOME": str(tmp_path)})
        assert path is None
        assert "install it or set CLAUDE_PATH" in problem


class TestProbe:
    async def test_reports_version(self, tmp_path: Path) -> None:
        """The probe runs `claude --version` and keeps its first word."""
        info = await probe(FAKE_CLAUDE, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert (info.usable, info.version, info.problem) == (True, "9.9.9", None)

    async def test_failing_binary_is_degraded(self, tmp_path: Path) -> None:
        """A binary whose --version fails makes the CLI unusable, with the reason."""
        broken = tmp_path / "claude"
        broken.write_text("#!/bin/sh\nexit 4\n")
        broken.chmod(0o755)
        info = await probe(broken, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert not info.usable
        assert info.problem is not None
        assert "status 4" in info.problem
