"""``cc2api usage``'s table: a Usage answer as plain text, one line per group, aligned."""

from __future__ import annotations

from .usage_wire import Usage, UsageGroup

__all__ = ["format_usage"]

_HEADERS = (
    "group", "runs", "ok", "failed", "cancelled", "cost_usd", "unknown_cost",
    "input", "output", "cache_read", "cache_write", "wall_s",
)  # fmt: skip


def _cells(group: UsageGroup) -> tuple[str, ...]:
    return (
        group.group or "-",
        str(group.runs),
        str(group.completed),
        str(group.failed),
        str(group.cancelled),
        f"{group.cost_usd:.4f}",
        str(group.cost_unknown_runs),
        str(group.input_tokens),
        str(group.output_tokens),
        str(group.cache_read_tokens),
        str(group.cache_creation_tokens),
        f"{group.wall_seconds:.1f}",
    )


def format_usage(usage: Usage) -> str:
    """Return ``usage`` as a text table: a title line, a header, a line per group, a total.

    The first column is left-aligned, the figures right-aligned; ``-`` names the runs
    that asked no model. Without groups, a line says there was no usage.
    """
    window = f"{usage.since:%Y-%m-%d %H:%M} to {usage.until:%Y-%m-%d %H:%M} UTC"
    title = f"usage by {usage.group_by}, {window}"
    if not usage.groups:
        return f"{title}\nno runs ended in this window\n"
    total = UsageGroup(
        group="total",
        **{
            name: sum(getattr(group, name) for group in usage.groups)
            for name in UsageGroup.model_fields
            if name != "group"
        },
    )
    rows = [_HEADERS, *(_cells(group) for group in usage.groups), _cells(total)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return "\n".join([title, *lines[:-1], "-" * len(lines[0]), lines[-1]]) + "\n"
