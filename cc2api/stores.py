"""Which store a gateway keeps its runs in, as the settings say."""

from __future__ import annotations

from pathlib import Path

from .settings import Settings
from .store import InMemoryStore, Store

__all__ = ["data_dir", "open_store"]


def data_dir(settings: Settings) -> Path:
    """Return DATA_DIR as an absolute path (a relative one is the server's start folder's)."""
    return settings.data_dir.absolute()


def open_store(settings: Settings) -> Store:
    """Return the store the settings choose; nothing is opened until it is served."""
    if settings.store == "memory":
        return InMemoryStore()
    from .sqlite_store import SqliteStore  # noqa: PLC0415 (sqlite3 only when chosen)

    return SqliteStore(
        data_dir(settings),
        retention_days=settings.retention_days,
        max_bytes=settings.store_max_bytes,
        backlog_bytes=settings.store_backlog_bytes,
    )
