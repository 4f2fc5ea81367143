"""The operator's rules applied to one request: how much access it gets, or why not."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Forbidden
from .models import ChatRequest, PermissionMode
from .settings import Settings

# Request fields through which a caller hands the CLI configuration that can run
# commands (hooks, MCP servers, plugins) or change what agents may do.
CALLER_CONFIG_FIELDS = ("settings", "setting_sources", "agents", "plugin_dir", "mcp_config")


@dataclass(frozen=True)
class Plan:
    """What a run may do, decided before it starts."""

    full_access: bool  # --dangerously-skip-permissions
    permission_mode: PermissionMode | None  # --permission-mode, always set when restricted
    disallowed_tools: tuple[str, ...]  # the caller's, then ALWAYS_DISALLOWED_TOOLS
    extra_env: Mapping[str, str] = field(default_factory=dict)  # IS_SANDBOX=1 for root
    cwd: str = ""  # the folder the CLI starts in (real path when roots are enforced)
    add_dir: tuple[str, ...] = ()  # likewise
    setting_sources: tuple[str, ...] | None = None  # forced when caller config is untrusted


class Policy:
    """Applies FORCE_RESTRICTED, TRUST_CALLER_CONFIG, ALLOWED_PERMISSION_MODES,
    ALLOWED_CWD_ROOTS, ALWAYS_DISALLOWED_TOOLS and ALLOW_ROOT_FULL_ACCESS."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], *, euid: int) -> None:
        self._settings = settings
        self._root = euid == 0
        # An operator who put IS_SANDBOX=1 in the server's environment has said the
        # same as ALLOW_ROOT_FULL_ACCESS; the CLI would inherit it anyway.
        self._root_full_access = settings.allow_root_full_access or environ.get("IS_SANDBOX") == "1"
        trust = settings.trust_caller_config
        self._trust_config = (not settings.force_restricted) if trust is None else trust

    def plan(self, request: ChatRequest) -> Plan:
        """Return what the run may do.

        Raises:
            Forbidden: a folder or file is outside ALLOWED_CWD_ROOTS, caller
                configuration is not trusted, a permission mode is not allowed, or
                full access was asked for where it cannot be had.
        """
        settings = self._settings
        if not self._trust_config:
            given = [name for name in CALLER_CONFIG_FIELDS if getattr(request, name) is not None]
            if given:
                raise Forbidden(
                    f"{', '.join(given)}: this server does not take CLI configuration from "
                    "callers (TRUST_CALLER_CONFIG is off)",
                    code="caller_config_forbidden",
                )
        cwd, add_dir = self._check_paths(request)
        full_access = request.asks_full_access and not settings.force_restricted
        effective: PermissionMode = (
            "bypassPermissions" if full_access else (request.permission_mode or "default")
        )
        self._check_mode(effective, "full access" if full_access else "permission_mode")
        for name, agent in (request.agents or {}).items():
            if agent.permissionMode is not None:
                self._check_mode(agent.permissionMode, f"agents.{name}.permissionMode")
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
        return Plan(
            full_access=full_access,
            # Always explicit: otherwise a settings file (the caller's, or one in an
            # untrusted cwd) could raise the mode with permissions.defaultMode.
            permission_mode=None if full_access else effective,
            disallowed_tools=(*(request.disallowed_tools or ()), *settings.always_disallowed_tools),
            extra_env=extra_env,
            cwd=cwd,
            add_dir=add_dir,
            # Untrusted: the cwd's project and local settings could hold hooks.
            setting_sources=None if self._trust_config else ("user",),
        )

    def _check_mode(self, mode: PermissionMode, what: str) -> None:
        settings = self._settings
        if mode == "bypassPermissions" and settings.force_restricted:
            raise Forbidden(
                f"{what}: bypassPermissions is turned off on this server (FORCE_RESTRICTED)",
                code="full_access_forbidden",
            )
        if mode not in settings.allowed_permission_modes:
            raise Forbidden(
                f"{what}: {mode} is not allowed on this server; allowed modes: "
                f"{', '.join(settings.allowed_permission_modes)}",
                code="permission_mode_forbidden",
            )

    def _check_paths(self, request: ChatRequest) -> tuple[str, tuple[str, ...]]:
        """Check every path against ALLOWED_CWD_ROOTS; return cwd and add_dir to use."""
        roots = self._settings.allowed_cwd_roots
        if not roots:
            return request.cwd, tuple(request.add_dir or ())
        real: dict[str, str] = {}
        for name, path in _paths(request):
            resolved = os.path.realpath(path)
            if not any(Path(resolved).is_relative_to(root) for root in roots):
                raise Forbidden(
                    f"{name} {path!r} is outside ALLOWED_CWD_ROOTS", code="cwd_forbidden"
                )
            real[path] = resolved
        # The CLI gets the checked real paths, so a symlink swapped afterwards cannot
        # lead it elsewhere.
        return real[request.cwd], tuple(real[p] for p in request.add_dir or ())


def _paths(request: ChatRequest) -> Iterator[tuple[str, str]]:
    yield "cwd", request.cwd
    for folder in request.add_dir or ():
        yield "add_dir", folder
    for folder in request.plugin_dir or ():
        yield "plugin_dir", folder
    for config in request.mcp_config or ():
        if not config.lstrip().startswith("{"):
            yield "mcp_config", config
    if request.settings is not None and not request.settings.lstrip().startswith("{"):
        yield "settings", request.settings
