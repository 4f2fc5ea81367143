"""The store's files in DATA_DIR: the lock, the database opened and checked, and a report.

``cc2api.lock`` is an exclusive flock held while a store is open, with the holder's
pid; ``cc2api.db`` has its ``-wal`` and ``-shm``. :func:`inspect` reads them for
``cc2api check`` without the lock and without writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import store_sql
from .store import (
    StoreUnusable,
)
from .store_schema import LATEST, migrate, prepare, schema_version

log = logging.getLogger(__name__)

DB_NAME = "cc2api.db"
LOCK_NAME = "cc2api.lock"
# How long a statement waits for a lock: only a checkpoint or `cc2api check` holds one.
BUSY_SECONDS = 5.0
READERS = 4
# The WAL is checkpointed once this big, and cut back to it after a checkpoint (a
# write after a long outage can make it bigger). Measured on a disk: up to three
# times the write rate of SQLite's default of 1000 pages.
WAL_BYTES = 64 * 1024 * 1024
CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass
class Opened:
    """The files an open store holds."""

    lock_fd: int
    writer: sqlite3.Connection
    readers: list[sqlite3.Connection]
    version: int
    totals: store_sql.Totals


def make_private_dir(data_dir: Path) -> None:
    missing: list[Path] = []
    here = data_dir
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    try:
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise StoreUnusable(
            f"cannot create DATA_DIR {data_dir}: {error.strerror}; create it, or set "
            "DATA_DIR to a folder this user can write"
        ) from error


def _keep_private(data_dir: Path, db: Path) -> None:
    """Make the database its owner's alone, whatever the umask: it holds every run's events.

    SQLite gives its ``-wal`` and ``-shm`` the database's mode, so a database made 0600
    before SQLite opens it keeps all three private.
    """
    os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    for path in (db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
    if data_dir.stat().st_mode & 0o077:
        log.warning(
            "DATA_DIR %s can be entered by others than its owner (mode %o): its files are "
            "kept private, but make it 0700",
            data_dir,
            data_dir.stat().st_mode & 0o777,
        )


def _lock(data_dir: Path) -> int:
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StoreUnusable(
            f"cannot write in DATA_DIR {data_dir} ({path}: {error.strerror}): make it "
            "writable by this user, or set DATA_DIR to a folder it can write"
        ) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreUnusable(
            f"DATA_DIR {data_dir} is in use by another cc2api gateway (pid {pid}): stop "
            "it, or give this one its own DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def corrupt(db: Path, detail: str) -> StoreUnusable:
    return StoreUnusable(
        f"{db} is corrupt ({detail}): stop cc2api, move the file aside (with its -wal "
        f'and -shm files) or restore a backup made with sqlite3 {db} ".backup FILE", '
        "then start again"
    )


def _quick_check(conn: sqlite3.Connection) -> str | None:
    """Return what ``PRAGMA quick_check`` found wrong (its first few lines), or None."""
    try:
        found = conn.execute("PRAGMA quick_check(3)").fetchall()
    except UnicodeDecodeError:
        # A damaged page can put bytes that are not UTF-8 in what it reports.
        return "damaged pages (quick_check's report of them is not even readable text)"
    if found == [("ok",)]:
        return None
    lines = [line for row in found for line in str(row[0]).splitlines()]
    return "; ".join(line for line in lines if not line.startswith("***"))[:300]


def _check(conn: sqlite3.Connection, db: Path) -> None:
    problem = _quick_check(conn)
    if problem is not None:
        raise corrupt(db, problem)


def _use_wal(conn: sqlite3.Connection, db: Path) -> None:
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise StoreUnusable(
            f"{db} cannot be used in WAL mode ({mode} instead): put DATA_DIR on a local file system"
        )


def _connect(db: Path) -> sqlite3.Connection:
    """Open the writer's connection: checked, in WAL mode, upgraded."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS)
    try:
        _check(conn, db)
        if schema_version(conn) == 0:
            prepare(conn)  # before WAL mode writes the header
        _use_wal(conn, db)
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints are the writer's big cost: one per WAL_BYTES written, not per 4 MiB.
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BYTES // page_size}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def reader(db: Path) -> sqlite3.Connection:
    uri = db.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


def open_files(data_dir: Path) -> Opened:
    """Make the folder, take the lock, open, check and upgrade the database."""
    make_private_dir(data_dir)
    fd = _lock(data_dir)
    db = data_dir / DB_NAME
    try:
        _keep_private(data_dir, db)
    except OSError as error:
        os.close(fd)
        raise StoreUnusable(f"cannot create {db}: {error.strerror}") from error
    conns: list[sqlite3.Connection] = []
    try:
        try:
            writer = _connect(db)
            conns.append(writer)
            readers = [reader(db) for _ in range(READERS)]
            conns.extend(readers)
            totals = store_sql.totals(writer)
        except sqlite3.Error as error:
            if is_corrupt(error):
                raise corrupt(db, str(error)) from error
            raise StoreUnusable(
                f"cannot open {db}: {error}; check that DATA_DIR is on a writable file "
                "system with free space"
            ) from error
    except BaseException:
        for conn in conns:
            conn.close()
        os.close(fd)
        raise
    return Opened(fd, writer, readers, schema_version(writer), totals)


def close_files(opened: Opened, readers: list[sqlite3.Connection]) -> None:
    for conn in readers:
        conn.close()
    # Closing checkpoints the WAL, and removes it when no reader is left.
    with contextlib.suppress(sqlite3.Error):
        opened.writer.execute("PRAGMA optimize")
    opened.writer.close()
    os.close(opened.lock_fd)  # and with it the lock


# -- cc2api check ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoreReport:
    """What :func:`inspect` found in a DATA_DIR."""

    path: Path  # the database
    exists: bool
    size_bytes: int  # the database and its WAL
    schema_version: int | None  # None: not read (missing or unreadable)
    runs_by_status: Mapping[str, int]
    unfinished: int  # runs recorded as live: a gateway holds them, or a crash left them
    event_bytes: int
    held: bool  # a gateway has it open now
    holder_pid: int | None  # the pid in the lock file, when held
    problem: str | None  # corrupt, newer than this code, or unreadable: what to do


def _holder(lock: Path) -> tuple[bool, int | None]:
    """Return whether a gateway holds ``lock``, and its pid; takes a shared lock for a moment."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return True, int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


def is_corrupt(error: sqlite3.Error) -> bool:
    return error.sqlite_errorcode & 0xFF in CORRUPT_CODES


def _read_report(db: Path, uri: str) -> tuple[int | None, dict[str, int], int, str | None]:
    """Return the version, runs by status, event bytes and a problem of a database."""
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_SECONDS)
    try:
        problem = _quick_check(conn)
        if problem is not None:
            return None, {}, 0, str(corrupt(db, problem))
        version = schema_version(conn)
        if version > LATEST:
            return version, {}, 0, f"{db} was made by a newer cc2api (schema version {version})"
        if version == 0:
            return 0, {}, 0, None
        return version, store_sql.runs_by_status(conn), store_sql.totals(conn).event_bytes, None
    finally:
        conn.close()


def inspect(data_dir: Path) -> StoreReport:
    """Return what DATA_DIR's store holds, for ``cc2api check``: never locks it, never writes.

    The database is opened read-only; when no gateway has it open and it has no
    WAL, as immutable, so that not even a ``-shm`` file is made. A corrupt or
    unreadable database is reported in ``problem``, not raised.
    """
    db = Path(data_dir) / DB_NAME
    wal = db.with_name(DB_NAME + "-wal")
    held, pid = _holder(Path(data_dir) / LOCK_NAME)
    version: int | None = None
    by_status: dict[str, int] = {}
    event_bytes = 0
    problem = None
    exists = db.exists()
    if exists:
        immutable = not held and not wal.exists()
        uri = db.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
        try:
            version, by_status, event_bytes, problem = _read_report(db, uri)
        except sqlite3.Error as error:
            broken = is_corrupt(error)
            problem = str(corrupt(db, str(error))) if broken else f"cannot read {db}: {error}"
    return StoreReport(
        path=db,
        exists=exists,
        size_bytes=sum(path.stat().st_size for path in (db, wal) if path.exists()),
        schema_version=version,
        runs_by_status=by_status,
        unfinished=sum(n for status, n in by_status.items() if status not in store_sql.FINAL),
        event_bytes=event_bytes,
        held=held,
        holder_pid=pid,
        problem=problem,
    )
