"""Usage accounting: each ended run counted once in hourly rollups, and GET /usage over them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from cc2api.run_usage import ModelUsage, RunUsage
from cc2api.sqlite_store import SqliteStore
from cc2api.store import InMemoryStore, RunRecord, Store
from cc2api.usage import UsageQuery, hour_of, rollups_of
from cc2api.usage_table import format_usage
from cc2api.usage_wire import Usage, UsageGroup

from .helpers import (
    chat_body,
    make_settings,
    post_chat,
    processes_with_marker,
    served,
    sse_events,
    wait_until,
)
from .scripted_api import ScriptedAPI
from .test_keys import as_key, make_key

pytestmark = pytest.mark.timeout(120)

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
WINDOW = UsageQuery(since=NOW - timedelta(days=2), until=NOW + timedelta(days=1))
DEFAULTS: dict[str, Any] = {
    "retention_days": 14.0,
    "max_bytes": 1 << 30,
    "backlog_bytes": 64 << 20,
    "flush_interval": 0.01,
}
SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"
# What the scripted model reports for each answer in this module's real-CLI tests: the
# CLI 2.1.197 prices it, for its default model, at 5 USD per million input tokens and
# 25 per million output tokens: 22.5 USD.
BIG_USAGE = {"input_tokens": 2_000_000, "output_tokens": 500_000}
BIG_COST = 22.5


@pytest.fixture(name="scripted_api")
def _scripted_api() -> Iterator[ScriptedAPI]:
    """The scripted Messages API, reporting BIG_USAGE for every answer."""
    with ScriptedAPI(usage=BIG_USAGE) as api:
        yield api


def ended(run_id: str, status: str = "completed", **fields: Any) -> RunRecord:
    """A record of a run that ran 2 s and ended at NOW, with a result's usage by default."""
    fields.setdefault(
        "run_usage",
        RunUsage(models={SONNET: ModelUsage(100, 20, 5, 1, cost_usd=0.25)}, cost_usd=0.25),
    )
    fields.setdefault("started_at", NOW - timedelta(seconds=2))
    fields.setdefault("ended_at", NOW)
    return RunRecord(
        run_id=run_id, created_at=NOW - timedelta(seconds=3), status=status, cwd="/w", **fields
    )


@asynccontextmanager
async def opened(data_dir: Path, **settings: Any) -> AsyncIterator[SqliteStore]:
    """A served SQLite store on ``data_dir``, stopped after the block."""
    store = SqliteStore(data_dir, **{**DEFAULTS, **settings})
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


async def totals(store: Store, **query: Any) -> dict[str, Any]:
    """Return the store's one usage group in WINDOW (by day), as a dict, after a flush."""
    await store.flush()
    rows = await store.usage(UsageQuery(WINDOW.since, WINDOW.until, **query))
    assert len(rows) == 1, rows
    return rows[0].__dict__


def billed(plan: dict[str, Any]) -> str:
    """Return the fake CLI's prompt that prints this usage plan (see tests/fake_claude.py)."""
    return "billed " + json.dumps(plan)


def assistant(message_id: str, model: str, inp: int, out: int) -> dict[str, Any]:
    """An assistant message as the CLI prints it: id and model first, usage last."""
    return {"id": message_id, "model": model, "usage": {"input_tokens": inp, "output_tokens": out}}


def result(cost: float, **models: tuple[int, int, float]) -> dict[str, Any]:
    """A result line's figures: total_cost_usd and modelUsage (model: input, output, cost)."""
    return {
        "subtype": "success",
        "is_error": False,
        "result": "ok",
        "total_cost_usd": cost,
        "modelUsage": {
            name.replace("_", "-"): {"inputTokens": i, "outputTokens": o, "costUSD": c}
            for name, (i, o, c) in models.items()
        },
    }


async def usage_of(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    """Return GET /usage's answer."""
    response = await client.get("/usage", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def by_group(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return GET /usage's groups by their name."""
    return {group["group"]: group for group in answer["groups"]}


class TestAttribution:
    def test_sums_by_key_and_day_are_the_runs_costs(self) -> None:
        """A run of two models adds its whole total_cost_usd once, spread over its models' rows."""
        usage = RunUsage(
            models={
                HAIKU: ModelUsage(1, 1, cost_usd=0.01),
                SONNET: ModelUsage(900, 90, cost_usd=0.5),
            },
            cost_usd=0.6,
        )
        rows = rollups_of(
            status="completed", key_id=None, created_at=NOW, started_at=NOW, ended_at=NOW,
            usage=usage,
        )  # fmt: skip
        by_model = {row.model: row.counts for row in rows}
        assert sum(counts[4] for counts in by_model.values()) == pytest.approx(0.6)
        assert by_model[SONNET][:2] == (1, 1)  # the run and its status: its main model's row
        assert by_model[HAIKU][:4] == (0, 0, 0, 0)
        assert (by_model[HAIKU][6], by_model[SONNET][6]) == (1, 900)
        assert {row.hour_us for row in rows} == {hour_of(NOW)}

    def test_a_run_without_models_counts_under_no_model(self) -> None:
        """A run that asked no model is counted under the model '' with no cost known."""
        (row,) = rollups_of(
            status="failed", key_id="k", created_at=NOW, started_at=None, ended_at=None, usage=None
        )
        assert (row.model, row.key_id, row.counts[:6], row.counts[10]) == (
            "", "k", (1, 0, 1, 0, 0.0, 1), 0,
        )  # fmt: skip


class TestCounting:
    @pytest.mark.parametrize("kind", ["sqlite", "memory"])
    async def test_a_run_saved_again_is_counted_once(self, tmp_path: Path, kind: str) -> None:
        """An ended run saved again (recovery, a later save) adds nothing to its usage."""
        store: Store
        async with opened(tmp_path) as sqlite:
            store = sqlite if kind == "sqlite" else InMemoryStore()
            store.save_run(ended("r1", status="running", ended_at=None))
            store.save_run(ended("r1"))
            await store.flush()
            store.save_run(ended("r1", last_event_id=9))
            store.save_run(ended("r2", status="cancelled", run_usage=None))
            found = await totals(store)
        assert (found["runs"], found["completed"], found["cancelled"]) == (2, 1, 1)
        assert found["cost_usd"] == pytest.approx(0.25)
        assert found["cost_unknown_runs"] == 1
        assert (found["input_tokens"], found["wall_ms"]) == (100, 4000)

    async def test_counted_once_across_a_restart(self, tmp_path: Path) -> None:
        """A run counted before a restart is not counted again when saved after it."""
        async with opened(tmp_path) as store:
            store.save_run(ended("r1"))
        async with opened(tmp_path) as store:
            store.save_run(ended("r1"))
            found = await totals(store)
        assert found["runs"] == 1

    async def test_a_lost_run_is_counted_once_with_what_its_record_holds(
        self, tmp_path: Path, fake_environ: dict[str, str]
    ) -> None:
        """A run a crash left live is counted once, as lost, when the next gateway marks it."""
        data = tmp_path / "data"
        tokens = RunUsage(models={SONNET: ModelUsage(7, 3)}, cost_usd=None)
        async with opened(data) as store:
            store.save_run(
                ended("3f0e8a4c-0000-4000-8000-000000000001", "running", run_usage=tokens)
            )
        for _ in range(2):  # the first start marks it lost; the second finds nothing to do
            async with served(make_settings(data_dir=data), fake_environ) as gw:
                groups = (await usage_of(gw.client, group_by="model"))["groups"]
        assert [(g["group"], g["runs"], g["failed"], g["input_tokens"]) for g in groups] == [
            (SONNET, 1, 1, 7)
        ]
        assert groups[0]["cost_unknown_runs"] == 1

    async def test_usage_outlives_the_pruning_of_its_runs(self, tmp_path: Path) -> None:
        """Runs deleted past RETENTION_DAYS keep their usage."""
        async with opened(tmp_path) as store:
            store.save_run(ended("r1"))
        later = NOW + timedelta(days=30)
        async with opened(tmp_path, retention_days=1, now=lambda: later) as store:
            assert await store.get_run("r1") is None
            found = await totals(store)
        assert (found["runs"], found["cost_usd"]) == (1, 0.25)

    async def test_key_groups_are_named_and_filtered(self, tmp_path: Path) -> None:
        """group_by=key names a key from api_keys, the admin as admin; key_id keeps one key's."""
        async with opened(tmp_path) as store:
            conn = sqlite3.connect(tmp_path / "cc2api.db")
            with conn:
                conn.execute(
                    "INSERT INTO api_keys (key_id, name, token_sha256, created_us, updated_us) "
                    "VALUES ('k1', 'ci', x'00', 0, 0)"
                )
            conn.close()
            store.save_run(ended("r1", api_key_id="k1"))
            store.save_run(ended("r2"))
            store.save_run(ended("r3"))
            await store.flush()
            rows = await store.usage(UsageQuery(WINDOW.since, WINDOW.until, "key"))
            assert [(row.group, row.key_id, row.runs) for row in rows] == [
                ("admin", "", 2),
                ("ci", "k1", 1),
            ]
            only = await store.usage(UsageQuery(WINDOW.since, WINDOW.until, "day", "k1"))
            assert [row.runs for row in only] == [1]
            assert await store.spent(NOW - timedelta(hours=1)) == {
                "": pytest.approx(0.5),
                "k1": pytest.approx(0.25),
            }
            assert await store.spent(NOW + timedelta(hours=1)) == {}


class TestRoute:
    @pytest.mark.parametrize("kind", ["sqlite", "memory"])
    async def test_completed_failed_and_cancelled_runs(
        self, fake_environ: dict[str, str], workdir: Path, kind: str
    ) -> None:
        """GET /usage sums a completed, a failed and a cancelled run by day, model and key."""
        done = billed(
            {
                "assistant": [assistant("m1", SONNET, 10, 2), assistant("m2", HAIKU, 1, 1)],
                "result": result(0.5, **{SONNET: (100, 20, 0.4), HAIKU: (3, 1, 0.1)}),
            }
        )
        crashed = billed({"assistant": [assistant("m3", SONNET, 5, 5)], "exit": 3})
        hung = billed({"assistant": [assistant("m4", SONNET, 8, 1)], "hang": True})
        async with served(make_settings(store=kind), fake_environ) as gw:
            for prompt in (done, crashed):
                await post_chat(gw.client, chat_body(prompt, workdir))
            async with gw.client.stream("POST", "/chat", json=chat_body(hung, workdir)) as r:
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == "message" and event.json().get("type") == "assistant":
                            break
                assert (await gw.client.delete(f"/chat/{r.headers['x-process-id']}")).is_success
            day = await usage_of(gw.client)
            models = by_group(await usage_of(gw.client, group_by="model"))
            keys = by_group(await usage_of(gw.client, group_by="key"))
        (today,) = day["groups"]
        assert day["group_by"] == "day"
        assert today["group"] == datetime.now(UTC).date().isoformat()
        assert (today["runs"], today["completed"], today["failed"], today["cancelled"]) == (
            3, 1, 1, 1,
        )  # fmt: skip
        assert today["cost_usd"] == pytest.approx(0.5)
        assert today["cost_unknown_runs"] == 2
        assert (today["input_tokens"], today["output_tokens"]) == (103 + 5 + 8, 21 + 5 + 1)
        assert today["wall_seconds"] > 0
        assert models[SONNET]["runs"] == 3
        assert (models[HAIKU]["runs"], models[HAIKU]["input_tokens"]) == (0, 3)
        assert models[HAIKU]["cost_usd"] == pytest.approx(0.1)
        assert list(keys) == ["admin"]
        assert keys["admin"]["runs"] == 3

    async def test_since_and_until_bound_the_hours(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """since= and until= keep the runs that ended in the hours of that window."""
        async with served(make_settings(), fake_environ) as gw:
            await post_chat(gw.client, chat_body(billed({"result": result(0.1)}), workdir))
            now = datetime.now(UTC)
            hour = now.replace(minute=0, second=0, microsecond=0)
            inside = await usage_of(gw.client, since=now.isoformat())  # its hour counts
            before = await usage_of(gw.client, until=hour.isoformat())
            after = await usage_of(
                gw.client,
                since=(hour + timedelta(hours=1)).isoformat(),
                until=(hour + timedelta(hours=2)).isoformat(),
            )
            admin_only = await usage_of(gw.client, key="admin")
            nobody = await gw.client.get("/usage", params={"key": "no-such-key"})
        assert [g["runs"] for g in inside["groups"]] == [1]
        assert before["groups"] == after["groups"] == []
        assert (nobody.status_code, nobody.json()["code"]) == (404, "key_not_found")
        assert [g["runs"] for g in admin_only["groups"]] == [1]
        since = datetime.fromisoformat(admin_only["since"])
        assert timedelta(days=29) < datetime.fromisoformat(admin_only["until"]) - since

    @pytest.mark.parametrize(
        ("params", "named"),
        [
            ({"group_by": "week"}, "group_by"),
            ({"since": "yesterday"}, "since"),
            ({"until": "2026-01-01T00:00:00"}, "until"),
            ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
            ({"limit": "3"}, "limit"),
            ({"key": ""}, "key"),
        ],
    )
    async def test_bad_parameters_are_422(
        self, fake_environ: dict[str, str], params: dict[str, str], named: str
    ) -> None:
        """An unknown, repeated or malformed parameter is 422 validation_error naming it."""
        async with served(make_settings(store="memory"), fake_environ) as gw:
            answer = await gw.client.get("/usage", params=params)
            twice = await gw.client.get("/usage", params=[("group_by", "day")] * 2)
        assert answer.status_code == twice.status_code == 422
        assert answer.json()["code"] == "validation_error"
        assert answer.json()["detail"].startswith(f"{named}:")
        assert twice.json()["detail"].startswith("group_by:")


class TestIsolation:
    async def test_a_key_sees_its_own_usage_and_the_admin_everyones(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key gets its own usage (naming another key is 404); the admin all, or one key's."""
        async with served(make_settings(), fake_environ) as gw:
            tokens = {name: await make_key(gw.client, name) for name in ("ci", "bot")}
            async with as_key(gw.url, tokens["ci"]) as ci, as_key(gw.url, tokens["bot"]) as bot:
                await post_chat(ci, chat_body("spend 0.5", workdir))
                for _ in range(2):
                    await post_chat(bot, chat_body("spend 0.25", workdir))
                await post_chat(gw.client, chat_body("echo hi", workdir))
                everyone = by_group(await usage_of(gw.client, group_by="key"))
                only_bot = by_group(await usage_of(gw.client, group_by="key", key="bot"))
                admins = by_group(await usage_of(gw.client, group_by="key", key="admin"))
                own = by_group(await usage_of(ci, group_by="key"))
                named = by_group(await usage_of(ci, group_by="key", key="ci"))
                other = await ci.get("/usage", params={"key": "bot"})
                nobody = await gw.client.get("/usage", params={"key": "nobody"})
        assert {name: g["runs"] for name, g in everyone.items()} == {"admin": 1, "bot": 2, "ci": 1}
        assert everyone["bot"]["cost_usd"] == pytest.approx(0.5)
        assert {name: g["runs"] for name, g in only_bot.items()} == {"bot": 2}
        assert {name: g["runs"] for name, g in admins.items()} == {"admin": 1}
        assert {name: g["runs"] for name, g in own.items()} == {"ci": 1}
        assert named == own
        assert (other.status_code, other.json()["code"]) == (404, "key_not_found")
        assert (nobody.status_code, nobody.json()["code"]) == (404, "key_not_found")


class TestRealCli:
    async def test_a_run_has_its_tokens_and_cost(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A real CLI run's tokens and total_cost_usd (priced from the model's usage) count."""
        async with served(make_settings(claude_path=real_claude), real_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("hello", workdir))
            lines = [event.json() for event in events if event.event == "message"]
            (today,) = (await usage_of(gw.client))["groups"]
        cost = lines[-1]["total_cost_usd"]
        assert cost == pytest.approx(BIG_COST)
        assert (today["runs"], today["completed"], today["cost_unknown_runs"]) == (1, 1, 0)
        assert today["cost_usd"] == pytest.approx(cost)
        assert (today["input_tokens"], today["output_tokens"]) == (2_000_000, 500_000)

    async def test_a_run_cancelled_before_its_result_has_tokens_and_no_cost(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A real CLI run cancelled in a tool call counts its assistant tokens, cost unknown."""
        async with served(make_settings(claude_path=real_claude), real_environ) as gw:
            body = chat_body("RUN_BASH: sleep 600", workdir)
            async with gw.client.stream("POST", "/chat", json=body) as r:
                process_id = r.headers["x-process-id"]
                await wait_until(lambda: len(processes_with_marker(process_id)) > 1, 60)
                await wait_until(lambda: any(
                    "sleep" in " ".join(_cmdline(pid)) for pid in processes_with_marker(process_id)
                ), 60)  # fmt: skip
                assert (await gw.client.delete(f"/chat/{process_id}")).is_success
            (today,) = (await usage_of(gw.client))["groups"]
        assert (today["runs"], today["cancelled"], today["cost_unknown_runs"]) == (1, 1, 1)
        assert today["cost_usd"] == 0
        assert today["input_tokens"] == 2_000_000


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


class TestTable:
    def test_groups_print_as_aligned_columns_with_a_total(self) -> None:
        """format_usage prints a header, a line per group and a total, columns aligned."""
        group = UsageGroup(
            group="2026-12-01", runs=3, completed=2, failed=1, cancelled=0, cost_usd=1.5,
            cost_unknown_runs=0, input_tokens=1200, output_tokens=30, cache_read_tokens=0,
            cache_creation_tokens=0, wall_seconds=12.5,
        )  # fmt: skip
        other = group.model_copy(update={"group": "2026-12-02", "runs": 10, "input_tokens": 7})
        text = format_usage(Usage(since=NOW, until=NOW, group_by="day", groups=[group, other]))
        lines = text.splitlines()
        assert lines[0].startswith("usage by day")
        assert lines[1].split()[:3] == ["group", "runs", "ok"]
        assert lines[2].split()[:2] == ["2026-12-01", "3"]
        assert lines[-1].split()[:2] == ["total", "13"]
        assert lines[-1].split()[7] == "1207"
        ends = {len(line) for line in (lines[1], lines[2], lines[3], lines[-1])}
        assert len(ends) == 1  # right-aligned figures end in the same column

    def test_no_groups_say_so(self) -> None:
        """format_usage says so when no run ended in the window."""
        text = format_usage(Usage(since=NOW, until=NOW, group_by="key", groups=[]))
        assert "no runs ended" in text
