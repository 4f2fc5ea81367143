"""Operator settings, read once at startup from the environment and ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .descriptors import attainable_limit, room
from .models import PermissionMode
from .passwordfile import check_password, password_from_files, read_password_file
from .pool_file import read_pool_file
from .webhook_hosts import AllowedHost

MiB = 1024 * 1024
MIN_METRICS_TOKEN = 16
MIN_WEBHOOK_SECRET = 16


class Settings(BaseSettings):
    """Everything an operator can set; names are the environment variables in upper case."""

    # hide_input_in_errors: a validation error's text would hold the password.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=9876, ge=0, le=65535)
    auth_user: str = Field(default="admin", min_length=1)
    auth_password: SecretStr  # or read from AUTH_PASSWORD_FILE or the credential
    auth_password_file: Path | None = None
    credentials_directory: Path | None = None  # systemd sets it for LoadCredential=
    claude_path: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    kill_grace_seconds: float = Field(default=5.0, ge=0)
    max_line_bytes: int = Field(default=32 * MiB, ge=1024)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    force_restricted: bool = False
    always_disallowed_tools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # None: every mode, except bypassPermissions and auto under FORCE_RESTRICTED
    allowed_permission_modes: Annotated[list[PermissionMode] | None, NoDecode] = None
    allowed_cwd_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    allow_root_full_access: bool = False
    trust_caller_config: bool | None = None  # unset: trusted unless FORCE_RESTRICTED
    docs_assets_dir: Path | None = None  # node_modules with swagger-ui-dist and redoc
    max_concurrent_runs: int = Field(default=16, ge=1)
    max_queued_runs: int = Field(default=64, ge=0)
    run_timeout_seconds: float | None = Field(default=None, gt=0)
    max_body_bytes: int = Field(default=10 * MiB, ge=1024)
    client_stall_seconds: float = Field(default=60.0, gt=0)
    auth_max_failures: int = Field(default=10, ge=0)  # 0: no lockout
    auth_max_failures_global: int = Field(default=100, ge=0)  # from all addresses; 0: off
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    auth_lockout_seconds: float = Field(default=300.0, gt=0)
    run_buffer_bytes: int = Field(default=8 * MiB, ge=64 * 1024)
    detached_ttl_seconds: float = Field(default=600.0, ge=0)
    followup_grace_seconds: float = Field(default=0.0, ge=0)
    followup_max_bytes: int = Field(default=16 * MiB, ge=64 * 1024)  # held by one run
    followups_total_max_bytes: int = Field(default=256 * MiB, ge=64 * 1024)  # by all runs
    approval_timeout_seconds: float = Field(default=300.0, ge=0)  # 0: wait for ever
    interrupt_timeout_seconds: float = Field(default=5.0, gt=0)
    # auto: runs are confined when ALLOWED_CWD_ROOTS is set or caller config is untrusted
    confine_runs: Literal["auto", "on", "off"] = "auto"
    confine_read_paths: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # The warm pool (before max_connections, whose validator reads its size): CLIs spawned
    # ahead of need (0: off), the plans kept warm, and bounds.
    pool_size: int = Field(default=0, ge=0, le=256)
    pool_profiles_max: int = Field(default=4, ge=1, le=256)
    pool_profiles_file: Path | None = None
    pool_max_idle_seconds: float = Field(default=60.0, gt=0, le=86400)
    # Each waiting CLI counts as at least the pool's estimate of one (160 MB).
    pool_max_rss_mb: int = Field(default=1024, ge=160)
    # After max_concurrent_runs and pool_size, which its validator reads. None: derived
    # from RLIMIT_NOFILE.
    max_connections: int | None = Field(default=None, ge=1)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections_per_address: int = Field(default=256, ge=0)  # 0: no such limit
    # The store of runs, events and sessions' runs: SQLite in DATA_DIR, or nothing kept.
    store: Literal["sqlite", "memory"] = "sqlite"
    data_dir: Path = Path(".data")  # relative: to the folder the server starts in
    retention_days: float = Field(default=14.0, gt=0)
    store_max_bytes: int = Field(default=1024 * MiB, ge=MiB)
    store_prompts: bool = False
    # Events held for the store. Writing, it holds runs back past a quarter of this; unable
    # to write (a full disk), it drops the oldest events past all of it, records never.
    store_backlog_bytes: int = Field(default=256 * MiB, ge=MiB)
    # A bearer token for GET /metrics alone (a Prometheus server's), or read from the file.
    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = None
    # Webhooks (off unless hosts are listed): where they may go, the admin's runs' secret,
    # and how deliveries are bounded and retried.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    webhook_max_pending: int = Field(default=1000, ge=1)
    webhook_retry_seconds: float = Field(default=1.0, gt=0, le=3600)
    webhook_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    _password_source: str = PrivateAttr(default="AUTH_PASSWORD")

    @property
    def cli_places(self) -> int:
        """Return how many CLIs can be alive at once: running runs' and pooled ones."""
        return self.max_concurrent_runs + self.pool_size

    @property
    def password_source(self) -> str:
        """Say where the password came from (never what it is)."""
        return self._password_source

    @model_validator(mode="wrap")
    @classmethod
    def _password_from_file(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings]
    ) -> Settings:
        found = None
        if isinstance(data, dict):
            found = password_from_files(
                password_set=data.get("auth_password") not in (None, ""),
                password_file=_path_or_none(data.get("auth_password_file")),
                credentials_directory=_path_or_none(data.get("credentials_directory")),
            )
            if found is not None:
                data = {**data, "auth_password": found.password}
        settings = handler(data)
        if found is not None:
            settings._password_source = found.source
        return settings

    @model_validator(mode="before")
    @classmethod
    def _metrics_token_from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        path = _path_or_none(data.get("metrics_token_file"))
        if path is None:
            return data
        if data.get("metrics_token") not in (None, ""):
            raise ValueError(
                "METRICS_TOKEN is set and so is METRICS_TOKEN_FILE: remove METRICS_TOKEN "
                "from the environment and .env, so that the token stays out of the environment"
            )
        return {**data, "metrics_token": read_password_file(path, "METRICS_TOKEN_FILE")}

    @field_validator("metrics_token", "webhook_secret", mode="before")
    @classmethod
    def _unset_token_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN:
            raise ValueError(
                f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN} characters "
                "(e.g. the output of `openssl rand -hex 32`)"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _long_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_SECRET:
            raise ValueError(
                f"WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET} characters "
                "(e.g. the output of `openssl rand -hex 32`)"
            )
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _normal_hosts(cls, value: list[str]) -> list[str]:
        # Names compare lower-case and IDNA-encoded, addresses in their own text, so
        # the URL's host (normalised the same way) matches and its Host header is ASCII.
        return [str(AllowedHost.parse(entry)) for entry in value]

    @model_validator(mode="after")
    def _pool_file_needs_a_pool(self) -> Settings:
        if self.pool_profiles_file is not None and self.pool_size == 0:
            raise ValueError(
                "POOL_PROFILES_FILE is set but POOL_SIZE is 0, which turns the pool off: "
                "set POOL_SIZE to at least the sizes the file asks for"
            )
        if self.pool_profiles_file is not None:
            # Read now, so that a malformed file stops the start, naming its entry.
            asked = sum(entry.size for entry in read_pool_file(self.pool_profiles_file))
            if asked > self.pool_size:
                raise ValueError(
                    f"POOL_PROFILES_FILE asks for {asked} CLIs in all, over POOL_SIZE="
                    f"{self.pool_size}: raise POOL_SIZE or lower the entries' sizes"
                )
        return self

    @field_validator("auth_password")
    @classmethod
    def _real_password(cls, value: SecretStr) -> SecretStr:
        check_password(value.get_secret_value(), "AUTH_PASSWORD")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "cors_origins",
        "always_disallowed_tools",
        "allowed_permission_modes",
        "allowed_cwd_roots",
        "confine_read_paths",
        "webhook_allowed_hosts",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("allowed_cwd_roots")
    @classmethod
    def _real_roots(cls, value: list[Path]) -> list[Path]:
        roots = []
        for root in value:
            if not root.is_absolute() or not root.is_dir():
                raise ValueError(f"{root} is not an absolute path of an existing directory")
            roots.append(root.resolve())
        return roots

    @field_validator("confine_read_paths")
    @classmethod
    def _absolute_paths(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_absolute() or not path.exists():
                raise ValueError(f"{path} is not an absolute path that exists")
        return value

    @field_validator("confine_runs", "store", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_permission_modes")
    @classmethod
    def _unset_when_empty(cls, value: list[PermissionMode] | None) -> list[PermissionMode] | None:
        return value or None

    @field_validator("always_disallowed_tools")
    @classmethod
    def _no_flags(cls, value: list[str]) -> list[str]:
        if any(tool.startswith("-") for tool in value):
            raise ValueError("tool patterns must not start with '-'")
        return value

    @field_validator("max_connections")
    @classmethod
    def _room_for_runs(cls, value: int | None, info: ValidationInfo) -> int | None:
        runs = info.data.get("max_concurrent_runs")
        if value is None or runs is None:
            return value
        pooled = info.data.get("pool_size") or 0
        runs += pooled  # a pooled CLI's pipes count as a run's
        limit = attainable_limit()
        if value > room(limit, runs):
            also = f" and POOL_SIZE={pooled}" if pooled else ""
            raise ValueError(
                f"{value} connections leave no room for MAX_CONCURRENT_RUNS={runs - pooled}"
                f"{also} runs "
                f"within the descriptor limit of {limit} (RLIMIT_NOFILE): set it to at most "
                f"{max(room(limit, runs), 0)}, or raise the limit (LimitNOFILE= in the unit)"
            )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list origins; '*' is not allowed")
        return value


def _path_or_none(value: object) -> Path | None:
    return Path(str(value)) if value not in (None, "") else None


def explain(error: ValidationError) -> str:
    """Return one line naming each environment variable to set and why."""
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:  # a check of several settings: its message names them
            lines.append(message)
            continue
        name = "_".join(str(part) for part in problem["loc"]).upper()
        hint = "set it in the environment or in .env"
        if problem["type"] == "missing":
            message = "is not set"
            if name == "AUTH_PASSWORD":
                hint += ", or name a file holding it in AUTH_PASSWORD_FILE"
        lines.append(f"{name}: {message} ({hint})")
    return "; ".join(lines)
