"""Every JSON example in PERMISSIONS.md, run against the real CLI, does what the text says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import REPO, Event, make_settings, post_chat, served

pytestmark = pytest.mark.timeout(120)

MCP_SERVER = Path(__file__).with_name("mcp_gauge.py")


def examples() -> dict[str, dict[str, Any]]:
    """Return PERMISSIONS.md's examples by name."""
    text = (REPO / "PERMISSIONS.md").read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```json\n(.*?)```", text, re.DOTALL)
    return {name: json.loads(body) for name, body in found}


def script(*calls: tuple[str, dict[str, Any]]) -> str:
    return "SCRIPT: " + json.dumps([list(call) for call in calls])


def lines(events: list[Event]) -> list[dict[str, Any]]:
    return [e.json() for e in events if e.event == "message"]


def denied(events: list[Event]) -> list[dict[str, Any]]:
    (result,) = [line for line in lines(events) if line["type"] == "result"]
    return [d["tool_input"] for d in result["permission_denials"]]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


Check = Callable[[Path, list[Event]], None]


def full_access(work: Path, events: list[Event]) -> None:
    assert lines(events)[0]["permissionMode"] == "bypassPermissions"
    assert (work / "made.txt").exists()


def full_access_without_bash(work: Path, events: list[Event]) -> None:
    assert "Bash" not in lines(events)[0]["tools"]
    assert not (work / "made.txt").exists()


def git_only(work: Path, events: list[Event]) -> None:
    assert "first" in git(work, "log", "--format=%s")
    assert denied(events) == [{"command": "touch made.txt"}]
    assert not (work / "made.txt").exists()


def exact_command(work: Path, events: list[Event]) -> None:
    assert (work / "built.txt").exists()
    assert denied(events) == [{"command": "make clean"}]


def read_only(work: Path, events: list[Event]) -> None:
    results = [
        b
        for line in lines(events)
        if line["type"] == "user"
        for b in line["message"]["content"]
        if b.get("type") == "tool_result"
    ]
    assert "OTTER" in str(results[0]["content"])
    assert results[1]["is_error"]
    assert not (work / "made.txt").exists()


def mcp_only(work: Path, events: list[Event]) -> None:
    assert lines(events)[0]["tools"] == ["mcp__gauge__read_gauge"]
    assert "gauge boiler reads 42" in lines(events)[-1]["result"]


def approval_http(work: Path, events: list[Event]) -> None:
    asked = [e.json()["tool_name"] for e in events if e.event == "approval"]
    answers = [e.json()["answer"] for e in events if e.event == "approval_answered"]
    assert asked == ["Bash"]  # Read ran without asking
    assert answers == ["timeout"]  # nobody answered: denied
    assert not (work / "made.txt").exists()
    assert "OTTER" in str(lines(events))


def accept_edits(work: Path, events: list[Event]) -> None:
    assert lines(events)[0]["permissionMode"] == "acceptEdits"
    assert (work / "CHANGES.txt").read_text() == "v1"


# Example name -> the scripted model's moves, and what must then be true.
CASES: dict[str, tuple[Callable[[Path], str], Check]] = {
    "full-access": (lambda w: "RUN_BASH: touch made.txt", full_access),
    "full-access-without-bash": (lambda w: "RUN_BASH: touch made.txt", full_access_without_bash),
    "git-only": (
        lambda w: script(
            (
                "Bash",
                {
                    "command": "git -c user.name=t -c user.email=t@t commit -q "
                    "--allow-empty -m first"
                },
            ),
            ("Bash", {"command": "touch made.txt"}),
        ),
        git_only,
    ),
    "exact-command": (
        lambda w: script(("Bash", {"command": "make build"}), ("Bash", {"command": "make clean"})),
        exact_command,
    ),
    "read-only": (
        lambda w: script(
            ("Read", {"file_path": str(w / "notes.txt")}),
            ("Write", {"file_path": str(w / "made.txt"), "content": "x"}),
        ),
        read_only,
    ),
    "mcp-only": (lambda w: 'CALL mcp__gauge__read_gauge {"name": "boiler"}', mcp_only),
    "approval-http": (
        lambda w: script(
            ("Read", {"file_path": str(w / "notes.txt")}),
            ("Bash", {"command": "touch made.txt"}),
        ),
        approval_http,
    ),
    "accept-edits": (
        lambda w: script(("Write", {"file_path": str(w / "CHANGES.txt"), "content": "v1"})),
        accept_edits,
    ),
}


def test_every_example_is_covered() -> None:
    """Each example in PERMISSIONS.md has a case here, and each case an example."""
    assert set(examples()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_example(
    name: str, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    """The example does what PERMISSIONS.md says it does."""
    git(workdir, "init", "-q")
    (workdir / "notes.txt").write_text("the secret word is OTTER\n")
    (workdir / "Makefile").write_text("build:\n\ttouch built.txt\nclean:\n\trm -f built.txt\n")
    body = examples()[name]
    moves, check = CASES[name]
    body.update(prompt=moves(workdir), cwd=str(workdir))
    # The examples name the MCP server `gauge-server`: put one on the PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gauge-server").write_text(f"#!/bin/sh\nexec {sys.executable} {MCP_SERVER}\n")
    (bin_dir / "gauge-server").chmod(0o755)
    environ = {**real_environ, "PATH": f"{bin_dir}:{real_environ['PATH']}"}
    # Approvals nobody answers are denied quickly (approval-http).
    settings = make_settings(claude_path=real_claude, approval_timeout_seconds=1)
    async with served(settings, environ) as gw:
        response, events = await post_chat(gw.client, body)
    assert response.status_code == 200, response.text
    assert events[-1].json()["status"] == "completed"
    check(workdir, events)
