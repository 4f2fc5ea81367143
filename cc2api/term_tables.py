"""``cc2api ps``, ``sessions`` and ``usage`` (over HTTP) as tables: pure, answer in, table out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from .term_render import STATUS_STYLES, printable, safe, shorten
from .usage_wire import Usage, UsageGroup

__all__ = ["processes_table", "sessions_table", "usage_table"]

LIVE_STYLES = {"running": "green", "queued": "yellow", **STATUS_STYLES}


def _add_row(table: Table, *cells: str | Text) -> None:
    # A cell given as str is read as rich markup: a model named "[/x]" would crash the
    # table and a cwd with "[link=...]" become a link. Every cell goes in as text.
    table.add_row(
        *(safe(cell) if isinstance(cell, Text) else Text(printable(cell)) for cell in cells)
    )


def _when(value: Any) -> str:
    """Return an ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` (its zone as given), or ``-``."""
    if not value:
        return "-"
    try:
        return f"{datetime.fromisoformat(str(value)):%Y-%m-%d %H:%M:%S}"
    except ValueError:
        return str(value)


def processes_table(processes: list[dict[str, Any]]) -> Table:
    """Return GET /processes' runs as a table, one row a run."""
    table = Table(title=f"{len(processes)} runs", title_justify="left", box=None)
    for name in ("process id", "status", "pid", "started", "approvals", "model", "cwd"):
        table.add_column(name, no_wrap=name == "process id")
    for run in processes:
        status = str(run.get("status"))
        if status == "queued" and run.get("queue_position"):
            status = f"queued ({run['queue_position']})"
        pending = int(run.get("pending_approvals") or 0)
        _add_row(
            table,
            str(run.get("process_id")),
            Text(status, style=LIVE_STYLES.get(str(run.get("status")), "")),
            str(run.get("pid") or "-"),
            _when(run.get("started_at")),
            Text(str(pending), style="bold yellow") if pending else Text("0", style="dim"),
            str(run.get("model") or "-"),
            str(run.get("cwd")),
        )
    return table


def sessions_table(answer: dict[str, Any]) -> Table:
    """Return a GET /sessions page as a table, newest activity first."""
    sessions: list[dict[str, Any]] = answer.get("sessions", [])
    more = " (more: --cursor " + answer["next_cursor"] + ")" if answer.get("next_cursor") else ""
    table = Table(title=f"{len(sessions)} sessions{more}", title_justify="left", box=None)
    for name in ("session id", "last activity", "messages", "cwd", "first prompt"):
        table.add_column(name, no_wrap=name == "session id", overflow="ellipsis")
    for session in sessions:
        _add_row(
            table,
            str(session.get("session_id")),
            _when(session.get("last_activity")),
            str(session.get("message_count", 0)),
            str(session.get("cwd") or "-"),
            shorten(str(session.get("preview") or ""), 60),
        )
    return table


def _figures(group: UsageGroup) -> list[str]:
    return [
        str(group.runs),
        str(group.completed),
        str(group.failed),
        str(group.cancelled),
        f"{group.cost_usd:.4f}",
        str(group.input_tokens),
        str(group.output_tokens),
        str(group.cache_read_tokens),
        f"{group.wall_seconds:.1f}",
    ]


def usage_table(usage: Usage) -> Table:
    """Return a GET /usage answer as a table: a row per group, and their total."""
    window = f"{usage.since:%Y-%m-%d %H:%M} to {usage.until:%Y-%m-%d %H:%M} UTC"
    table = Table(
        title=f"usage by {usage.group_by}, {window}",
        title_justify="left",
        box=None,
        show_footer=bool(usage.groups),
    )
    names = ("runs", "ok", "failed", "cancelled", "cost_usd", "input", "output", "cached", "wall_s")
    total = _figures(
        UsageGroup(
            group="total",
            **{
                name: sum(getattr(group, name) for group in usage.groups)
                for name in UsageGroup.model_fields
                if name != "group"
            },
        )
    )
    table.add_column(usage.group_by, footer="total")
    for name, footer in zip(names, total, strict=True):
        table.add_column(name, justify="right", footer=footer)
    for group in usage.groups:
        _add_row(table, group.group or "-", *_figures(group))
    if not usage.groups:
        table.caption = "no runs ended in this window"
    return table
