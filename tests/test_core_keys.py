"""The parts of API keys without a server: the ring, slot shares, rates and budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from cc2api.errors import QueueFull, TooManyRequests
from cc2api.key_limits import BudgetExhausted, KeyLimits
from cc2api.key_policy import narrowed
from cc2api.key_wire import KeyPolicy, NewKey
from cc2api.keys import KeyRing, hash_token, new_key
from cc2api.policy import Policy
from cc2api.slots import Share, Slots

from .helpers import make_settings

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


class TestRing:
    def test_a_token_finds_its_key_and_nothing_else_does(self) -> None:
        """match() returns the key for its token (and name), None for anything else."""
        key, token = new_key("bot", KeyPolicy(), NOW)
        ring = KeyRing([key])
        assert ring.match(token) == key
        assert ring.match(token, "bot") == key
        assert ring.match(token, "other") is None
        assert ring.match(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert hash_token(token) == key.token_sha256

    def test_a_revoked_key_matches_nothing(self) -> None:
        """A revoked key's token no longer authenticates."""
        key, token = new_key("bot", KeyPolicy(), NOW)
        ring = KeyRing([key.revoke(NOW)])
        assert ring.match(token) is None


class TestShares:
    def test_a_share_at_its_limit_does_not_hold_back_others(self) -> None:
        """A freed slot goes to the oldest waiter whose share has room, skipping a full one."""
        slots = Slots(limit=2, queue_limit=5)
        narrow, wide = Share("narrow", limit=1), Share("wide")
        held = [slots.take(narrow), slots.take(wide)]
        blocked = slots.take(narrow)  # queued: the server is full, and so is its share
        waiting = slots.take(wide)
        held[1].release()
        assert waiting.granted
        assert not blocked.granted
        held[0].release()
        assert blocked.granted

    def test_a_full_share_queue_is_queue_full(self) -> None:
        """A share at max_runs and max_queued refuses more, naming the key."""
        slots = Slots(limit=10, queue_limit=10)
        share = Share("bot", limit=1, queue_limit=0)
        slots.take(share)
        with pytest.raises(QueueFull, match="key bot"):
            slots.take(share)

    def test_refill_grants_when_a_limit_grows(self) -> None:
        """Raising a share's limit and refilling lets its queued slot start."""
        slots = Slots(limit=4, queue_limit=4)
        share = Share("bot", limit=1)
        slots.take(share)
        queued = slots.take(share)
        share.limit = 2
        slots.refill()
        assert queued.granted


class TestRateAndBudget:
    def test_the_rate_window_slides(self) -> None:
        """runs_per_minute starts are allowed per 60 s; the next is refused until one leaves."""
        clock = [0.0]
        limits = KeyLimits(lambda: clock[0], lambda: NOW)
        key, _ = new_key("bot", KeyPolicy(runs_per_minute=2), NOW)
        limits.admit(key)
        clock[0] = 30.0
        limits.admit(key)
        with pytest.raises(TooManyRequests) as refused:
            limits.admit(key)
        assert refused.value.retry_after == 30
        clock[0] = 60.5
        limits.admit(key)

    def test_the_daily_budget_resets_at_midnight_utc(self) -> None:
        """Spend counts per UTC day: spent today refuses, the next day starts at 0."""
        now = [NOW]
        limits = KeyLimits(lambda: 0.0, lambda: now[0])
        key, _ = new_key("bot", KeyPolicy(budget_usd_day=1, budget_usd_month=10), NOW)
        limits.add_cost(key.key_id, 0.7)
        assert limits.remaining(key) == pytest.approx(0.3)
        limits.add_cost(key.key_id, 0.4)
        with pytest.raises(BudgetExhausted) as refused:
            limits.remaining(key)
        assert refused.value.resets_at == datetime(2026, 12, 3, tzinfo=UTC)
        now[0] = NOW + timedelta(days=1)
        assert limits.remaining(key) == pytest.approx(1.0)
        day, month = limits.spent(key.key_id)
        assert day == 0.0
        assert month == pytest.approx(1.1)

    def test_the_monthly_budget_resets_on_the_first(self) -> None:
        """A spent month refuses with resets_at on the 1st of the next month."""
        limits = KeyLimits(lambda: 0.0, lambda: NOW)
        key, _ = new_key("bot", KeyPolicy(budget_usd_month=2), NOW)
        limits.load_spend({}, {key.key_id: 2.5})
        with pytest.raises(BudgetExhausted) as refused:
            limits.remaining(key)
        assert refused.value.resets_at == datetime(2027, 1, 1, tzinfo=UTC)


class TestNarrowing:
    def test_a_key_never_widens_the_operators_rules(self, tmp_path: Path) -> None:
        """Narrowed settings keep the operator's refusals and add the key's."""
        inside = tmp_path / "a"
        inside.mkdir()
        settings = make_settings(
            allowed_cwd_roots=[tmp_path],
            allowed_permission_modes=["default", "plan"],
            always_disallowed_tools=["Bash"],
            run_timeout_seconds=100,
            trust_caller_config=False,
        )
        operator = Policy(settings, {}, euid=1000)
        policy = KeyPolicy(
            cwd_roots=[str(inside)],
            permission_modes=["plan", "bypassPermissions"],
            disallowed_tools=["WebFetch"],
            timeout_seconds=300,
            trust_caller_config=True,
        )
        mine = narrowed(settings, operator, policy)
        assert mine.allowed_cwd_roots == [inside.resolve()]
        assert mine.allowed_permission_modes == ["plan"]
        assert mine.always_disallowed_tools == ["Bash", "WebFetch"]
        assert mine.run_timeout_seconds == 100
        assert mine.trust_caller_config is False

    def test_roots_the_operator_dropped_leave_nowhere(self, tmp_path: Path) -> None:
        """A key whose roots all lie outside the operator's current roots may use none."""
        (tmp_path / "now").mkdir()
        (tmp_path / "then").mkdir()
        settings = make_settings(allowed_cwd_roots=[tmp_path / "now"])
        operator = Policy(settings, {}, euid=1000)
        mine = narrowed(settings, operator, KeyPolicy(cwd_roots=[str(tmp_path / "then")]))
        assert not Policy(mine, {}, euid=1000).within_roots(str(tmp_path / "now"))


class TestReviewFindings:
    def test_a_keys_forced_restriction_untrusts_caller_config(self) -> None:
        """force_restricted on a key untrusts caller config, as FORCE_RESTRICTED does."""
        settings = make_settings()
        operator = Policy(settings, {}, euid=1000)
        mine = narrowed(settings, operator, KeyPolicy(force_restricted=True))
        assert mine.trust_caller_config is False

    def test_key_runs_are_confined_under_auto(self) -> None:
        """Under CONFINE_RUNS=auto a key's runs are confined; off stays off."""
        for mode, expected in (("auto", True), ("off", False), ("on", True)):
            settings = make_settings(confine_runs=mode)
            operator = Policy(settings, {}, euid=1000)
            mine = Policy(narrowed(settings, operator, KeyPolicy()), {}, euid=1000)
            assert mine.confines is expected, mode

    def test_max_queued_holds_while_the_key_is_under_max_runs(self) -> None:
        """A key's max_queued refuses once the server is full, whatever its own max_runs."""
        slots = Slots(limit=1, queue_limit=10)
        slots.take()
        share = Share("bot", queue_limit=1)
        slots.take(share)
        with pytest.raises(QueueFull):
            slots.take(share)

    @pytest.mark.parametrize(
        "policy",
        [
            {"cwd_roots": ["/tmp/a\x00b"]},
            {"disallowed_tools": ["Bash\x00"]},
            {"budget_usd_day": float("inf")},
            {"timeout_seconds": float("inf")},
        ],
    )
    def test_a_policy_without_nul_or_infinity(self, policy: dict[str, object]) -> None:
        """NUL in a path or tool, and infinite figures, are refused by validation."""
        with pytest.raises(ValidationError):
            KeyPolicy.model_validate(policy)

    def test_admin_is_not_a_keys_name(self) -> None:
        """No key may be called admin, the admin's name in logs and usage."""
        with pytest.raises(ValidationError):
            NewKey(name="Admin")
