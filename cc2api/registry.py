"""The set of live runs: owns the nursery their supervisors run in."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import trio

from .cli_args import cli_environment
from .errors import NotFound, SessionBusy, Unavailable
from .models import ChatRequest
from .policy import Plan
from .proctree import become_subreaper, reap_zombie_children
from .runner import Run
from .settings import Settings

log = logging.getLogger(__name__)

# How long a new run waits for its HTTP response to start reading it before it is
# cancelled as abandoned; Quart starts the body as soon as the handler returns.
READER_TIMEOUT_SECONDS = 10.0
# Orphans reparented to us (we are their subreaper) are reaped after every run and
# at least this often, so none stays a zombie.
REAP_INTERVAL_SECONDS = 5.0


_CONTINUE = "continue:"


def _session_claims(request: ChatRequest) -> list[str]:
    """Return what a run holds while it lives: sessions it reads or writes."""
    claims = [s for s in (request.session_id, request.new_session_id) if s is not None]
    if request.continue_conversation and not request.fork_session:
        # Which session --continue picks is known only later; hold the folder's.
        claims.append(_CONTINUE + os.path.realpath(request.cwd))
    return claims


class Registry:
    """Starts, finds, cancels and drains runs; one per app."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        reader_timeout: float = READER_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings
        self._environ = cli_environment(environ)
        self._runs: dict[str, Run] = {}
        # session id (or "continue:<folder>") -> process id of the live run holding it
        self._sessions: dict[str, str] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._reader_timeout = reader_timeout
        self._reaping = False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the runs' nursery until cancelled.

        Cancellation: cancelling this task cancels every run; each tears its
        process tree down (shielded, bounded) before this returns.
        """
        self._reaping = become_subreaper()
        if not self._reaping:
            log.warning("could not become a child subreaper; orphans are left to init")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(REAP_INTERVAL_SECONDS)
                    self.reap()
            finally:
                self._closing = True
                self._nursery = None

    @property
    def serving(self) -> bool:
        """Return whether runs can be started (the nursery is open, not draining)."""
        return self._nursery is not None and not self._closing

    def reap(self) -> None:
        """Reap the orphans we adopted as subreaper; never raises."""
        if not self._reaping:
            return
        try:
            reap_zombie_children()
        except Exception:
            log.exception("reaping orphans failed")

    def start(self, request: ChatRequest, plan: Plan, claude: Path) -> Run:
        """Register a run and start its supervisor; the run's stream is ``run.events``.

        Raises:
            Unavailable: the gateway is shutting down.
            SessionBusy: a live run is using ``request.session_id``.
        """
        if not self.serving or self._nursery is None:
            raise Unavailable("the server is shutting down", code="shutting_down")
        claims = _session_claims(request)
        for claim in claims:
            if claim in self._sessions:
                what = (
                    f"the most recent conversation in {request.cwd}"
                    if claim.startswith(_CONTINUE)
                    else f"session {claim}"
                )
                raise SessionBusy(
                    f"{what} is in use by run {self._sessions[claim]}; "
                    "wait for it to end or cancel it"
                )
        run = Run(
            process_id=str(uuid.uuid4()),
            request=request,
            plan=plan,
            claude=claude,
            environ=self._environ,
            kill_grace=self._settings.kill_grace_seconds,
            max_line_bytes=self._settings.max_line_bytes,
            on_session=self._claim_session,
            on_finish=self._forget,
            reap=self.reap,
        )
        self._runs[run.process_id] = run
        for claim in claims:
            self._sessions[claim] = run.process_id
        self._nursery.start_soon(run.supervise, name=f"run {run.process_id}")
        self._nursery.start_soon(run.cancel_unless_read, self._reader_timeout)
        return run

    def get(self, process_id: str) -> Run:
        """Return the live run with this id.

        Raises:
            NotFound: no live run has it.
        """
        run = self._runs.get(process_id)
        if run is None:
            raise NotFound(f"no active process {process_id}", code="process_not_found")
        return run

    def runs(self) -> list[Run]:
        """Return the live runs, oldest first."""
        return list(self._runs.values())

    async def cancel(self, process_id: str) -> Run:
        """Cancel a run and return once its processes are gone and it is deregistered.

        Raises:
            NotFound: no live run has this id.

        Cancellation: cancelling the caller stops the wait, not the teardown.
        """
        run = self.get(process_id)
        run.cancel()
        await run.finished.wait()
        return run

    async def drain(self) -> None:
        """Refuse new runs, cancel every live one, and wait until all have finished.

        Cancellation: the wait stops; the runs still end in their own tasks.
        """
        self._closing = True
        runs = self.runs()
        for run in runs:
            run.cancel()
        for run in runs:
            await run.finished.wait()

    def _claim_session(self, run: Run, session_id: str) -> None:
        self._sessions.setdefault(session_id, run.process_id)

    def _forget(self, run: Run) -> None:
        self._runs.pop(run.process_id, None)
        for session, owner in list(self._sessions.items()):
            if owner == run.process_id:
                del self._sessions[session]
        log.info("run %s ended: %s", run.process_id, run.status)
