"""Confined and bounded runs with the real CLI: tools stay in the run's folders, sessions too.

The attacks of issue 10's review, each replayed against the real CLI and the
scripted model: reading and writing outside ALLOWED_CWD_ROOTS, reading the CLI's
credentials and other sessions, resuming a session recorded outside the roots, and
writing configuration that later runs load through an approval.
"""

from __future__ import annotations

import json
import uuid
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc2api.sessions import project_key, transcript
from cc2api.settings import Settings

from .helpers import Event, Served, chat_body, make_settings, post_chat, served, sse_events
from .scripted_api import ScriptedAPI, all_user_text

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cret-outside-the-roots"
TOKEN = "sk-ant-oat-planted-credential"


def script(*steps: tuple[str, dict[str, Any]]) -> str:
    """Return a prompt that has the scripted model call each tool in turn."""
    return "SCRIPT: " + json.dumps([list(step) for step in steps])


def tool_results(events: list[Event]) -> list[dict[str, Any]]:
    """Return the tool_result blocks the CLI reported, in order."""
    found = []
    for event in events:
        if event.event != "message":
            continue
        line = event.json()
        if line.get("type") == "user":
            found += [b for b in line["message"]["content"] if b.get("type") == "tool_result"]
    return found


def done(events: list[Event]) -> dict[str, Any]:
    """Return the data of the stream's done event."""
    assert events[-1].event == "done", events[-1]
    data: dict[str, Any] = events[-1].json()
    return data


@dataclass(frozen=True)
class Scene:
    """A run's folder (also ALLOWED_CWD_ROOTS), a secret outside it, and the CLI's real home."""

    claude: Path
    environ: dict[str, str]
    workdir: Path
    outside: Path
    home: Path

    def settings(self, **overrides: Any) -> Settings:
        """Return settings for the real CLI with the work folder as the only root."""
        return make_settings(
            claude_path=self.claude, allowed_cwd_roots=str(self.workdir), **overrides
        )


@pytest.fixture(name="scene")
def _scene(real_claude: Path, real_environ: dict[str, str], workdir: Path, tmp_path: Path) -> Scene:
    """The scene: a secret outside the roots; planted credentials and another's session."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    home = Path(real_environ["HOME"])
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".claude" / ".credentials.json").write_text(json.dumps({"token": TOKEN}))
    other = transcript(home / ".claude", "/srv/someone-else", str(uuid.uuid4()))
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"type": "user", "cwd": "/srv/someone-else", "x": SECRET}) + "\n")
    return Scene(real_claude, real_environ, workdir, outside, home)


class TestConfinedTools:
    async def test_full_access_cannot_reach_outside_the_roots(self, scene: Scene) -> None:
        """Even with full access, Bash, Read and Write reach only the run's folders."""
        workdir, outside, real_home = scene.workdir, scene.outside, scene.home
        other = next((real_home / ".claude" / "projects").glob("*/*.jsonl"))
        bash = (
            f"echo in > inside.txt; cat < {outside}/secret.txt; echo x > {outside}/planted.txt; "
            f"cat {real_home}/.claude/.credentials.json {other}; echo x >> {real_home}/.bashrc"
        )
        prompt = script(
            ("Bash", {"command": bash, "description": "escape"}),
            ("Read", {"file_path": f"{outside}/secret.txt"}),
            ("Read", {"file_path": str(real_home / ".claude" / ".credentials.json")}),
            ("Write", {"file_path": f"{outside}/written.txt", "content": "x"}),
        )
        async with served(scene.settings(), scene.environ) as gw:
            response, events = await post_chat(gw.client, chat_body(prompt, workdir))
        assert response.status_code == 200
        assert done(events)["status"] == "completed"
        assert (workdir / "inside.txt").read_text() == "in\n"
        results = tool_results(events)
        assert len(results) == 4
        assert all(result["is_error"] for result in results)
        assert "Permission denied" in str(results[0]["content"])
        everything = "".join(event.data for event in events)
        assert SECRET not in everything
        assert TOKEN not in everything
        assert not (outside / "planted.txt").exists()
        assert not (outside / "written.txt").exists()
        assert not (real_home / ".bashrc").exists()

    async def test_a_confined_session_is_kept_and_resumed(
        self, scene: Scene, scripted_api: ScriptedAPI
    ) -> None:
        """A confined run's transcript lands in the real config folder, and a resume sees it."""
        workdir, real_home = scene.workdir, scene.home
        async with served(scene.settings(), scene.environ) as gw:
            _, first = await post_chat(gw.client, chat_body("remember the apple", workdir))
            session = done(first)["session_id"]
            kept = transcript(real_home / ".claude", str(workdir), session)
            assert kept.is_file()
            _, second = await post_chat(
                gw.client, chat_body("which fruit?", workdir, session_id=session)
            )
        assert done(second)["status"] == "completed"
        assert done(second)["session_id"] == session
        assert "remember the apple" in all_user_text(scripted_api.requests[-1])
        assert "which fruit?" in kept.read_text()

    async def test_a_new_session_id_cannot_take_an_existing_session(self, scene: Scene) -> None:
        """new_session_id naming a session that exists gets 409; its transcript stays whole."""
        async with served(scene.settings(), scene.environ) as gw:
            _, first = await post_chat(gw.client, chat_body("the first turn", scene.workdir))
            session = done(first)["session_id"]
            kept = transcript(scene.home / ".claude", str(scene.workdir), session)
            before = kept.read_text()
            body = chat_body("take it over", scene.workdir, new_session_id=session)
            answer = await gw.client.post("/chat", json=body)
        assert answer.status_code == 409
        assert answer.json()["code"] == "session_exists"
        assert kept.read_text() == before

    async def test_no_run_leaves_a_scheduled_prompt_for_later_runs(self, scene: Scene) -> None:
        """CronCreate, which runs without asking, is off: no .claude/scheduled_tasks.json."""
        job = {"cron": "* * * * *", "prompt": "planted", "recurring": True, "durable": True}
        settings = scene.settings(force_restricted=True, always_disallowed_tools="Bash")
        async with served(settings, scene.environ) as gw:
            prompt = "CALL CronCreate " + json.dumps(job)
            _, events = await post_chat(gw.client, chat_body(prompt, scene.workdir))
        (result,) = tool_results(events)
        assert result["is_error"]
        assert "not enabled" in str(result["content"])
        assert not (scene.workdir / ".claude").exists()


class TestSessionsOutsideTheRoots:
    async def test_a_namesake_session_outside_the_roots_cannot_be_resumed(
        self,
        real_claude: Path,
        real_environ: dict[str, str],
        scripted_api: ScriptedAPI,
        tmp_path: Path,
    ) -> None:
        """/t/roots-r1-proj shares a project with /t/roots/r1/proj; its sessions stay out."""
        roots = tmp_path / "roots"
        inside = roots / "r1" / "proj"
        namesake = tmp_path / "roots-r1-proj"
        inside.mkdir(parents=True)
        namesake.mkdir()
        assert project_key(str(inside)) == project_key(str(namesake))
        anywhere = make_settings(claude_path=real_claude)
        bounded = make_settings(claude_path=real_claude, allowed_cwd_roots=str(roots))
        async with served(anywhere, real_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("the namesake's plan", namesake))
        foreign = done(events)["session_id"]
        async with served(bounded, real_environ) as gw:
            resumed = await gw.client.post(
                "/chat", json=chat_body("go on", inside, session_id=foreign)
            )
            _, continued = await post_chat(
                gw.client, chat_body("go on", inside, continue_conversation=True)
            )
            sent = all_user_text(scripted_api.requests[-1])
            again = chat_body("go on again", inside, continue_conversation=True)
            _, own = await post_chat(gw.client, again)
        assert resumed.status_code == 403
        assert resumed.json()["code"] == "cwd_forbidden"
        assert done(continued)["status"] == "completed"
        assert done(continued)["session_id"] != foreign
        assert "the namesake's plan" not in sent
        assert done(own)["session_id"] == done(continued)["session_id"]
        assert "go on" in all_user_text(scripted_api.requests[-1])

    async def test_an_unknown_session_is_404_before_any_cli_starts(self, scene: Scene) -> None:
        """Resuming a session that has no transcript in the folder's project gets 404."""
        async with served(scene.settings(), scene.environ) as gw:
            body = chat_body("go on", scene.workdir, session_id=str(uuid.uuid4()))
            answer = await gw.client.post("/chat", json=body)
            listed = (await gw.client.get("/processes")).json()
        assert answer.status_code == 404
        assert answer.json()["code"] == "unknown_session"
        assert listed["count"] == 0


async def answer_first_approval(
    gw: Served, body: dict[str, Any], *answers: dict[str, Any]
) -> tuple[list[Event], list[httpx.Response]]:
    """Run ``body``; post each of ``answers`` to its first approval in turn; read to the end."""
    replies: list[httpx.Response] = []
    async with gw.client.stream("POST", "/chat", json=body) as response:
        process_id = response.headers["x-process-id"]
        events: list[Event] = []
        async with aclosing(sse_events(response)) as stream:
            async for event in stream:
                if event.event == ":":
                    continue
                events.append(event)
                if event.event == "approval" and not replies:
                    path = f"/chat/{process_id}/approvals/{event.json()['approval_id']}"
                    for answer in answers:
                        replies.append(await gw.client.post(path, json=answer))
    return events, replies


class TestApprovals:
    @pytest.mark.parametrize("confine", ["auto", "off"])
    async def test_no_approval_writes_the_settings_later_runs_load(
        self, scene: Scene, confine: str
    ) -> None:
        """The review's attack: a Write of ~/.claude/settings.json is refused, allow or not."""
        target = scene.home / ".claude" / "settings.json"
        hook = {"hooks": {"UserPromptSubmit": [{"hooks": [{"type": "command", "command": "id"}]}]}}
        settings = scene.settings(
            force_restricted=True, always_disallowed_tools="Bash", confine_runs=confine
        )
        prompt = "CALL Write " + json.dumps({"file_path": str(target), "content": json.dumps(hook)})
        body = chat_body(prompt, scene.workdir, tools=["Write"], approval="http")
        async with served(settings, scene.environ) as gw:
            events, replies = await answer_first_approval(gw, body, {"behavior": "allow"})
        asked = next(e.json() for e in events if e.event == "approval")
        assert asked["refused"]
        if confine == "off":  # the CLI sees its real home: its own safety check says why
            assert asked["decision_reason_type"] == "safetyCheck"
        answered = next(e.json() for e in events if e.event == "approval_answered")
        assert answered["answer"] == "refused"
        assert replies[0].status_code == 409
        assert not target.exists()

    async def test_an_approval_cannot_be_pointed_at_another_file(self, scene: Scene) -> None:
        """An allow whose updated_input names another file gets 403; one changing content works."""
        workdir, outside = scene.workdir, scene.outside
        asked = {"file_path": str(workdir / "notes.txt"), "content": "first"}
        body = chat_body(
            "CALL Write " + json.dumps(asked), workdir, tools=["Write"], approval="http"
        )
        redirected = {**asked, "file_path": str(outside / "notes.txt")}
        rewritten = {**asked, "content": "second"}
        async with served(scene.settings(force_restricted=True), scene.environ) as gw:
            events, replies = await answer_first_approval(
                gw,
                body,
                {"behavior": "allow", "updated_input": redirected},
                {"behavior": "allow", "updated_input": rewritten},
            )
        assert replies[0].status_code == 403
        assert replies[0].json()["code"] == "updated_input_forbidden"
        assert replies[1].json()["answer"] == "allow"
        assert done(events)["status"] == "completed"
        assert (workdir / "notes.txt").read_text() == "second"
        assert not (outside / "notes.txt").exists()
