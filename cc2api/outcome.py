"""How a run ended: a pure function from what happened to its status and error."""

from __future__ import annotations

from dataclasses import dataclass

from .landlock import PREFIX, SETUP_FAILED
from .wire import ErrorCode, ErrorEvent, RunFailure, Status

STDERR_TAIL_BYTES = 8 * 1024
ROOT_REFUSAL = b"cannot be used with root/sudo privileges"
LAUNCHER_SAID = PREFIX.encode() + b":"


@dataclass(frozen=True)
class Happened:
    """The facts a run's end is judged on, gathered once every process is gone."""

    cancelled: bool  # by DELETE, a hang-up, shutdown, or too late to interrupt
    timed_out: bool
    timeout: float | None  # the plan's, for the message
    interrupt_requested: bool  # an interrupt was sent while a turn ran
    interrupt_forced: bool  # the CLI did not stop its turn and was torn down
    error: RunFailure | None  # what the gateway saw go wrong while it ran
    exit_code: int | None
    stderr_tail: bytes
    confined: bool


@dataclass(frozen=True)
class Outcome:
    """A run's final status, and the error that goes with it."""

    status: Status
    error: ErrorEvent | None


def decide(happened: Happened) -> Outcome:
    """Return how a run ended; the first matching rule wins.

    1. Interrupted (the CLI ends an interrupted turn with exit status 1, or was
       forced), unless something else went wrong or the run timed out.
    2. Cancelled: no error, whatever the CLI said as it died.
    3. Timed out, or an error the gateway saw, or the CLI's own failure (told apart
       by its stderr: the confinement launcher, the root refusal, or any other).
    4. Otherwise completed.
    """
    h = happened
    tail = h.stderr_tail[-STDERR_TAIL_BYTES:]
    interrupted = h.interrupt_requested and (
        h.interrupt_forced or (not h.cancelled and h.exit_code in (0, 1))
    )
    if interrupted and h.error is None and not h.timed_out:
        return Outcome(Status.INTERRUPTED, None)
    if h.cancelled:
        return Outcome(Status.CANCELLED, None)
    error = h.error
    if h.timed_out:
        timeout = h.timeout or 0.0
        error = RunFailure(
            ErrorCode.TIMEOUT, f"the run took longer than its timeout of {timeout:g} s"
        )
    if error is None and h.exit_code not in (0, None):
        error = _cli_failure(h.exit_code, tail, confined=h.confined)
    if error is None:
        return Outcome(Status.COMPLETED, None)
    event = error.event(h.exit_code, tail.decode("utf-8", "replace"))
    return Outcome(Status.TIMEOUT if h.timed_out else Status.FAILED, event)


def _cli_failure(exit_code: int | None, tail: bytes, *, confined: bool) -> RunFailure:
    if confined and exit_code == SETUP_FAILED and LAUNCHER_SAID in tail:
        return RunFailure(
            ErrorCode.CONFINEMENT_FAILED, "the run could not be confined (see stderr_tail)"
        )
    if ROOT_REFUSAL in tail:
        return RunFailure(
            ErrorCode.ROOT_FULL_ACCESS,
            "the Claude Code CLI refuses full access "
            "(--dangerously-skip-permissions) when run as root: run cc2api as "
            "a non-root user, restrict the run with tools/allowed_tools, or set "
            "IS_SANDBOX=1 in the server's environment inside a sandbox",
        )
    return RunFailure(ErrorCode.CLI_FAILED, f"the Claude Code CLI exited with status {exit_code}")
