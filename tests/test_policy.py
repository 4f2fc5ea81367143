"""The operator's rules: who gets full access, which modes, which folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cc2api.errors import Forbidden
from cc2api.models import ChatRequest
from cc2api.policy import Plan, Policy

from .helpers import make_settings

USER, ROOT = 1000, 0


def plan(
    settings: dict[str, Any] | None = None,
    *,
    euid: int = USER,
    environ: dict[str, str] | None = None,
    **fields: Any,
) -> Plan:
    request = ChatRequest.model_validate({"prompt": "hi", "cwd": "/tmp", **fields})
    values = {"allow_root_full_access": False, **(settings or {})}
    policy = Policy(make_settings(**values), environ or {}, euid=euid)
    return policy.plan(request)


def refused(settings: dict[str, Any] | None = None, **kwargs: Any) -> Forbidden:
    with pytest.raises(Forbidden) as caught:
        plan(settings, **kwargs)
    assert caught.value.status == 403
    return caught.value


class TestAccess:
    def test_no_restrictions_means_full_access(self) -> None:
        """Without tools, allowed_tools or permission_mode a run gets full access."""
        assert plan() == Plan(True, None, (), {})

    @pytest.mark.parametrize("fields", [{"tools": []}, {"allowed_tools": ["Read"]}])
    def test_tools_or_allowed_tools_restrict(self, fields: dict[str, Any]) -> None:
        """tools or allowed_tools (even empty) restrict the run, in the CLI's default mode."""
        assert plan(**fields) == Plan(False, None, (), {})

    def test_permission_mode_is_passed(self) -> None:
        """An explicit permission mode is used instead of full access."""
        assert plan(permission_mode="acceptEdits") == Plan(False, "acceptEdits", (), {})

    def test_force_restricted_turns_full_access_into_default_mode(self) -> None:
        """FORCE_RESTRICTED runs a full-access request in the default mode instead."""
        assert plan({"force_restricted": True}) == Plan(False, "default", (), {})

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
