"""API keys on the wire: a key's policy (sent and shown), and what the admin API answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .models import PermissionMode, WebhookUrl
from .wire import Timestamp, Wire

__all__ = [
    "KEY_NAME_PATTERN",
    "KeyCreated",
    "KeyInfo",
    "KeyPolicy",
    "KeyRevoked",
    "KeyUpdate",
    "KeyUpdated",
    "Keys",
    "NewKey",
]

# Safe in a URL path, a Basic user name (no colon) and a Prometheus label.
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KeyName = Annotated[str, StringConstraints(pattern=KEY_NAME_PATTERN)]
# NUL cannot be in a path or an argument: refused here, not a 500 (or a broken argv) later.
_NO_NUL = r"^[^\x00]*$"
Tool = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)]
Root = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=_NO_NUL)]
# Finite: JSON has no infinity, and 1e999 parses as one.
Money = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
# The name the admin goes by in logs, metrics and usage: no key may take it.
RESERVED_NAMES = frozenset({"admin"})


class KeyPolicy(BaseModel):
    """What one key may do: each rule narrows the operator's, never widens it.

    Unset (or empty) rules add nothing to the operator's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cwd_roots: list[Root] = Field(
        default_factory=list,
        description="Absolute folders the key's runs must stay in, within ALLOWED_CWD_ROOTS.",
    )
    force_restricted: bool = Field(
        default=False, description="Runs are restricted, as FORCE_RESTRICTED makes them."
    )
    disallowed_tools: list[Tool] = Field(
        default_factory=list, description="Tools refused in every run, beside the operator's."
    )
    permission_modes: list[PermissionMode] | None = Field(
        default=None, description="The modes the key may use, among the operator's."
    )
    trust_caller_config: bool = Field(
        default=True,
        description="false: the key may not send CLI configuration, whatever the operator allows.",
    )
    max_runs: int | None = Field(default=None, ge=1, description="Runs at once.")
    max_queued: int | None = Field(default=None, ge=0, description="Runs waiting for a slot.")
    runs_per_minute: int | None = Field(default=None, ge=1, description="New runs a minute.")
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=365 * 86400,
        allow_inf_nan=False,
        description="The longest a run may take once started.",
    )
    budget_usd_day: Money | None = Field(default=None, description="Spend per UTC day, in USD.")
    budget_usd_month: Money | None = Field(default=None, description="Spend per UTC month, in USD.")
    pooled: bool = Field(
        default=True,
        description="false: the key's runs never take a pooled CLI, and none waits for them.",
    )
    webhook_url: WebhookUrl | None = Field(
        default=None, description="Where the key's runs send webhooks unless they name one."
    )


class NewKey(BaseModel):
    """The body of `POST /admin/keys`."""

    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field(description="Unique; the Basic user name the key may be sent with.")
    policy: KeyPolicy = Field(default_factory=KeyPolicy)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED_NAMES:
            raise ValueError(f"{name!r} is the admin's name in logs and usage; choose another")
        return name


class KeyUpdate(BaseModel):
    """The body of `PATCH /admin/keys/{name}`: the policy's fields to change, the rest kept."""

    model_config = ConfigDict(extra="forbid")

    policy: dict[str, object] = Field(
        default_factory=dict, description="KeyPolicy fields; null unsets one."
    )
    rotate_webhook_secret: bool = Field(
        default=False,
        description="true: the key gets a new webhook secret, shown in this answer only; "
        "the old one signs nothing from now on.",
    )


class KeyInfo(Wire):
    """A key as the admin API shows it: never its token, which only its creation answers."""

    key_id: str
    name: str
    created_at: Timestamp
    updated_at: Timestamp
    revoked_at: Timestamp | None
    policy: KeyPolicy


class KeyCreated(KeyInfo):
    """The answer of `POST /admin/keys`: the key, and its token, shown this once."""

    token: str = Field(description="cc2_ and 43 characters; only its SHA-256 is stored.")
    webhook_secret: str = Field(
        description="whsec_ and 43 characters: what the key's webhooks are signed with; "
        "shown this once (PATCH with rotate_webhook_secret makes a new one)."
    )


class KeyUpdated(KeyInfo):
    """The answer of `PATCH /admin/keys/{name}`: the key, and a rotated webhook secret."""

    webhook_secret: str | None = Field(
        default=None, description="The new webhook secret, with rotate_webhook_secret only."
    )


class KeyRevoked(Wire):
    """The answer of `DELETE /admin/keys/{name}`: the key, and the runs cancelled with it."""

    key: KeyInfo
    cancelled: list[str] = Field(
        description="Process ids of the key's runs cancelled (with cancel_runs=true), gone."
    )


class Keys(Wire):
    """The answer of `GET /admin/keys`: every key, revoked ones included, by name."""

    keys: list[KeyInfo]
