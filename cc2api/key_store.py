"""Where API keys are kept: the SQLite store's ``api_keys`` table, or memory (STORE=memory).

A key's change is written, and committed, before the admin's request is answered
(:meth:`KeyStore.save`), unlike runs, whose records the store's writer batches. Keys
change rarely; a change answered must be a change kept. The writes use a connection
of their own, which waits (SQLite's busy timeout) while the store's writer holds the
database; WAL lets both go on with readers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from .key_wire import KeyPolicy
from .keys import ApiKey

__all__ = ["KeyStore", "MemoryKeys", "SqliteKeys", "read_keys", "write_key"]

T = TypeVar("T")
BUSY_SECONDS = 10.0


class KeyStore(Protocol):
    """Keeps keys; every method is awaited, and returns once the change is durable."""

    async def load(self) -> list[ApiKey]:
        """Return every key, revoked ones included."""

    async def save(self, key: ApiKey, *, new_webhook_secret: bool = False) -> None:
        """Add ``key``, or replace the one with its id.

        A key kept already keeps its webhook secret unless ``new_webhook_secret``
        (a rotation): a stale copy written back must not restore an old secret.

        Raises:
            KeyExists: another key has its name.
            sqlite3.Error, OSError: the store could not write it (nothing changed).
        """


class KeyExists(Exception):
    """Raised when a new key's name is taken."""


class MemoryKeys:
    """Keys for as long as the process lives (STORE=memory)."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}

    async def load(self) -> list[ApiKey]:
        """Return every key kept."""
        return list(self._keys.values())

    async def save(self, key: ApiKey, *, new_webhook_secret: bool = False) -> None:
        """Keep ``key``; see :meth:`KeyStore.save`."""
        for other in self._keys.values():
            if other.name == key.name and other.key_id != key.key_id:
                raise KeyExists(key.name)
        kept = self._keys.get(key.key_id)
        if kept is not None and not new_webhook_secret:
            key = replace(key, webhook_secret=kept.webhook_secret)
        self._keys[key.key_id] = key


class SqliteKeys:
    """Keys in the ``api_keys`` table of the database at ``db`` (migrated by the store)."""

    def __init__(self, db: Path) -> None:
        self._db = db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = sqlite3.connect(self._db, isolation_level=None, timeout=BUSY_SECONDS)
            try:
                return work(conn)
            finally:
                conn.close()

        # Shielded: a key written must be answered as written, not left half-known.
        with trio.CancelScope(shield=True):
            done = await trio.to_thread.run_sync(run)
        return done  # noqa: RET504 (mypy: a shielded scope may swallow, so return after it)

    async def load(self) -> list[ApiKey]:
        """Return every key in the table.

        Cancellation: shielded; the read ends first.
        """
        return await self._run(read_keys)

    async def save(self, key: ApiKey, *, new_webhook_secret: bool = False) -> None:
        """Write ``key`` in a transaction of its own; see :meth:`KeyStore.save`.

        Cancellation: shielded; the write ends (committed or not) first.
        """
        await self._run(lambda conn: write_key(conn, key, new_webhook_secret=new_webhook_secret))


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _moment(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def read_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    """Return the keys the database at ``conn`` holds."""
    rows = conn.execute(
        "SELECT key_id, name, token_sha256, created_us, updated_us, revoked_us, policy, "
        "webhook_secret FROM api_keys ORDER BY name"
    ).fetchall()
    return [
        ApiKey(
            key_id=key_id,
            name=name,
            token_sha256=bytes(digest),
            created_at=_moment(created),
            updated_at=_moment(updated),
            revoked_at=None if revoked is None else _moment(revoked),
            policy=KeyPolicy.model_validate(json.loads(policy)),
            webhook_secret=secret,
        )
        for key_id, name, digest, created, updated, revoked, policy, secret in rows
    ]


def write_key(conn: sqlite3.Connection, key: ApiKey, *, new_webhook_secret: bool = False) -> None:
    """Insert or replace ``key`` in one transaction (``conn`` in autocommit mode).

    A key kept already keeps its webhook secret unless ``new_webhook_secret``.

    Raises:
        KeyExists: another key has its name.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        taken = conn.execute(
            "SELECT 1 FROM api_keys WHERE name = ? AND key_id != ?", (key.name, key.key_id)
        ).fetchone()
        if taken:
            raise KeyExists(key.name)  # noqa: TRY301 (rolled back below, as any failure)
        conn.execute(
            "INSERT INTO api_keys (key_id, name, token_sha256, created_us, updated_us, "
            "revoked_us, policy, webhook_secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key_id) DO UPDATE "
            "SET updated_us = excluded.updated_us, "
            # A revocation is never undone, whatever a racing write carries.
            "revoked_us = COALESCE(api_keys.revoked_us, excluded.revoked_us), "
            # The secret is set by an insert or a rotation only (below), so that a
            # write of a copy read before a rotation cannot bring the old one back.
            "policy = excluded.policy",
            (
                key.key_id,
                key.name,
                key.token_sha256,
                _us(key.created_at),
                _us(key.updated_at),
                None if key.revoked_at is None else _us(key.revoked_at),
                key.policy.model_dump_json(),
                key.webhook_secret,
            ),
        )
        if new_webhook_secret:
            conn.execute(
                "UPDATE api_keys SET webhook_secret = ? WHERE key_id = ?",
                (key.webhook_secret, key.key_id),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
