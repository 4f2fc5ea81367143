"""Usage accounting: what each ended run adds to the hourly rollups, and how they are grouped.

A run is counted once, when its record is first saved with a final status, under the
hour (UTC) it ended in and its key ('' for the admin). Its figures are split by model:

- each model's row gets that model's tokens, and its ``costUSD`` from the CLI's
  ``modelUsage``;
- the run's main model (the one with the most tokens; ties by name) gets, besides, the
  run itself: its count, its status, its wall time (the CLI's: ended minus spawned),
  and what of the run's ``total_cost_usd`` the models' own costs leave over. So the
  cost of a key or a day is exactly the sum of its runs' ``total_cost_usd``;
- a run that used no model (it failed or was cancelled before the CLI asked one)
  gets a row under the model ``''``;
- a run whose cost is unknown (no ``result`` line: cancelled, timed out or lost before
  it) adds no cost and counts in ``cost_unknown_runs``; its tokens come from its
  assistant messages.

Statuses fold into three counts: ``completed``; ``failed`` (failed, timeout, lost);
``cancelled`` (cancelled, interrupted). ``runs`` counts them all.

Pure functions and an in-memory table; the SQLite statements are in
:mod:`cc2api.store_sql`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Literal

from .run_usage import ModelUsage, RunUsage

__all__ = [
    "ADMIN_GROUP",
    "ADMIN_KEY",
    "COUNTERS",
    "DEFAULT_DAYS",
    "GROUP_BYS",
    "HOUR_US",
    "GroupBy",
    "Rollup",
    "Rollups",
    "UsageQuery",
    "UsageRow",
    "group_name",
    "hour_of",
    "rollups_of",
    "row_of",
    "to_us",
]

GroupBy = Literal["day", "key", "model"]
GROUP_BYS: tuple[GroupBy, ...] = ("day", "key", "model")
DEFAULT_DAYS = 30  # GET /usage's window when since is not given
ADMIN_KEY = ""  # the key id the admin's usage is kept under
ADMIN_GROUP = "admin"  # its name in group_by=key
HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMPLETED = frozenset({"completed"})
_FAILED = frozenset({"failed", "timeout", "lost"})
_CANCELLED = frozenset({"cancelled", "interrupted"})


@dataclass(frozen=True)
class UsageQuery:
    """A read of the rollups: the hours from ``since``'s to before ``until``, grouped."""

    since: datetime
    until: datetime
    group_by: GroupBy = "day"
    key_id: str | None = None  # one key's only ('' the admin's); None: everyone's


@dataclass(frozen=True)
class UsageRow:
    """One group's sums. ``group``: the day (YYYY-MM-DD), the key's name, or the model."""

    group: str
    runs: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    cost_usd: float = 0.0
    cost_unknown_runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    wall_ms: int = 0
    key_id: str | None = None  # group_by=key: the key's id ('' the admin)


# The summed columns of usage_hourly, in its order (UsageRow's fields after group).
COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(UsageRow))[1:-1]


@dataclass(frozen=True)
class Rollup:
    """What one run adds to one row of usage_hourly."""

    hour_us: int
    key_id: str
    model: str
    counts: tuple[int | float, ...]  # in COUNTERS' order


def to_us(moment: datetime) -> int:
    """Return ``moment`` as microseconds since the epoch (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def hour_of(moment: datetime) -> int:
    """Return the start of ``moment``'s hour (UTC), in microseconds since the epoch."""
    return to_us(moment) // HOUR_US * HOUR_US


def _weight(usage: ModelUsage) -> int:
    return (
        usage.input_tokens
        + usage.output_tokens
        + usage.cache_read_tokens
        + usage.cache_creation_tokens
    )


def rollups_of(
    *,
    status: str,
    key_id: str | None,
    created_at: datetime,
    started_at: datetime | None,
    ended_at: datetime | None,
    usage: RunUsage | None,
) -> list[Rollup]:
    """Return what an ended run adds to the rollups (see the module's page for the rules)."""
    end = ended_at or created_at
    hour, key = hour_of(end), key_id or ADMIN_KEY
    models: Mapping[str, ModelUsage] = {} if usage is None else usage.models
    cost = None if usage is None else usage.cost_usd
    main = max(models, key=lambda name: (_weight(models[name]), name), default="")
    wall = 0 if started_at is None else max(0, round((end - started_at).total_seconds() * 1000))
    leftover = cost if cost is not None else 0.0
    rows: dict[str, list[int | float]] = {}
    for name, counts in models.items():
        model_cost = counts.cost_usd if cost is not None and counts.cost_usd is not None else 0.0
        leftover -= model_cost
        rows[name] = [
            0, 0, 0, 0, model_cost, 0,
            counts.input_tokens, counts.output_tokens,
            counts.cache_read_tokens, counts.cache_creation_tokens, 0,
        ]  # fmt: skip
    row = rows.setdefault(main, [0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0])
    row[0] = 1
    row[1], row[2], row[3] = (int(status in s) for s in (_COMPLETED, _FAILED, _CANCELLED))
    row[4] = float(row[4]) + leftover
    row[5] = int(cost is None)
    row[10] = wall
    return [Rollup(hour, key, name, tuple(counts)) for name, counts in rows.items()]


def group_name(group_by: GroupBy, value: str | int) -> str:
    """Return a group's name: a day number as YYYY-MM-DD; a key id or model as it is."""
    if group_by == "day":
        return (_EPOCH + timedelta(days=int(value))).date().isoformat()
    return str(value)


class Rollups:
    """The hourly rollups in memory (STORE=memory): the same rows as usage_hourly."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, str], list[int | float]] = {}

    def add(self, rollups: Iterable[Rollup]) -> None:
        """Add what a run contributes."""
        for rollup in rollups:
            row = self._rows.setdefault(
                (rollup.hour_us, rollup.key_id, rollup.model), [0] * len(COUNTERS)
            )
            for index, value in enumerate(rollup.counts):
                row[index] += value

    def usage(self, query: UsageQuery) -> list[UsageRow]:
        """Return the sums of each group in the query's hours, by group."""
        since, until = hour_of(query.since), to_us(query.until)
        groups: dict[str | int, list[int | float]] = {}
        for (hour, key, model), row in self._rows.items():
            if not since <= hour < until or query.key_id not in (None, key):
                continue
            value: str | int = (
                hour // DAY_US
                if query.group_by == "day"
                else key
                if query.group_by == "key"
                else model
            )
            sums = groups.setdefault(value, [0] * len(COUNTERS))
            for index, count in enumerate(row):
                sums[index] += count
        rows = [
            row_of(query.group_by, value, sums, key_name=None) for value, sums in groups.items()
        ]
        return sorted(rows, key=lambda row: row.group)

    def spent(self, since: datetime) -> dict[str, float]:
        """Return the USD counted, by key id, in the hours from ``since``'s on."""
        start = hour_of(since)
        spent: dict[str, float] = {}
        cost = COUNTERS.index("cost_usd")
        for (hour, key, _), row in self._rows.items():
            if hour >= start:
                spent[key] = spent.get(key, 0.0) + float(row[cost])
        return spent


def row_of(
    group_by: GroupBy, value: str | int, sums: Iterable[int | float], *, key_name: str | None
) -> UsageRow:
    """Return a group's UsageRow from its sums (in COUNTERS' order).

    A key group is named ``key_name`` if known, ``admin`` for the admin, else its id.
    """
    figures = dict(zip(COUNTERS, sums, strict=True))
    counts = {
        name: float(figure) if name == "cost_usd" else int(figure)
        for name, figure in figures.items()
    }
    if group_by == "key":
        key = str(value)
        name = key_name or (ADMIN_GROUP if key == ADMIN_KEY else key)
        return UsageRow(group=name, key_id=key, **counts)  # type: ignore[arg-type]
    return UsageRow(group=group_name(group_by, value), **counts)  # type: ignore[arg-type]
