"""The limits a run obeys: the operator's settings, and the fixed timings tests may shorten."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings


@dataclass(frozen=True)
class RunLimits:
    """Everything that bounds a run in size or time, in one place.

    The last four are not settings: they are fixed for a server, and a test that
    needs them short passes its own ``RunLimits`` (``create_app(limits=...)``)
    instead of patching module globals.
    """

    kill_grace: float = 5.0  # SIGTERM to SIGKILL
    max_line_bytes: int = 32 * 1024 * 1024
    stall_timeout: float = 60.0  # a reader taking nothing this long is gone
    buffer_bytes: int = 8 * 1024 * 1024  # events kept for replay
    followup_grace: float = 0.0  # input stays open this long after the last result
    approval_timeout: float = 300.0  # 0: wait for ever
    interrupt_patience: float = 5.0  # for the CLI to acknowledge an interrupt
    followup_max_bytes: int = 16 * 1024 * 1024  # follow-ups one run holds for a turn
    # After its input is closed the CLI should exit promptly; one that does not (a
    # stuck MCP server, say) is torn down after this long.
    exit_after_input: float = 30.0
    # Once the CLI has exited, what is left in its pipes arrives at once; a descendant
    # that inherited them could hold them open for ever, so waiting this long in all
    # counts as the end.
    drain_after_exit: float = 1.0
    # The most a stream: false answer holds (every line, kept until the run ends).
    max_document_bytes: int = 64 * 1024 * 1024
    # How long a new run waits for its HTTP response to start reading it before it is
    # cancelled as abandoned; Quart starts the body as soon as the handler returns.
    reader_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        """Return the limits the operator's settings give, with the fixed timings."""
        return cls(
            kill_grace=settings.kill_grace_seconds,
            max_line_bytes=settings.max_line_bytes,
            stall_timeout=settings.client_stall_seconds,
            buffer_bytes=settings.run_buffer_bytes,
            followup_grace=settings.followup_grace_seconds,
            approval_timeout=settings.approval_timeout_seconds,
            interrupt_patience=settings.interrupt_timeout_seconds,
            followup_max_bytes=settings.followup_max_bytes,
        )
