"""``cc2api check``'s findings on the store: where it is, what it holds, who has it open."""

from __future__ import annotations

import os
from pathlib import Path

from .settings import Settings
from .stores import data_dir

MiB = 1024 * 1024


def store_findings(settings: Settings) -> list[tuple[str, str]]:
    """Return (level, text) findings on the store the settings choose; never writes to it."""
    if settings.store == "memory":
        return [("note", "STORE=memory: no run, event or record outlives the process")]
    from .sqlite_store import inspect  # noqa: PLC0415 (sqlite3 only when chosen)

    folder = data_dir(settings)
    report = inspect(folder)
    if report.problem is not None:
        return [("problem", report.problem)]
    if not report.exists:
        return [_creatable(folder)]
    runs = sum(report.runs_by_status.values())
    statuses = ", ".join(
        f"{count} {status}" for status, count in sorted(report.runs_by_status.items())
    )
    found = [
        (
            "ok",
            f"the store {report.path}: {report.size_bytes / MiB:.1f} MiB, schema version "
            f"{report.schema_version}, {runs} run(s){f' ({statuses})' if statuses else ''}, "
            f"{report.event_bytes / MiB:.1f} MiB of events",
        )
    ]
    if report.held:
        found.append(("ok", f"a gateway (pid {report.holder_pid}) has the store open"))
    elif report.unfinished:
        found.append(
            (
                "note",
                f"{report.unfinished} run(s) were live when the last gateway stopped without "
                "a drain (a crash or kill -9): the next start ends what they left running "
                "and marks them lost",
            )
        )
    return found


def _creatable(folder: Path) -> tuple[str, str]:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK | os.X_OK):
        return ("ok", f"the store will be made in {folder} at the first start")
    return (
        "problem",
        f"DATA_DIR {folder} does not exist and {existing} is not writable — fix: make it, "
        "writable by the service's user, or set DATA_DIR elsewhere",
    )
