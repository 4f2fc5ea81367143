"""The wire shapes of ``GET /usage``: one group's sums, and the answer."""

from __future__ import annotations

from pydantic import Field

from .usage import GroupBy, UsageRow
from .wire import Count, Timestamp, Wire

__all__ = ["Usage", "UsageGroup"]


class UsageGroup(Wire):
    """One group's usage: a day (UTC), a key or a model."""

    group: str = Field(
        description="The day (`YYYY-MM-DD`, UTC), the key's name (`admin` for the admin), "
        'or the model (`""`: runs that asked no model).'
    )
    runs: Count = Field(description="Runs that ended (each counted once).")
    completed: Count
    failed: Count = Field(description="Failed, timed out or lost.")
    cancelled: Count = Field(description="Cancelled or interrupted.")
    cost_usd: float = Field(description="The sum of the CLI's `total_cost_usd`, where known.")
    cost_unknown_runs: Count = Field(
        description="Runs without a `result` line: no cost from the CLI, tokens from their "
        "assistant messages."
    )
    input_tokens: Count
    output_tokens: Count
    cache_read_tokens: Count
    cache_creation_tokens: Count
    wall_seconds: float = Field(ge=0, description="The CLIs' wall time, spawn to end.")

    @classmethod
    def of(cls, row: UsageRow) -> UsageGroup:
        """Return the wire shape of a store's row."""
        return cls(
            group=row.group,
            runs=row.runs,
            completed=row.completed,
            failed=row.failed,
            cancelled=row.cancelled,
            cost_usd=round(row.cost_usd, 9) + 0.0,  # never -0.0
            cost_unknown_runs=row.cost_unknown_runs,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_creation_tokens=row.cache_creation_tokens,
            wall_seconds=row.wall_ms / 1000,
        )


class Usage(Wire):
    """The answer of `GET /usage`: the window, the grouping, and each group's sums."""

    since: Timestamp = Field(description="Runs that ended in this hour (UTC) or later.")
    until: Timestamp = Field(description="Runs that ended in hours starting before this.")
    group_by: GroupBy
    groups: list[UsageGroup] = Field(description="By group: days, key names or models.")
