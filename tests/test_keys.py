"""API keys against a real server and the fake CLI: tokens, auth, isolation, policy, limits."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc2api import confinement
from cc2api.app import gateway_of

from .helpers import (
    Served,
    alive,
    chat_body,
    make_settings,
    post_chat,
    served,
    wait_until,
)
from .test_steering import start_and_hang_up

pytestmark = pytest.mark.timeout(90)


async def make_key(client: httpx.AsyncClient, name: str, **policy: Any) -> str:
    """Create a key through the admin API and return its token."""
    response = await client.post("/admin/keys", json={"name": name, "policy": policy})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@asynccontextmanager
async def as_key(url: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """Yield a client that sends ``token`` as a Bearer token."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        yield client


@asynccontextmanager
async def two_keys(
    environ: dict[str, str], **settings: Any
) -> AsyncIterator[tuple[Served, httpx.AsyncClient, httpx.AsyncClient]]:
    """Serve a gateway with keys ``alice`` and ``bob``; yield it and a client of each."""
    async with served(make_settings(**settings), environ) as gw:
        alice, bob = await make_key(gw.client, "alice"), await make_key(gw.client, "bob")
        async with as_key(gw.url, alice) as a, as_key(gw.url, bob) as b:
            yield gw, a, b


async def start_detached(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """Start a detached run and hang up at its headers; return the answer (its id in them)."""
    async with client.stream("POST", "/chat", json=body) as response:
        await response.aread() if response.status_code != 200 else None
        return response


def process_ids(answer: dict[str, Any], field: str) -> list[str]:
    """Return the process ids of a listing."""
    return [entry["process_id"] for entry in answer[field]]


class TestTokens:
    async def test_token_is_shown_once_and_only_its_hash_is_stored(
        self, fake_environ: dict[str, str]
    ) -> None:
        """A new key's token starts with cc2_, holds 256 random bits, and is stored only hashed."""
        settings = make_settings()
        async with served(settings, fake_environ) as gw:
            token = await make_key(gw.client, "ci")
            shown = (await gw.client.get("/admin/keys/ci")).json()
        assert token.startswith("cc2_")
        assert len(token) >= 4 + 43
        assert "token" not in shown
        db = sqlite3.connect(settings.data_dir / "cc2api.db")
        dump = "\n".join(db.iterdump())
        assert token not in dump
        assert token[4:] not in dump

    async def test_bearer_and_basic_name_token_are_both_accepted(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key works as a Bearer token and as a Basic password under its own name only."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "bot")
            async with as_key(gw.url, token) as client:
                bearer = await client.get("/processes")
            async with httpx.AsyncClient(base_url=gw.url, auth=("bot", token), timeout=30) as named:
                basic = await named.get("/runs")
                response, events = await post_chat(named, chat_body("echo hi", workdir))
            async with httpx.AsyncClient(base_url=gw.url, auth=("other", token)) as wrong_name:
                wrong = await wrong_name.get("/runs")
        assert bearer.status_code == 200
        assert basic.status_code == 200
        assert response.status_code == 200
        assert events[-1].event == "done"
        assert wrong.status_code == 401

    async def test_revoked_key_is_refused_at_once(self, fake_environ: dict[str, str]) -> None:
        """The request after a revocation is refused with 401, with no restart."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "gone")
            async with as_key(gw.url, token) as client:
                before = await client.get("/processes")
                revoked = await gw.client.delete("/admin/keys/gone")
                after = await client.get("/processes")
        assert before.status_code == 200
        assert revoked.status_code == 200
        assert revoked.json()["key"]["revoked_at"] is not None
        assert after.status_code == 401

    async def test_wrong_tokens_count_towards_the_lockout(
        self, fake_environ: dict[str, str]
    ) -> None:
        """Wrong Bearer tokens lock the address out as wrong passwords do."""
        settings = make_settings(auth_max_failures=3)
        async with served(settings, fake_environ) as gw:
            token = await make_key(gw.client, "good")
            for _ in range(3):
                async with as_key(gw.url, "cc2_" + "x" * 43) as client:
                    assert (await client.get("/processes")).status_code == 401
            async with as_key(gw.url, token) as client:
                locked = await client.get("/processes")
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_failed_logins"

    async def test_a_keys_success_does_not_clear_failed_admin_logins(
        self, fake_environ: dict[str, str]
    ) -> None:
        """Guesses at the admin password between a key's requests still lock the address out."""
        settings = make_settings(auth_max_failures=3)
        async with served(settings, fake_environ) as gw:
            token = await make_key(gw.client, "guesser")
            async with (
                as_key(gw.url, token) as key,
                httpx.AsyncClient(base_url=gw.url, auth=("admin", "guess")) as guesser,
            ):
                for _ in range(3):
                    assert (await guesser.get("/processes")).status_code == 401
                    assert (await key.get("/processes")).status_code in (200, 429)
                locked = await key.get("/processes")
        assert locked.status_code == 429

    async def test_keys_survive_a_restart(self, fake_environ: dict[str, str]) -> None:
        """A key made before a restart works after it, from the SQLite store."""
        settings = make_settings()
        async with served(settings, fake_environ) as gw:
            token = await make_key(gw.client, "durable")
        async with served(settings, fake_environ) as gw, as_key(gw.url, token) as client:
            assert (await client.get("/processes")).status_code == 200

    async def test_keys_are_the_admins_to_manage(self, fake_environ: dict[str, str]) -> None:
        """A key gets 403 admin_only on the admin API."""
        async with two_keys(fake_environ) as (_, alice, _bob):
            listed = await alice.get("/admin/keys")
            made = await alice.post("/admin/keys", json={"name": "mine"})
        assert (listed.status_code, listed.json()["code"]) == (403, "admin_only")
        assert made.status_code == 403

    async def test_names_are_unique_and_checked(self, fake_environ: dict[str, str]) -> None:
        """A taken name is 409 key_exists; a name with a colon or slash is 422."""
        async with served(make_settings(), fake_environ) as gw:
            await make_key(gw.client, "one")
            again = await gw.client.post("/admin/keys", json={"name": "one"})
            colon = await gw.client.post("/admin/keys", json={"name": "a:b"})
            slash = await gw.client.post("/admin/keys", json={"name": "a/b"})
            unknown = await gw.client.get("/admin/keys/nobody")
        assert (again.status_code, again.json()["code"]) == (409, "key_exists")
        assert colon.status_code == slash.status_code == 422
        assert (unknown.status_code, unknown.json()["code"]) == (404, "key_not_found")


class TestIsolation:
    async def test_another_keys_run_is_404_on_every_route(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Bob gets the same 404 as for no run on every route of Alice's run."""
        async with two_keys(fake_environ) as (gw, alice, bob):
            body = chat_body("ask echo hi", workdir, detach=True, approval="http")
            process_id, _ = await start_and_hang_up(
                type(gw)(gw.url, alice, gw.app), body, '"approval_id"'
            )
            approvals = (await alice.get(f"/chat/{process_id}/approvals")).json()
            approval_id = approvals["approvals"][0]["approval_id"]
            answers = [
                await bob.get(f"/chat/{process_id}/events"),
                await bob.get(f"/chat/{process_id}/approvals"),
                await bob.post(
                    f"/chat/{process_id}/approvals/{approval_id}", json={"behavior": "allow"}
                ),
                await bob.post(f"/chat/{process_id}/messages", json={"prompt": "more"}),
                await bob.post(f"/chat/{process_id}/interrupt"),
                await bob.get(f"/runs/{process_id}"),
                await bob.delete(f"/chat/{process_id}"),
            ]
            bob_lists = process_ids((await bob.get("/processes")).json(), "processes")
            bob_runs = process_ids((await bob.get("/runs")).json(), "runs")
            alice_lists = process_ids((await alice.get("/processes")).json(), "processes")
            admin_lists = process_ids((await gw.client.get("/processes")).json(), "processes")
            filtered = await gw.client.get("/runs", params={"key": "alice"})
            still = await alice.get(f"/chat/{process_id}/approvals")
            await alice.delete(f"/chat/{process_id}")
        assert [(a.status_code, a.json()["code"]) for a in answers] == [
            (404, "process_not_found")
        ] * len(answers)
        assert process_id not in bob_lists
        assert process_id not in bob_runs
        assert process_id in alice_lists
        assert process_id in admin_lists
        assert process_ids(filtered.json(), "runs") == [process_id]
        assert still.json()["count"] == 1  # bob's answer did not reach it

    async def test_a_key_cannot_filter_by_another_key(self, fake_environ: dict[str, str]) -> None:
        """key=NAME naming another key is 404 key_not_found for a key, as for no such key."""
        async with two_keys(fake_environ) as (_, alice, _bob):
            other = await alice.get("/runs", params={"key": "bob"})
            nobody = await alice.get("/runs", params={"key": "nobody"})
            itself = await alice.get("/processes", params={"key": "alice"})
        assert (other.status_code, other.json()["code"]) == (404, "key_not_found")
        assert other.json() == {**nobody.json(), "detail": other.json()["detail"]}
        assert itself.status_code == 200

    async def test_ended_runs_stay_private(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A finished run's record and events are 404 for another key, from the store too."""
        async with two_keys(fake_environ) as (gw, alice, bob):
            response, _ = await post_chat(alice, chat_body("echo hi", workdir))
            process_id = response.headers["X-Process-ID"]
            await gateway_of(gw.app).registry.store.flush()
            theirs = await bob.get(f"/runs/{process_id}")
            events = await bob.get(f"/chat/{process_id}/events")
            mine = await alice.get(f"/runs/{process_id}")
        assert theirs.status_code == events.status_code == 404
        assert mine.status_code == 200


class TestPolicy:
    async def test_roots_narrow_the_operators(
        self, fake_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """A key with cwd_roots is refused elsewhere with cwd_forbidden, naming its policy."""
        inside, outside = tmp_path / "in", tmp_path / "out"
        inside.mkdir()
        outside.mkdir()
        async with served(make_settings(confine_runs="off"), fake_environ) as gw:
            token = await make_key(gw.client, "boxed", cwd_roots=[str(inside)])
            async with as_key(gw.url, token) as client:
                refused, _ = await post_chat(client, chat_body("echo hi", outside))
                allowed, events = await post_chat(client, chat_body("echo hi", inside))
            admin, _ = await post_chat(gw.client, chat_body("echo hi", outside))
        assert refused.status_code == 403
        assert refused.json()["code"] == "cwd_forbidden"
        assert "key boxed's policy" in refused.json()["detail"]
        assert allowed.status_code == 200
        assert events[-1].event == "done"
        assert admin.status_code == 200

    async def test_a_root_outside_the_operators_is_refused(
        self, fake_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """A key cannot be given a root outside ALLOWED_CWD_ROOTS (422)."""
        root = tmp_path / "root"
        root.mkdir()
        settings = make_settings(allowed_cwd_roots=[root], confine_runs="off")
        async with served(settings, fake_environ) as gw:
            response = await gw.client.post(
                "/admin/keys", json={"name": "wide", "policy": {"cwd_roots": [str(tmp_path)]}}
            )
        assert response.status_code == 422
        assert "ALLOWED_CWD_ROOTS" in response.json()["detail"]

    async def test_modes_tools_and_timeout_narrow(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key's modes, refused tools and timeout apply on top of the operator's."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(
                gw.client,
                "narrow",
                permission_modes=["default"],
                disallowed_tools=["WebFetch"],
                timeout_seconds=30,
            )
            async with as_key(gw.url, token) as client:
                mode, _ = await post_chat(
                    client, chat_body("echo", workdir, permission_mode="plan")
                )
                full, _ = await post_chat(client, chat_body("echo", workdir))
                fields = {"permission_mode": "default"}
                slow, _ = await post_chat(
                    client, chat_body("echo", workdir, timeout_seconds=60, **fields)
                )
                _, events = await post_chat(client, chat_body("argv", workdir, **fields))
        assert (mode.status_code, mode.json()["code"]) == (403, "permission_mode_forbidden")
        assert full.status_code == 403  # full access is bypassPermissions, not allowed here
        assert slow.status_code == 422
        argv = next(e.json()["argv"] for e in events if e.event == "message" and "argv" in e.json())
        assert "--disallowedTools=WebFetch" in argv

    async def test_forced_restriction_and_untrusted_config(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key forced restricted never gets full access; one without caller config is refused."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "tight", force_restricted=True)
            config = await make_key(gw.client, "noconf", trust_caller_config=False)
            async with as_key(gw.url, token) as client:
                _, events = await post_chat(client, chat_body("argv", workdir))
            async with as_key(gw.url, config) as client:
                refused, _ = await post_chat(client, chat_body("echo", workdir, settings="{}"))
        argv = next(e.json()["argv"] for e in events if e.event == "message" and "argv" in e.json())
        assert "--dangerously-skip-permissions" not in argv
        assert (refused.status_code, refused.json()["code"]) == (403, "caller_config_forbidden")

    async def test_a_policy_change_applies_to_the_next_request(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """PATCH changes only the named fields, and the next request is held to them."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "live", max_runs=3)
            changed = await gw.client.patch(
                "/admin/keys/live", json={"policy": {"permission_modes": ["default"]}}
            )
            async with as_key(gw.url, token) as client:
                refused, _ = await post_chat(
                    client, chat_body("echo", workdir, permission_mode="plan")
                )
            unset = await gw.client.patch(
                "/admin/keys/live", json={"policy": {"permission_modes": None}}
            )
            bad = await gw.client.patch("/admin/keys/live", json={"policy": {"colour": "red"}})
        assert changed.json()["policy"]["max_runs"] == 3
        assert refused.status_code == 403
        assert unset.json()["policy"]["permission_modes"] is None
        assert bad.status_code == 422
        assert "colour" in bad.json()["detail"]


class TestLimits:
    async def test_max_runs_and_max_queued_are_per_key(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key at max_runs and max_queued gets queue_full, while another key still starts."""
        async with served(make_settings(), fake_environ) as gw:
            one = await make_key(gw.client, "one", max_runs=1, max_queued=1)
            other = await make_key(gw.client, "other")
            async with as_key(gw.url, one) as client, as_key(gw.url, other) as free:
                first = await start_detached(client, chat_body("silent", workdir, detach=True))
                second = await start_detached(client, chat_body("silent", workdir, detach=True))
                third = await start_detached(client, chat_body("silent", workdir, detach=True))
                listed = (await client.get("/processes")).json()["processes"]
                fine, events = await post_chat(free, chat_body("echo hi", workdir))
                for answer in (first, second):
                    await client.delete(f"/chat/{answer.headers['X-Process-ID']}")
        assert (third.status_code, third.json()["code"]) == (429, "queue_full")
        assert "key one" in third.json()["detail"]
        assert sorted(run["status"] for run in listed) == ["queued", "running"]
        assert fine.status_code == 200
        assert events[-1].event == "done"

    async def test_runs_per_minute(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """The run past runs_per_minute gets 429 rate_limited with Retry-After."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "paced", runs_per_minute=2)
            async with as_key(gw.url, token) as client:
                answers = [
                    (await post_chat(client, chat_body("echo hi", workdir)))[0] for _ in range(3)
                ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["code"] == "rate_limited"
        assert 1 <= int(answers[2].headers["Retry-After"]) <= 60

    async def test_a_refused_run_does_not_use_up_the_rate(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """A request refused for its cwd does not count as one of the minute's runs."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "paced", runs_per_minute=1)
            async with as_key(gw.url, token) as client:
                bad, _ = await post_chat(client, chat_body("echo", tmp_path / "missing"))
                good, _ = await post_chat(client, chat_body("echo hi", workdir))
        assert bad.status_code == 400
        assert good.status_code == 200


class TestRevoke:
    async def test_revoke_leaves_runs_going(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Revoking without cancel_runs leaves the key's live run running."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "leaving")
            async with as_key(gw.url, token) as client:
                started = await start_detached(client, chat_body("silent", workdir, detach=True))
            process_id = started.headers["X-Process-ID"]
            revoked = await gw.client.delete("/admin/keys/leaving")
            run = gateway_of(gw.app).registry.get(process_id)
            live = run.live
            await gw.client.delete(f"/chat/{process_id}")
        assert revoked.json()["cancelled"] == []
        assert live

    async def test_revoke_with_cancel_runs_ends_them(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Revoking with cancel_runs answers once the key's runs are cancelled and gone."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "leaving")
            async with as_key(gw.url, token) as client:
                started = await start_detached(client, chat_body("silent", workdir, detach=True))
            process_id = started.headers["X-Process-ID"]
            registry = gateway_of(gw.app).registry
            await wait_until(lambda: registry.get(process_id).pid is not None, 10)
            pid = registry.get(process_id).pid
            revoked = await gw.client.delete("/admin/keys/leaving", params={"cancel_runs": "true"})
            status = (await gw.client.get(f"/runs/{process_id}")).json()["status"]
        assert revoked.json()["cancelled"] == [process_id]
        assert status == "cancelled"
        assert pid is not None
        assert not alive(pid)


class TestBudgets:
    async def test_each_run_is_capped_at_what_remains(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key's run gets --max-budget-usd at what its budget has left, or its own if smaller."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "thrifty", budget_usd_day=5, budget_usd_month=50)
            async with as_key(gw.url, token) as client:
                spent, _ = await post_chat(client, chat_body("spend 1.5", workdir))
                _, left = await post_chat(client, chat_body("argv", workdir))
                _, own = await post_chat(client, chat_body("argv", workdir, max_budget_usd=0.25))
            _, admin = await post_chat(gw.client, chat_body("argv", workdir))

        def budget(events: list[Any]) -> str | None:
            argv = next(e.json()["argv"] for e in events if "argv" in e.json())
            found = [a for a in argv if a.startswith("--max-budget-usd")]
            return found[0] if found else None

        assert spent.status_code == 200
        assert budget(left) == "--max-budget-usd=3.5"
        assert budget(own) == "--max-budget-usd=0.25"
        assert budget(admin) is None

    async def test_a_spent_budget_refuses_runs_until_it_resets(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Past its daily budget a key gets 429 budget_exhausted with resets_at; others go on."""
        settings = make_settings()
        async with served(settings, fake_environ) as gw:
            token = await make_key(gw.client, "spender", budget_usd_day=1)
            other = await make_key(gw.client, "other", budget_usd_day=1)
            async with as_key(gw.url, token) as client, as_key(gw.url, other) as fine:
                await post_chat(client, chat_body("spend 0.6", workdir))
                second, _ = await post_chat(client, chat_body("spend 0.6", workdir))
                refused, _ = await post_chat(client, chat_body("echo hi", workdir))
                allowed, _ = await post_chat(fine, chat_body("echo hi", workdir))
        # Restarted, the gateway reads the spend back from the store.
        async with served(settings, fake_environ) as gw, as_key(gw.url, token) as client:
            again, _ = await post_chat(client, chat_body("echo hi", workdir))
        assert second.status_code == 200  # 0.6 spent, 0.4 left: it may start
        assert refused.status_code == 429
        body = refused.json()
        assert body["code"] == "budget_exhausted"
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        assert body["resets_at"] == f"{tomorrow.isoformat()}T00:00:00Z"
        assert 0 < int(refused.headers["Retry-After"]) <= 86400
        assert allowed.status_code == 200
        assert again.status_code == 429


class TestWithoutLandlock:
    async def test_key_runs_fail_closed_and_the_log_says_why(
        self,
        fake_environ: dict[str, str],
        workdir: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Without Landlock a key's run gets 503 (it must be confined); the admin's still runs."""
        # A fault this machine's kernel cannot show: it has Landlock.
        monkeypatch.setattr(confinement, "available", lambda: False)
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "boxed")
            async with as_key(gw.url, token) as client:
                refused, _ = await post_chat(client, chat_body("echo hi", workdir))
            admin, events = await post_chat(gw.client, chat_body("echo hi", workdir))
        assert (refused.status_code, refused.json()["code"]) == (503, "confinement_unavailable")
        assert admin.status_code == 200
        assert events[-1].json()["status"] == "completed"
        assert "API keys' runs are confined" in caplog.text
