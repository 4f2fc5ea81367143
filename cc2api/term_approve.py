"""``--approve ask``: a tool call shown on the terminal, answered by one keypress (y or n).

On a terminal the key is read in cbreak mode, so no Enter is needed and Ctrl-C still
interrupts; from a pipe a line is read instead, and the end of input denies.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import tty
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from .term_render import safe, shorten

__all__ = ["ask", "read_key"]

INPUT_LINES = 12  # of a tool's input shown before the question
YES, NO = frozenset("yY"), frozenset("nN")


def read_key(stream: TextIO) -> str:
    """Return one keypress from a terminal, or the first character of a line from a pipe.

    Returns "" at the end of input.
    """
    if not stream.isatty():
        return stream.readline()[:1]
    fd = stream.fileno()
    before = termios.tcgetattr(fd)
    try:
        # TCSANOW: a key pressed once the prompt showed is read, not flushed away
        # (what was typed before it showed went with drop_typeahead).
        tty.setcbreak(fd, termios.TCSANOW)
        return os.read(fd, 1).decode(errors="replace")
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, before)


def drop_typeahead(stream: TextIO) -> None:
    """Forget keys typed before a question was shown: a stray "y" must not answer it."""
    if stream.isatty():
        termios.tcflush(stream.fileno(), termios.TCIFLUSH)


def describe(approval: dict[str, Any]) -> Text:
    """Return what a person is asked about: the tool, why the CLI asks, and its input."""
    shown = Text("Allow ", style="bold yellow")
    shown.append(str(approval.get("tool_name", "this tool")), style="bold")
    reason = approval.get("decision_reason") or approval.get("description")
    if reason:
        shown.append(f" ({shorten(str(reason), 200)})", style="dim")
    shown.append("?\n")
    text = json.dumps(approval.get("input", {}), indent=2, ensure_ascii=False).splitlines()
    if len(text) > INPUT_LINES:
        text = [*text[:INPUT_LINES], f"… {len(text) - INPUT_LINES} more lines"]
    shown.append("\n".join(f"  {line}" for line in text), style="cyan")
    return safe(shown)


def ask(
    console: Console,
    approval: dict[str, Any],
    key: Callable[[], str] = lambda: read_key(sys.stdin),
    before_asking: Callable[[], None] = lambda: drop_typeahead(sys.stdin),
) -> bool:
    """Show the approval and return whether the person allowed it (y) or denied it (n).

    Other keys ask again; the end of input denies.
    """
    console.print(describe(approval))
    while True:
        before_asking()
        console.print(Text("[y] allow  [n] deny: ", style="bold"), end="")
        pressed = key()
        if pressed in YES or pressed in NO or pressed == "":
            allowed = pressed in YES
            said = Text("allowed", style="green") if allowed else Text("denied", style="red")
            console.print(said)
            return allowed
        console.print()
