"""The profiles POOL_PROFILES_FILE declares, planned at start-up as runs are."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .bodies import check_folders
from .configfiles import load_configs
from .errors import ApiError, Forbidden, NotFound, Unavailable
from .keys import ApiKey
from .models import ChatRequest
from .pool_file import read_pool_file
from .pool_profile import Profile, profile_of
from .wire import ErrorCode

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger(__name__)

__all__ = ["declare_pool"]


async def declare_pool(gateway: Gateway) -> None:
    """Plan POOL_PROFILES_FILE's profiles, and have the gateway's pool keep them warm.

    An entry the rules refuse, or whose key is missing or revoked, is logged and left
    out. Cancellation: the planning stops; the pool keeps what was declared so far.
    """
    path = gateway.settings.pool_profiles_file
    pool = gateway.registry.pool
    claude = gateway.claude.path
    if path is None or not pool.enabled:
        return
    if claude is None or not gateway.claude.usable:
        log.error("POOL_PROFILES_FILE left out: %s", gateway.claude.problem)
        return
    for index, entry in enumerate(read_pool_file(path)):
        key = None if entry.key is None else gateway.keys.ring.named(entry.key)
        refusal = None
        try:
            if entry.key is not None and (key is None or key.revoked):
                raise NotFound(f"no API key {entry.key!r} (or it is revoked)")
            if key is not None and not key.policy.pooled:
                raise Forbidden(f"key {key.name}'s policy says pooled: false")
            profile = await _planned(gateway, entry.request, key, claude)
        except ApiError as error:
            refusal = error.detail
        if refusal is not None:
            log.error("POOL_PROFILES_FILE entry %d left out: %s", index, refusal)
            continue
        pool.declare(profile, entry.size)


async def _planned(
    gateway: Gateway, chat: ChatRequest, key: ApiKey | None, claude: Path
) -> Profile:
    # As Gateway.start_run plans a run, for one that names no session and has no budget.
    plan, _ = gateway.key_policies.plan(chat, key)
    check_folders(chat)
    if plan.confined and gateway.confinement_problem is not None:
        raise Unavailable(gateway.confinement_problem, code=ErrorCode.CONFINEMENT_UNAVAILABLE)
    plan = replace(plan, configs=await load_configs(chat))
    launch = gateway.launch_of(chat, plan, claude)
    return profile_of(launch, chat, plan, None if key is None else key.key_id)
