"""The operator's rules: who gets full access, which modes, which folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cc2api.errors import Forbidden
from cc2api.models import ChatRequest
from cc2api.policy import UNTRUSTED_CWD_ENV, Plan, Policy

from .helpers import make_settings

USER, ROOT = 1000, 0


def plan(
    rules: dict[str, Any] | None = None,
    *,
    euid: int = USER,
    environ: dict[str, str] | None = None,
    **fields: Any,
) -> Plan:
    request = ChatRequest.model_validate({"prompt": "hi", "cwd": "/tmp", **fields})
    values = {"allow_root_full_access": False, **(rules or {})}
    policy = Policy(make_settings(**values), environ or {}, euid=euid)
    return policy.plan(request)


def access(result: Plan) -> tuple[object, ...]:
    """The parts of a plan about access: full access, mode, disallowed tools, environment."""
    return (
        result.full_access,
        result.permission_mode,
        result.disallowed_tools,
        dict(result.extra_env),
    )


def refused(rules: dict[str, Any] | None = None, **kwargs: Any) -> Forbidden:
    with pytest.raises(Forbidden) as caught:
        plan(rules, **kwargs)
    assert caught.value.status == 403
    return caught.value


class TestAccess:
    def test_no_restrictions_means_full_access(self) -> None:
        """Without tools, allowed_tools or permission_mode a run gets full access."""
        assert access(plan()) == (True, None, (), {})

    @pytest.mark.parametrize("fields", [{"tools": []}, {"allowed_tools": ["Read"]}])
    def test_tools_or_allowed_tools_restrict(self, fields: dict[str, Any]) -> None:
        """tools or allowed_tools (even empty) restrict the run, explicitly in the default mode."""
        assert access(plan(**fields)) == (False, "default", (), {})

    def test_permission_mode_is_passed(self) -> None:
        """An explicit permission mode is used instead of full access."""
        assert access(plan(permission_mode="acceptEdits")) == (False, "acceptEdits", (), {})

    def test_force_restricted_turns_full_access_into_default_mode(self) -> None:
        """FORCE_RESTRICTED runs a full-access request in the default mode instead."""
        result = plan({"force_restricted": True})
        assert access(result)[:3] == (False, "default", ())
        assert result.extra_env == UNTRUSTED_CWD_ENV

    def test_force_restricted_refuses_bypass_permissions(self) -> None:
        """FORCE_RESTRICTED refuses an explicit bypassPermissions with 403."""
        error = refused({"force_restricted": True}, permission_mode="bypassPermissions")
        assert error.code == "full_access_forbidden"

    def test_allowed_permission_modes(self) -> None:
        """A mode outside ALLOWED_PERMISSION_MODES is refused, full access included."""
        settings = {"allowed_permission_modes": "default,plan"}
        assert plan(settings, permission_mode="plan").permission_mode == "plan"
        assert refused(settings, permission_mode="acceptEdits").code == (
            "permission_mode_forbidden"
        )
        assert "full access" in refused(settings).detail

    def test_always_disallowed_tools_are_merged(self) -> None:
        """ALWAYS_DISALLOWED_TOOLS is added to the caller's disallowed tools."""
        settings = {"always_disallowed_tools": "WebFetch, Bash(rm:*)"}
        result = plan(settings, disallowed_tools=["Write"])
        assert result.disallowed_tools == ("Write", "WebFetch", "Bash(rm:*)")


class TestRoot:
    def test_root_full_access_refused_by_default(self) -> None:
        """Under root, full access is refused before anything starts, saying what to do."""
        error = refused(euid=ROOT)
        assert error.code == "root_full_access"
        assert "ALLOW_ROOT_FULL_ACCESS" in error.detail

    def test_root_bypass_mode_refused_too(self) -> None:
        """Under root, permission_mode bypassPermissions is refused the same way."""
        assert refused(euid=ROOT, permission_mode="bypassPermissions").code == "root_full_access"

    def test_root_restricted_is_fine(self) -> None:
        """Under root, restricted runs need nothing special."""
        assert plan(euid=ROOT, tools=["Read"]).extra_env == {}

    def test_allow_root_full_access_passes_is_sandbox(self) -> None:
        """ALLOW_ROOT_FULL_ACCESS gives root full access by passing IS_SANDBOX=1 to the CLI."""
        result = plan({"allow_root_full_access": True}, euid=ROOT)
        assert result.full_access
        assert result.extra_env == {"IS_SANDBOX": "1"}

    def test_is_sandbox_in_environment_counts(self) -> None:
        """IS_SANDBOX=1 already in the server's environment allows it too."""
        assert plan(euid=ROOT, environ={"IS_SANDBOX": "1"}).full_access


class TestFolders:
    def test_folders_inside_roots(self, tmp_path: Path) -> None:
        """cwd and add_dir inside ALLOWED_CWD_ROOTS are fine."""
        (tmp_path / "a" / "b").mkdir(parents=True)
        settings = {"allowed_cwd_roots": str(tmp_path / "a")}
        plan(settings, cwd=str(tmp_path / "a"), add_dir=[str(tmp_path / "a" / "b")])

    def test_cwd_outside_roots(self, tmp_path: Path) -> None:
        """A cwd outside ALLOWED_CWD_ROOTS gets 403 naming it."""
        (tmp_path / "a").mkdir()
        error = refused({"allowed_cwd_roots": str(tmp_path / "a")}, cwd=str(tmp_path))
        assert (error.code, error.detail.split()[0]) == ("cwd_forbidden", "cwd")

    def test_add_dir_outside_roots(self, tmp_path: Path) -> None:
        """An add_dir outside ALLOWED_CWD_ROOTS gets 403 naming it."""
        (tmp_path / "a").mkdir()
        settings = {"allowed_cwd_roots": str(tmp_path / "a")}
        error = refused(settings, cwd=str(tmp_path / "a"), add_dir=[str(tmp_path)])
        assert error.detail.startswith("add_dir")

    def test_symlink_out_of_root_is_followed(self, tmp_path: Path) -> None:
        """A symlink inside a root that points outside it is refused: links are followed."""
        (tmp_path / "a").mkdir()
        (tmp_path / "outside").mkdir()
        (tmp_path / "a" / "link").symlink_to(tmp_path / "outside")
        error = refused({"allowed_cwd_roots": str(tmp_path / "a")}, cwd=str(tmp_path / "a/link"))
        assert error.code == "cwd_forbidden"

    def test_prefix_is_not_containment(self, tmp_path: Path) -> None:
        """/srv/app-other is not inside /srv/app."""
        (tmp_path / "app").mkdir()
        (tmp_path / "app-other").mkdir()
        settings = {"allowed_cwd_roots": str(tmp_path / "app")}
        assert refused(settings, cwd=str(tmp_path / "app-other")).code == "cwd_forbidden"

    def test_roots_must_exist(self) -> None:
        """ALLOWED_CWD_ROOTS naming a missing folder stops the server at startup."""
        with pytest.raises(ValueError, match="existing directory"):
            make_settings(allowed_cwd_roots="/no/such/root")


class TestCallerConfig:
    @pytest.mark.parametrize(
        "fields",
        [
            {"settings": "{}"},
            {"setting_sources": ["project"]},
            {"agents": {"a": {"description": "d", "prompt": "p"}}},
            {"plugin_dir": ["/tmp"]},
            {"mcp_config": ['{"mcpServers": {}}']},
        ],
    )
    def test_untrusted_config_is_refused(self, fields: dict[str, Any]) -> None:
        """With TRUST_CALLER_CONFIG off, every way to hand the CLI configuration gets 403."""
        error = refused({"trust_caller_config": False}, tools=["Read"], **fields)
        assert error.code == "caller_config_forbidden"
        assert error.detail.startswith(next(iter(fields)))

    def test_force_restricted_implies_untrusted(self) -> None:
        """FORCE_RESTRICTED turns caller configuration off unless the operator says otherwise."""
        assert refused({"force_restricted": True}, settings="{}").code == "caller_config_forbidden"
        assert plan({"force_restricted": True, "trust_caller_config": True}, settings="{}")

    def test_untrusted_runs_load_only_user_settings(self) -> None:
        """Untrusted, the cwd's project and local settings are not loaded."""
        assert plan({"trust_caller_config": False}).setting_sources == ("user",)
        assert plan().setting_sources is None

    def test_agent_modes_follow_the_rules(self) -> None:
        """An agent's permissionMode is held to the same rules as the run's."""
        agents = {"x": {"description": "d", "prompt": "p", "permissionMode": "bypassPermissions"}}
        error = refused({"force_restricted": True, "trust_caller_config": True}, agents=agents)
        assert error.code == "full_access_forbidden"
        assert error.detail.startswith("agents.x.permissionMode")
        modes = {"allowed_permission_modes": "default"}
        assert refused(modes, tools=[], agents=agents).code == "permission_mode_forbidden"


class TestPathsUnderRoots:
    def test_plugin_dir_and_config_files_must_be_inside(self, tmp_path: Path) -> None:
        """plugin_dir and file paths of mcp_config and settings are held to ALLOWED_CWD_ROOTS."""
        inside = tmp_path / "inside"
        inside.mkdir()
        config = tmp_path / "mcp.json"
        config.write_text('{"mcpServers": {}}')
        roots = {"allowed_cwd_roots": str(inside)}
        assert refused(roots, cwd=str(inside), plugin_dir=[str(tmp_path)]).detail.startswith(
            "plugin_dir"
        )
        assert refused(roots, cwd=str(inside), mcp_config=[str(config)]).detail.startswith(
            "mcp_config"
        )
        assert refused(roots, cwd=str(inside), settings=str(config)).detail.startswith("settings")

    def test_cli_gets_real_paths(self, tmp_path: Path) -> None:
        """Under roots the CLI is given the checked real paths, not the symlinks."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        result = plan(
            {"allowed_cwd_roots": str(tmp_path)},
            cwd=str(tmp_path / "link"),
            add_dir=[str(tmp_path / "link")],
        )
        assert result.cwd == str(tmp_path / "real")
        assert result.add_dir == (str(tmp_path / "real"),)


class TestReviewedEscapes:
    def test_agent_bypass_under_root_needs_the_sandbox_switch(self) -> None:
        """Under root an agent asking for bypassPermissions is refused like the run itself."""
        agents = {"x": {"description": "d", "prompt": "p", "permissionMode": "bypassPermissions"}}
        error = refused(euid=ROOT, tools=["Agent"], agents=agents)
        assert error.code == "root_full_access"
        allowed = plan({"allow_root_full_access": True}, euid=ROOT, tools=["Agent"], agents=agents)
        assert allowed.extra_env["IS_SANDBOX"] == "1"

    def test_force_restricted_leaves_out_auto_by_default(self) -> None:
        """Unless the operator lists modes, FORCE_RESTRICTED allows neither bypass nor auto."""
        rules = {"force_restricted": True}
        assert refused(rules, permission_mode="auto").code == "permission_mode_forbidden"
        assert plan(rules, permission_mode="plan").permission_mode == "plan"
        listed = {"force_restricted": True, "allowed_permission_modes": "default,auto"}
        assert plan(listed, permission_mode="auto").permission_mode == "auto"

    def test_fewer_setting_sources_are_fine_when_untrusted(self) -> None:
        """An untrusted caller may ask for fewer setting sources, not more."""
        rules = {"trust_caller_config": False}
        assert plan(rules, setting_sources=[]).setting_sources == ()
        assert plan(rules, setting_sources=["user"]).setting_sources == ("user",)
        assert refused(rules, setting_sources=["local"]).code == "caller_config_forbidden"

    def test_plugin_dir_gets_real_paths(self, tmp_path: Path) -> None:
        """Under roots plugin_dir is passed as its checked real path."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        result = plan(
            {"allowed_cwd_roots": str(tmp_path)},
            cwd=str(tmp_path),
            plugin_dir=[str(tmp_path / "link")],
        )
        assert result.plugin_dir == (str(tmp_path / "real"),)
