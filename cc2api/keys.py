"""API keys: tokens, what is stored of them, and the in-memory ring requests are checked against.

A token is ``cc2_`` and 43 URL-safe characters (256 random bits). Only its SHA-256
is stored: a random 256-bit secret needs no slow hash, since nothing smaller than
the secret itself can be guessed. A request's token is hashed and looked up by its
hash, then compared with :func:`hmac.compare_digest`, so the time taken says nothing
about how much of a token was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from .key_wire import KeyInfo, KeyPolicy
from .webhook_sign import new_webhook_secret

__all__ = ["TOKEN_PREFIX", "ApiKey", "KeyRing", "hash_token", "new_key", "new_token"]

TOKEN_PREFIX = "cc2_"  # noqa: S105 (a prefix, not a secret)
TOKEN_BYTES = 32


def new_token() -> str:
    """Return a fresh token: the prefix and 256 random bits, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> bytes:
    """Return the SHA-256 digest of ``token``: all that is stored of it."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    """One client's key: what is stored of it (never the token)."""

    key_id: str
    name: str
    token_sha256: bytes
    created_at: datetime
    updated_at: datetime
    policy: KeyPolicy
    revoked_at: datetime | None = None
    # What its webhooks are signed with (None: made before webhooks; rotate to get one).
    # Kept as is, since signing needs it; never in a repr, a log or KeyInfo.
    webhook_secret: str | None = field(default=None, repr=False)

    @property
    def revoked(self) -> bool:
        """Return whether the key is refused."""
        return self.revoked_at is not None

    def info(self) -> KeyInfo:
        """Return the key as the admin API shows it."""
        return KeyInfo(
            key_id=self.key_id,
            name=self.name,
            created_at=self.created_at,
            updated_at=self.updated_at,
            revoked_at=self.revoked_at,
            policy=self.policy,
        )

    def with_policy(self, policy: KeyPolicy, now: datetime) -> ApiKey:
        """Return the key with ``policy`` instead of its own."""
        return replace(self, policy=policy, updated_at=now)

    def with_new_webhook_secret(self, now: datetime) -> ApiKey:
        """Return the key with a fresh webhook secret instead of its own."""
        return replace(self, webhook_secret=new_webhook_secret(), updated_at=now)

    def revoke(self, now: datetime) -> ApiKey:
        """Return the key revoked at ``now`` (or when it already was)."""
        return self if self.revoked else replace(self, revoked_at=now, updated_at=now)


def new_key(name: str, policy: KeyPolicy, now: datetime) -> tuple[ApiKey, str]:
    """Return a new key and its token (the only time the token exists outside a client)."""
    token = new_token()
    key = ApiKey(
        key_id=str(uuid.uuid4()),
        name=name,
        token_sha256=hash_token(token),
        created_at=now,
        updated_at=now,
        policy=policy,
        webhook_secret=new_webhook_secret(),
    )
    return key, token


class KeyRing:
    """Every key, in memory, by id, name and token hash; what authentication reads.

    Changes are made here only after the store has them, so a change answered is a
    change kept, and it applies to the next request at once.
    """

    def __init__(self, keys: list[ApiKey] | None = None) -> None:
        self._by_id: dict[str, ApiKey] = {}
        self._by_name: dict[str, ApiKey] = {}
        self._by_hash: dict[bytes, ApiKey] = {}
        for key in keys or ():
            self.put(key)

    def __len__(self) -> int:
        return len(self._by_id)

    def put(self, key: ApiKey) -> None:
        """Add ``key``, or replace the key with its id."""
        old = self._by_id.get(key.key_id)
        if old is not None:
            self._by_name.pop(old.name, None)
            self._by_hash.pop(old.token_sha256, None)
        self._by_id[key.key_id] = key
        self._by_name[key.name] = key
        self._by_hash[key.token_sha256] = key

    def named(self, name: str) -> ApiKey | None:
        """Return the key called ``name`` (revoked or not), or None."""
        return self._by_name.get(name)

    def by_id(self, key_id: str) -> ApiKey | None:
        """Return the key with ``key_id``, or None."""
        return self._by_id.get(key_id)

    def all(self) -> list[ApiKey]:
        """Return every key, by name."""
        return sorted(self._by_id.values(), key=lambda key: key.name)

    def match(self, token: str, name: str | None = None) -> ApiKey | None:
        """Return the live key ``token`` belongs to (and called ``name``, if given), or None."""
        digest = hash_token(token)
        key = self._by_hash.get(digest)
        # The lookup found a candidate by its hash; the comparison is constant-time all
        # the same, and a name is compared the same way.
        expected = key.token_sha256 if key is not None else bytes(len(digest))
        token_ok = hmac.compare_digest(digest, expected)
        name_ok = name is None or (
            key is not None and hmac.compare_digest(name.encode(), key.name.encode())
        )
        if key is None or not (token_ok and name_ok) or key.revoked:
            return None
        return key
