"""How a run ended, decided from what happened: the pure outcome function."""

from __future__ import annotations

from dataclasses import replace

from cc2api.landlock import PREFIX, SETUP_FAILED
from cc2api.outcome import ROOT_REFUSAL, STDERR_TAIL_BYTES, Happened, decide
from cc2api.wire import ErrorCode, RunFailure, Status

CLEAN = Happened(
    cancelled=False,
    timed_out=False,
    timeout=None,
    interrupt_requested=False,
    interrupt_forced=False,
    error=None,
    exit_code=0,
    stderr_tail=b"",
    confined=False,
)


class TestOutcome:
    def test_a_clean_exit_completes_without_error(self) -> None:
        """A CLI that exits 0 with nothing gone wrong completes, with no error."""
        outcome = decide(CLEAN)
        assert (outcome.status, outcome.error) == (Status.COMPLETED, None)

    def test_a_nonzero_exit_fails_with_cli_failed(self) -> None:
        """A CLI that exits non-zero on its own fails as cli_failed, with its status and stderr."""
        outcome = decide(replace(CLEAN, exit_code=3, stderr_tail=b"boom"))
        assert outcome.status is Status.FAILED
        assert outcome.error is not None
        assert (outcome.error.code, outcome.error.exit_code) == (ErrorCode.CLI_FAILED, 3)
        assert outcome.error.stderr_tail == "boom"

    def test_the_stderr_tail_is_bounded(self) -> None:
        """The error carries only the last STDERR_TAIL_BYTES of stderr."""
        tail = b"x" * (3 * STDERR_TAIL_BYTES) + b"end"
        outcome = decide(replace(CLEAN, exit_code=1, stderr_tail=tail))
        assert outcome.error is not None
        assert len(outcome.error.stderr_tail) == STDERR_TAIL_BYTES
        assert outcome.error.stderr_tail.endswith("end")

    def test_cancelled_wins_over_a_failure_and_clears_the_error(self) -> None:
        """A cancelled run is cancelled with no error, whatever the CLI said as it died."""
        failure = RunFailure(ErrorCode.LINE_TOO_LONG, "long")
        outcome = decide(replace(CLEAN, cancelled=True, exit_code=-15, error=failure))
        assert (outcome.status, outcome.error) == (Status.CANCELLED, None)

    def test_a_timeout_fails_as_timeout_with_its_limit_in_the_message(self) -> None:
        """A run past its timeout ends timeout, with code timeout naming the limit."""
        outcome = decide(replace(CLEAN, timed_out=True, timeout=2.5, exit_code=-15))
        assert outcome.status is Status.TIMEOUT
        assert outcome.error is not None
        assert outcome.error.code == ErrorCode.TIMEOUT
        assert "2.5 s" in outcome.error.message

    def test_an_honoured_interrupt_is_interrupted(self) -> None:
        """An interrupt the CLI honoured (exit status 1) ends the run interrupted, no error."""
        outcome = decide(replace(CLEAN, interrupt_requested=True, exit_code=1))
        assert (outcome.status, outcome.error) == (Status.INTERRUPTED, None)

    def test_a_forced_interrupt_is_interrupted_though_cancelled(self) -> None:
        """An interrupt the CLI ignored, so the run was torn down, still ends interrupted."""
        forced = replace(CLEAN, interrupt_requested=True, interrupt_forced=True, cancelled=True)
        assert decide(forced).status is Status.INTERRUPTED

    def test_a_cancel_during_an_interrupt_is_cancelled(self) -> None:
        """A run cancelled while its interrupt was pending, and not forced, ends cancelled."""
        outcome = decide(replace(CLEAN, interrupt_requested=True, cancelled=True, exit_code=-15))
        assert outcome.status is Status.CANCELLED

    def test_an_interrupted_run_that_also_failed_is_failed(self) -> None:
        """An error the gateway saw outweighs the interrupt: the run fails with that error."""
        failure = RunFailure(ErrorCode.CLI_DID_NOT_EXIT, "stuck")
        outcome = decide(replace(CLEAN, interrupt_requested=True, exit_code=1, error=failure))
        assert outcome.status is Status.FAILED
        assert outcome.error is not None
        assert outcome.error.code == ErrorCode.CLI_DID_NOT_EXIT

    def test_the_launcher_failing_is_confinement_failed(self) -> None:
        """A confined run whose launcher said so and exited SETUP_FAILED is confinement_failed."""
        tail = PREFIX.encode() + b": landlock refused"
        happened = replace(CLEAN, confined=True, exit_code=SETUP_FAILED, stderr_tail=tail)
        error = decide(happened).error
        assert error is not None
        assert error.code == ErrorCode.CONFINEMENT_FAILED

    def test_the_same_exit_unconfined_is_cli_failed(self) -> None:
        """The launcher's words in an unconfined run's stderr mean nothing: cli_failed."""
        tail = PREFIX.encode() + b": landlock refused"
        happened = replace(CLEAN, exit_code=SETUP_FAILED, stderr_tail=tail)
        error = decide(happened).error
        assert error is not None
        assert error.code == ErrorCode.CLI_FAILED

    def test_the_root_refusal_is_named(self) -> None:
        """The CLI refusing full access under root fails as root_full_access, saying what to do."""
        error = decide(replace(CLEAN, exit_code=1, stderr_tail=b"x " + ROOT_REFUSAL)).error
        assert error is not None
        assert error.code == ErrorCode.ROOT_FULL_ACCESS
        assert "IS_SANDBOX=1" in error.message

    def test_a_gateway_error_with_a_clean_exit_still_fails(self) -> None:
        """An error the gateway saw fails the run even when the CLI exited 0."""
        failure = RunFailure(ErrorCode.DOCUMENT_TOO_LARGE, "too big")
        outcome = decide(replace(CLEAN, error=failure))
        assert outcome.status is Status.FAILED
        assert outcome.error is not None
        assert (outcome.error.code, outcome.error.exit_code) == (ErrorCode.DOCUMENT_TOO_LARGE, 0)
