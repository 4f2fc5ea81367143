"""Managing API keys: create, change and revoke them, checked against the operator's rules.

What the admin API and ``cc2api keys`` (with the server down) both call. A change is
written to the :class:`~cc2api.key_store.KeyStore` first and then put in the
:class:`~cc2api.keys.KeyRing`, so it applies to the next request, with no restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from pydantic import ValidationError

from .codes import ErrorCode
from .errors import ApiError, NotFound, ValidationFailed
from .key_store import KeyExists, KeyStore
from .key_wire import KeyPolicy
from .keys import ApiKey, KeyRing, new_key
from .settings import Settings

__all__ = ["KeyAdmin", "check_policy", "merged_policy"]


class KeyConflict(ApiError):
    """Raised when a new key's name is taken."""

    status = 409
    code = ErrorCode.KEY_EXISTS


def _now() -> datetime:
    return datetime.now(UTC)


def check_policy(policy: KeyPolicy, settings: Settings) -> KeyPolicy:
    """Return ``policy`` with its roots made real paths, if the operator's rules allow it.

    A key narrows the operator's rules; a rule that could only widen them is refused
    here, when the key is made, rather than ignored when it is used.

    Raises:
        ValidationFailed: a root is not absolute or lies outside ALLOWED_CWD_ROOTS, or a
            permission mode is one the operator does not allow.
    """
    roots: list[str] = []
    for root in policy.cwd_roots:
        if not os.path.isabs(root):
            raise ValidationFailed(f"policy.cwd_roots: {root!r} is not an absolute path")
        real = Path(os.path.realpath(root))  # NUL is refused by KeyPolicy
        operator = settings.allowed_cwd_roots
        if operator and not any(real.is_relative_to(allowed) for allowed in operator):
            raise ValidationFailed(
                f"policy.cwd_roots: {root!r} is outside ALLOWED_CWD_ROOTS; a key's roots "
                "lie within the operator's"
            )
        roots.append(str(real))
    allowed = settings.allowed_permission_modes
    for mode in policy.permission_modes or ():
        if allowed is not None and mode not in allowed:
            raise ValidationFailed(
                f"policy.permission_modes: {mode} is not among ALLOWED_PERMISSION_MODES"
            )
    return policy.model_copy(update={"cwd_roots": roots})


def merged_policy(policy: KeyPolicy, changes: dict[str, Any]) -> KeyPolicy:
    """Return ``policy`` with ``changes`` applied; a null value sets a field back to its default.

    Raises:
        ValidationFailed: a field is unknown, or a value is of the wrong kind.
    """
    unknown = sorted(set(changes) - set(KeyPolicy.model_fields))
    if unknown:
        raise ValidationFailed(f"policy.{unknown[0]}: not a field of a key's policy")
    fields = policy.model_dump()
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    try:
        return KeyPolicy.model_validate(fields)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ValidationFailed(f"policy.{where}: {problem['msg']}") from None


class KeyAdmin:
    """The operations on keys, over one ring and its store."""

    def __init__(
        self,
        ring: KeyRing,
        store: KeyStore,
        settings: Settings,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.ring = ring
        self._store = store
        self._settings = settings
        self._now = now
        # One change at a time: each reads the key, then writes it; two at once would
        # each write what the other did not see (a revocation undone by an update).
        self._changing = trio.Lock()

    async def load(self) -> None:
        """Fill the ring from the store.

        Cancellation: the read is shielded; the ring is filled once it is done.
        """
        for key in await self._store.load():
            self.ring.put(key)

    def get(self, name: str) -> ApiKey:
        """Return the key called ``name``.

        Raises:
            NotFound: there is none (``key_not_found``).
        """
        key = self.ring.named(name)
        if key is None:
            raise NotFound(f"no key named {name!r}", code=ErrorCode.KEY_NOT_FOUND)
        return key

    async def create(self, name: str, policy: KeyPolicy) -> tuple[ApiKey, str]:
        """Make a key; return it and its token, which nothing keeps.

        Raises:
            ValidationFailed: see :func:`check_policy`.
            KeyConflict: a key (maybe revoked) has the name already.

        Cancellation: the write is shielded; a key written is kept.
        """
        async with self._changing:
            if self.ring.named(name) is not None:
                raise KeyConflict(f"a key named {name!r} exists already (names are never reused)")
            key, token = new_key(name, check_policy(policy, self._settings), self._now())
            await self._save(key)
        return key, token

    async def update(
        self, name: str, changes: dict[str, Any], *, rotate_webhook_secret: bool = False
    ) -> ApiKey:
        """Change some of a key's policy (the rest is kept); maybe give it a new webhook secret.

        Raises:
            NotFound: no such key. ValidationFailed: see :func:`merged_policy`.

        Cancellation: the write is shielded; a change written applies.
        """
        async with self._changing:
            key = self.get(name)
            policy = check_policy(merged_policy(key.policy, changes), self._settings)
            changed = key.with_policy(policy, self._now())
            if rotate_webhook_secret:
                changed = changed.with_new_webhook_secret(self._now())
            await self._save(changed, new_webhook_secret=rotate_webhook_secret)
        return changed

    async def revoke(self, name: str) -> ApiKey:
        """Refuse the key from now on (idempotent); its runs and usage keep its name.

        Raises:
            NotFound: no such key.

        Cancellation: the write is shielded; a revocation written applies.
        """
        async with self._changing:
            key = self.get(name)
            if key.revoked:
                return key
            revoked = key.revoke(self._now())
            await self._save(revoked)
        return revoked

    async def _save(self, key: ApiKey, *, new_webhook_secret: bool = False) -> None:
        try:
            await self._store.save(key, new_webhook_secret=new_webhook_secret)
        except KeyExists:
            raise KeyConflict(f"a key named {key.name!r} exists already") from None
        self.ring.put(key)
