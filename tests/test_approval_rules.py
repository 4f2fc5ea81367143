"""The gateway's own checks on approvals: what may be asked, and what an answer may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cc2api.approval_rules import ApprovalRules, input_change_refusal
from cc2api.policy import Plan


def ask(tool: str, **fields: Any) -> dict[str, Any]:
    """Return a can_use_tool request for ``tool`` with ``fields`` as its input."""
    return {"subtype": "can_use_tool", "tool_name": tool, "input": fields}


class TestRefusal:
    def test_a_safety_check_is_refused_whatever_the_path(self, tmp_path: Path) -> None:
        """A request the CLI flags safetyCheck is refused, with the CLI's reason quoted."""
        request = {
            **ask("Write", file_path=str(tmp_path / "a.txt"), content="x"),
            "decision_reason_type": "safetyCheck",
            "decision_reason": "a sensitive file",
        }
        refusal = ApprovalRules(str(tmp_path)).refusal(request)
        assert refusal is not None
        assert "safety check" in refusal
        assert "a sensitive file" in refusal

    @pytest.mark.parametrize(
        "path",
        [
            "home/.claude/settings.json",
            "home/.claude.json",
            "home/.claude/agents/a.md",
            "work/.claude/settings.local.json",
            "work/.git/config",
            "work/.git/hooks/pre-commit",
            "work/.mcp.json",
            "home/.bashrc",
            "home/.profile",
            "home/.zshrc",
            "home/.gitconfig",
        ],
    )
    def test_configuration_later_runs_load_is_refused(self, tmp_path: Path, path: str) -> None:
        """A file tool aimed at settings, hooks, git or shell configuration is refused."""
        request = ask("Edit", file_path=str(tmp_path / path), old_string="a", new_string="b")
        refusal = ApprovalRules(str(tmp_path / "work")).refusal(request)
        assert refusal is not None
        assert "configuration" in refusal

    @pytest.mark.parametrize(
        "request_",
        [
            ask("Read", file_path="/etc/hostname"),
            ask("Write", file_path="../outside.txt", content="x"),
            ask("Glob", pattern="/etc/*.conf"),
            ask("Grep", pattern="x", path="/etc"),
            ask("NotebookEdit", notebook_path="/tmp/n.ipynb", new_source="x"),
            {**ask("Bash", command="cat ../x"), "blocked_path": "/etc/passwd"},
            ask("EnterWorktree", path="/srv/other-repo"),
            ask("Workflow", scriptPath="../elsewhere/flow.js"),
        ],
        ids=[
            "read",
            "write-relative",
            "glob-pattern",
            "grep-path",
            "notebook",
            "bash-blocked",
            "worktree",
            "workflow-script",
        ],
    )
    def test_a_path_outside_the_folders_is_refused(
        self, tmp_path: Path, request_: dict[str, Any]
    ) -> None:
        """With folders given, every path a request names must lie in one of them."""
        work = tmp_path / "work"
        work.mkdir()
        refusal = ApprovalRules(str(work), (str(work),)).refusal(request_)
        assert refusal is not None
        assert "outside the folders" in refusal

    def test_a_symlink_out_of_the_folders_is_followed(self, tmp_path: Path) -> None:
        """A path that leads out of the folders through a symbolic link is refused."""
        work = tmp_path / "work"
        work.mkdir()
        (work / "link").symlink_to("/etc")
        rules = ApprovalRules(str(work), (str(work),))
        assert rules.refusal(ask("Read", file_path=str(work / "link" / "hostname"))) is not None

    def test_paths_inside_the_folders_are_asked(self, tmp_path: Path) -> None:
        """A request about an ordinary file in the run's folders goes to the approver."""
        work, extra = tmp_path / "work", tmp_path / "extra"
        work.mkdir()
        extra.mkdir()
        rules = ApprovalRules(str(work), (str(work), str(extra)))
        assert rules.refusal(ask("Write", file_path=str(work / "a.txt"), content="x")) is None
        assert rules.refusal(ask("Read", file_path=str(extra / "b.txt"))) is None
        assert rules.refusal(ask("Glob", pattern="**/*.py")) is None
        assert rules.refusal(ask("Bash", command="make test")) is None

    def test_a_confined_run_reached_through_a_link_is_bounded_by_its_real_folder(
        self, tmp_path: Path
    ) -> None:
        """A confined run whose cwd is a symbolic link takes files in the folder it leads to."""
        real = tmp_path / "real"
        real.mkdir()
        (tmp_path / "link").symlink_to(real)
        plan = Plan(False, "default", (), cwd=str(tmp_path / "link"), confined=True)
        rules = ApprovalRules.for_plan(plan)
        assert rules.refusal(ask("Write", file_path=str(real / "a.txt"), content="x")) is None
        assert rules.refusal(ask("Read", file_path=str(tmp_path / "other"))) is not None

    def test_without_folders_any_ordinary_path_is_asked(self) -> None:
        """Without ALLOWED_CWD_ROOTS, a path outside cwd is the approver's call."""
        assert ApprovalRules("/srv/work").refusal(ask("Read", file_path="/etc/hostname")) is None


class TestInputChange:
    def test_an_unchanged_input_is_fine(self) -> None:
        """Sending the input back as it was asked about changes nothing."""
        asked = {"command": "ls", "description": "list"}
        assert input_change_refusal("Bash", asked, dict(asked)) is None

    @pytest.mark.parametrize(
        ("tool", "asked", "updated"),
        [
            ("Bash", {"command": "ls"}, {"command": "rm -rf ~"}),
            ("Bash", {"command": "ls"}, {"command": "ls", "dangerouslyDisableSandbox": True}),
            ("Write", {"file_path": "/w/a", "content": "x"}, {"file_path": "/e", "content": "x"}),
            ("Edit", {"file_path": "/w/a", "old_string": "a"}, {"old_string": "a"}),
            ("WebFetch", {"url": "https://a.example", "prompt": "p"}, {"url": "https://b.example"}),
            ("Task", {"subagent_type": "x", "prompt": "p"}, {"subagent_type": "y", "prompt": "p"}),
        ],
        ids=["bash-command", "bash-new-field", "write-path", "edit-dropped-path", "fetch", "task"],
    )
    def test_what_the_call_acts_on_may_not_change(
        self, tool: str, asked: dict[str, Any], updated: dict[str, Any]
    ) -> None:
        """A changed command, path, URL or agent, or a field added or dropped, is refused."""
        refusal = input_change_refusal(tool, asked, updated)
        assert refusal is not None
        assert tool in refusal

    @pytest.mark.parametrize(
        ("tool", "asked", "updated"),
        [
            ("Write", {"file_path": "/w/a", "content": "x"}, {"file_path": "/w/a", "content": "y"}),
            (
                "Edit",
                {"file_path": "/w/a", "old_string": "a", "new_string": "b"},
                {"file_path": "/w/a", "old_string": "a", "new_string": "c", "replace_all": True},
            ),
            ("Bash", {"command": "ls", "description": "a"}, {"command": "ls", "timeout": 60000}),
            ("mcp__gauge__read", {"name": "boiler"}, {"name": "furnace"}),
        ],
        ids=["write-content", "edit-strings", "bash-timeout", "mcp"],
    )
    def test_contents_and_mcp_inputs_may_change(
        self, tool: str, asked: dict[str, Any], updated: dict[str, Any]
    ) -> None:
        """What a file tool writes, Bash's timeout and description, and MCP inputs may change."""
        assert input_change_refusal(tool, asked, updated) is None
