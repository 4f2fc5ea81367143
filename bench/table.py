"""The result table: rows of text, aligned in plain columns, and the failures of a run."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

COLUMNS = ("figure", "value", "reference / limit", "ratio", "target")
NONE = "-"


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, against what, and what it should be."""

    figure: str
    value: str
    reference: str = NONE
    ratio: str = NONE
    target: str = NONE

    def cells(self) -> tuple[str, str, str, str, str]:
        """Return the row's cells in column order."""
        return (self.figure, self.value, self.reference, self.ratio, self.target)


@dataclass
class Report:
    """What a run found: its rows, and every run that did not complete."""

    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    runs: int = 0  # POST /chat runs, failed ones included
    requests: int = 0  # other requests (the load of figure 5)

    def add(self, *rows: Row) -> None:
        """Append rows to the table."""
        self.rows.extend(rows)

    def fail(self, what: str) -> None:
        """Record one run that did not complete, and why."""
        self.failures.append(what)


def ratio(value: float, reference: float) -> str:
    """Return value / reference, to two significant places."""
    if reference <= 0:
        return NONE
    share = value / reference
    return f"{share:.2f}" if share < 10 else f"{share:.0f}"


def paired(pairs: Iterable[tuple[float, float]]) -> str:
    """Return the median of value / reference over pairs measured side by side, as ``ratio``.

    Each pair shares the machine's state of its moment, so drift cancels out of it.
    """
    shares = [value / reference for value, reference in pairs if reference > 0]
    return ratio(statistics.median(shares), 1.0) if shares else NONE


def render(rows: list[Row]) -> str:
    """Return the rows as a plain-text table with a header and aligned columns."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = []
    for index, line in enumerate(table):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def rate(bytes_per_second: float) -> str:
    """Return a byte rate in MB/s or GB/s (decimal, as throughput is usually given)."""
    if bytes_per_second >= 1e9:
        return f"{bytes_per_second / 1e9:.2f} GB/s"
    return f"{bytes_per_second / 1e6:.0f} MB/s"


def millis(seconds: float) -> str:
    """Return a duration in milliseconds."""
    return f"{seconds * 1000:.1f} ms"


def kib(size: float) -> str:
    """Return a size in KiB."""
    return f"{size / 1024:.0f} KiB"
