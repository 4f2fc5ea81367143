"""Confined runs with the fake CLI: private places, what is copied in, and failing closed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from cc2api import confinement
from cc2api.confinement import RunFolders, bring_back, prepare
from cc2api.launch import remove_folder
from cc2api.sessions import transcript

from .helpers import chat_body, collect, fake_cli_reads, make_settings, post_chat, served

pytestmark = pytest.mark.timeout(60)


def confined_settings(workdir: Path, **overrides: Any) -> Any:
    """Settings whose runs are confined to ``workdir`` and can still start the fake CLI."""
    return make_settings(
        allowed_cwd_roots=str(workdir), confine_read_paths=fake_cli_reads(), **overrides
    )


class TestPlaces:
    async def test_a_confined_run_gets_a_private_home_tmp_and_config(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """HOME, TMPDIR and CLAUDE_CONFIG_DIR point into the run's own folder, gone after."""
        async with served(confined_settings(workdir), fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("argv", workdir))
        said = next(e.json() for e in events if e.event == "message" and "places" in e.data)
        places = said["places"]
        run_dir = Path(places["HOME"]).parent
        assert run_dir.name.startswith("cc2api-run-")
        assert places == {
            "HOME": str(run_dir / "home"),
            "TMPDIR": str(run_dir / "tmp"),
            "CLAUDE_CONFIG_DIR": str(run_dir / "config"),
        }
        assert said["argv"][0].startswith("-p")  # the launcher exec'd the CLI itself
        assert not run_dir.exists()
        assert events[-1].json()["status"] == "completed"

    async def test_an_unconfined_run_keeps_the_servers_places(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With CONFINE_RUNS=off the CLI gets the server's HOME and no private folders."""
        settings = confined_settings(workdir, confine_runs="off")
        async with served(settings, fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("argv", workdir))
        said = next(e.json() for e in events if e.event == "message" and "places" in e.data)
        assert said["places"] == {
            "HOME": fake_environ["HOME"],
            "TMPDIR": None,
            "CLAUDE_CONFIG_DIR": None,
        }

    async def test_untrusted_callers_are_confined_without_roots(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """TRUST_CALLER_CONFIG=false confines runs by default, roots or not."""
        settings = make_settings(trust_caller_config=False, confine_read_paths=fake_cli_reads())
        async with served(settings, fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("argv", workdir))
        said = next(e.json() for e in events if e.event == "message" and "places" in e.data)
        assert said["places"]["HOME"] != fake_environ["HOME"]


class TestCopiedIn:
    def make_config(self, tmp_path: Path) -> Path:
        """A real config folder with settings, instructions, an agent and credentials."""
        config = tmp_path / "real"
        (config / "agents").mkdir(parents=True)
        (config / "settings.json").write_text('{"model": "sonnet"}')
        (config / "CLAUDE.md").write_text("be brief")
        (config / "agents" / "a.md").write_text("agent")
        (config / ".credentials.json").write_text('{"token": "t"}')
        (config / "projects" / "-w").mkdir(parents=True)
        (config / "projects" / "-w" / "other.jsonl").write_text("someone else's")
        return config

    def test_settings_instructions_and_agents_are_copied_not_sessions(self, tmp_path: Path) -> None:
        """The user's settings, CLAUDE.md and agents are copied in; other sessions are not."""
        config = self.make_config(tmp_path)
        folders = RunFolders(tmp_path / "run")
        folders.root.mkdir()
        prepare(folders, config, {"ANTHROPIC_API_KEY": "k"}, None, "/w")
        assert (folders.config / "settings.json").read_text() == '{"model": "sonnet"}'
        assert (folders.config / "CLAUDE.md").read_text() == "be brief"
        assert (folders.config / "agents" / "a.md").read_text() == "agent"
        assert not (folders.config / "projects").exists()
        assert not (folders.config / ".credentials.json").exists()  # the API key does
        assert oct(os.stat(folders.home).st_mode & 0o777) == "0o700"

    def test_the_operators_linked_settings_are_followed(self, tmp_path: Path) -> None:
        """A settings.json that is a link (a dotfile manager's) is copied in, not refused."""
        config = self.make_config(tmp_path)
        (tmp_path / "dotfiles").mkdir()
        (config / "settings.json").rename(tmp_path / "dotfiles" / "settings.json")
        (config / "settings.json").symlink_to(tmp_path / "dotfiles" / "settings.json")
        folders = RunFolders(tmp_path / "run")
        folders.root.mkdir()
        prepare(folders, config, {"ANTHROPIC_API_KEY": "k"}, None, "/w")
        assert (folders.config / "settings.json").read_text() == '{"model": "sonnet"}'

    def test_a_new_session_that_exists_meanwhile_is_not_overwritten(self, tmp_path: Path) -> None:
        """Bringing back, only the session the run resumed may replace a real transcript."""
        real, folders = tmp_path / "real", RunFolders(tmp_path / "run")
        resumed, made, taken = (str(uuid.uuid4()) for _ in range(3))
        for config, session, text in (
            (folders.config, resumed, "resumed, then more"),
            (folders.config, made, "made by the run"),
            (folders.config, taken, "the run's copy"),
            (real, resumed, "resumed"),
            (real, taken, "someone else's"),
        ):
            path = transcript(config, "/w", session)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        left_out = bring_back(folders, real, "/w", [resumed, made, taken], resumed)
        assert left_out == [taken]
        assert transcript(real, "/w", resumed).read_text() == "resumed, then more"
        assert transcript(real, "/w", made).read_text() == "made by the run"
        assert transcript(real, "/w", taken).read_text() == "someone else's"

    def test_credentials_are_copied_only_without_an_api_key(self, tmp_path: Path) -> None:
        """Without ANTHROPIC_API_KEY (a login), the CLI needs its credentials file."""
        config = self.make_config(tmp_path)
        folders = RunFolders(tmp_path / "run")
        folders.root.mkdir()
        prepare(folders, config, {}, None, "/w")
        assert json.loads((folders.config / ".credentials.json").read_text()) == {"token": "t"}


class TestFailingClosed:
    async def test_without_landlock_confined_runs_are_refused(
        self, fake_environ: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A kernel without Landlock: /health degraded, and runs that must be confined get 503."""
        # A fault this machine's kernel cannot show: it has Landlock.
        monkeypatch.setattr(confinement, "available", lambda: False)
        async with served(confined_settings(workdir), fake_environ) as gw:
            health = (await gw.client.get("/health")).json()
            answer = await gw.client.post("/chat", json=chat_body("echo hi", workdir))
        assert health["status"] == "degraded"
        assert "Landlock" in health["reason"]
        assert answer.status_code == 503
        assert answer.json()["code"] == "confinement_unavailable"

    async def test_without_landlock_confine_runs_off_still_runs(
        self, fake_environ: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONFINE_RUNS=off is the operator's way to run unconfined where Landlock is missing."""
        monkeypatch.setattr(confinement, "available", lambda: False)
        settings = confined_settings(workdir, confine_runs="off")
        async with served(settings, fake_environ) as gw:
            health = (await gw.client.get("/health")).json()
            _, events = await post_chat(gw.client, chat_body("echo hi", workdir))
        assert health["status"] == "ok"
        assert events[-1].json()["status"] == "completed"


class TestLauncherFailure:
    async def test_a_run_that_cannot_be_confined_fails_and_runs_nothing(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A folder gone while its run waited in the queue: the run fails confinement_failed."""
        extra = workdir / "extra"
        extra.mkdir()
        settings = confined_settings(workdir, max_concurrent_runs=1)
        async with served(settings, fake_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("hang", workdir, detach=True)
            ) as first:
                blocker = first.headers["x-process-id"]
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("argv", workdir, add_dir=[str(extra)])
            ) as second:
                extra.rmdir()  # while the run waits for the slot
                await gw.client.delete(f"/chat/{blocker}")
                events = await collect(second)
        error = next(e.json() for e in events if e.event == "error")
        assert error["code"] == "confinement_failed"
        assert "cc2api-landlock: cannot confine the run" in error["stderr_tail"]
        assert events[-1].json()["status"] == "failed"
        assert not any("places" in e.data for e in events)


class TestRunFolderRemoval:
    def test_a_folder_whose_tools_took_its_permissions_away_is_removed(
        self, tmp_path: Path
    ) -> None:
        """A run's folder is removed even where the run chmod-ed a folder of it to 0500."""
        # Not below tmp_path: pytest's own folder is root's alone, and nobody must reach it.
        base = Path(tempfile.mkdtemp(prefix="cc2api-test-"))
        folder = base / "cc2api-run-x"
        (folder / "config" / "projects").mkdir(parents=True)
        (folder / "config" / "projects" / "t.jsonl").write_text("x")
        (folder / "config").chmod(0o500)
        owner = 65534 if os.geteuid() == 0 else os.geteuid()  # root ignores modes: nobody
        for path in (base, *folder.rglob("*"), folder):
            os.chown(path, owner, owner, follow_symlinks=False)
        child = os.fork()
        if child == 0:  # pragma: no cover (the child reports by its exit status)
            try:
                os.setgid(owner)
                os.setuid(owner)
                remove_folder(folder)
                os._exit(0 if not folder.exists() else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        removed = not folder.exists()
        shutil.rmtree(base, ignore_errors=True)
        assert os.waitstatus_to_exitcode(status) == 0
        assert removed

    def test_a_link_in_the_folder_is_removed_not_followed(self, tmp_path: Path) -> None:
        """A link the run left is removed; what it points to keeps its mode and content."""
        folder = tmp_path / "cc2api-run-y"
        folder.mkdir()
        outside = tmp_path / "outside.txt"
        outside.write_text("keep")
        outside.chmod(0o600)
        (folder / "link").symlink_to(outside)
        remove_folder(folder)
        assert not folder.exists()
        assert outside.read_text() == "keep"
        assert outside.stat().st_mode & 0o777 == 0o600


class TestCronOff:
    @pytest.mark.parametrize(
        ("operator", "untrusted", "expected"),
        [(None, False, "1"), ("0", False, "0"), ("0", True, "1")],
        ids=["default", "operator-on", "untrusted-always-off"],
    )
    async def test_the_clis_cron_tools_are_off_unless_the_operator_wants_them(
        self,
        fake_environ: dict[str, str],
        workdir: Path,
        operator: str | None,
        untrusted: bool,
        expected: str,
    ) -> None:
        """CLAUDE_CODE_DISABLE_CRON=1 by default; an operator's 0 holds, but not when untrusted."""
        environ = dict(fake_environ)
        if operator is not None:
            environ["CLAUDE_CODE_DISABLE_CRON"] = operator
        settings = make_settings(
            trust_caller_config=not untrusted, confine_read_paths=fake_cli_reads()
        )
        async with served(settings, environ) as gw:
            _, events = await post_chat(gw.client, chat_body("argv", workdir))
        said = next(e.json() for e in events if e.event == "message" and "cron_off" in e.data)
        assert said["cron_off"] == expected
