"""The SQLite store's schema: numbered versions, each a list of SQL steps.

A database records the version it is at in ``PRAGMA user_version`` (0: empty). At
startup :func:`migrate` runs the steps of every later version in order, each
version in one transaction with its new ``user_version``, so a crash mid-upgrade
leaves the database at the version before. A version, once released, is never
edited: a change is a new version appended to :data:`VERSIONS`.

Times are INTEGER microseconds since the epoch (UTC), so that they sort and
compare in SQL; ``options`` and ``usage`` are JSON text.
"""

from __future__ import annotations

import sqlite3

from .store import StoreUnusable

__all__ = ["LATEST", "PAGE_SIZE", "VERSIONS", "migrate", "prepare", "schema_version"]

# Events are blobs of kilobytes: bigger pages mean fewer overflow pages per batch
# (measured: up to three times the write rate of 4 KiB pages for 2-20 KiB batches).
PAGE_SIZE = 16384

_V1 = [
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        created_us INTEGER NOT NULL,
        status TEXT NOT NULL,
        cwd TEXT NOT NULL,
        started_us INTEGER,
        ended_us INTEGER,
        exit_code INTEGER,
        error_code TEXT,
        error_message TEXT,
        session_id TEXT,
        model TEXT,
        permission_mode TEXT,
        options TEXT NOT NULL DEFAULT '{}',
        detached INTEGER NOT NULL DEFAULT 0,
        total_cost_usd REAL,
        usage TEXT,
        num_turns INTEGER,
        duration_api_ms INTEGER,
        api_key_id TEXT,
        sessions TEXT NOT NULL DEFAULT '[]',
        prompt TEXT,
        -- Kept by the event writes, never from the saved record: what the store holds.
        last_event_id INTEGER NOT NULL DEFAULT 0,
        event_bytes INTEGER NOT NULL DEFAULT 0,
        events_pruned INTEGER NOT NULL DEFAULT 0
    )
    """,
    # GET /runs pages newest first by (created_us, run_id): the index is read backwards.
    "CREATE INDEX runs_by_creation ON runs (created_us, run_id)",
    # Retention and pruning look for the oldest ended runs; one that ended without an
    # ended_at counts from its creation (store_sql's END).
    "CREATE INDEX runs_by_end ON runs (COALESCE(ended_us, created_us))",
    """
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        first INTEGER NOT NULL,
        count INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, first)
    )
    """,
    "INSERT INTO meta (key, value) VALUES ('created_by', 'cc2api')",
]

# Every session a run used gets a row of its own (v1 kept them as a JSON list in
# runs), so that GET /sessions and the session_id filter use an index.
_V2 = [
    """
    CREATE TABLE run_sessions (
        run_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        PRIMARY KEY (run_id, position)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX run_sessions_by_session ON run_sessions (session_id, run_id)",
    """
    INSERT INTO run_sessions (run_id, position, session_id)
    SELECT runs.run_id, CAST(listed.key AS INTEGER), listed.value
    FROM runs, json_each(runs.sessions) AS listed
    """,
    "ALTER TABLE runs DROP COLUMN sessions",
    # Room for API keys (issue 13): a key's runs, newest first.
    "CREATE INDEX runs_by_key ON runs (api_key_id, created_us, run_id)",
]

# API keys (issue 13): only a token's SHA-256 is kept; a revoked key stays, so that its
# runs and usage keep their name. ``policy`` is KeyPolicy as JSON.
_V3 = [
    """
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_sha256 BLOB NOT NULL UNIQUE,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        revoked_us INTEGER,
        policy TEXT NOT NULL DEFAULT '{}'
    )
    """,
    # Usage (issue 13): a run's tokens by model and cost as JSON (cc2api.run_usage), and
    # whether it is counted in usage_hourly: once, in the transaction that first writes
    # it with a final status. The rollups outlive the runs' pruning.
    "ALTER TABLE runs ADD COLUMN run_usage TEXT",
    "ALTER TABLE runs ADD COLUMN counted INTEGER NOT NULL DEFAULT 0",
    """
    CREATE TABLE usage_hourly (
        hour_us INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        runs INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        cost_unknown_runs INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
        wall_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (hour_us, key_id, model)
    ) WITHOUT ROWID
    """,
]

# Webhooks (issue 15): each key's signing secret (NULL for keys made before: rotate to
# get one), and every delivery attempt, listed by GET /runs/{id}/webhooks and pruned
# with its run.
_V4 = [
    "ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT",
    """
    CREATE TABLE webhook_attempts (
        run_id TEXT NOT NULL,
        api_key_id TEXT,
        delivery_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at_us INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        outcome TEXT NOT NULL
    )
    """,
    "CREATE INDEX webhook_attempts_by_run ON webhook_attempts (run_id, at_us)",
]

VERSIONS: list[list[str]] = [_V1, _V2, _V3, _V4]
LATEST = len(VERSIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the version the database is at (0: a new, empty one)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def prepare(conn: sqlite3.Connection) -> None:
    """Give a new, empty database what SQLite takes only before its first table.

    Incremental auto-vacuum (pruning gives pages back) and PAGE_SIZE pages; both
    are ignored by a database that has tables, and page_size by one in WAL mode,
    so call this before switching to WAL.
    """
    # In this order: setting auto_vacuum first fixes the page size (seen on 3.40).
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Bring the database to version ``upto`` (default: the latest); return the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each version is
    applied in a transaction of its own. A new database is prepared first
    (:func:`prepare`).

    Raises:
        StoreUnusable: the database was made by a newer cc2api (its version is
            past the latest this code knows).
        sqlite3.Error: a step failed (the version it belongs to is rolled back).
    """
    target = LATEST if upto is None else upto
    version = schema_version(conn)
    if version > LATEST:
        raise StoreUnusable(
            f"the database is at schema version {version}, made by a newer cc2api "
            f"(this one knows up to {LATEST}): run the newer cc2api, or give this one "
            "its own DATA_DIR"
        )
    if version == 0:
        prepare(conn)
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in VERSIONS[version]:
                conn.execute(step)
            # PRAGMA takes no parameters; the value is an int this module made.
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        version += 1
    return version
