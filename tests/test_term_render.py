"""The terminal client's rendering (cc2api.term_render, term_tables, term_approve): pure."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from cc2api.term_approve import ask, describe
from cc2api.term_render import Renderer, shorten, tool_summary
from cc2api.term_run import exit_code
from cc2api.term_tables import processes_table, sessions_table, usage_table
from cc2api.usage_wire import Usage

PID = "3f0e8a4c-0000-4000-8000-000000000001"


def console() -> tuple[Console, io.StringIO]:
    """Return a console without colour that writes to a string, and the string."""
    text = io.StringIO()
    return Console(file=text, width=120, color_system=None, highlight=False), text


def rendered(events: list[tuple[str, Any]]) -> str:
    """Return the text a sequence of (event name, data) renders to."""
    out, text = console()
    renderer = Renderer()
    for name, data in events:
        for piece in renderer.feed(name, data):
            out.print(piece.text, end=piece.end)
    return text.getvalue()


def line(**fields: Any) -> tuple[str, Any]:
    """Return a CLI line as its ``message`` event."""
    return ("message", fields)


def assistant(*blocks: dict[str, Any]) -> tuple[str, Any]:
    """Return an assistant line with these content blocks."""
    return line(type="assistant", message={"role": "assistant", "content": list(blocks)})


def delta(text: str) -> tuple[str, Any]:
    """Return a stream_event line carrying a text delta."""
    event = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    return line(type="stream_event", event=event)


DONE = ("done", {"process_id": PID, "status": "completed", "exit_code": 0, "duration_ms": 2345})
RESULT = line(
    type="result",
    subtype="success",
    is_error=False,
    result="Hello world",
    total_cost_usd=0.01234,
    usage={"input_tokens": 120, "output_tokens": 45, "cache_read_input_tokens": 1000},
)


class TestRenderer:
    def test_text_tool_call_result_and_summary(self) -> None:
        """A turn renders its text, the tool call with its command, the result, and the summary."""
        text = rendered(
            [
                ("process", {"process_id": PID}),
                line(type="system", subtype="init", session_id="s-1", model="claude-x"),
                assistant({"type": "text", "text": "Let me look."}),
                assistant(
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls -la"}}
                ),
                line(
                    type="user",
                    message={
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": "a\nb\nc"}
                        ]
                    },
                ),
                assistant({"type": "text", "text": "Hello world"}),
                RESULT,
                DONE,
            ]
        )
        assert text.splitlines() == [
            f"run {PID}",
            "session s-1 · model claude-x",
            "Let me look.",
            "● Bash ls -la",
            "  └ a b c",
            "Hello world",
            "completed · 2.3 s · $0.0123 · 120 in, 45 out, 1000 cached tokens",
        ]

    def test_streamed_text_is_not_printed_again(self) -> None:
        """Text that came as deltas is shown once: the whole assistant message adds nothing."""
        text = rendered(
            [
                line(type="stream_event", event={"type": "message_start"}),
                delta("Hel"),
                delta("lo"),
                assistant({"type": "text", "text": "Hello"}),
                RESULT,
                DONE,
            ]
        )
        assert text.splitlines() == [
            "Hello",
            "completed · 2.3 s · $0.0123 · 120 in, 45 out, 1000 cached tokens",
        ]

    def test_streamed_text_ends_its_line_before_a_tool_call(self) -> None:
        """A tool call after streamed text starts on a line of its own."""
        text = rendered(
            [
                delta("Looking"),
                assistant(
                    {"type": "text", "text": "Looking"},
                    {"type": "tool_use", "id": "t", "name": "Read", "input": {"file_path": "/a"}},
                ),
            ]
        )
        assert text.splitlines() == ["Looking", "● Read /a"]

    def test_a_failed_tool_result_and_long_output_are_shortened(self) -> None:
        """A tool result is cut to one short line; long input is cut with an ellipsis."""
        long = "x" * 500
        text = rendered(
            [
                assistant(
                    {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": long}}
                ),
                line(
                    type="user",
                    message={
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "is_error": True,
                                "content": [{"type": "text", "text": long}],
                            }
                        ]
                    },
                ),
            ]
        )
        call, result = text.splitlines()
        assert call.startswith("● Bash xxx")
        assert call.endswith("…")
        assert len(call) < 120
        assert result.startswith("  └ xxx")
        assert result.endswith("…")
        assert len(result) < 120

    def test_an_error_is_said_in_plain_words_with_the_stderr_tail(self) -> None:
        """A failed run shows its error message, the end of stderr, and the failed status."""
        error = {
            "code": "cli_failed",
            "message": "the Claude Code CLI exited with status 3",
            "exit_code": 3,
            "stderr_tail": "warming up\nfatal: something broke\n",
        }
        done = {"process_id": PID, "status": "failed", "exit_code": 3, "duration_ms": 80}
        text = rendered([("error", error), ("done", done)])
        assert text.splitlines() == [
            "error: the Claude Code CLI exited with status 3",
            "  warming up",
            "  fatal: something broke",
            "failed · 0.1 s",
        ]

    def test_the_result_text_is_shown_when_no_assistant_text_came(self) -> None:
        """A run whose only answer is its result line shows that answer."""
        assert rendered([RESULT]).splitlines() == ["Hello world"]

    def test_approvals_queue_and_gaps_are_shown(self) -> None:
        """An approval, a refused one, an answer, a queue place and a replay gap get a line each."""
        approval = {"approval_id": "a", "tool_name": "Bash", "input": {"command": "rm -rf /"}}
        refused = {**approval, "refused": "not allowed for this key"}
        text = rendered(
            [
                ("queued", {"position": 2, "running": 1, "max_concurrent_runs": 1}),
                ("approval", approval),
                ("approval_answered", {"approval_id": "a", "answer": "deny"}),
                ("approval", refused),
                ("dropped", {"dropped": 5, "first_id": 7}),
                ("ping", {}),
            ]
        )
        assert text.splitlines() == [
            "queued: number 2 in line",
            "? Bash rm -rf /  waits for approval",
            "  approval: deny",
            "? Bash rm -rf /  refused by the gateway: not allowed for this key",
            "(5 earlier events are no longer kept)",
        ]

    def test_unknown_lines_render_nothing(self) -> None:
        """CLI lines of types the renderer does not know are left out, not shown raw."""
        assert rendered([line(type="control_response"), line(type="system", subtype="hook")]) == ""


class TestControlCharacters:
    HOSTILE = "ok\x1b]0;owned\x1b\\ \x1b]52;c;cGF5bG9hZA==\x07\x1b[2J\x9b31m"

    def test_escape_sequences_in_cli_text_reach_the_terminal_as_visible_characters(self) -> None:
        """ESC, BEL and C1 controls in tool output, tool names and text are shown, not obeyed."""
        out = io.StringIO()
        terminal = Console(file=out, width=200, force_terminal=True, color_system="truecolor")
        renderer = Renderer()
        events = [
            assistant({"type": "tool_use", "id": "t1", "name": "Bash\x1b[8m", "input": {}}),
            line(
                type="user",
                message={
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": self.HOSTILE}
                    ]
                },
            ),
            assistant({"type": "text", "text": self.HOSTILE}),
            ("error", {"code": "cli_failed", "message": self.HOSTILE, "exit_code": 1}),
        ]
        for name, data in events:
            for piece in renderer.feed(name, data):
                terminal.print(piece.text, end=piece.end)
        written = out.getvalue()
        # rich's own styling writes CSI sequences (ESC [ ... m); none other may appear.
        assert "\x1b]" not in written
        assert "\x07" not in written
        assert "\x9b" not in written
        assert "\x1b[2J" not in written
        assert "\x1b[8m" not in written
        assert "␛]52;c;cGF5bG9hZA==" in written

    def test_table_cells_are_text_never_markup(self) -> None:
        """A model or folder holding rich markup is shown as written, and cannot break ps."""
        runs = [
            {
                "process_id": PID,
                "status": "running",
                "pid": 1,
                "started_at": None,
                "pending_approvals": 0,
                "model": "[/x]",
                "cwd": "/w/[link=http://evil.example]docs[/link]",
            }
        ]
        out, text = console()
        out.print(processes_table(runs))
        shown = text.getvalue()
        assert "[/x]" in shown
        assert "/w/[link=http://evil.example]docs" in shown

    def test_the_approval_prompt_shows_controls_visibly(self) -> None:
        """A hostile tool name or input cannot drive the terminal from the approval prompt."""
        shown = describe({"tool_name": "Bash\x1b[2J", "input": {"command": "x\x1b]0;t\x07"}})
        assert "\x1b" not in shown.plain
        assert "\x07" not in shown.plain
        assert "Bash␛[2J" in shown.plain


class TestHelpers:
    def test_shorten_collapses_whitespace_and_cuts(self) -> None:
        """shorten() puts text on one line and cuts it at the limit with an ellipsis."""
        assert shorten("a \n  b\tc") == "a b c"
        assert shorten("abcdef", 4) == "abc…"

    def test_tool_summary_prefers_the_telling_field(self) -> None:
        """A tool's input is summed up by its command or path, else as compact JSON."""
        assert tool_summary({"command": "git status", "timeout": 5}) == "git status"
        assert tool_summary({"file_path": "/etc/hosts"}) == "/etc/hosts"
        assert tool_summary({"a": 1}) == '{"a": 1}'
        assert tool_summary({}) == ""

    def test_exit_codes_follow_the_status(self) -> None:
        """completed 0, failed and lost 1, timeout 124, cancelled and interrupted 130."""
        statuses = ["completed", "failed", "lost", "timeout", "cancelled", "interrupted", None]
        assert [exit_code(status) for status in statuses] == [0, 1, 1, 124, 130, 130, 1]


class TestApprovalPrompt:
    def test_y_allows_and_n_denies_other_keys_ask_again(self) -> None:
        """The prompt returns True for y, False for n, and asks again after another key."""
        approval = {"approval_id": "a", "tool_name": "Bash", "input": {"command": "touch x"}}
        out, text = console()
        keys = iter("xy")
        assert ask(out, approval, lambda: next(keys)) is True
        assert ask(out, approval, lambda: "n") is False
        assert ask(out, approval, lambda: "") is False  # the end of input denies
        shown = text.getvalue()
        assert "Allow Bash?" in shown
        assert '"command": "touch x"' in shown
        assert shown.count("[y] allow  [n] deny:") == 4

    def test_a_long_input_is_cut(self) -> None:
        """The prompt shows at most a dozen lines of the tool's input."""
        approval = {"tool_name": "Write", "input": {f"k{i}": i for i in range(40)}}
        shown = describe(approval).plain
        assert "more lines" in shown
        assert len(shown.splitlines()) < 20


class TestTables:
    def table_text(self, table: Any) -> str:
        """Return a table as plain text."""
        out, text = console()
        out.print(table)
        return text.getvalue()

    def test_ps_lists_each_run(self) -> None:
        """ps shows each run's id, status, pid and pending approvals."""
        runs = [
            {
                "process_id": PID,
                "status": "running",
                "pid": 4242,
                "started_at": "2026-12-01T09:30:00+00:00",
                "pending_approvals": 1,
                "model": None,
                "cwd": "/srv/repo",
            }
        ]
        shown = self.table_text(processes_table(runs))
        row = next(line for line in shown.splitlines() if PID in line)
        assert row.split() == [
            PID,
            "running",
            "4242",
            "2026-12-01",
            "09:30:00",
            "1",
            "-",
            "/srv/repo",
        ]
        assert "1 runs" in shown

    def test_sessions_show_their_first_prompt(self) -> None:
        """sessions shows each session's id, message count, folder and first prompt."""
        answer = {
            "sessions": [
                {
                    "session_id": PID,
                    "last_activity": "2026-12-01T09:30:00Z",
                    "message_count": 4,
                    "cwd": "/srv/repo",
                    "preview": "fix the tests",
                }
            ],
            "next_cursor": None,
        }
        row = next(
            line for line in self.table_text(sessions_table(answer)).splitlines() if PID in line
        )
        assert row.split()[2:] == ["09:30:00", "4", "/srv/repo", "fix", "the", "tests"]

    def test_usage_has_a_total(self) -> None:
        """usage shows a row per group and their total."""
        group = {
            "runs": 2, "completed": 1, "failed": 1, "cancelled": 0, "cost_usd": 0.5,
            "cost_unknown_runs": 0, "input_tokens": 10, "output_tokens": 20,
            "cache_read_tokens": 0, "cache_creation_tokens": 0, "wall_seconds": 3.0,
        }  # fmt: skip
        usage = Usage.model_validate(
            {
                "since": "2026-11-01T00:00:00Z",
                "until": "2026-12-01T00:00:00Z",
                "group_by": "key",
                "groups": [{"group": "bot", **group}, {"group": "ci", **group}],
            }
        )
        lines = self.table_text(usage_table(usage)).splitlines()
        assert next(line for line in lines if line.split()[:1] == ["total"]).split() == [
            "total", "4", "2", "2", "0", "1.0000", "20", "40", "0", "6.0",
        ]  # fmt: skip
