"""The server's log: JSON lines with LOG_FORMAT=json, an access line per request, no secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cc2api.logs import JsonFormatter, run_extra

from .helpers import (
    AUTH,
    FAKE_CLAUDE,
    PASSWORD,
    chat_body,
    running_server,
    server_environment,
    sse_events,
)

pytestmark = pytest.mark.timeout(90)

PROMPT = "echo a prompt that must never reach the log 7f3a9c"


def formatted(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def record_of(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("cc2api.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def fail() -> None:
    raise ValueError("boom")


class TestJsonFormatter:
    def test_line_has_time_level_logger_and_message(self) -> None:
        """A record becomes one JSON object with its UTC time, level, logger and message."""
        entry = formatted(record_of("run %s ended: %s", "abc", "completed"))
        assert entry["level"] == "WARNING"
        assert entry["logger"] == "cc2api.test"
        assert entry["message"] == "run abc ended: completed"
        assert entry["time"].endswith("Z")

    def test_run_id_is_a_field_of_its_own(self) -> None:
        """A line about a run carries its id as ``run_id``."""
        entry = formatted(record_of("run %s ended", "abc", **run_extra("abc")))
        assert entry["run_id"] == "abc"

    def test_multiline_message_stays_one_line(self) -> None:
        """A message with newlines is still one line of JSON."""
        entry = formatted(record_of("first\nsecond"))
        assert entry["message"] == "first\nsecond"

    def test_traceback_is_a_field(self) -> None:
        """An exception's traceback goes in ``exception``, inside the one line."""
        try:
            fail()
        except ValueError:
            record = logging.LogRecord(
                "cc2api.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
            )
        entry = formatted(record)
        assert "ValueError: boom" in entry["exception"]

    def test_unknown_extras_are_left_out(self) -> None:
        """Only the known fields are added: whatever else a record carries stays out."""
        entry = formatted(record_of("hello", password="hunter2"))
        assert "password" not in entry
        assert "hunter2" not in json.dumps(entry)

    def test_text_format_handler_is_unchanged(self) -> None:
        """Text lines keep their format: time, level, logger, message."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.emit(record_of("plain"))
        assert stream.getvalue() == "WARNING cc2api.test: plain\n"


async def served_log(tmp_path: Path, workdir: Path, **settings: str) -> tuple[str, str]:
    """Run a server, make a few requests, stop it; return its log and the run's id."""
    env = server_environment(tmp_path, FAKE_CLAUDE, STORE="memory", **settings)
    argv = [sys.executable, "-m", "cc2api", "serve"]
    async with running_server(argv, tmp_path, env) as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/processes", auth=("admin", "wrong"))).status_code == 401
            body = chat_body(PROMPT, workdir)
            async with client.stream("POST", "/chat", json=body, auth=AUTH) as response:
                run_id = response.headers["X-Process-ID"]
                async with aclosing(sse_events(response)) as events:
                    async for event in events:
                        if event.event == "done":
                            break
            assert (await client.get(f"/chat/{run_id}/events", auth=AUTH)).status_code == 404
        with trio.fail_after(10):
            while f"/chat/{run_id}/events" not in (tmp_path / "server.log").read_text():
                await trio.sleep(0.05)
    return (tmp_path / "server.log").read_text(), run_id


class TestServerLog:
    async def test_json_log_is_one_object_per_line(self, tmp_path: Path, workdir: Path) -> None:
        """With LOG_FORMAT=json every line the server writes is a JSON object with the basics."""
        log, _ = await served_log(tmp_path, workdir, LOG_FORMAT="json")
        lines = log.splitlines()
        assert lines
        for line in lines:
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= entry.keys(), line

    async def test_access_line_per_request(self, tmp_path: Path, workdir: Path) -> None:
        """Each request gets an access line with route, method, status, duration and run id."""
        log, run_id = await served_log(tmp_path, workdir, LOG_FORMAT="json")
        access = [e for e in map(json.loads, log.splitlines()) if e["logger"] == "cc2api.access"]
        by_route = {(e.get("route"), e.get("status")): e for e in access}
        assert ("/health", 200) in by_route
        assert ("/processes", 401) in by_route
        assert ("/chat/<process_id>/events", 404) in by_route
        chat = by_route["/chat", 200]
        assert chat["run_id"] == run_id
        assert chat["method"] == "POST"
        assert chat["duration_ms"] >= 0
        assert chat["address"] == "127.0.0.1"
        assert chat["path"] == "/chat"
        assert chat["key"] == "admin"
        assert "key" not in by_route["/processes", 401]  # nobody was authenticated

    async def test_lines_about_a_run_carry_its_id(self, tmp_path: Path, workdir: Path) -> None:
        """The run's own lines (started, ended) name it in ``run_id``."""
        log, run_id = await served_log(tmp_path, workdir, LOG_FORMAT="json")
        about = [e for e in map(json.loads, log.splitlines()) if e.get("run_id") == run_id]
        assert any("ended" in e["message"] and e["key"] == "admin" for e in about)
        assert any("started" in e["message"] for e in about)

    @pytest.mark.parametrize("log_format", ["text", "json"])
    async def test_no_prompt_or_password_in_the_log(
        self, tmp_path: Path, workdir: Path, log_format: str
    ) -> None:
        """Neither the prompt nor the password (sent right or wrong) is ever logged."""
        log, _ = await served_log(tmp_path, workdir, LOG_FORMAT=log_format, LOG_LEVEL="DEBUG")
        assert "7f3a9c" not in log
        assert PASSWORD not in log
        assert "wrong" not in log.replace("went wrong", "")

    async def test_text_log_has_access_lines(self, tmp_path: Path, workdir: Path) -> None:
        """Text stays the default, and has an access line per request too."""
        log, _ = await served_log(tmp_path, workdir)
        assert not log.lstrip().startswith("{")
        assert "INFO cc2api.access: 127.0.0.1 GET /health 200 " in log
        assert "POST /chat 200" in log
