"""A scripted stand-in for the Anthropic Messages API, served on 127.0.0.1.

The real Claude Code CLI talks to it through ``ANTHROPIC_BASE_URL``. What it
answers depends on the caller's latest prompt (the user text that is not a
``<system-reminder>``):

* ``RUN_BASH: <command>``: a Bash ``tool_use`` for ``<command>``; once the
  tool result comes back, a text answer quoting it (``DENIED`` before a refusal).
* ``CALL <tool> <json input>``: the same for any tool (MCP tools too).
* ``SCRIPT: [[tool, input], ...]``: several tool calls, one after another.
* ``STRUCTURED: <json>``: a call of the CLI's StructuredOutput tool (json_schema).
* ``SLOW``: a text answer streamed one word every 0.2 s for about a minute, so
  tests can cancel mid-answer; ``SLOW <n>``: only n words.
* anything else: the text ``echo: <prompt>``.

Each answer reports 10 input and 5 output tokens, or, with ``ScriptedAPI(usage={...})``,
the counts given (``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
``cache_creation_input_tokens``): the CLI prices its ``total_cost_usd`` from them.

Every request body is kept in ``requests`` so tests can check what the model
was sent.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_WORDS = 300
SLOW_DELAY = 0.2


def _text_of(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
    return texts


def latest_prompt(body: dict[str, Any]) -> str:
    """Return the caller's text in the last user message, without reminders."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        texts = [
            t
            for t in _text_of(message.get("content"))
            if not t.lstrip().startswith("<system-reminder>")
        ]
        if texts:
            return texts[-1]
    return ""


def tool_result(body: dict[str, Any]) -> dict[str, Any] | None:
    """Return the tool_result block of the last message, if it carries one."""
    messages = body.get("messages", [])
    if not messages:
        return None
    content = messages[-1].get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return block
    return None


def all_user_text(body: dict[str, Any]) -> str:
    """Return every user text block of a request joined, for assertions."""
    parts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "user":
            parts.extend(_text_of(message.get("content")))
    return "\n".join(parts)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class _Reply:
    """One scripted model answer: text pieces or a single tool call."""

    def __init__(
        self,
        texts: list[str] | None = None,
        tool: tuple[str, dict[str, Any]] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.texts = texts or []
        self.tool = tool
        self.delay = delay
        self.usage: dict[str, int] = {"input_tokens": 10, "output_tokens": 5}

    def events(self, model: str) -> Iterator[tuple[bytes, float]]:
        msg_id = f"msg_{uuid.uuid4().hex[:24]}"
        usage = {**self.usage, "output_tokens": 1}
        yield (
            _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": usage,
                    },
                },
            ),
            0.0,
        )
        index = 0
        if self.texts:
            yield (
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                0.0,
            )
            for piece in self.texts:
                yield (
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    ),
                    self.delay,
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0}), 0.0
            index = 1
        if self.tool is not None:
            name, tool_input = self.tool
            yield (
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": f"toolu_{uuid.uuid4().hex[:24]}",
                            "name": name,
                            "input": {},
                        },
                    },
                ),
                0.0,
            )
            yield (
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(tool_input),
                        },
                    },
                ),
                0.0,
            )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index}), 0.0
        stop_reason = "tool_use" if self.tool is not None else "end_turn"
        yield (
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.usage.get("output_tokens", 0)},
                },
            ),
            0.0,
        )
        yield _sse("message_stop", {"type": "message_stop"}), 0.0

    def message(self, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(self.texts)}]
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": dict(self.usage),
        }


def tool_results_since_prompt(body: dict[str, Any]) -> list[str]:
    """Return the texts of the tool results sent after the caller's latest prompt."""
    results: list[str] = []
    for message in reversed(body.get("messages", [])):
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            if message.get("role") == "user":
                break  # a plain-text user message: the prompt itself
            continue
        blocks = [b for b in content if isinstance(b, dict)]
        found = [b for b in blocks if b.get("type") == "tool_result"]
        for block in reversed(found):
            inner = block.get("content")
            text = inner if isinstance(inner, str) else " ".join(_text_of(inner))
            results.insert(0, ("DENIED " if block.get("is_error") else "") + text)
        if any(
            b.get("type") == "text"
            and not str(b.get("text", "")).lstrip().startswith("<system-reminder>")
            for b in blocks
        ):
            break
    return results


def steps_of(prompt: str) -> list[tuple[str, dict[str, Any]]]:
    """Return the tool calls a prompt scripts, in order."""
    if prompt.startswith("RUN_BASH: "):
        command = prompt.removeprefix("RUN_BASH: ").strip()
        return [("Bash", {"command": command, "description": "scripted"})]
    if prompt.startswith("CALL "):
        name, _, raw = prompt.removeprefix("CALL ").partition(" ")
        return [(name, json.loads(raw or "{}"))]
    if prompt.startswith("SCRIPT: "):
        return [(name, args) for name, args in json.loads(prompt.removeprefix("SCRIPT: "))]
    if prompt.startswith("STRUCTURED: "):
        return [("StructuredOutput", json.loads(prompt.removeprefix("STRUCTURED: ")))]
    return []


def script(body: dict[str, Any]) -> _Reply:
    """Choose the scripted answer for one request."""
    prompt = latest_prompt(body)
    steps = steps_of(prompt)
    results = tool_results_since_prompt(body)
    if len(results) < len(steps):
        return _Reply(tool=steps[len(results)])
    if results:
        return _Reply(texts=["tool said: " + " | ".join(results)])
    if "SLOW" in prompt:
        count = re.search(r"SLOW (\d+)", prompt)
        words = int(count.group(1)) if count else SLOW_WORDS
        return _Reply(texts=[f"word{i} " for i in range(words)], delay=SLOW_DELAY)
    return _Reply(texts=["echo: ", prompt])


class ScriptedAPI:
    """A threaded HTTP server playing the Messages API; use as a context manager."""

    def __init__(self, usage: dict[str, int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.usage = usage  # what each answer reports (None: 10 input, 5 output tokens)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._json(200, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"type": "error", "error": {"type": "invalid_request_error"}})
                    return
                if "count_tokens" in self.path:
                    self._json(200, {"input_tokens": 10})
                    return
                with api._lock:
                    api.requests.append(body)
                reply = script(body)
                if api.usage is not None:
                    reply.usage = dict(api.usage)
                model = str(body.get("model", "claude-test"))
                if not body.get("stream"):
                    self._json(200, reply.message(model))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for chunk, delay in reply.events(model):
                        if delay:
                            time.sleep(delay)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _json(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def prompts(self) -> list[str]:
        """Return the latest prompt of every request received so far."""
        with self._lock:
            return [latest_prompt(body) for body in self.requests]

    def __enter__(self) -> ScriptedAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    with ScriptedAPI() as api:
        print(api.url, flush=True)
        threading.Event().wait()
