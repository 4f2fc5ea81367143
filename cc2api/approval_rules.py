"""What an approval over HTTP may grant: the gateway's own checks on the CLI's questions.

Measured on the CLI 2.1.197 (see PERMISSIONS.md): it asks about writes to the files
later runs load (user and project settings, ``~/.claude.json``, agents, commands,
skills, shell rc files, ``.git/config``, hooks), flagging them with
``decision_reason_type: "safetyCheck"``, and writes them once allowed; and it runs an
allowed call with whatever ``updatedInput`` the answer carries, without checking it
against any of its rules. So an approver could grant what no rule of the operator's
would: these checks stand between them.

Two checks, both pure:

* :meth:`ApprovalRules.refusal` decides, when the question arrives, whether it may be
  put to an approver at all. A safety check, a protected path, or a path outside the
  run's folders (when the operator set ``ALLOWED_CWD_ROOTS``) is refused at once.
* :func:`input_change_refusal` decides whether an answer's ``updated_input`` may
  replace the input asked about: only the fields listed in ``CHANGEABLE`` may change,
  so an allow can never point a call at another file or another command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .policy import Plan

# Where each file tool names its path (the CLI's own input schemas).
PATH_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Read": ("file_path",),
    "Write": ("file_path",),
    "Edit": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "Glob": ("path", "pattern"),
    "Grep": ("path",),
    "EnterWorktree": ("path",),
    "Workflow": ("scriptPath",),
    "Bash": ("blocked_path",),  # the CLI's own finding, in the request rather than the input
}
# The fields an answer's updated_input may change, per tool; every other field must
# stay as the CLI asked. MCP tools (mcp__…) may change anything: the CLI's rules match
# them by name only.
CHANGEABLE: Mapping[str, frozenset[str]] = {
    "Write": frozenset({"content"}),
    "Edit": frozenset({"old_string", "new_string", "replace_all"}),
    "NotebookEdit": frozenset({"new_source", "cell_type", "edit_mode"}),
    "Bash": frozenset({"description", "timeout"}),
}
# Names that, anywhere in a path, make it configuration later runs load (or code git
# runs): never written through an approval.
PROTECTED_PARTS = frozenset({".git", ".claude", ".claude.json", ".mcp.json"})
PROTECTED_NAMES = frozenset(
    {
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zshenv",
        ".zprofile",
        ".zlogin",
        ".gitconfig",
        ".gitmodules",
    }
)
_GLOB_CHARS = "*?[{"


@dataclass(frozen=True)
class ApprovalRules:
    """The checks for one run's questions; ``folders`` None means no folder rule."""

    cwd: str
    folders: tuple[str, ...] | None = None  # real paths the run's tools are confined to

    @classmethod
    def for_plan(cls, plan: Plan) -> ApprovalRules:
        """Return the rules for a run: its folders bound it when it is bounded or confined."""
        bounded = plan.bounded or plan.confined
        folders = tuple(os.path.realpath(f) for f in plan.folders) if bounded else None
        return cls(plan.cwd, folders)

    def refusal(self, request: Mapping[str, Any]) -> str | None:
        """Return why a ``can_use_tool`` request is refused without asking, or None."""
        if request.get("decision_reason_type") == "safetyCheck":
            reason = request.get("decision_reason")
            said = f" ({reason})" if isinstance(reason, str) and reason else ""
            return (
                "the CLI flags this as a safety check on a sensitive file"
                f"{said}, which no approval on this server may grant"
            )
        for path in self._paths(request):
            parts = PurePosixPath(path).parts
            if PROTECTED_PARTS.intersection(parts) or (parts and parts[-1] in PROTECTED_NAMES):
                return (
                    f"{path} is configuration of the CLI, git or the shell, which later runs "
                    "load: no approval may reach it"
                )
            if self.folders is not None and not any(_within(path, f) for f in self.folders):
                return f"{path} is outside the folders this run may use (ALLOWED_CWD_ROOTS)"
        return None

    def _paths(self, request: Mapping[str, Any]) -> Iterator[str]:
        """Yield the real paths a request names, resolved like the CLI resolves them."""
        tool_input = request.get("input")
        given = dict(tool_input) if isinstance(tool_input, dict) else {}
        if "blocked_path" in request:  # the CLI's own finding for a Bash command
            given["blocked_path"] = request["blocked_path"]
        for name in PATH_FIELDS.get(str(request.get("tool_name", "")), ()):
            value = given.get(name)
            if not isinstance(value, str) or not value:
                continue
            if name == "pattern":
                if not value.startswith("/"):
                    continue  # relative to path, which is checked itself
                value = _static_prefix(value)
            yield os.path.realpath(os.path.join(self.cwd, value))


def input_change_refusal(
    tool: str, asked: Mapping[str, Any], updated: Mapping[str, Any]
) -> str | None:
    """Return why ``updated`` may not replace the input ``asked`` about, or None."""
    if tool.startswith("mcp__"):
        return None
    changeable = CHANGEABLE.get(tool, frozenset())
    for name in sorted(set(asked) | set(updated)):
        if name in changeable:
            continue
        if name not in updated or name not in asked or updated[name] != asked[name]:
            return (
                f"updated_input may not change {tool}'s {name!r}: an approval allows or "
                "denies the call the CLI asked about, not another one"
                + (f"; it may change {', '.join(sorted(changeable))}" if changeable else "")
            )
    return None


def _static_prefix(pattern: str) -> str:
    """Return the folder part of a glob pattern before its first wildcard."""
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=len(pattern))
    return pattern[:cut].rsplit("/", 1)[0] or "/"


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
