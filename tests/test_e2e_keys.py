"""API keys with the real CLI against the scripted model: sessions stay with their key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import chat_body, make_settings, post_chat, served
from .scripted_api import ScriptedAPI
from .test_keys import as_key, make_key
from .test_usage import BIG_COST, BIG_USAGE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(name="scripted_api")
def _scripted_api() -> Iterator[ScriptedAPI]:
    """The scripted model, reporting usage that costs BIG_COST an answer."""
    with ScriptedAPI(usage=BIG_USAGE) as api:
        yield api


class TestSessions:
    async def test_another_keys_session_does_not_exist(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """Bob can neither list, read, delete, resume nor take over Alice's session; she can."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        async with served(settings, real_environ) as gw:
            alice = await make_key(gw.client, "alice")
            bob = await make_key(gw.client, "bob")
            async with as_key(gw.url, alice) as a, as_key(gw.url, bob) as b:
                response, events = await post_chat(a, chat_body("hello there", workdir))
                assert response.status_code == 200, response.text
                session = events[-1].json()["session_id"]
                bob_list = (await b.get("/sessions")).json()["sessions"]
                answers = [
                    await b.get(f"/sessions/{session}"),
                    (await post_chat(b, chat_body("again", workdir, session_id=session)))[0],
                    await b.delete(f"/sessions/{session}"),
                ]
                taken, _ = await post_chat(b, chat_body("mine", workdir, new_session_id=session))
                continued, bob_events = await post_chat(
                    b, chat_body("go on", workdir, continue_conversation=True)
                )
                bob_page = (await b.get("/sessions", params={"limit": 1})).json()
                alice_list = (await a.get("/sessions")).json()["sessions"]
                read = await a.get(f"/sessions/{session}")
                resumed, resumed_events = await post_chat(
                    a, chat_body("and again", workdir, session_id=session)
                )
                admin_list = (await gw.client.get("/sessions")).json()["sessions"]
        assert session not in [s["session_id"] for s in bob_list]
        assert [(r.status_code, r.json()["code"]) for r in answers] == [
            (404, "unknown_session")
        ] * 3
        assert (taken.status_code, taken.json()["code"]) == (409, "session_exists")
        # Bob's --continue is his own newest session in the folder: none, so a new one.
        assert continued.status_code == 200
        assert bob_events[-1].json()["session_id"] != session
        assert [s["session_id"] for s in alice_list] == [session]
        # Bob's one page is his one session: nothing, a cursor neither, of Alice's.
        own = bob_events[-1].json()["session_id"]
        assert [s["session_id"] for s in bob_page["sessions"]] == [own]
        assert bob_page["next_cursor"] is None
        assert read.status_code == 200
        assert resumed.status_code == 200
        assert resumed_events[-1].json()["status"] == "completed"
        assert {s["session_id"] for s in admin_list} >= {session}

    async def test_continue_picks_the_keys_own_newest_session(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key's continue_conversation resumes its own newest session in the folder."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        async with served(settings, real_environ) as gw:
            alice = await make_key(gw.client, "alice")
            bob = await make_key(gw.client, "bob")
            async with as_key(gw.url, alice) as a, as_key(gw.url, bob) as b:
                first: Any = (await post_chat(a, chat_body("first", workdir)))[1][-1].json()
                await post_chat(b, chat_body("bob's", workdir))
                _, events = await post_chat(
                    a, chat_body("second", workdir, continue_conversation=True)
                )
        assert events[-1].json()["session_id"] == first["session_id"]


class TestBudget:
    async def test_the_real_clis_cost_exhausts_a_budget(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """The CLI's total_cost_usd counts against the key's budget, caps the next run, then 429."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        async with served(settings, real_environ) as gw:
            token = await make_key(gw.client, "spender", budget_usd_day=30)
            async with as_key(gw.url, token) as client:
                first, events = await post_chat(client, chat_body("hello", workdir))
                second, _ = await post_chat(client, chat_body("again", workdir))
                capped = (await client.get(f"/runs/{second.headers['X-Process-ID']}")).json()
                refused, _ = await post_chat(client, chat_body("more", workdir))
        result = next(e.json() for e in events if e.json().get("type") == "result")
        assert result["total_cost_usd"] == pytest.approx(BIG_COST)
        assert first.status_code == second.status_code == 200
        assert capped["options"]["max_budget_usd"] == pytest.approx(30 - BIG_COST)
        assert refused.status_code == 429
        assert refused.json()["code"] == "budget_exhausted"
        assert refused.json()["resets_at"].endswith("T00:00:00Z")


class TestConfinement:
    async def test_a_keys_tools_cannot_read_other_keys_sessions_or_the_store(
        self, real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """A key's run, confined by default, cannot read another key's transcript or the store."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        bobs = tmp_path / "bob"
        bobs.mkdir()
        async with served(settings, real_environ) as gw:
            alice = await make_key(gw.client, "alice")
            bob = await make_key(gw.client, "bob")
            async with as_key(gw.url, alice) as a, as_key(gw.url, bob) as b:
                _, events = await post_chat(a, chat_body("PELICAN-7731 is the word", workdir))
                session = events[-1].json()["session_id"]
                home = Path(real_environ["HOME"])
                (transcript,) = (home / ".claude" / "projects").glob(f"*/{session}.jsonl")
                db = settings.data_dir / "cc2api.db"
                _, stolen = await post_chat(
                    b, chat_body(f"RUN_BASH: cat {transcript} {db} | head -c 100000", bobs)
                )
        outputs = " ".join(json.dumps(e.json()) for e in stolen if e.event == "message")
        assert "PELICAN-7731" in transcript.read_text()
        assert stolen[-1].event == "done"
        assert "PELICAN-7731" not in outputs
        assert "SQLite format" not in outputs
