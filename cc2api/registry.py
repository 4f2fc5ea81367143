"""The set of live runs: owns the nursery their supervisors run in."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping

import trio

from .cli_args import cli_environment
from .confinement import ConfineSetup
from .conversation import HeldBytes
from .errors import NotFound, SessionBusy, Unavailable
from .launch import Launch
from .limits import RunLimits
from .models import ChatRequest
from .policy import Plan
from .proctree import become_subreaper, reap_zombie_children
from .runner import Run
from .sessions import config_dir, project_key
from .settings import Settings
from .slots import Slots

log = logging.getLogger(__name__)

# Orphans reparented to us (we are their subreaper) are reaped after every run and
# at least this often, so none stays a zombie.
REAP_INTERVAL_SECONDS = 5.0


def _continues(request: ChatRequest) -> bool:
    return request.continue_conversation and not request.fork_session


class Registry:
    """Starts, finds, cancels and drains runs; one per app."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        limits: RunLimits | None = None,
    ) -> None:
        self._settings = settings
        self._environ = cli_environment(environ)
        # A run's scheduled prompts (CronCreate) would fire in whatever later run has its
        # input open: off unless the operator turns them on in the server's environment.
        self._environ.setdefault("CLAUDE_CODE_DISABLE_CRON", "1")
        self._runs: dict[str, Run] = {}
        self._sessions: dict[str, str] = {}  # session id -> the live run holding it
        self._projects: dict[str, set[str]] = {}  # project key -> its live runs
        self._project_of: dict[str, str] = {}  # live run -> its project key
        self._claims_of: dict[str, list[str]] = {}  # live run -> the sessions it holds
        self._retained: deque[str] = deque()  # finished detached runs, oldest first
        # Each keeps up to RUN_BUFFER_BYTES of events: their number is bounded too.
        self._retain_limit = settings.max_concurrent_runs + settings.max_queued_runs
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._reaping = False
        self.slots = Slots(settings.max_concurrent_runs, settings.max_queued_runs)
        self._limits = limits or RunLimits.from_settings(settings)
        self.held = HeldBytes(settings.followups_total_max_bytes)
        # Where the CLI keeps its sessions and settings, as the runs' environment says.
        self.real_config = config_dir(self._environ)
        self._confine = ConfineSetup(self.real_config, tuple(settings.confine_read_paths))

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
    def environ(self) -> dict[str, str]:
        """Return the environment every run's CLI inherits."""
        return self._environ

    @property
    def confine(self) -> ConfineSetup:
        """Return what confined runs are set up with."""
        return self._confine

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

    def start(self, request: ChatRequest, plan: Plan, launch: Launch) -> Run:
        """Register a run and start its supervisor; the run's stream is ``run.events``.

        Raises:
            Unavailable: the gateway is shutting down.
            SessionBusy: a live run is using ``request.session_id``.
            QueueFull: MAX_CONCURRENT_RUNS run and MAX_QUEUED_RUNS wait already.
        """
        if not self.serving or self._nursery is None:
            raise Unavailable("the server is shutting down", code="shutting_down")
        claims = [s for s in (request.session_id, request.new_session_id) if s is not None]
        for claim in claims:
            if claim in self._sessions:
                raise SessionBusy(
                    f"session {claim} is in use by run {self._sessions[claim]}; "
                    "wait for it to end or cancel it"
                )
        project = project_key(request.cwd)
        # --continue picks the project's most recent session, which may be a live run's.
        live_here = self._projects.get(project)
        if _continues(request) and live_here:
            blocker = next(iter(live_here))
            raise SessionBusy(
                f"run {blocker} is live in the project of {request.cwd}, which "
                "continue_conversation would share; wait for it to end, cancel it, or "
                "use fork_session"
            )
        slot = self.slots.take()
        run = Run(
            request=request,
            plan=plan,
            launch=launch,
            limits=self._limits,
            slot=slot,
            held_total=self.held,
            confine=self._confine,
            on_session=self._claim_session,
            on_finish=self._forget,
            reap=self.reap,
        )
        self._runs[run.run_id] = run
        for claim in claims:
            self._sessions[claim] = run.run_id
        self._claims_of[run.run_id] = claims
        self._projects.setdefault(project, set()).add(run.run_id)
        self._project_of[run.run_id] = project
        self._nursery.start_soon(run.supervise, name=f"run {run.run_id}")
        if not run.detached and request.stream:
            self._nursery.start_soon(run.cancel_unless_read, self._limits.reader_timeout)
        return run

    def get(self, process_id: str) -> Run:
        """Return the run with this id: live, or finished and detached within its TTL.

        Raises:
            NotFound: no such run (or it has been evicted).
        """
        run = self._runs.get(process_id)
        if run is None:
            raise NotFound(f"no active process {process_id}", code="process_not_found")
        return run

    def runs(self) -> list[Run]:
        """Return the runs known: live ones and finished detached ones, oldest first."""
        return list(self._runs.values())

    def live_runs(self) -> list[Run]:
        """Return the runs that have not finished, oldest first."""
        return [run for run in self._runs.values() if not run.finished.is_set()]

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
        runs = self.live_runs()
        for run in runs:
            run.cancel()
        for run in runs:
            await run.finished.wait()

    def _claim_session(self, run: Run, session_id: str) -> None:
        owner = self._sessions.setdefault(session_id, run.run_id)
        if owner == run.run_id:
            self._claims_of.setdefault(run.run_id, []).append(session_id)
        else:
            log.warning("runs %s and %s both use session %s", owner, run.run_id, session_id)

    def _forget(self, run: Run) -> None:
        # A detached run stays readable for a while; its session is free at once.
        ttl = self._settings.detached_ttl_seconds
        if run.detached and ttl > 0 and self._nursery is not None:
            self._retained.append(run.run_id)
            while len(self._retained) > self._retain_limit:
                self._runs.pop(self._retained.popleft(), None)
            self._nursery.start_soon(self._evict_later, run, ttl)
        else:
            self._runs.pop(run.run_id, None)
        project = self._project_of.pop(run.run_id, None)
        if project is not None:
            live = self._projects[project]
            live.discard(run.run_id)
            if not live:
                del self._projects[project]
        for session in self._claims_of.pop(run.run_id, ()):
            if self._sessions.get(session) == run.run_id:
                del self._sessions[session]
        log.info("run %s ended: %s", run.run_id, run.status)

    async def _evict_later(self, run: Run, ttl: float) -> None:
        try:
            await trio.sleep(ttl)
        finally:  # at shutdown too: nothing is kept past the registry
            if self._runs.pop(run.run_id, None) is not None:
                self._retained.remove(run.run_id)
