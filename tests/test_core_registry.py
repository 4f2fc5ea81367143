"""The registry's core without processes: session claims, retention of detached runs, the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from cc2api.claims import Claims
from cc2api.confinement import ConfineSetup
from cc2api.conversation import HeldBytes
from cc2api.errors import SessionBusy
from cc2api.launch import plan_launch
from cc2api.limits import RunLimits
from cc2api.models import ChatRequest
from cc2api.policy import Policy
from cc2api.retention import Retention
from cc2api.runner import Run
from cc2api.slots import Slots
from cc2api.store import EventBatch, InMemoryStore, RunRecord, record_of

from .helpers import FAKE_CLAUDE, make_settings

pytestmark = pytest.mark.timeout(10)

S1 = "11111111-1111-4111-8111-111111111111"
S2 = "22222222-2222-4222-8222-222222222222"


class TestClaims:
    def test_a_held_session_refuses_another_run(self) -> None:
        """A session a live run holds cannot be claimed by a second run, whose error names both."""
        claims = Claims()
        claims.claim("a", [S1], "p")
        with pytest.raises(SessionBusy, match=f"session {S1} is in use by run a; wait"):
            claims.claim("b", [S1], "p")
        assert claims.holder(S1) == "a"

    def test_a_refused_claim_takes_nothing(self) -> None:
        """A run refused for one session holds none of the others it named, nor a project place."""
        claims = Claims()
        claims.claim("a", [S1], "p")
        with pytest.raises(SessionBusy):
            claims.claim("b", [S2, S1], "q")
        assert claims.holder(S2) is None
        assert claims.live_in("q") == []

    def test_continue_is_refused_while_a_run_is_live_in_the_project(self) -> None:
        """A continue in a project with a live run is refused, naming the oldest one and the cwd."""
        claims = Claims()
        claims.claim("a", [], "p")
        claims.claim("b", [], "p")
        with pytest.raises(SessionBusy, match="run a is live in the project of /w, which"):
            claims.claim("c", [], "p", continue_from="/w")
        assert claims.live_in("p") == ["a", "b"]

    def test_continue_is_free_in_another_project_and_others_share_one(self) -> None:
        """A continue needs only its own project empty, and runs that do not continue share one."""
        claims = Claims()
        claims.claim("a", [], "p")
        claims.claim("b", [], "q", continue_from="/q")
        claims.claim("c", [], "p")
        assert claims.live_in("p") == ["a", "c"]

    def test_release_frees_the_sessions_and_the_project(self) -> None:
        """Once a run is released its sessions and project are free for a continue or a resume."""
        claims = Claims()
        claims.claim("a", [S1], "p")
        claims.claim_later("a", S2)
        claims.release("a")
        claims.release("a")  # idempotent
        assert (claims.holder(S1), claims.holder(S2), claims.live_in("p")) == (None, None, [])
        claims.claim("b", [S1, S2], "p", continue_from="/p")
        assert claims.held("b") == [S1, S2]

    def test_a_session_learnt_later_is_held_until_release(self) -> None:
        """A session the CLI names mid-run is held by that run and refuses others until released."""
        claims = Claims()
        claims.claim("a", [S1], "p")
        assert claims.claim_later("a", S2) == "a"
        assert claims.held("a") == [S1, S2]
        with pytest.raises(SessionBusy):
            claims.claim("b", [S2], "q")

    def test_a_session_learnt_later_that_another_holds_stays_theirs(self) -> None:
        """A late claim of another run's session reports that run, and its release frees nothing."""
        claims = Claims()
        claims.claim("a", [S1], "p")
        claims.claim("b", [], "q")
        assert claims.claim_later("b", S1) == "a"
        claims.release("b")
        assert claims.holder(S1) == "a"


class TestRetention:
    async def test_a_kept_run_is_let_go_once_its_ttl_has_passed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A kept run is still kept just before its TTL and let go, once, just after."""
        evicted: list[str] = []
        retention = Retention(600.0, 4, evicted.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.serve)
            assert retention.keep("a")
            await trio.sleep(599.9)
            assert "a" in retention
            await trio.sleep(0.2)
            assert ("a" not in retention, evicted) == (True, ["a"])
            nursery.cancel_scope.cancel()  # as the registry stops
        assert evicted == ["a"]

    async def test_each_run_expires_a_ttl_after_it_was_kept(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Runs kept at different times each go a TTL after their own keep."""
        evicted: list[str] = []
        retention = Retention(10.0, 4, evicted.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.serve)
            retention.keep("a")
            await trio.sleep(5)
            retention.keep("b")
            await trio.sleep(5.5)
            assert evicted == ["a"]
            await trio.sleep(5)
            assert evicted == ["a", "b"]
            nursery.cancel_scope.cancel()  # as the registry stops

    async def test_past_the_cap_the_oldest_goes_first(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Keeping one run more than the cap lets the oldest go at once; the rest keep their TTL."""
        evicted: list[str] = []
        retention = Retention(10.0, 2, evicted.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.serve)
            for run_id in ("a", "b", "c"):
                retention.keep(run_id)
                await trio.sleep(1)
            assert (evicted, len(retention)) == (["a"], 2)
            await trio.sleep(8.5)
            assert evicted == ["a", "b"]
            await trio.sleep(1)
            assert evicted == ["a", "b", "c"]
            nursery.cancel_scope.cancel()  # as the registry stops

    async def test_stopping_lets_every_kept_run_go_and_keeps_no_more(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """When the registry stops, every kept run is let go at once and none is kept after."""
        evicted: list[str] = []
        retention = Retention(600.0, 4, evicted.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.serve)
            retention.keep("a")
            retention.keep("b")
            nursery.cancel_scope.cancel()  # as the registry stops
        assert evicted == ["a", "b"]
        assert trio.current_time() < 1
        assert not retention.keep("c")
        assert len(retention) == 0

    async def test_nothing_is_kept_without_a_ttl_or_before_serving(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A TTL of 0 keeps nothing, and nothing is kept before the timer is served."""
        never = Retention(0.0, 4, lambda run_id: None)
        async with trio.open_nursery() as nursery:
            await nursery.start(never.serve)
            assert not never.keep("a")
            nursery.cancel_scope.cancel()  # as the registry stops
        assert not Retention(600.0, 4, lambda run_id: None).keep("a")


class TestInMemoryStore:
    async def test_a_record_is_kept_until_the_run_is_evicted(self) -> None:
        """The newest save of a run is what it returns, until the registry lets the run go."""
        store = InMemoryStore()
        record = RunRecord(run_id="a", created_at=datetime.now(UTC), status="running", cwd="/w")
        store.save_run(record)
        store.save_run(RunRecord(run_id="a", created_at=record.created_at, status="done", cwd="/w"))
        found = await store.get_run("a")
        assert found is not None
        assert found.status == "done"
        store.evict("a")
        assert await store.get_run("a") is None

    async def test_events_are_not_copied_and_claims_are_kept(self) -> None:
        """Events stay in the run's own log only; claims behave as the Claims class does."""
        store = InMemoryStore()
        store.append_events("a", EventBatch(1, 1, b"id: 1\n\n"))
        assert await store.read_events("a", 0, 1 << 20) == []
        store.claim("a", [S1], "p")
        with pytest.raises(SessionBusy):
            store.claim("b", [S1], "q")
        store.release("a")
        assert store.holder(S1) is None


def unstarted_run(body: dict[str, object]) -> Run:
    """A run of ``body`` as the registry builds it, never supervised (no process)."""
    request = ChatRequest.model_validate(body)
    plan = Policy(make_settings(), {}, euid=1000).plan(request)
    confine = ConfineSetup(Path("/nonexistent"))
    launch = plan_launch(
        run_id="r1", claude=FAKE_CLAUDE, request=request, plan=plan, environ={}, confine=confine
    )
    return Run(
        request=request,
        plan=plan,
        launch=launch,
        limits=RunLimits(),
        slot=Slots(1, 0).take(),
        held_total=HeldBytes(1 << 20),
        confine=confine,
        on_session=lambda run, session: None,
        on_start=lambda run: None,
        on_finish=lambda run: None,
        reap=lambda: None,
    )


class TestRunRecord:
    async def test_a_record_keeps_the_options_but_never_the_prompts(self) -> None:
        """A run's record names its options, but not its prompt, system prompt or MCP config."""
        run = unstarted_run(
            {
                "prompt": "the secret prompt",
                "cwd": "/w",
                "model": "sonnet",
                "max_turns": 3,
                "system_prompt": "the secret system prompt",
                "mcp_config": ['{"mcpServers": {"x": {"command": "secret"}}}'],
            }
        )
        record = record_of(run)
        assert (record.run_id, record.cwd, record.model, record.status) == (
            "r1",
            "/w",
            "sonnet",
            "running",
        )
        assert record.options == {"max_turns": 3}
        assert "secret" not in repr(record)

    async def test_result_figures_of_the_wrong_type_are_left_out(self) -> None:
        """A figure of the CLI's result line is recorded only when its type is the expected one."""
        run = unstarted_run({"prompt": "p", "cwd": "/w"})
        run.state.result = {
            "total_cost_usd": 1,
            "num_turns": "3",
            "duration_api_ms": True,
            "usage": {},
        }
        record = record_of(run)
        assert (record.total_cost_usd, record.num_turns, record.duration_api_ms) == (
            1.0,
            None,
            None,
        )
        assert record.usage == {}
