"""The HTTP contract, served by a real Hypercorn, with the fake CLI behind it."""

from __future__ import annotations

import base64
import json
import os
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from .helpers import (
    AUTH,
    FAKE_CLAUDE,
    Shared,
    chat_body,
    make_settings,
    post_chat,
    served,
    sse_events,
)

pytestmark = pytest.mark.timeout(60)


class TestHealth:
    async def test_reports_cli_version_without_auth(self, fake_environ: dict[str, str]) -> None:
        """GET /health needs no credentials and reports the CLI's version."""
        async with served(make_settings(), fake_environ) as gw:
            async with httpx.AsyncClient(base_url=gw.url) as anonymous:
                response = await anonymous.get("/health")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "claude_version": "9.9.9",
            "active_processes": 0,
            "running": 0,
            "queued": 0,
            "version": response.json()["version"],
            "store": {"kind": "sqlite", "backlog_bytes": 0, "backlog_peak_bytes": 0},
            "pool": {
                "size": 0,
                "idle": 0,
                "starting": 0,
                "profiles": 0,
                "hits": 0,
                "misses": 0,
                "spawned": 0,
                "retired": {},
                "rss_bytes": 0,
                "max_rss_bytes": 1024 * 2**20,
            },
        }

    async def test_degraded_when_cli_missing(
        self, fake_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """A missing CLI makes /health degraded with a reason, and /chat answers 503."""
        settings = make_settings(claude_path=tmp_path / "nope")
        async with served(settings, fake_environ) as gw:
            health = (await gw.client.get("/health")).json()
            chat = await gw.client.post("/chat", json=chat_body("echo", tmp_path))
        assert health["status"] == "degraded"
        assert "not an executable file" in health["reason"]
        assert health["claude_version"] is None
        assert chat.status_code == 503
        assert chat.json()["code"] == "cli_unavailable"

    async def test_reveals_no_secrets(self, gw: Shared) -> None:
        """The health answer holds neither the password nor the user."""
        text = (await gw.client.get("/health")).text
        assert AUTH[1] not in text


class TestChatStream:
    async def test_events_in_order(self, gw: Shared, workdir: Path) -> None:
        """A run streams process, one message per CLI line, then done; ids count up from 1."""
        response, events = await post_chat(gw.client, chat_body("echo hi", workdir))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        names = [e.event for e in events]
        assert names == ["process", "message", "message", "message", "done"]
        assert [e.id for e in events] == [1, 2, 3, 4, 5]
        process_id = response.headers["x-process-id"]
        assert events[0].json() == {"process_id": process_id}
        assert events[1].json()["type"] == "system"
        assert events[3].json()["type"] == "result"
        done = events[-1].json()
        assert done["process_id"] == process_id
        assert done["status"] == "completed"
        assert done["exit_code"] == 0
        assert done["session_id"] == events[1].json()["session_id"]
        assert isinstance(done["duration_ms"], int)

    async def test_lines_pass_through_byte_for_byte(self, gw: Shared, workdir: Path) -> None:
        """Each message event's data is the CLI's stdout line, unmodified."""
        _, events = await post_chat(gw.client, chat_body("echo ünïcode", workdir))
        assert events[2].data == '{"type":"assistant","text":"echo ünïcode"}'

    async def test_argv_environment_and_prompt(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """The CLI gets stream-json flags and the prompt on stdin, never CLAUDECODE or AUTH_*."""
        environ = {**fake_environ, "CLAUDECODE": "1", "AUTH_USER": "u", "AUTH_PASSWORD": "p"}
        async with served(make_settings(), environ) as gw:
            response, events = await post_chat(gw.client, chat_body("argv -h", workdir))
        seen = events[2].json()
        assert seen["prompt"] == "argv -h"
        assert "argv -h" not in seen["argv"]
        assert seen["argv"][:4] == [
            "-p",
            "--output-format=stream-json",
            "--input-format=stream-json",
            "--verbose",
        ]
        assert seen["leaked"] == []
        assert seen["marker"] == response.headers["x-process-id"]

    async def test_one_mebibyte_prompt(self, gw: Shared, workdir: Path) -> None:
        """A 1 MiB prompt reaches the CLI whole (argv would cap it at 128 KiB)."""
        prompt = "echo " + "x" * (1024 * 1024)
        _, events = await post_chat(gw.client, chat_body(prompt, workdir))
        assert events[-2].json()["result"] == prompt
        assert events[-1].json()["status"] == "completed"

    async def test_heartbeat_while_quiet(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """A quiet run gets ': ping' comments every HEARTBEAT_SECONDS."""
        async with served(make_settings(heartbeat_seconds=0.2), fake_environ) as gw:
            async with gw.client.stream("POST", "/chat", json=chat_body("hang", workdir)) as r:
                pings = 0
                async with aclosing(sse_events(r)) as events:
                    async for event in events:
                        if event.event == ":":
                            assert event.data == "ping"
                            pings += 1
                            if pings == 3:
                                break

    async def test_stream_outlives_quart_response_timeout(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """The stream is not cut by Quart's RESPONSE_TIMEOUT (60 s by default)."""
        settings = make_settings(heartbeat_seconds=0.5)
        async with served(settings, fake_environ, RESPONSE_TIMEOUT=1) as gw:
            async with gw.client.stream("POST", "/chat", json=chat_body("hang", workdir)) as r:
                start = trio.current_time()
                async with aclosing(sse_events(r)) as events:
                    async for _ in events:
                        if trio.current_time() - start > 2.5:
                            break
                assert trio.current_time() - start > 2.5


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "status", "code", "names"),
        [
            ({"cwd": "/tmp"}, 422, "validation_error", "prompt"),
            ({"prompt": "hi"}, 422, "validation_error", "cwd"),
            ({"prompt": "", "cwd": "/tmp"}, 422, "validation_error", "prompt"),
            ({"prompt": 5, "cwd": "/tmp"}, 422, "validation_error", "prompt"),
            (
                {"prompt": "hi", "cwd": "/tmp", "allowedTools": ["Read"]},
                422,
                "validation_error",
                "allowedTools: unknown field",
            ),
            (
                {"prompt": "hi", "cwd": "/tmp", "session_id": "abc"},
                422,
                "validation_error",
                "session_id",
            ),
            ({"prompt": "hi", "cwd": "/tmp", "tools": "Bash"}, 422, "validation_error", "tools"),
            ({"prompt": "hi", "cwd": "/tmp", "model": "--help"}, 422, "validation_error", "model"),
            ({"prompt": "a\u0000b", "cwd": "/tmp"}, 422, "validation_error", "prompt"),
            ({"prompt": "a\ud800b", "cwd": "/tmp"}, 422, "validation_error", "prompt"),
            (
                {"prompt": "hi", "cwd": "/tmp", "system_prompt": "\udfff"},
                422,
                "validation_error",
                "system_prompt",
            ),
            (
                {"prompt": "hi", "cwd": "/tmp", "allowed_tools": ["x" * 20000]},
                422,
                "validation_error",
                "allowed_tools.0",
            ),
            ({"prompt": "hi", "cwd": "relative/dir"}, 400, "invalid_cwd", "absolute"),
            ({"prompt": "hi", "cwd": "/no/such/dir"}, 400, "invalid_cwd", "existing"),
            ([1, 2], 400, "invalid_json", "object"),
        ],
    )
    async def test_bad_bodies(
        self, gw: Shared, body: Any, status: int, code: str, names: str
    ) -> None:
        """Each bad body gets its 4xx JSON {detail, code}, and the detail names the problem."""
        # Serialized here so that lone surrogates travel as JSON escapes.
        response = await gw.client.post("/chat", content=json.dumps(body))
        health = await gw.client.get("/health")
        assert response.status_code == status
        assert response.json()["code"] == code
        assert names in response.json()["detail"]
        assert set(response.json()) == {"detail", "code"}
        assert health.json()["status"] == "ok"

    async def test_malformed_json(self, gw: Shared) -> None:
        """A body that is not JSON gets 400 invalid_json."""
        response = await gw.client.post("/chat", content=b"{not json")
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_json"

    async def test_body_over_limit(self, gw: Shared, workdir: Path) -> None:
        """A body over 10 MiB gets 413 JSON."""
        body = chat_body("x" * (11 * 1024 * 1024), workdir)
        response = await gw.client.post("/chat", json=body)
        assert response.status_code == 413
        assert response.json()["code"] == "request_entity_too_large"

    async def test_unknown_route_and_method(self, gw: Shared) -> None:
        """Unknown paths get 404 JSON and wrong methods 405 JSON."""
        missing = await gw.client.get("/nope")
        wrong = await gw.client.put("/chat")
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
        assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")


class TestOperatorRules:
    async def test_cwd_outside_roots_is_403(
        self, fake_environ: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """A cwd outside ALLOWED_CWD_ROOTS gets 403 JSON and starts nothing."""
        (tmp_path / "allowed").mkdir()
        settings = make_settings(allowed_cwd_roots=str(tmp_path / "allowed"))
        async with served(settings, fake_environ) as gw:
            response = await gw.client.post("/chat", json=chat_body("echo", workdir))
            listing = (await gw.client.get("/processes")).json()
        assert response.status_code == 403
        assert response.json() == {
            "detail": f"cwd {str(workdir)!r} is outside ALLOWED_CWD_ROOTS",
            "code": "cwd_forbidden",
        }
        assert listing["count"] == 0

    async def test_whether_a_folder_outside_the_roots_exists_is_not_told(
        self, fake_environ: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """Outside ALLOWED_CWD_ROOTS, a missing folder gets the same 403 as an existing one."""
        roots = tmp_path / "allowed"
        roots.mkdir()
        missing = tmp_path / "no-such-dir"
        settings = make_settings(allowed_cwd_roots=str(roots))
        async with served(settings, fake_environ) as gw:
            answers = {
                name: await gw.client.post("/chat", json=chat_body("echo", roots, **fields))
                for name, fields in {
                    "add_dir-there": {"add_dir": [str(workdir)]},
                    "add_dir-missing": {"add_dir": [str(missing)]},
                    "plugin_dir-missing": {"plugin_dir": [str(missing)]},
                }.items()
            }
            for name, cwd in {"cwd-there": workdir, "cwd-missing": missing}.items():
                answers[name] = await gw.client.post("/chat", json=chat_body("echo", cwd))
            inside = await gw.client.post("/chat", json=chat_body("echo", roots / "no-such"))
        assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 403)
        assert {a.json()["code"] for a in answers.values()} == {"cwd_forbidden"}
        assert (inside.status_code, inside.json()["code"]) == (400, "invalid_cwd")

    async def test_mode_not_allowed_is_403(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A permission mode outside ALLOWED_PERMISSION_MODES gets 403 JSON."""
        settings = make_settings(allowed_permission_modes="default,plan")
        async with served(settings, fake_environ) as gw:
            body = chat_body("echo", workdir, permission_mode="acceptEdits")
            response = await gw.client.post("/chat", json=body)
        assert response.status_code == 403
        assert response.json()["code"] == "permission_mode_forbidden"


class TestConfigFiles:
    async def test_fifo_as_config_is_refused_without_blocking(
        self, gw: Shared, workdir: Path, tmp_path: Path
    ) -> None:
        """A FIFO given as a settings file gets 422 at once, and the server stays responsive."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        with trio.fail_after(5):
            response = await gw.client.post(
                "/chat", json=chat_body("echo", workdir, settings=str(fifo))
            )
            health = await gw.client.get("/health")
        assert response.status_code == 422
        assert "regular file" in response.json()["detail"]
        assert health.json()["status"] == "ok"

    async def test_file_outside_roots_is_never_read(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path
    ) -> None:
        """A config file outside ALLOWED_CWD_ROOTS gets 403 before anything reads it."""
        fifo = tmp_path / "outside-fifo"
        os.mkfifo(fifo)  # reading it would block: the 403 must come first
        settings = make_settings(allowed_cwd_roots=str(workdir))
        async with served(settings, fake_environ) as gw:
            with trio.fail_after(5):
                body = chat_body("echo", workdir, mcp_config=[str(fifo)])
                response = await gw.client.post("/chat", json=body)
        assert response.status_code == 403
        assert response.json()["code"] == "cwd_forbidden"

    async def test_config_file_reaches_the_cli_as_a_private_copy(
        self, gw: Shared, workdir: Path, tmp_path: Path
    ) -> None:
        """A settings file is handed to the CLI as a copy in the run's private folder."""
        config = tmp_path / "settings.json"
        config.write_text('{"model": "x"}')
        _, events = await post_chat(gw.client, chat_body("argv", workdir, settings=str(config)))
        (flag,) = [a for a in events[2].json()["argv"] if a.startswith("--settings=")]
        assert flag != f"--settings={config}"
        assert "cc2api-run-" in flag

    async def test_command_line_over_the_budget_is_422(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Options that, with the server's environment, overflow the kernel's limit get 422."""
        # Each variable under the kernel's 128 KiB a string, all together under its 2 MiB,
        # so the CLI itself still starts (the startup probe); over this server's budget.
        environ = {**fake_environ, **{f"BIG{i}": "x" * (120 * 1024) for i in range(13)}}
        async with served(make_settings(), environ) as gw:
            response = await gw.client.post("/chat", json=chat_body("echo", workdir))
        assert response.status_code == 422
        assert "command line" in response.json()["detail"]


class TestHangUpEarly:
    async def test_request_abandoned_at_once_leaves_no_run(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A client that sends POST /chat and hangs up at once leaves no run behind (2 s)."""
        body = json.dumps(chat_body("hang", workdir)).encode()
        token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        async with served(make_settings(kill_grace_seconds=1.0), fake_environ) as gw:
            host, port = gw.url.removeprefix("http://").split(":")
            for _ in range(5):
                stream = await trio.open_tcp_stream(host, int(port))
                await stream.send_all(
                    b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Basic {token}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await stream.aclose()
            with trio.fail_after(2):
                # Nothing marks a request the server has read but not yet listed: give the
                # five the time to appear, so that an empty listing means they are gone.
                await trio.sleep(0.3)
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)


class TestAuth:
    @pytest.mark.parametrize("path", ["/processes", "/chat", f"/chat/{uuid.uuid4()}"])
    async def test_everything_but_health_needs_credentials(self, gw: Shared, path: str) -> None:
        """Without credentials every endpoint but /health answers 401 JSON with the realm."""
        method = {"/processes": "GET", "/chat": "POST"}.get(path, "DELETE")
        async with httpx.AsyncClient(base_url=gw.url) as anonymous:
            response = await anonymous.request(method, path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="cc2api"'
        assert response.json()["code"] == "unauthorized"

    async def test_wrong_password(self, gw: Shared) -> None:
        """A wrong password gets 401."""
        async with httpx.AsyncClient(base_url=gw.url, auth=("admin", "wrong")) as client:
            response = await client.get("/processes")
        assert response.status_code == 401


class TestCors:
    async def test_no_cors_headers_by_default(self, gw: Shared) -> None:
        """With CORS_ORIGINS unset no Access-Control header is ever sent."""
        response = await gw.client.get("/processes", headers={"Origin": "https://evil.example"})
        assert not any(h.lower().startswith("access-control") for h in response.headers)

    async def test_listed_origin_only(self, fake_environ: dict[str, str]) -> None:
        """A listed origin is echoed back; any other gets nothing."""
        settings = make_settings(cors_origins=["https://app.example"])
        async with served(settings, fake_environ) as gw:
            good = await gw.client.get("/processes", headers={"Origin": "https://app.example"})
            bad = await gw.client.get("/processes", headers={"Origin": "https://evil.example"})
        assert good.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in bad.headers


class TestProcesses:
    async def test_lists_live_runs(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """GET /processes lists a live run with its pid, cwd, model, session and start time."""
        async with served(make_settings(), fake_environ) as gw:
            body = chat_body("hang", workdir, model="sonnet")
            async with gw.client.stream("POST", "/chat", json=body) as response:
                async with aclosing(sse_events(response)) as events:
                    async for event in events:
                        if event.event == "message" and event.json()["type"] == "assistant":
                            break
                listing = (await gw.client.get("/processes")).json()
                health = (await gw.client.get("/health")).json()
            assert listing["count"] == 1
            (run,) = listing["processes"]
            assert run["process_id"] == response.headers["x-process-id"]
            assert run["cwd"] == str(workdir)
            assert run["model"] == "sonnet"
            assert run["status"] == "running"
            assert isinstance(run["pid"], int)
            assert run["started_at"].endswith("Z")
            assert health["active_processes"] == 1
            with trio.fail_after(10):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)

    async def test_delete_unknown_is_404(self, gw: Shared) -> None:
        """DELETE of an unknown or non-UUID id is 404 JSON."""
        unknown = await gw.client.delete(f"/chat/{uuid.uuid4()}")
        garbage = await gw.client.delete("/chat/not-a-uuid")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "process_not_found")
        assert (garbage.status_code, garbage.json()["code"]) == (404, "process_not_found")


def test_fake_cli_is_executable() -> None:
    """The fake CLI the tests rely on is executable (a broken checkout would hide faults)."""
    assert FAKE_CLAUDE.stat().st_mode & 0o111
