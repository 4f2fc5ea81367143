"""The operator's rules applied to one request: how much access it gets, or why not."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden
from .models import ChatRequest, PermissionMode
from .settings import Settings


@dataclass(frozen=True)
class Plan:
    """What a run may do, decided before it starts."""

    full_access: bool  # --dangerously-skip-permissions
    permission_mode: PermissionMode | None  # --permission-mode, when not full access
    disallowed_tools: tuple[str, ...]  # the caller's, then ALWAYS_DISALLOWED_TOOLS
    extra_env: Mapping[str, str]  # IS_SANDBOX=1 where root may have full access


class Policy:
    """Applies FORCE_RESTRICTED, ALLOWED_PERMISSION_MODES, ALLOWED_CWD_ROOTS,
    ALWAYS_DISALLOWED_TOOLS and ALLOW_ROOT_FULL_ACCESS."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], *, euid: int) -> None:
        self._settings = settings
        self._root = euid == 0
        # An operator who put IS_SANDBOX=1 in the server's environment has said the
        # same as ALLOW_ROOT_FULL_ACCESS; the CLI would inherit it anyway.
        self._root_full_access = settings.allow_root_full_access or environ.get("IS_SANDBOX") == "1"

    def plan(self, request: ChatRequest) -> Plan:
        """Return what the run may do.

        Raises:
            Forbidden: a folder is outside ALLOWED_CWD_ROOTS, the permission mode is
                not allowed, or full access was asked for where it cannot be had.
        """
        self._check_folders(request)
        settings = self._settings
        full_access = request.asks_full_access and not settings.force_restricted
        mode: PermissionMode | None = request.permission_mode
        if request.asks_full_access and settings.force_restricted:
            mode = "default"
        effective: PermissionMode = "bypassPermissions" if full_access else (mode or "default")
        if effective == "bypassPermissions" and settings.force_restricted:
            raise Forbidden(
                "full access (bypassPermissions) is turned off on this server (FORCE_RESTRICTED)",
                code="full_access_forbidden",
            )
        if effective not in settings.allowed_permission_modes:
            what = "full access" if full_access else f"permission_mode {effective!r}"
            raise Forbidden(
                f"{what} is not allowed on this server; allowed modes: "
                f"{', '.join(settings.allowed_permission_modes) or 'none'}",
                code="permission_mode_forbidden",
            )
        extra_env: dict[str, str] = {}
        if effective == "bypassPermissions" and self._root:
            if not self._root_full_access:
                raise Forbidden(
                    "the server runs as root, where the Claude Code CLI refuses full access: "
                    "send tools/allowed_tools to restrict the run, run cc2api as another "
                    "user, or set ALLOW_ROOT_FULL_ACCESS=true inside a sandbox",
                    code="root_full_access",
                )
            extra_env["IS_SANDBOX"] = "1"
        disallowed = (*(request.disallowed_tools or ()), *settings.always_disallowed_tools)
        return Plan(full_access, None if full_access else mode, disallowed, extra_env)

    def _check_folders(self, request: ChatRequest) -> None:
        roots = self._settings.allowed_cwd_roots
        if not roots:
            return
        for field, folders in (("cwd", [request.cwd]), ("add_dir", request.add_dir or [])):
            for folder in folders:
                real = Path(os.path.realpath(folder))
                if not any(real == root or real.is_relative_to(root) for root in roots):
                    raise Forbidden(
                        f"{field} {folder!r} is outside ALLOWED_CWD_ROOTS",
                        code="cwd_forbidden",
                    )
