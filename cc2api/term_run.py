"""``cc2api run`` and ``cc2api logs``: a run's stream on the terminal, until its end.

The blocking client follows the run on a thread of its own, so Ctrl-C reaches this
loop at any time as KeyboardInterrupt. Leaving the run's block then cancels the run
and returns only once the gateway says the run's processes are gone; a second
Ctrl-C meanwhile is ignored, so the wait is not cut short (it is bounded by the
client's ``cancel_timeout``).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.status import Status

from .client import ApiError, Client, Event, Run
from .term_approve import ask
from .term_render import Renderer

__all__ = ["EXIT_CODES", "Printer", "RunRequest", "exit_code", "follow_logs", "run"]

# The exit status for each final status of a run.
EXIT_CODES = {
    "completed": 0,
    "failed": 1,
    "lost": 1,
    "timeout": 124,
    "cancelled": 130,
    "interrupted": 130,
}
INTERRUPTED = 130
# Events after which the CLI has started (or never will): the spinner stops.
STARTED = frozenset({"message", "approval", "error", "done"})


def exit_code(status: str | None) -> int:
    """Return the exit status for a run's final status (1 for one not known)."""
    return EXIT_CODES.get(status or "", 1)


@dataclass(frozen=True)
class RunRequest:
    """What ``cc2api run`` was asked: the prompt, its folder, further POST /chat fields."""

    prompt: str
    cwd: str
    options: dict[str, Any] = field(default_factory=dict)
    ask: bool = False  # --approve ask
    json: bool = False
    detach: bool = False


@dataclass
class Printer:
    """Prints events: rendered for a person, or each one's data line as it came (``json``)."""

    out: Console
    json: bool = False
    renderer: Renderer = field(default_factory=Renderer)

    def show(self, event: Event) -> None:
        """Print one event."""
        if self.json:
            # One line each, whatever the console's width; no markup, no highlighting.
            self.out.out(event.line, highlight=False)
            return
        self.show_data(event.event, event.data)

    def show_data(self, name: str, data: Any) -> None:
        """Print one event, rendered, from its name and data."""
        for piece in self.renderer.feed(name, data):
            self.out.print(piece.text, end=piece.end, soft_wrap=not self.out.is_terminal)


@contextmanager
def _spinner(console: Console, shown: bool) -> Iterator[Status | None]:
    status = console.status("starting Claude Code…", spinner="dots") if shown else None
    if status is not None:
        status.start()
    try:
        yield status
    finally:
        if status is not None:
            status.stop()


@contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT for the block (main thread only), restoring the handler after."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def run(client: Client, request: RunRequest, out: Console, err: Console) -> int:
    """Run the prompt, print its events, and return the exit status for its end."""
    if request.detach:
        out.out(client.start(request.prompt, cwd=request.cwd, **request.options), highlight=False)
        return 0
    printer = Printer(out, json=request.json)
    asker = err if request.json else out  # --json keeps stdout for the data lines
    interrupted = False
    deaf = ExitStack()  # entered on Ctrl-C: left once the run's block has been left
    spinning = out.is_terminal and not request.json
    chat = client.chat(request.prompt, cwd=request.cwd, **request.options)
    # Left in this order: the run (its cancel), the spinner, then deafness to Ctrl-C.
    with deaf, _spinner(out, spinning) as status, ExitStack() as following:
        try:
            # Interrupted while the run starts, entering cancels it and waits (see Run).
            started = following.enter_context(chat)
        except KeyboardInterrupt:
            if status is not None:
                status.stop()
            return _cancelled(chat, out if not request.json else err)
        try:
            for event in started:
                if status is not None and event.event in STARTED:
                    status.stop()
                if request.ask and event.event == "approval":
                    if request.json:
                        printer.show(event)
                    _answer(client, started.process_id, event.data, printer, asker)
                else:
                    printer.show(event)
        except KeyboardInterrupt:
            interrupted = True
            # Ignored from now until the run's block is left: its cancel is not cut short.
            deaf.enter_context(_deaf_to_ctrl_c())
            if status is not None:
                status.stop()
            err.print("cancelling the run, waiting for its processes to end…", style="yellow")
    if interrupted:
        return _cancelled(started, err if request.json else out)
    return exit_code(started.status)


def _cancelled(run: Run, console: Console) -> int:
    """Say how an interrupted run ended, and return the exit status for it."""
    if run.status is None:
        # The gateway never confirmed the cancel (unreachable, or too slow): say so.
        console.print(
            f"the run's cancel was not confirmed: check it with `cc2api ps` ({run.process_id})",
            style="bold red",
            markup=False,
        )
        return 2
    console.print(run.status, style="bold yellow")
    return exit_code(run.status) if run.status != "completed" else INTERRUPTED


def _answer(
    client: Client, process_id: str | None, approval: Any, printer: Printer, console: Console
) -> None:
    if process_id is None or not isinstance(approval, dict) or approval.get("refused"):
        if not printer.json:
            printer.show_data("approval", approval)  # refused already: nobody may answer it
        return
    allowed = ask(console, approval)
    try:
        client.approve(process_id, str(approval["approval_id"]), allow=allowed)
    except ApiError as error:
        # Answered first by its timeout or someone else, or gone with its turn.
        if error.code not in ("approval_answered", "approval_not_found"):
            raise
        console.print("(answered already)", style="dim")


def follow_logs(client: Client, process_id: str, out: Console, *, json: bool, follow: bool) -> int:
    """Print a run's events so far (``follow``: and on to its end); return the exit status.

    Following ends with the run's status as its exit status; Ctrl-C stops following
    (the run goes on) and returns 130. Without ``follow`` the status is 0.
    """
    printer = Printer(out, json=json)
    if not follow:
        for event in client.events(process_id):
            printer.show(event)
        return 0
    with client.follow(process_id) as followed:
        try:
            for event in followed:
                printer.show(event)
        except KeyboardInterrupt:
            return INTERRUPTED
    return exit_code(followed.status)
