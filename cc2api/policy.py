"""The operator's rules applied to one request: how much access it gets, or why not."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .codes import ErrorCode
from .configfiles import Configs
from .errors import Forbidden, ValidationFailed
from .models import PERMISSION_MODES, ChatRequest, PermissionMode
from .settings import Settings

# Request fields through which a caller hands the CLI configuration that can run
# commands (hooks, MCP servers, plugins) or change what agents may do.
CALLER_CONFIG_FIELDS = ("settings", "setting_sources", "agents", "plugin_dir", "mcp_config")
# For runs whose caller configuration is untrusted: the CLI runs git in cwd at start
# (status, log), and a .git/config there could name commands (core.fsmonitor, hooks).
UNTRUSTED_CWD_ENV = {
    # CronCreate runs without asking and, durable, writes .claude/scheduled_tasks.json in
    # cwd: a prompt that fires in whatever later run has its input open there.
    "CLAUDE_CODE_DISABLE_CRON": "1",
    "CLAUDE_CODE_DISABLE_GIT_INSTRUCTIONS": "1",
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "core.fsmonitor",
    "GIT_CONFIG_VALUE_0": "",
    "GIT_CONFIG_KEY_1": "core.hooksPath",
    "GIT_CONFIG_VALUE_1": "/dev/null",
}


@dataclass(frozen=True)
class Plan:
    """What a run may do, decided before it starts."""

    full_access: bool  # --dangerously-skip-permissions
    permission_mode: PermissionMode | None  # --permission-mode, always set when restricted
    disallowed_tools: tuple[str, ...]  # the caller's, then ALWAYS_DISALLOWED_TOOLS
    extra_env: Mapping[str, str] = field(default_factory=dict)  # IS_SANDBOX=1 for root
    cwd: str = ""  # the folder the CLI starts in (real path when roots are enforced)
    add_dir: tuple[str, ...] = ()  # likewise
    plugin_dir: tuple[str, ...] = ()  # likewise
    configs: Configs = field(default_factory=Configs)  # filled by load_configs, later
    setting_sources: tuple[str, ...] | None = None  # forced when caller config is untrusted
    timeout: float | None = None  # seconds the run may take once started
    bounded: bool = False  # ALLOWED_CWD_ROOTS: tools stay in cwd and add_dir
    confined: bool = False  # the CLI's process tree runs under Landlock (confinement.py)

    @property
    def folders(self) -> tuple[str, ...]:
        """Return the folders the run works in: cwd, then add_dir."""
        return (self.cwd, *self.add_dir)


class Policy:
    """Applies FORCE_RESTRICTED, TRUST_CALLER_CONFIG, ALLOWED_PERMISSION_MODES,
    ALLOWED_CWD_ROOTS, ALWAYS_DISALLOWED_TOOLS, ALLOW_ROOT_FULL_ACCESS and
    RUN_TIMEOUT_SECONDS."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], *, euid: int) -> None:
        self._settings = settings
        self._root = euid == 0
        # An operator who put IS_SANDBOX=1 in the server's environment has said the
        # same as ALLOW_ROOT_FULL_ACCESS; the CLI would inherit it anyway.
        self._root_full_access = settings.allow_root_full_access or environ.get("IS_SANDBOX") == "1"
        trust = settings.trust_caller_config
        self._trust_config = (not settings.force_restricted) if trust is None else trust
        modes = settings.allowed_permission_modes
        if modes is None:
            # Unset under FORCE_RESTRICTED: neither full access nor the auto mode, whose
            # classifier would approve what the caller's restrictions do not.
            excluded = {"bypassPermissions", "auto"} if settings.force_restricted else set()
            modes = [mode for mode in PERMISSION_MODES if mode not in excluded]
        self._modes: list[PermissionMode] = modes
        mode = settings.confine_runs
        self.confines = mode == "on" or (
            mode == "auto" and (bool(settings.allowed_cwd_roots) or not self._trust_config)
        )

    @property
    def modes(self) -> tuple[PermissionMode, ...]:
        """Return the permission modes runs may use."""
        return tuple(self._modes)

    @property
    def trusts_config(self) -> bool:
        """Return whether callers may hand the CLI configuration."""
        return self._trust_config

    def within_roots(self, path: str) -> bool:
        """Return whether ``path`` (resolved) lies in ALLOWED_CWD_ROOTS; True when none are set."""
        roots = self._settings.allowed_cwd_roots
        resolved = Path(os.path.realpath(path))
        return not roots or any(resolved.is_relative_to(root) for root in roots)

    def plan(self, request: ChatRequest) -> Plan:
        """Return what the run may do (its configs still to be loaded: load_configs).

        Raises:
            Forbidden: a folder or file is outside ALLOWED_CWD_ROOTS, caller
                configuration is not trusted, a permission mode is not allowed, or
                full access was asked for where it cannot be had.
            ValidationFailed: timeout_seconds is over RUN_TIMEOUT_SECONDS.
        """
        settings = self._settings
        if not self._trust_config:
            given = [name for name in CALLER_CONFIG_FIELDS if _hands_config(request, name)]
            if given:
                raise Forbidden(
                    f"{', '.join(given)}: this server does not take CLI configuration from "
                    "callers (TRUST_CALLER_CONFIG is off)",
                    code=ErrorCode.CALLER_CONFIG_FORBIDDEN,
                )
        real = self._check_paths(request)
        full_access = request.asks_full_access and not settings.force_restricted
        effective: PermissionMode = (
            "bypassPermissions" if full_access else (request.permission_mode or "default")
        )
        if request.asks_full_access and settings.force_restricted:
            what = "this request, which FORCE_RESTRICTED runs in the default mode"
        else:
            what = "full access" if full_access else "permission_mode"
        modes = [effective]
        self._check_mode(effective, what)
        for name, agent in (request.agents or {}).items():
            if agent.permissionMode is not None:
                self._check_mode(agent.permissionMode, f"agents.{name}.permissionMode")
                modes.append(agent.permissionMode)
        extra_env: dict[str, str] = {}
        if "bypassPermissions" in modes and self._root:
            if not self._root_full_access:
                raise Forbidden(
                    "the server runs as root, where the Claude Code CLI refuses full access "
                    "(bypassPermissions, for the run or one of its agents): send "
                    "tools/allowed_tools to restrict the run, run cc2api as another user, or "
                    "set ALLOW_ROOT_FULL_ACCESS=true inside a sandbox",
                    code=ErrorCode.ROOT_FULL_ACCESS,
                )
            extra_env["IS_SANDBOX"] = "1"
        sources = request.setting_sources  # passed on by the plan, forced when untrusted
        if not self._trust_config:
            extra_env.update(UNTRUSTED_CWD_ENV)
            # The cwd's project and local settings could hold hooks: the user's only.
            sources = ["user"] if sources is None else sources
        return Plan(
            full_access=full_access,
            # Always explicit: otherwise a settings file (the caller's, or one in an
            # untrusted cwd) could raise the mode with permissions.defaultMode.
            permission_mode=None if full_access else effective,
            disallowed_tools=(*(request.disallowed_tools or ()), *settings.always_disallowed_tools),
            extra_env=extra_env,
            cwd=real.get(request.cwd, request.cwd),
            add_dir=tuple(real.get(p, p) for p in request.add_dir or ()),
            plugin_dir=tuple(real.get(p, p) for p in request.plugin_dir or ()),
            setting_sources=None if sources is None else tuple(sources),
            timeout=self._timeout(request),
            bounded=bool(settings.allowed_cwd_roots),
            confined=self.confines,
        )

    def _timeout(self, request: ChatRequest) -> float | None:
        ceiling = self._settings.run_timeout_seconds
        asked = request.timeout_seconds
        if asked is None:
            return ceiling
        if ceiling is not None and asked > ceiling:
            raise ValidationFailed(
                f"timeout_seconds: {asked:g} is over this server's limit, "
                f"RUN_TIMEOUT_SECONDS={ceiling:g}"
            )
        return asked

    def _check_mode(self, mode: PermissionMode, what: str) -> None:
        settings = self._settings
        if mode == "bypassPermissions" and settings.force_restricted:
            raise Forbidden(
                f"{what}: bypassPermissions is turned off on this server (FORCE_RESTRICTED)",
                code=ErrorCode.FULL_ACCESS_FORBIDDEN,
            )
        if mode not in self._modes:
            raise Forbidden(
                f"{what}: {mode} is not allowed on this server; allowed modes: "
                f"{', '.join(self._modes)}",
                code=ErrorCode.PERMISSION_MODE_FORBIDDEN,
            )

    def _check_paths(self, request: ChatRequest) -> dict[str, str]:
        """Check every path against ALLOWED_CWD_ROOTS; return the real path of each."""
        roots = self._settings.allowed_cwd_roots
        if not roots:
            return {}
        real: dict[str, str] = {}
        for name, path in _paths(request):
            resolved = os.path.realpath(path)
            if not self.within_roots(resolved):
                raise Forbidden(
                    f"{name} {path!r} is outside ALLOWED_CWD_ROOTS", code=ErrorCode.CWD_FORBIDDEN
                )
            # The CLI gets checked real paths, so a symlink swapped afterwards cannot
            # lead it elsewhere.
            real[path] = resolved
        return real


def _hands_config(request: ChatRequest, name: str) -> bool:
    value = getattr(request, name)
    if name == "setting_sources":  # asking for fewer sources than the default is fine
        return value is not None and not set(value) <= {"user"}
    return value is not None


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
