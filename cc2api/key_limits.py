"""What a key may still do now: its share of the run slots, its rate, and its budgets.

Budgets count the cost of a key's runs that have ended, by UTC day and month, from
the store's usage at start and from each run as it ends. Runs under way are not
counted until they end: several started together may overshoot a budget by what
they cost (each is capped at what remained when it started).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .codes import ErrorCode
from .errors import TooManyRequests
from .keys import ApiKey
from .slots import Share

__all__ = ["BudgetExhausted", "KeyLimits", "day_start", "month_start"]

WINDOW_SECONDS = 60.0


class BudgetExhausted(TooManyRequests):
    """Raised for a key whose daily or monthly budget is spent; says when it resets."""

    code = ErrorCode.BUDGET_EXHAUSTED

    def __init__(self, detail: str, *, resets_at: datetime, now: datetime) -> None:
        left = max(1, math.ceil((resets_at - now).total_seconds()))
        super().__init__(detail, retry_after=left)
        self.resets_at = resets_at

    def body(self) -> dict[str, object]:
        """Return the error body, with ``resets_at``."""
        body = super().body()
        body["resets_at"] = self.resets_at.isoformat().replace("+00:00", "Z")
        return body


def day_start(moment: datetime) -> datetime:
    """Return the start of ``moment``'s UTC day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    """Return the start of ``moment``'s UTC month."""
    return day_start(moment).replace(day=1)


def _next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


@dataclass
class _Spend:
    day: datetime
    month: datetime
    spent_day: float = 0.0
    spent_month: float = 0.0


class KeyLimits:
    """Per key: a slot share, the moments of its latest runs, and its spend."""

    def __init__(
        self, clock: Callable[[], float], now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock  # monotonic seconds, for the rate
        self._now = now  # wall clock, for budgets
        self._shares: dict[str, Share] = {}
        self._starts: dict[str, deque[float]] = {}
        self._spend: dict[str, _Spend] = {}

    def share(self, key: ApiKey) -> Share:
        """Return ``key``'s share of the slots, its limits as its policy says now."""
        share = self._shares.get(key.key_id)
        if share is None:
            share = self._shares[key.key_id] = Share(key.name)
        share.limit = key.policy.max_runs
        share.queue_limit = key.policy.max_queued
        return share

    def admit(self, key: ApiKey) -> None:
        """Count a new run of ``key`` against its rate.

        Raises:
            TooManyRequests: ``rate_limited``: runs_per_minute runs started in the last
                minute; Retry-After says when the oldest leaves the window.
        """
        rate = key.policy.runs_per_minute
        if rate is None:
            return
        now = self._clock()
        starts = self._starts.setdefault(key.key_id, deque())
        while starts and starts[0] <= now - WINDOW_SECONDS:
            starts.popleft()
        if len(starts) >= rate:
            left = max(1, math.ceil(starts[0] + WINDOW_SECONDS - now))
            raise TooManyRequests(
                f"key {key.name} started {len(starts)} runs in the last minute, the most "
                f"it may (runs_per_minute={rate}); retry in {left} s",
                retry_after=left,
                code=ErrorCode.RATE_LIMITED,
            )
        starts.append(now)

    def forget_start(self, key: ApiKey) -> None:
        """Take back the last start :meth:`admit` counted (the run was refused later)."""
        starts = self._starts.get(key.key_id)
        if starts:
            starts.pop()

    def load_spend(self, day: dict[str, float], month: dict[str, float]) -> None:
        """Set what each key has spent this UTC day and month, as the store counted it."""
        now = self._now()
        for key_id in set(day) | set(month):
            self._spend[key_id] = _Spend(
                day_start(now), month_start(now), day.get(key_id, 0.0), month.get(key_id, 0.0)
            )

    def spent(self, key_id: str) -> tuple[float, float]:
        """Return what ``key_id`` has spent this UTC day and this month, in USD."""
        spend = self._current(key_id)
        return spend.spent_day, spend.spent_month

    def add_cost(self, key_id: str, cost: float) -> None:
        """Count the cost of one of ``key_id``'s runs, which has just ended."""
        spend = self._current(key_id)
        spend.spent_day += cost
        spend.spent_month += cost

    def remaining(self, key: ApiKey) -> float | None:
        """Return what ``key`` may still spend (None: no budget).

        Raises:
            BudgetExhausted: nothing is left today or this month.
        """
        policy, now = key.policy, self._now()
        day, month = self.spent(key.key_id)
        periods = (
            (policy.budget_usd_day, day, "today", "daily", day_start(now) + timedelta(days=1),
             "at midnight UTC"),
            (policy.budget_usd_month, month, "this month", "monthly",
             _next_month(month_start(now)), "on the 1st, UTC"),
        )  # fmt: skip
        left: list[float] = []
        for budget, spent, when, kind, resets, at in periods:
            if budget is None:
                continue
            if spent >= budget:
                raise BudgetExhausted(
                    f"key {key.name} has spent {spent:.4f} USD {when}, its {kind} budget is "
                    f"{budget:g} USD; it resets {at}",
                    resets_at=resets,
                    now=now,
                )
            left.append(budget - spent)
        return min(left) if left else None

    def _current(self, key_id: str) -> _Spend:
        now = self._now()
        spend = self._spend.get(key_id)
        if spend is None:
            spend = self._spend[key_id] = _Spend(day_start(now), month_start(now))
        if spend.day != day_start(now):
            spend.day, spend.spent_day = day_start(now), 0.0
        if spend.month != month_start(now):
            spend.month, spend.spent_month = month_start(now), 0.0
        return spend
