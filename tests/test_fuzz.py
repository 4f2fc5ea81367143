"""The API keeps to its own OpenAPI document: schemathesis fuzzes a real server process with it.

The server (``python -m cc2api serve``) runs tests/fast_claude.sh as its CLI, which
answers any prompt at once, so the event streams of successful runs end quickly.
Generated bodies mostly name folders that do not exist; every other body whose
``cwd`` is a string is pointed at a real folder, so that runs succeed too.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cc2api.openapi import openapi_document

from .helpers import PASSWORD, USER, start_server_process

pytestmark = pytest.mark.timeout(120)

FUZZ_CLAUDE = Path(__file__).resolve().parent / "fast_claude.sh"
MAX_EXAMPLES = 100
SEED = 20_261_127
CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "auth": {"basic": {"username": USER, "password": PASSWORD}},
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
        "request-timeout": 30,
    }
)


@dataclass(frozen=True)
class Server:
    """A cc2api server process, and a folder that is a valid ``cwd``."""

    url: str
    workdir: Path
    log: Path


@pytest.fixture(scope="module", name="server")
def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Run ``python -m cc2api serve`` for the module, with Basic auth and the fuzz CLI."""
    root = tmp_path_factory.mktemp("fuzz")
    workdir = root / "work"
    workdir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "HOST": "127.0.0.1",
        "PORT": "0",
        "AUTH_USER": USER,
        "AUTH_PASSWORD": PASSWORD,
        "CLAUDE_PATH": str(FUZZ_CLAUDE),
        "KILL_GRACE_SECONDS": "1",
        "RUN_TIMEOUT_SECONDS": "20",
        "ALLOW_ROOT_FULL_ACCESS": "true",  # CI runs as root; the tests stand in for a sandbox
        # The generated requests that fail to log in are no brute force: left on, the
        # lockout would answer 429 to whatever follows, as often as the fuzzing is fast
        # (tests/test_login_budget.py and test_auth.py test it).
        "AUTH_MAX_FAILURES": "0",
        "AUTH_MAX_FAILURES_GLOBAL": "0",
    }
    argv = [sys.executable, "-m", "cc2api", "serve"]
    proc, url = trio.run(start_server_process, argv, root, env)
    try:
        yield Server(url, workdir, root / "server.log")
    finally:
        proc.terminate()
        trio.run(_stop, proc)
        log = (root / "server.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-5000:]


async def _stop(proc: trio.Process) -> None:
    with trio.move_on_after(15):
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# The document the app serves at /openapi.json (test_served_document_is_this_one checks),
# loaded here rather than by schemathesis.pytest.from_fixture, which fails under pytest 9
# (it sets the item's removed ``_nodeid``); the requests go to the server process.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def aim_at_real_folder(case: schemathesis.Case[Any], workdir: Path) -> None:
    """Point every other generated /chat body with a string ``cwd`` at a real folder."""
    body: Any = case.body
    if case.operation.path != "/chat" or not isinstance(body, dict):
        return
    cwd = body.get("cwd")
    if isinstance(cwd, str) and zlib.crc32(repr(sorted(body)).encode() + cwd.encode()) % 2:
        body["cwd"] = str(workdir)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_keeps_to_its_document(case: schemathesis.Case[Any], server: Server) -> None:
    """Generated requests, valid and not, get documented answers, never a 5xx."""
    aim_at_real_folder(case, server.workdir)
    case.call_and_validate(base_url=server.url, checks=CHECKS)


def test_successful_run_keeps_to_the_document(server: Server) -> None:
    """A valid POST /chat gets a documented event stream, read to its end."""
    operation = schema["/chat"]["POST"]
    case = operation.Case(body={"prompt": "hello", "cwd": str(server.workdir)})
    response = case.call_and_validate(base_url=server.url, checks=CHECKS, auth=(USER, PASSWORD))
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream")
    assert "event: done" in response.text


def test_served_document_is_this_one(server: Server) -> None:
    """The server serves, without credentials, the very document the tests fuzz with."""
    response = requests.get(f"{server.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(openapi_document()))
