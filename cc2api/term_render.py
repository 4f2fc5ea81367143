"""A run's events as a person reads them: pure, so each sequence renders the same way.

The CLI's lines (``message`` events) come in the CLI's own shapes: ``system``/``init``,
``assistant`` (text and tool_use blocks), ``user`` (tool_result blocks),
``stream_event`` (text as it streams, with ``include_partial_messages``) and ``result``
(cost, tokens). The gateway's own events (``process``, ``queued``, ``approval``,
``error``, ``done``, ...) come in its wire shapes. A :class:`Renderer` turns each into
:class:`Piece` s of rich text and remembers only what it needs across events: whether
the current message's text has streamed already, the tool names by tool_use id, and
the result line for the closing summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

__all__ = ["Piece", "Renderer", "shorten", "tool_summary"]

SHORT = 100  # characters of a tool's input or result shown on its line
STDERR_LINES = 5  # of an error's stderr tail

STATUS_STYLES = {
    "completed": "bold green",
    "failed": "bold red",
    "lost": "bold red",
    "timeout": "bold red",
    "cancelled": "bold yellow",
    "interrupted": "bold yellow",
}

# The input field that says most about a call of each common tool, shown alone.
TELLING_FIELDS = ("command", "file_path", "path", "pattern", "url", "query", "description")


@dataclass(frozen=True)
class Piece:
    """Some text to print, and what ends it: a newline, or nothing while text streams."""

    text: Text
    end: str = "\n"


# Control characters from the server or the CLI (a tool's output is anyone's text) must
# never reach the terminal as such: ESC starts sequences that set the title, write the
# clipboard (OSC 52), hide text or fake a prompt. Each becomes one visible character, so
# the spans of styled text stay where they were. Newline and tab stay themselves.
_VISIBLE = {code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A)}
_VISIBLE |= {0x7F: 0x2421} | dict.fromkeys(range(0x80, 0xA0), 0xFFFD)


def printable(value: str) -> str:
    """Return ``value`` with every control character but newline and tab made visible."""
    return value.translate(_VISIBLE)


def safe(text: Text) -> Text:
    """Make ``text``'s control characters visible in place (its styles stay); return it."""
    text.plain = printable(text.plain)
    return text


def shorten(value: str, limit: int = SHORT) -> str:
    """Return ``value`` on one line, its whitespace collapsed, cut at ``limit`` with an ellipsis."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def tool_summary(tool_input: Any) -> str:
    """Return a tool's input in brief: its telling field alone if it has one, else JSON."""
    if isinstance(tool_input, dict):
        for name in TELLING_FIELDS:
            value = tool_input.get(name)
            if isinstance(value, str) and value:
                return shorten(value)
        if not tool_input:
            return ""
    if isinstance(tool_input, str):
        return shorten(tool_input)
    return shorten(json.dumps(tool_input, ensure_ascii=False, separators=(", ", ": ")))


def _result_text(content: Any) -> str:
    """Return a tool_result's content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        others = sum(1 for block in content if not isinstance(block, dict) or "text" not in block)
        return " ".join(texts) + (f" [+{others} more]" if others else "")
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _seconds(milliseconds: Any) -> str:
    seconds = float(milliseconds) / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


@dataclass
class Renderer:
    """Turns a run's events, in order, into pieces of text (see the module's docstring)."""

    streamed: bool = False  # the current message's text has been printed as it streamed
    open_line: bool = False  # streamed text waits for its newline
    said_something: bool = False  # some assistant text has been shown
    tools: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    def feed(self, name: str, data: Any) -> list[Piece]:
        """Return what to print for one event (``name`` and its parsed ``data``)."""
        pieces = self._pieces(name, data)
        if self.open_line and pieces and pieces[0].end == "\n":
            # Streamed text ended without its newline: give it one before anything else.
            self.open_line = False
            pieces.insert(0, Piece(Text("")))
        for piece in pieces:
            safe(piece.text)
        return pieces

    def _pieces(self, name: str, data: Any) -> list[Piece]:  # noqa: PLR0911 (one per event)
        if not isinstance(data, dict):
            return [Piece(Text(shorten(str(data), 500), style="dim"))] if data else []
        if name == "message":
            return self._line(data)
        if name == "process":
            return [Piece(Text(f"run {data.get('process_id')}", style="dim"))]
        if name == "queued":
            return [Piece(Text(f"queued: number {data.get('position')} in line", style="yellow"))]
        if name == "approval":
            return self._approval(data)
        if name == "approval_answered":
            return [Piece(Text(f"  approval: {data.get('answer')}", style="dim"))]
        if name == "error":
            return self._error(data)
        if name == "dropped":
            gone = data.get("dropped")
            return [Piece(Text(f"({gone} earlier events are no longer kept)", style="yellow"))]
        if name == "done":
            return [Piece(self.summary(data))]
        return []

    # -- the CLI's lines

    def _line(self, line: dict[str, Any]) -> list[Piece]:
        kind = line.get("type")
        if kind == "system":
            return self._system(line)
        if kind == "stream_event":
            return self._stream(line.get("event"))
        if kind == "assistant":
            return self._assistant(line)
        if kind == "user":
            return self._tool_results(line)
        if kind == "result":
            return self._result(line)
        return []

    def _system(self, line: dict[str, Any]) -> list[Piece]:
        subtype = line.get("subtype")
        if subtype == "init":
            parts = [f"session {line.get('session_id')}"]
            if line.get("model"):
                parts.append(f"model {line['model']}")
            return [Piece(Text(" · ".join(parts), style="dim"))]
        if subtype == "api_retry":
            attempt = line.get("attempt")
            suffix = f" (attempt {attempt})" if attempt is not None else ""
            return [Piece(Text(f"the model's API failed; retrying{suffix}", style="yellow"))]
        return []

    def _stream(self, event: Any) -> list[Piece]:
        if not isinstance(event, dict):
            return []
        if event.get("type") == "message_start":
            self.streamed = False
        delta = event.get("delta")
        if (
            event.get("type") == "content_block_delta"
            and isinstance(delta, dict)
            and delta.get("type") == "text_delta"
            and delta.get("text")
        ):
            self.streamed = self.open_line = self.said_something = True
            return [Piece(Text(str(delta["text"])), end="")]
        return []

    def _assistant(self, line: dict[str, Any]) -> list[Piece]:
        message = line.get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        if not isinstance(blocks, list):
            # Not the CLI's shape (a stand-in's): a top-level text is still text.
            text = line.get("text")
            if isinstance(text, str) and text:
                self.said_something = True
                return [Piece(Text(text))]
            return []
        pieces: list[Piece] = []
        streamed, self.streamed = self.streamed, False
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text") and not streamed:
                self.said_something = True
                pieces.append(Piece(Text(str(block["text"]))))
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "tool"))
                self.tools[str(block.get("id"))] = name
                call = Text("● ", style="cyan")
                call.append(name, style="bold cyan")
                summary = tool_summary(block.get("input"))
                if summary:
                    call.append(f" {summary}")
                pieces.append(Piece(call))
        return pieces

    def _tool_results(self, line: dict[str, Any]) -> list[Piece]:
        message = line.get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        if not isinstance(blocks, list):
            return []
        pieces = []
        for block in blocks:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            failed = bool(block.get("is_error"))
            text = shorten(_result_text(block.get("content"))) or "(no output)"
            shown = Text("  └ ", style="dim")
            shown.append(text, style="red" if failed else "dim")
            pieces.append(Piece(shown))
        return pieces

    def _result(self, line: dict[str, Any]) -> list[Piece]:
        self.result = line
        pieces = []
        text = line.get("result")
        if not self.said_something and isinstance(text, str) and text:
            self.said_something = True
            pieces.append(Piece(Text(text)))
        if line.get("is_error"):
            why = line.get("terminal_reason") or line.get("subtype") or "error"
            pieces.append(Piece(Text(f"the CLI ended its turn with an error: {why}", style="red")))
        return pieces

    # -- the gateway's events

    def _approval(self, data: dict[str, Any]) -> list[Piece]:
        tool = str(data.get("tool_name", "tool"))
        shown = Text("? ", style="bold yellow")
        shown.append(tool, style="bold")
        summary = tool_summary(data.get("input"))
        if summary:
            shown.append(f" {summary}")
        if data.get("refused"):
            shown.append(f"  refused by the gateway: {data['refused']}", style="red")
        else:
            shown.append("  waits for approval", style="yellow")
        return [Piece(shown)]

    def _error(self, data: dict[str, Any]) -> list[Piece]:
        message = str(data.get("message") or data.get("code") or "the run failed")
        shown = Text("error: ", style="bold red")
        shown.append(message, style="red")
        pieces = [Piece(shown)]
        tail = str(data.get("stderr_tail") or "").strip().splitlines()[-STDERR_LINES:]
        pieces += [Piece(Text(f"  {line}", style="dim red")) for line in tail]
        return pieces

    def summary(self, done: dict[str, Any]) -> Text:
        """Return the closing line: status, duration, cost and tokens (from the result line)."""
        status = str(done.get("status", "ended"))
        shown = Text(status, style=STATUS_STYLES.get(status, "bold"))
        parts = []
        if done.get("duration_ms") is not None:
            parts.append(_seconds(done["duration_ms"]))
        result = self.result or {}
        cost = result.get("total_cost_usd")
        if isinstance(cost, int | float):
            parts.append(f"${cost:.4f}")
        usage = result.get("usage")
        if isinstance(usage, dict):
            tokens = f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
            cached = usage.get("cache_read_input_tokens")
            parts.append(f"{tokens}, {cached} cached" if cached else tokens)
            parts[-1] += " tokens"
        if parts:
            shown.append(" · " + " · ".join(parts), style="dim")
        return shown
