"""The tasks of one spawned CLI, from its private folders to its last reaped process.

One nursery holds five tasks, each owning one thing: the conversation's timers,
stdout (lines to events, through the run's :class:`~cc2api.routing.OutputRouter`),
stderr (kept as a tail, read all the time so the CLI never blocks on it), stdin
(what the conversation says) and the CLI's exit. When the CLI exits the input
closes and the readers drain what is left, each with a deadline; when the nursery
ends, for any reason, the whole tree is torn down, shielded and bounded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import trio

from .cli_process import CliProcess, spawn_run
from .confinement import ConfineSetup, bring_back, prepare
from .conversation import Conversation
from .eventlog import EventLog
from .launch import Launch
from .limits import RunLimits
from .logs import run_extra
from .models import ChatRequest
from .policy import Plan
from .pool import Pool
from .pool_profile import Profile
from .routing import DocumentTooLarge, LineTooLong, OutputRouter
from .safecopy import CopyTooLarge
from .wire import ErrorCode, RunFailure

log = logging.getLogger(__name__)

# A confined run's sessions are copied back to the real config folder in this long;
# past it, the copy goes on in its thread.
BRING_BACK_SECONDS = 30.0


class CliTasks:
    """Spawns one run's CLI and serves it to its end; :meth:`run` is the whole of it."""

    def __init__(
        self,
        *,
        request: ChatRequest,
        plan: Plan,
        launch: Launch,
        limits: RunLimits,
        confine: ConfineSetup,
        conversation: Conversation,
        router: OutputRouter,
        log: EventLog,
        reap: Callable[[], None],
        cancel_run: trio.CancelScope,
        sessions: list[str],
        on_teardown: Callable[[float, int], None] | None = None,
        pool: Pool | None = None,
        profile: Profile | None = None,
    ) -> None:
        # Nothing here refers back to the run: a cycle would keep a finished run, with
        # all it holds, until the cycle collector came by.
        self._request = request
        self._plan = plan
        self._cancel_run = cancel_run
        self._sessions = sessions  # the run's own list: the sessions the CLI said it used
        self.error: RunFailure | None = None  # what went wrong, as the CLI ran
        self._launch = launch  # a pooled CLI's, once the run takes one
        self._run_id = launch.run_id
        self._pool = pool
        self._profile = profile  # None: the run may not take a pooled CLI
        self.pooled = False
        self._limits = limits
        self._confine = confine
        self._conversation = conversation
        self._router = router
        self._log = log
        self._reap = reap
        self._on_teardown = on_teardown  # seconds, processes left alive
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.stderr_tail = bytearray()
        self.interrupt_forced = False
        self._stdin_closed = trio.Event()
        self._conversation_scope = trio.CancelScope()
        self._interrupt_scope = trio.CancelScope()
        self._interrupting = False
        self._nursery: trio.Nursery | None = None

    @property
    def workdir(self) -> Path:
        """Return the run's own folder, which the CLI's option files go in.

        Made by :meth:`run` (or by the pool, for a pooled CLI); the caller removes it.
        """
        return self._launch.workdir

    def interrupt(self) -> None:
        """Start stopping the current turn, once; ignored while no CLI is serving."""
        if self._interrupting or self._nursery is None:
            return
        self._interrupting = True
        # The nursery may be closing as the CLI ends: then so is the run.
        with contextlib.suppress(RuntimeError):
            self._nursery.start_soon(self._interrupt)

    async def run(self) -> None:
        """Take a pooled CLI, or prepare and spawn one; serve it and return once every
        process of it is gone.

        A failure to prepare or spawn sets the run's error. Cancellation: the tasks
        stop and the tree is torn down (shielded, bounded by the kill grace) before
        this re-raises.
        """
        warm = None
        if self._pool is not None and self._profile is not None:
            warm = await self._pool.take(self._profile)
        if warm is None:
            cli = await self._spawn()
            if cli is None:
                return
        else:
            # The same process a cold spawn would have made, waiting for its message.
            self._launch, cli = warm.launch, warm.cli
            self.stderr_tail += warm.stderr_tail
            self.pooled = True
        await self._serve(cli)

    async def _spawn(self) -> CliProcess | None:
        launch, request = self._launch, self._request
        launch.workdir.mkdir(mode=0o700)
        launch.files.write(request, self._plan)
        if launch.folders is not None:
            try:
                await trio.to_thread.run_sync(
                    prepare,
                    launch.folders,
                    self._confine.real_config,
                    dict(launch.env),
                    request.session_id,
                    launch.cwd,
                )
            except (OSError, CopyTooLarge) as error:
                self.error = RunFailure(
                    ErrorCode.CONFINEMENT_FAILED,
                    f"could not prepare the run's private folders: {error}",
                )
                return None
        try:
            cli = await spawn_run(launch, self._limits, self._reap)
        except OSError as error:
            self.error = RunFailure(
                ErrorCode.SPAWN_FAILED,
                f"could not start the Claude Code CLI ({launch.claude}) "
                f"in {request.cwd}: {error.strerror or error}",
            )
            return None
        return cli

    async def _serve(self, cli: CliProcess) -> None:
        launch = self._launch
        self.pid = cli.pid
        log.info(
            "run %s started pid %d%s: %s",
            self._run_id,
            cli.pid,
            " (pooled)" if self.pooled else "",
            log_safe_argv(launch.argv),
            extra=run_extra(self._run_id),
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._converse)
                nursery.start_soon(self._pump_stdout, cli, nursery.cancel_scope)
                nursery.start_soon(cli.drain_stderr, self.stderr_tail)
                nursery.start_soon(self._feed_stdin, cli.stdin)
                nursery.start_soon(self._watch_exit, cli, nursery.cancel_scope)
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                began = trio.current_time()
                try:
                    survivors = await cli.teardown()
                finally:
                    self.exit_code = cli.exit_code
                if self._on_teardown is not None:
                    self._on_teardown(trio.current_time() - began, survivors)
                if launch.folders is not None:
                    # Abandoned after the bound: it then finishes on its own, or not at all.
                    with trio.move_on_after(BRING_BACK_SECONDS):
                        await trio.to_thread.run_sync(self._bring_back, abandon_on_cancel=True)

    def _bring_back(self) -> None:
        # In a worker thread, once every process of the run is gone.
        launch = self._launch
        assert launch.folders is not None  # noqa: S101 (called for confined runs only)
        try:
            left_out = bring_back(
                launch.folders,
                self._confine.real_config,
                launch.cwd,
                self._sessions,
                self._request.session_id,
            )
        except Exception:
            log.exception(
                "run %s: its session could not be copied back",
                self._run_id,
                extra=run_extra(self._run_id),
            )
            return
        for session in left_out:
            log.warning(
                "run %s: session %s exists already; the run's copy was not brought back",
                self._run_id,
                session,
            )

    async def _converse(self) -> None:
        with self._conversation_scope:
            await self._conversation.serve()

    async def _watch_exit(self, cli: CliProcess, scope: trio.CancelScope) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._hung_after_input, scope)
            await cli.exit()
            nursery.cancel_scope.cancel()
        # Nobody is left to talk to: what is still in the pipe is only passed on.
        self._conversation.close_input()
        self._conversation_scope.cancel()
        self._interrupt_scope.cancel()
        cli.start_draining()
        await cli.end_leftovers()

    async def _hung_after_input(self, scope: trio.CancelScope) -> None:
        await self._stdin_closed.wait()
        patience = self._limits.exit_after_input
        await trio.sleep(patience)
        self.error = RunFailure(
            ErrorCode.CLI_DID_NOT_EXIT,
            f"the Claude Code CLI did not exit within {patience:g} s of its input ending",
        )
        scope.cancel()

    async def _pump_stdout(self, cli: CliProcess, scope: trio.CancelScope) -> None:
        try:
            await self._router.pump(lambda: cli.receive(cli.stdout))
        except LineTooLong as error:
            self.error = RunFailure(ErrorCode.LINE_TOO_LONG, str(error))
            scope.cancel()
        except DocumentTooLarge as error:
            # The answer says why; it need not carry the whole document too.
            if self._router.document is not None:
                self._router.document.clear()
            self.error = RunFailure(ErrorCode.DOCUMENT_TOO_LARGE, str(error))
            scope.cancel()
        finally:
            self._conversation.close_input()  # no more output: nothing left to say

    async def _feed_stdin(self, stdin: trio.abc.SendStream) -> None:
        # stream-json input: the prompt never touches argv, and stdin stays open
        # while the conversation goes on (follow-ups, interrupts, approvals).
        try:
            async for line in self._conversation.outgoing:
                await stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stdin.aclose()
            self._stdin_closed.set()

    async def _interrupt(self) -> None:
        # Cancelled when the CLI exits: whatever happened, it need not be forced.
        with self._interrupt_scope:
            # The acknowledgement must not queue behind a slow client's backlog.
            self._log.stop_holding_back()
            patience = self._limits.interrupt_patience
            if await self._conversation.interrupt(patience):
                # The turn's result closes the input; a CLI that acknowledged but
                # never ends its turn is not waited on for ever.
                with trio.move_on_after(patience):
                    await self._stdin_closed.wait()
                    return
            log.warning(
                "run %s: the CLI did not stop its turn; tearing down",
                self._run_id,
                extra=run_extra(self._run_id),
            )
            self.interrupt_forced = True
            self._cancel_run.cancel()


def log_safe_argv(argv: tuple[str, ...] | list[str]) -> str:
    """Return argv for logs: flags only, values cut, so nothing a caller sent is logged."""
    return " ".join(arg.split("=", 1)[0] for arg in argv[1:])
