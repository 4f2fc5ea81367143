"""The sessions API end to end: the real CLI's transcripts, listed, read, deleted, resumed."""

from __future__ import annotations

import json
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from .helpers import (
    Served,
    chat_body,
    make_settings,
    post_chat,
    saved_session,
    served,
    sse_events,
    wait_until,
)
from .scripted_api import ScriptedAPI

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(name="settings")
def _settings(real_claude: Path) -> Any:
    return make_settings(claude_path=real_claude, store="memory", kill_grace_seconds=3.0)


async def finished_run(gw: Served, prompt: str, cwd: Path, **fields: Any) -> dict[str, Any]:
    """Run ``prompt`` to its end (detached, so the store keeps its record); return `done`."""
    response, events = await post_chat(gw.client, chat_body(prompt, cwd, detach=True, **fields))
    assert response.status_code == 200, response.text
    done: dict[str, Any] = events[-1].json()
    assert done["status"] == "completed", events
    return done


async def listed(gw: Served, **params: str) -> dict[str, dict[str, Any]]:
    """Return GET /sessions' sessions by id (one page)."""
    answer = await gw.client.get("/sessions", params=params)
    assert answer.status_code == 200, answer.text
    return {session["session_id"]: session for session in answer.json()["sessions"]}


def transcript_of(environ: dict[str, str], session_id: str) -> Path:
    """Return the one transcript of ``session_id`` in the CLI's HOME."""
    found = list((Path(environ["HOME"]) / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
    assert len(found) == 1, found
    return found[0]


class TestListAndRead:
    async def test_a_finished_run_s_session_is_listed(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """After a run, its session is listed with its folder, prompt, messages and run."""
        async with served(settings, real_environ) as gw:
            done = await finished_run(gw, "hello there", workdir)
            sessions = await listed(gw)
            elsewhere = await listed(gw, cwd=str(workdir.parent))
        session = sessions[done["session_id"]]
        assert session["cwd"] == str(workdir)
        assert session["preview"] == "hello there"
        assert session["message_count"] == 2  # the prompt and the answer
        assert session["runs"] == [done["process_id"]]
        assert session["held_by"] is None
        assert session["created_at"] <= session["last_activity"]
        assert done["session_id"] not in elsewhere

    async def test_the_transcript_is_the_cli_s_lines_in_pages(
        self, settings: Any, real_environ: dict[str, str], workdir: Path
    ) -> None:
        """A session's pages, followed to the end, hold every line of its transcript, parsed."""
        async with served(settings, real_environ) as gw:
            done = await finished_run(gw, "remember PELICAN", workdir)
            session_id = done["session_id"]
            pages: list[dict[str, Any]] = []
            params = {"limit": "2"}
            while True:
                answer = await gw.client.get(f"/sessions/{session_id}", params=params)
                assert answer.status_code == 200, answer.text
                pages.append(answer.json())
                if pages[-1]["next_cursor"] is None:
                    break
                params["cursor"] = pages[-1]["next_cursor"]
        lines = transcript_of(real_environ, session_id).read_text().splitlines()
        assert [m for page in pages for m in page["messages"]] == [json.loads(x) for x in lines]
        assert len(pages) == (len(lines) + 1) // 2
        assert pages[0]["session"]["session_id"] == session_id
        prompts = [
            m["message"]["content"]
            for page in pages
            for m in page["messages"]
            if m["type"] == "user"
        ]
        assert prompts == ["remember PELICAN"]


class TestDelete:
    async def test_delete_removes_it_and_a_resume_is_404(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """A deleted session is gone from disk and the API, and resuming it is 404 with no CLI."""
        async with served(settings, real_environ) as gw:
            done = await finished_run(gw, "hello there", workdir)
            session_id = done["session_id"]
            path = transcript_of(real_environ, session_id)
            deleted = await gw.client.delete(f"/sessions/{session_id}")
            read = await gw.client.get(f"/sessions/{session_id}")
            sessions = await listed(gw)
            asked = len(scripted_api.requests)
            resumed = await gw.client.post(
                "/chat", json=chat_body("go on", workdir, session_id=session_id)
            )
            processes = (await gw.client.get("/processes")).json()["processes"]
        assert deleted.status_code == 200
        assert deleted.json() == {"session_id": session_id, "deleted": True}
        assert not path.exists()
        assert (read.status_code, read.json()["code"]) == (404, "unknown_session")
        assert session_id not in sessions
        assert (resumed.status_code, resumed.json()["code"]) == (404, "unknown_session")
        assert "x-process-id" not in resumed.headers
        assert len(scripted_api.requests) == asked  # no CLI asked the model anything
        assert [p["process_id"] for p in processes] == [done["process_id"]]

    async def test_delete_while_a_run_holds_it_is_409(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """While a live run uses a session it is listed as held and cannot be deleted (409)."""
        async with served(settings, real_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("SLOW story", workdir)
            ) as stream:
                process_id = stream.headers["x-process-id"]
                async with aclosing(sse_events(stream)) as events:
                    async for event in events:
                        if event.event == "message" and event.json().get("subtype") == "init":
                            session_id = event.json()["session_id"]
                            break
                    # Its transcript appears as the prompt reaches the model (a few ms later).
                    projects = Path(real_environ["HOME"]) / ".claude" / "projects"
                    await wait_until(lambda: any(projects.glob(f"*/{session_id}.jsonl")), 30)
                    busy = await gw.client.delete(f"/sessions/{session_id}")
                    held = (await listed(gw))[session_id]["held_by"]
                    await gw.client.delete(f"/chat/{process_id}")
                    rest = [event async for event in events if event.event != ":"]
            deleted = await gw.client.delete(f"/sessions/{session_id}")
        assert (busy.status_code, busy.json()["code"]) == (409, "session_busy")
        assert process_id in busy.json()["detail"]
        assert held == process_id
        assert rest[-1].json()["status"] == "cancelled"
        assert deleted.status_code == 200

    async def test_a_resume_of_an_unknown_session_is_404_before_any_cli(
        self, settings: Any, real_environ: dict[str, str], workdir: Path, scripted_api: ScriptedAPI
    ) -> None:
        """A session_id no transcript has gets 404 unknown_session, and no CLI starts."""
        async with served(settings, real_environ) as gw:
            body = chat_body("go on", workdir, session_id=str(uuid.uuid4()))
            answer = await gw.client.post("/chat", json=body)
            processes = (await gw.client.get("/processes")).json()["processes"]
        assert (answer.status_code, answer.json()["code"]) == (404, "unknown_session")
        assert processes == []
        assert scripted_api.requests == []


class TestRoots:
    async def test_sessions_outside_the_roots_do_not_exist(
        self, settings: Any, real_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """Under ALLOWED_CWD_ROOTS, a session recorded outside is not listed, read or deleted."""
        inside, outside = tmp_path / "inside", tmp_path / "outside"
        inside.mkdir()
        outside.mkdir()
        home = Path(real_environ["HOME"])
        kept, foreign = saved_session(home, inside), saved_session(home, outside)
        bounded = make_settings(allowed_cwd_roots=[inside], store="memory")
        async with served(bounded, real_environ) as gw:
            sessions = await listed(gw)
            read = await gw.client.get(f"/sessions/{foreign}")
            deleted = await gw.client.delete(f"/sessions/{foreign}")
            shown = await gw.client.get(f"/sessions/{kept}")
        assert list(sessions) == [kept]
        assert (read.status_code, read.json()["code"]) == (404, "unknown_session")
        assert (deleted.status_code, deleted.json()["code"]) == (404, "unknown_session")
        assert transcript_of(real_environ, foreign).exists()
        assert shown.status_code == 200
        assert shown.json()["session"]["preview"] == "hello"


class TestRefusals:
    @pytest.mark.parametrize(
        ("path", "status", "code", "named"),
        [
            ("/sessions?limit=501", 422, "validation_error", "limit"),
            ("/sessions?since=yesterday", 422, "validation_error", "since"),
            ("/sessions?cursor=nope", 422, "validation_error", "cursor"),
            ("/sessions?cwd_prefix=/srv", 422, "validation_error", "cwd_prefix"),
            (f"/sessions/{uuid.uuid4()}?limit=0", 422, "validation_error", "limit"),
            ("/sessions/not-a-uuid", 404, "unknown_session", "not-a-uuid"),
        ],
    )
    async def test_bad_requests_are_json_naming_what_is_wrong(
        self, fake_environ: dict[str, str], path: str, status: int, code: str, named: str
    ) -> None:
        """Bad parameters are 422 and ids that are not UUIDs 404, each naming what it refuses."""
        async with served(make_settings(store="memory"), fake_environ) as gw:
            with trio.fail_after(30):
                answer = await gw.client.get(path)
        assert (answer.status_code, answer.json()["code"]) == (status, code)
        assert named in answer.json()["detail"]
