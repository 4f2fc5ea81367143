"""The SQLite store's statements: plain functions over a ``sqlite3.Connection``.

Nothing here knows of trio, queues or threads: :mod:`cc2api.sqlite_store` calls these
in worker threads, the writer's on its one connection and each read on a
connection of its own. Connections are in autocommit mode (``isolation_level=None``),
so every transaction here is explicit: a write is one ``BEGIN IMMEDIATE`` ...
``COMMIT``, rolled back whole on any error; a read that takes several statements
holds one read transaction, so that they see the same snapshot.

Records are rows of ``runs`` (times in INTEGER microseconds UTC, options and usage
as JSON text) and their sessions rows of ``run_sessions``; a batch of events is a
row of ``events``. ``runs.last_event_id`` and ``runs.event_bytes`` are kept by the
event writes, so that neither a record's save nor a total needs a scan of events.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .codes import FINAL_STATUSES
from .run_usage import dump_usage, load_usage
from .store import EventBatch, RunQuery, RunRecord, rollups_of_record
from .usage import COUNTERS, HOUR_US, Rollup, UsageQuery, UsageRow, hour_of, row_of

__all__ = [
    "FINAL",
    "Pruned",
    "Totals",
    "Written",
    "from_us",
    "get_run",
    "list_runs",
    "marks",
    "prune",
    "read_events",
    "runs_by_status",
    "session_runs",
    "spent",
    "to_us",
    "totals",
    "unfinished",
    "usage",
    "vacuum",
    "write_batch",
]

# A run has ended once its status is one of these; "lost" is what the gateway makes
# of the runs a crash left live.
FINAL: frozenset[str] = frozenset({str(status) for status in FINAL_STATUSES} | {"lost"})
_FINAL_PARAMS = tuple(sorted(FINAL))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Bound parameters per statement, well below SQLite's limit (32766).
_CHUNK = 500

# The columns a record is read from, in the order _record takes them.
_COLUMNS = (
    "run_id, created_us, status, cwd, started_us, ended_us, exit_code, error_code, "
    "error_message, session_id, model, permission_mode, options, detached, total_cost_usd, "
    "usage, num_turns, duration_api_ms, api_key_id, prompt, last_event_id, events_pruned, "
    "run_usage"
)
# The columns a save writes: everything but what the event writes keep.
_SAVED = (
    "run_id",
    "created_us",
    "status",
    "cwd",
    "started_us",
    "ended_us",
    "exit_code",
    "error_code",
    "error_message",
    "session_id",
    "model",
    "permission_mode",
    "options",
    "detached",
    "total_cost_usd",
    "usage",
    "num_turns",
    "duration_api_ms",
    "api_key_id",
    "prompt",
    "run_usage",
)
# A run saved after some of its events were written (they may come first) starts
# from what they hold.
# Only this module's column names are joined into these two.
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_SAVED)}, last_event_id, event_bytes) "  # noqa: S608
    f"VALUES ({', '.join(':' + name for name in _SAVED)}, "
    "COALESCE((SELECT first + count - 1 FROM events WHERE run_id = :run_id "
    "ORDER BY first DESC LIMIT 1), 0), "
    "(SELECT COALESCE(SUM(length(data)), 0) FROM events WHERE run_id = :run_id))"
)
_UPDATE_RUN = (
    f"UPDATE runs SET {', '.join(f'{name} = :{name}' for name in _SAVED[1:])} "  # noqa: S608
    "WHERE run_id = :run_id"
)
# The moment a run ended, for retention and pruning (the index runs_by_end).
_END = "COALESCE(ended_us, created_us)"


def to_us(moment: datetime) -> int:
    """Return ``moment`` as microseconds since the epoch (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Return the aware UTC datetime of ``us`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def _maybe_us(moment: datetime | None) -> int | None:
    return None if moment is None else to_us(moment)


def _maybe_dt(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int(value: int | None) -> int | None:
    # The CLI's figures are its JSON's: an integer SQLite cannot hold is clamped, not fatal.
    return None if value is None else min(max(value, _INT64[0]), _INT64[1])


def _text(value: str | None) -> str | None:
    # Text from the CLI's JSON may hold lone surrogates, which no UTF-8 column takes.
    if value is None or value.isascii():
        return value
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in value)


def _row_of(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "created_us": to_us(record.created_at),
        "status": record.status,
        "cwd": _text(record.cwd),
        "started_us": _maybe_us(record.started_at),
        "ended_us": _maybe_us(record.ended_at),
        "exit_code": _int(record.exit_code),
        "error_code": record.error_code,
        "error_message": _text(record.error_message),
        "session_id": _text(record.session_id),
        "model": _text(record.model),
        "permission_mode": _text(record.permission_mode),
        "options": json.dumps(dict(record.options), separators=(",", ":")),
        "detached": int(record.detached),
        "total_cost_usd": record.total_cost_usd,
        "usage": None if record.usage is None else json.dumps(dict(record.usage)),
        "num_turns": _int(record.num_turns),
        "duration_api_ms": _int(record.duration_api_ms),
        "api_key_id": record.api_key_id,
        "prompt": _text(record.prompt),
        "run_usage": None if record.run_usage is None else _text(dump_usage(record.run_usage)),
    }


def _record(row: Sequence[Any], sessions: Sequence[str]) -> RunRecord:
    (run_id, created, status, cwd, started, ended, exit_code, error_code, error_message) = row[:9]
    (session_id, model, mode, options, detached, cost, usage, turns, api_ms, key) = row[9:19]
    prompt, last_event_id, pruned, run_usage = row[19:23]
    return RunRecord(
        run_id=run_id,
        created_at=from_us(created),
        status=status,
        cwd=cwd,
        started_at=_maybe_dt(started),
        ended_at=_maybe_dt(ended),
        exit_code=exit_code,
        error_code=error_code,
        error_message=error_message,
        session_id=session_id,
        model=model,
        permission_mode=mode,
        options=json.loads(options),
        detached=bool(detached),
        total_cost_usd=cost,
        usage=None if usage is None else json.loads(usage),
        num_turns=turns,
        duration_api_ms=api_ms,
        api_key_id=key,
        sessions=tuple(sessions),
        prompt=prompt,
        last_event_id=last_event_id,
        events_pruned=bool(pruned),
        run_usage=None if run_usage is None else load_usage(run_usage),
    )


def _records(conn: sqlite3.Connection, rows: list[Sequence[Any]]) -> list[RunRecord]:
    """Return the records of ``rows`` (in their order) with their sessions."""
    sessions: dict[str, list[str]] = {row[0]: [] for row in rows}
    for chunk in _chunks(list(sessions)):
        found = conn.execute(
            "SELECT run_id, session_id FROM run_sessions "  # noqa: S608 (placeholders only)
            f"WHERE run_id IN ({_placeholders(len(chunk))}) ORDER BY run_id, position",
            chunk,
        )
        for run_id, session_id in found:
            sessions[run_id].append(session_id)
    return [_record(row, sessions[row[0]]) for row in rows]


class _Reading:
    """One read transaction, so that a read's statements see one snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN")
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.execute("COMMIT")


# -- writes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What one write added: runs new to the store, and bytes of events."""

    new_runs: int
    event_bytes: int


def write_batch(
    conn: sqlite3.Connection,
    records: Sequence[RunRecord],
    events: Sequence[tuple[str, EventBatch]],
) -> Written:
    """Write ``records``, then ``events``, in one transaction: all of it or nothing.

    A batch already stored (same run and first id) is left as it is, so a write
    retried after an unknown outcome adds nothing twice.

    Raises:
        sqlite3.Error: the write failed and was rolled back (a full disk, ...).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        new_runs = _write_records(conn, records)
        _count(conn, records)
        added = _write_events(conn, events)
    except BaseException:
        # A failed COMMIT may have rolled back already; ROLLBACK then has nothing to do.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Written(new_runs, added)


def _write_records(conn: sqlite3.Connection, records: Sequence[RunRecord]) -> int:
    if not records:
        return 0
    ids = [record.run_id for record in records]
    known: set[str] = set()
    for chunk in _chunks(ids):
        found = conn.execute(
            f"SELECT run_id FROM runs WHERE run_id IN ({_placeholders(len(chunk))})",  # noqa: S608 (placeholders only)
            chunk,
        )
        known.update(run_id for (run_id,) in found)
    rows = [_row_of(record) for record in records]
    conn.executemany(_INSERT_RUN, [row for row in rows if row["run_id"] not in known])
    conn.executemany(_UPDATE_RUN, [row for row in rows if row["run_id"] in known])
    conn.executemany("DELETE FROM run_sessions WHERE run_id = ?", [(i,) for i in ids])
    conn.executemany(
        "INSERT INTO run_sessions (run_id, position, session_id) VALUES (?, ?, ?)",
        [
            (record.run_id, position, _text(session))
            for record in records
            for position, session in enumerate(dict.fromkeys(record.sessions))
        ],
    )
    return len(set(ids) - known)


# One row of usage_hourly gains what a run adds (cc2api.usage.rollups_of).
_UPSERT_USAGE = (
    f"INSERT INTO usage_hourly (hour_us, key_id, model, {', '.join(COUNTERS)}) "  # noqa: S608
    f"VALUES (?, ?, ?, {_placeholders(len(COUNTERS))}) "
    "ON CONFLICT (hour_us, key_id, model) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTERS)
)


def _count(conn: sqlite3.Connection, records: Sequence[RunRecord]) -> None:
    """Add the ended runs not yet counted to usage_hourly, and mark them counted.

    Only a row this marks (counted was 0) is counted: a record saved again after it was
    counted (recovery, a retried write) adds nothing twice.
    """
    rollups: list[Rollup] = []
    for record in records:
        if record.status not in FINAL:
            continue
        marked = conn.execute(
            "UPDATE runs SET counted = 1 WHERE run_id = ? AND counted = 0", (record.run_id,)
        )
        if marked.rowcount:
            rollups.extend(rollups_of_record(record))
    conn.executemany(
        _UPSERT_USAGE,
        [
            (r.hour_us, _text(r.key_id), _text(r.model), *(_number(c) for c in r.counts))
            for r in rollups
        ],
    )


def _number(value: float) -> int | float | None:
    return _int(value) if isinstance(value, int) else value


def _write_events(conn: sqlite3.Connection, events: Sequence[tuple[str, EventBatch]]) -> int:
    if not events:
        return 0
    conn.executemany(
        "INSERT OR IGNORE INTO events (run_id, first, count, data) VALUES (?, ?, ?, ?)",
        [(run_id, batch.first, batch.count, batch.data) for run_id, batch in events],
    )
    per_run: dict[str, list[int]] = {}
    for run_id, batch in events:
        seen = per_run.setdefault(run_id, [0, 0])
        seen[0] = max(seen[0], batch.first + batch.count - 1)
        seen[1] += len(batch.data)
    conn.executemany(
        "UPDATE runs SET last_event_id = MAX(last_event_id, ?), event_bytes = event_bytes + ? "
        "WHERE run_id = ?",
        [(last, size, run_id) for run_id, (last, size) in per_run.items()],
    )
    return sum(size for _, size in per_run.values())


# -- reads ----------------------------------------------------------------------


def get_run(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    """Return the stored record of ``run_id``, if any."""
    with _Reading(conn):
        row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()  # noqa: S608 (a constant)
        return None if row is None else _records(conn, [row])[0]


def list_runs(
    conn: sqlite3.Connection, query: RunQuery, after: tuple[int, str] | None, limit: int
) -> list[RunRecord]:
    """Return up to ``limit`` stored records matching ``query``, newest first.

    ``after`` is the (created_us, run_id) of the last record of the page before
    (the decoded cursor; ``query.cursor`` itself is not read here).
    """
    where, params = _filters(query)
    if after is not None:
        where.append("(created_us, run_id) < (?, ?)")
        params.extend(after)
    sql = f"SELECT {_COLUMNS} FROM runs"  # noqa: S608 (only fixed clauses are joined in)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_us DESC, run_id DESC LIMIT ?"
    with _Reading(conn):
        rows = conn.execute(sql, [*params, limit]).fetchall()
        return _records(conn, rows)


def _filters(query: RunQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.statuses:
        where.append(f"status IN ({_placeholders(len(query.statuses))})")
        params.extend(sorted(query.statuses))
    if query.session_id is not None:
        where.append("run_id IN (SELECT run_id FROM run_sessions WHERE session_id = ?)")
        params.append(query.session_id)
    if query.cwd_prefix is not None:
        # The folder itself, or a path that starts with it and a slash: a range of
        # text rather than LIKE, so no character of the path is a wildcard, case
        # counts, and "/a/b" never takes in "/a/bc" ('0' is the character after '/').
        folder = query.cwd_prefix.rstrip("/") or "/"
        below = folder if folder == "/" else folder + "/"
        where.append("(cwd = ? OR (cwd >= ? AND cwd < ?))")
        params.extend([folder, below, below[:-1] + "0"])
    if query.since is not None:
        where.append("created_us >= ?")
        params.append(to_us(query.since))
    if query.until is not None:
        where.append("created_us < ?")
        params.append(to_us(query.until))
    if query.api_key_id is not None:
        where.append("api_key_id = ?")
        params.append(query.api_key_id)
    return where, params


def marks(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """Return, for each run with stored events or a stored record: (last event id, pruned).

    A run whose events were written before its record counts from its events.
    """
    found: dict[str, tuple[int, bool]] = {}
    with _Reading(conn):
        for chunk in _chunks(list(run_ids)):
            rows = conn.execute(
                "SELECT run_id, last_event_id, events_pruned FROM runs "  # noqa: S608 (placeholders only)
                f"WHERE run_id IN ({_placeholders(len(chunk))})",
                chunk,
            )
            found.update((run_id, (last, bool(pruned))) for run_id, last, pruned in rows)
        for run_id in run_ids:
            if run_id not in found:
                row = conn.execute(
                    "SELECT first + count - 1 FROM events WHERE run_id = ? "
                    "ORDER BY first DESC LIMIT 1",
                    (run_id,),
                ).fetchone()
                if row is not None:
                    found[run_id] = (row[0], False)
    return found


def read_events(
    conn: sqlite3.Connection, run_id: str, after: int, max_bytes: int, before: int | None = None
) -> list[EventBatch]:
    """Return the stored batches holding events after ``after`` (and first before ``before``).

    In id order: at least one when there is one, then more while the total stays
    under ``max_bytes``. The first may start before ``after + 1``.
    """
    sql = (
        "SELECT first, count, data FROM events WHERE run_id = ?1 AND first >= COALESCE("
        "(SELECT MAX(first) FROM events WHERE run_id = ?1 AND first <= ?2), 0)"
    )
    params: list[Any] = [run_id, after]
    if before is not None:
        sql += " AND first < ?3"
        params.append(before)
    sql += " ORDER BY first"
    batches: list[EventBatch] = []
    size = 0
    with _Reading(conn):
        for first, count, data in conn.execute(sql, params):
            if first + count - 1 <= after:
                continue  # the batch before the one holding after + 1
            if batches and size >= max_bytes:
                break
            batches.append(EventBatch(first, count, bytes(data)))
            size += len(data)
    return batches


def session_runs(
    conn: sqlite3.Connection, session_ids: Sequence[str], key_id: str | None = None
) -> list[tuple[str, str, int]]:
    """Return (session id, run id, created_us) of each stored run that used each session
    (only ``key_id``'s runs, if given)."""
    found: list[tuple[str, str, int]] = []
    by_key = "" if key_id is None else " AND r.api_key_id = ?"
    with _Reading(conn):
        for chunk in _chunks(list(dict.fromkeys(session_ids))):
            rows = conn.execute(
                "SELECT s.session_id, s.run_id, r.created_us FROM run_sessions AS s "  # noqa: S608 (placeholders only)
                "JOIN runs AS r ON r.run_id = s.run_id "
                f"WHERE s.session_id IN ({_placeholders(len(chunk))}){by_key}",
                [*chunk] if key_id is None else [*chunk, key_id],
            )
            found.extend(rows)
    return found


def sessions_of(conn: sqlite3.Connection, key_id: str) -> set[str]:
    """Return the sessions the stored runs of ``key_id`` used."""
    with _Reading(conn):
        rows = conn.execute(
            "SELECT DISTINCT s.session_id FROM runs AS r "
            "JOIN run_sessions AS s ON s.run_id = r.run_id WHERE r.api_key_id = ?",
            (key_id,),
        ).fetchall()
    return {session for (session,) in rows}


def unfinished(conn: sqlite3.Connection) -> list[RunRecord]:
    """Return the stored records whose status is not final, oldest first."""
    with _Reading(conn):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM runs "  # noqa: S608 (placeholders only)
            f"WHERE status NOT IN ({_placeholders(len(_FINAL_PARAMS))}) "
            "ORDER BY created_us, run_id",
            _FINAL_PARAMS,
        ).fetchall()
        return _records(conn, rows)


_GROUPS = {"day": f"hour_us / {24 * HOUR_US}", "key": "u.key_id", "model": "u.model"}


def usage(conn: sqlite3.Connection, query: UsageQuery) -> list[UsageRow]:
    """Return the sums of usage_hourly in the query's hours, a row per group, by group.

    The hours are those from ``query.since``'s to those starting before ``query.until``.
    A key group is named from api_keys (``admin`` for '', its id if the key is gone).
    """
    group = _GROUPS[query.group_by]
    sums = ", ".join(f"SUM(u.{name})" for name in COUNTERS)
    sql = (
        f"SELECT {group}, MAX(k.name), {sums} FROM usage_hourly AS u "  # noqa: S608 (constants)
        "LEFT JOIN api_keys AS k ON k.key_id = u.key_id "
        "WHERE u.hour_us >= ? AND u.hour_us < ?"
    )
    params: list[Any] = [hour_of(query.since), to_us(query.until)]
    if query.key_id is not None:
        sql += " AND u.key_id = ?"
        params.append(query.key_id)
    sql += " GROUP BY 1"
    with _Reading(conn):
        rows = conn.execute(sql, params).fetchall()
    found = [
        row_of(query.group_by, value, figures, key_name=name if query.group_by == "key" else None)
        for value, name, *figures in rows
    ]
    return sorted(found, key=lambda row: row.group)


def spent(conn: sqlite3.Connection, since: datetime) -> dict[str, float]:
    """Return the USD in usage_hourly by key id, in the hours from ``since``'s on."""
    rows = conn.execute(
        "SELECT key_id, SUM(cost_usd) FROM usage_hourly WHERE hour_us >= ? GROUP BY key_id",
        (hour_of(since),),
    )
    return {key: float(total) for key, total in rows}


@dataclass(frozen=True)
class Totals:
    """What the store holds: runs, and bytes of events."""

    runs: int
    event_bytes: int


def totals(conn: sqlite3.Connection) -> Totals:
    """Return the number of stored runs and the bytes of their events (no scan of events)."""
    runs, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(event_bytes), 0) FROM runs").fetchone()
    return Totals(runs, size)


def runs_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    """Return how many stored runs have each status."""
    rows = conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
    return dict(rows.fetchall())


# -- retention ------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    """What one pruning did: runs deleted whole, runs whose events were cut, what is left."""

    deleted: int
    trimmed: int
    totals: Totals


def prune(conn: sqlite3.Connection, *, ended_before: datetime, max_bytes: int) -> Pruned:
    """Delete runs that ended before ``ended_before``, then trim events down to ``max_bytes``.

    Trimming takes the oldest ended runs whose events are not yet pruned, and
    deletes every batch of each but its last (a run's ``done`` event is a batch of
    its own, always the last), until the stored events fit. Live runs keep all
    theirs. One transaction; :func:`vacuum` then gives the freed pages back.

    Raises:
        sqlite3.Error: the pruning failed and was rolled back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = [
            run_id
            for (run_id,) in conn.execute(
                f"SELECT run_id FROM runs WHERE {_END} < ? "  # noqa: S608 (placeholders only)
                f"AND status IN ({_placeholders(len(_FINAL_PARAMS))})",
                (to_us(ended_before), *_FINAL_PARAMS),
            ).fetchall()
        ]
        for chunk in _chunks(old):
            marks = _placeholders(len(chunk))
            for table in ("events", "run_sessions", "webhook_attempts", "runs"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)  # noqa: S608 (placeholders only)
        trimmed = 0
        stored = totals(conn)
        excess = stored.event_bytes - max_bytes
        for run_id, size in _trim_candidates(conn) if excess > 0 else ():
            left = _trim(conn, run_id)
            if left is None:
                continue
            trimmed += 1
            excess -= size - left
            if excess <= 0:
                break
        found = totals(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Pruned(len(old), trimmed, found)


def _trim_candidates(conn: sqlite3.Connection) -> Iterable[tuple[str, int]]:
    """Yield (run id, event bytes) of ended, unpruned runs, the oldest end first."""
    after: tuple[int, str] = (-(1 << 62), "")
    while True:
        rows = conn.execute(
            f"SELECT {_END}, run_id, event_bytes FROM runs "  # noqa: S608 (placeholders only)
            f"WHERE events_pruned = 0 AND ({_END}, run_id) > (?, ?) "
            f"AND status IN ({_placeholders(len(_FINAL_PARAMS))}) "
            f"ORDER BY {_END}, run_id LIMIT 100",
            (*after, *_FINAL_PARAMS),
        ).fetchall()
        if not rows:
            return
        for _, run_id, size in rows:
            yield run_id, size
        after = (rows[-1][0], rows[-1][1])


def _trim(conn: sqlite3.Connection, run_id: str) -> int | None:
    """Delete all of a run's batches but the last; return the bytes left (None: nothing cut)."""
    (last,) = conn.execute("SELECT MAX(first) FROM events WHERE run_id = ?", (run_id,)).fetchone()
    if last is None:
        return None
    cut = conn.execute("DELETE FROM events WHERE run_id = ? AND first < ?", (run_id, last))
    if not cut.rowcount:
        return None
    (left,) = conn.execute(
        "SELECT COALESCE(SUM(length(data)), 0) FROM events WHERE run_id = ?", (run_id,)
    ).fetchone()
    conn.execute(
        "UPDATE runs SET events_pruned = 1, event_bytes = ? WHERE run_id = ?", (left, run_id)
    )
    left_bytes: int = left
    return left_bytes


def vacuum(conn: sqlite3.Connection) -> None:
    """Give the pages freed by deletes back to the file system (incremental auto-vacuum)."""
    conn.execute("PRAGMA incremental_vacuum").fetchall()
