"""Settings: sensible defaults, refused when the password is not real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cc2api.passwordfile import PLACEHOLDER_PASSWORD
from cc2api.settings import Settings, explain


def load(**values: Any) -> Settings:
    """Build settings from keyword values and the environment, ignoring any .env file."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestSettings:
    def test_defaults(self) -> None:
        """Defaults are loopback, port 9876, 15 s heartbeat, 5 s kill grace, 32 MiB lines."""
        settings = load(auth_password="pw")
        assert (settings.host, settings.port) == ("127.0.0.1", 9876)
        assert settings.heartbeat_seconds == 15
        assert settings.kill_grace_seconds == 5
        assert settings.max_line_bytes == 32 * 1024 * 1024
        assert settings.cors_origins == []

    def test_defaults_of_limits_and_steering(self) -> None:
        """Limits and steering default to the values README and .env.example state."""
        settings = load(auth_password="pw")
        assert (settings.max_concurrent_runs, settings.max_queued_runs) == (16, 64)
        assert settings.run_timeout_seconds is None
        assert settings.max_body_bytes == 10 * 1024 * 1024
        assert settings.client_stall_seconds == 60
        assert (settings.auth_max_failures, settings.auth_failure_window_seconds) == (10, 60)
        assert settings.auth_max_failures_global == 100
        assert settings.auth_lockout_seconds == 300
        assert settings.run_buffer_bytes == 8 * 1024 * 1024
        assert settings.detached_ttl_seconds == 600
        assert settings.followup_grace_seconds == 0
        assert settings.approval_timeout_seconds == 300
        assert settings.interrupt_timeout_seconds == 5

    def test_reads_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each setting comes from the upper-case environment variable of its name."""
        monkeypatch.setenv("AUTH_PASSWORD", "pw")
        monkeypatch.setenv("PORT", "1234")
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.port == 1234
        assert settings.cors_origins == ["https://a.example", "https://b.example"]

    def test_reads_env_file(self, tmp_path: Path) -> None:
        """Settings are read from a .env file."""
        env = tmp_path / ".env"
        env.write_text("AUTH_PASSWORD=from-file\nLOG_LEVEL=debug\n")
        settings = Settings(_env_file=env)  # type: ignore[call-arg]
        assert settings.auth_password.get_secret_value() == "from-file"
        assert settings.log_level == "DEBUG"

    @pytest.mark.parametrize("password", ["", "   ", PLACEHOLDER_PASSWORD])
    def test_refuses_missing_or_placeholder_password(self, password: str) -> None:
        """An empty or placeholder AUTH_PASSWORD is refused with a line naming it."""
        with pytest.raises(ValidationError) as caught:
            load(auth_password=password)
        assert explain(caught.value).startswith("AUTH_PASSWORD:")

    def test_unset_password_is_explained(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing AUTH_PASSWORD says it is not set."""
        monkeypatch.delenv("AUTH_PASSWORD", raising=False)
        with pytest.raises(ValidationError) as caught:
            Settings(_env_file=None)  # type: ignore[call-arg]
        assert "AUTH_PASSWORD: is not set" in explain(caught.value)

    def test_wildcard_cors_refused(self) -> None:
        """CORS_ORIGINS='*' is refused: credentials must never go to any origin."""
        with pytest.raises(ValidationError, match="not allowed"):
            load(auth_password="pw", cors_origins="*")

    def test_password_not_in_repr(self) -> None:
        """The password never shows in the settings' repr (and so in logs)."""
        assert "hunter2" not in repr(load(auth_password="hunter2"))
