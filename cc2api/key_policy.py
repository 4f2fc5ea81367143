"""A key's policy over the operator's: the settings a key's runs are planned with.

A key's rules are laid over the operator's so that each can only narrow them: roots
within ALLOWED_CWD_ROOTS, restriction forced if either forces it, tools refused by
either, modes both allow, caller config trusted only if both trust it, and the
shorter timeout. The result is planned by the same :class:`~cc2api.policy.Policy`
as every run, so a key's refusals carry the codes the operator's do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ApiError
from .key_wire import KeyPolicy
from .keys import ApiKey
from .models import ChatRequest
from .policy import Plan, Policy
from .settings import Settings

__all__ = ["KeyPolicies", "narrowed"]

# Forced restriction leaves out the modes whose classifier or bypass would approve
# what a restricted run may not do (as FORCE_RESTRICTED does for the operator).
_RESTRICTED_OUT = frozenset({"bypassPermissions", "auto"})
# Roots a key had that the operator's no longer contain: nothing is within this one.
_NOWHERE = Path("/nonexistent/cc2api-key-has-no-root-left")


def narrowed(settings: Settings, operator: Policy, policy: KeyPolicy) -> Settings:
    """Return the operator's settings narrowed by ``policy``."""
    roots = list(settings.allowed_cwd_roots)
    if policy.cwd_roots:
        mine = [Path(os.path.realpath(root)) for root in policy.cwd_roots]
        kept = [root for root in mine if not roots or any(root.is_relative_to(r) for r in roots)]
        roots = kept or [_NOWHERE]
    modes = [mode for mode in operator.modes if mode in (policy.permission_modes or operator.modes)]
    force = settings.force_restricted or policy.force_restricted
    if force:
        modes = [mode for mode in modes if mode not in _RESTRICTED_OUT]
    timeouts = [t for t in (settings.run_timeout_seconds, policy.timeout_seconds) if t is not None]
    return settings.model_copy(
        update={
            "allowed_cwd_roots": roots,
            "allowed_permission_modes": modes,
            "force_restricted": force,
            # As FORCE_RESTRICTED does for the operator: forced restriction untrusts config.
            "trust_caller_config": operator.trusts_config
            and policy.trust_caller_config
            and not policy.force_restricted,
            "always_disallowed_tools": [
                *settings.always_disallowed_tools,
                *(t for t in policy.disallowed_tools if t not in settings.always_disallowed_tools),
            ],
            "run_timeout_seconds": min(timeouts) if timeouts else None,
            # Keys are clients that must not reach each other: unconfined, a run's tools
            # could read other keys' transcripts and the store. Under auto, a key's runs
            # are confined; CONFINE_RUNS=off is the operator's choice to trust them.
            "confine_runs": "on" if settings.confine_runs == "auto" else settings.confine_runs,
        }
    )


@dataclass(frozen=True)
class _Planned:
    updated: object
    policy: Policy


class KeyPolicies:
    """Plans a key's runs: the operator's rules, then the key's, made once per key version."""

    def __init__(
        self, settings: Settings, operator: Policy, environ: Mapping[str, str], euid: int
    ) -> None:
        self._settings = settings
        self._operator = operator
        self._environ = environ
        self._euid = euid
        self._policies: dict[str, _Planned] = {}

    def policy(self, key: ApiKey) -> Policy:
        """Return the policy ``key``'s runs are planned with (as its policy is now)."""
        planned = self._policies.get(key.key_id)
        if planned is None or planned.updated != key.updated_at:
            settings = narrowed(self._settings, self._operator, key.policy)
            planned = _Planned(key.updated_at, Policy(settings, self._environ, euid=self._euid))
            self._policies[key.key_id] = planned
        return planned.policy

    def plan(self, request: ChatRequest, key: ApiKey | None) -> tuple[Plan, Policy]:
        """Return what the run may do, and the policy that decided it.

        Raises:
            Forbidden, ValidationFailed: as :meth:`Policy.plan`; a refusal that is the
                key's alone says so.
        """
        plan = self._operator.plan(request)
        if key is None:
            return plan, self._operator
        policy = self.policy(key)
        try:
            return policy.plan(request), policy
        except ApiError as error:
            error.detail = f"key {key.name}'s policy: {error.detail}"
            error.args = (error.detail,)
            raise
