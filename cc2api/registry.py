"""The set of live runs: owns the nursery their supervisors run in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import trio

from .confinement import ConfineSetup
from .conversation import HeldBytes
from .errors import NotFound, Unavailable
from .eventlog import Keep
from .launch import Launch
from .limits import RunLimits
from .logs import run_extra
from .metrics import Metrics
from .models import ChatRequest
from .policy import Plan
from .pool import Pool
from .pool_profile import Profile
from .principal import ADMIN, Principal
from .proctree import become_subreaper, reap_zombie_children
from .recovery import recover
from .retention import Retention
from .runner import Run
from .sessions import config_dir, project_key
from .settings import Settings
from .slots import Share, Slots
from .store import EventBatch, InMemoryStore, RunRecord, Store, record_of
from .wire import ErrorCode

log = logging.getLogger(__name__)

# Orphans reparented to us (we are their subreaper) are reaped after every run and
# at least this often, so none stays a zombie.
REAP_INTERVAL_SECONDS = 5.0


def _continues(request: ChatRequest) -> bool:
    return request.continue_conversation and not request.fork_session


class Registry:
    """Starts, finds, cancels and drains runs; one per app.

    It holds the live :class:`Run` objects, by run id: every run from its start to
    its end, and finished detached runs while :class:`Retention` keeps them. Records
    and session claims go through the :class:`Store`.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        limits: RunLimits | None = None,
        store: Store | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics  # told of each run's start, spawn, teardown and end
        # Built once by the gateway: the server's environment less what is withheld.
        self._environ = dict(environ)
        self._store: Store = InMemoryStore() if store is None else store
        self._runs: dict[str, Run] = {}  # run id -> run, oldest first
        # Each kept run holds up to RUN_BUFFER_BYTES of events: their number is bounded too.
        self._retention = Retention(
            settings.detached_ttl_seconds,
            settings.max_concurrent_runs + settings.max_queued_runs,
            self._evict,
        )
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._reaping = False
        self.slots = Slots(settings.max_concurrent_runs, settings.max_queued_runs)
        self._limits = limits or RunLimits.from_settings(settings)
        self.held = HeldBytes(settings.followups_total_max_bytes)
        self._on_end: list[Callable[[Run], None]] = []
        self._on_event: list[Callable[[str, str, dict[str, Any]], None]] = []
        # Where the CLI keeps its sessions and settings, as the runs' environment says.
        self.real_config = config_dir(self._environ)
        self._confine = ConfineSetup(self.real_config, tuple(settings.confine_read_paths))
        self.pool = Pool(
            settings,
            environ=self._environ,
            confine=self._confine,
            limits=self._limits,
            reap=self.reap,
            store_id=self._store.store_id,
        )
        self._pool_scope = trio.CancelScope()
        self._pool_done = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the runs' nursery until cancelled.

        Before it reports started, the store is served and what a crashed gateway left
        is recovered (:func:`cc2api.recovery.recover`): no run starts before that.

        Cancellation: cancelling this task cancels every run; each tears its
        process tree down (shielded, bounded) before this returns. Retained runs
        are let go. The store's writer outlives the runs, so their last records are
        queued before it flushes (shielded, bounded by the store).
        """
        self._reaping = become_subreaper()
        if not self._reaping:
            log.warning("could not become a child subreaper; orphans are left to init")
        # Shielded so that a cancellation of this task reaches the writer only once
        # the runs are gone, through writing.cancel() below.
        writing = trio.CancelScope(shield=True)
        async with trio.open_nursery() as outer:
            await outer.start(self._write, writing)
            try:
                await recover(self._store, self._limits.kill_grace)
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._retention.serve)
                    await nursery.start(self._serve_pool)
                    self._nursery = nursery
                    task_status.started()
                    try:
                        while True:
                            await trio.sleep(REAP_INTERVAL_SECONDS)
                            self.reap()
                    finally:
                        self._closing = True
                        self._nursery = None
                        self._retention.close()  # at once: no run is kept past the registry
            finally:
                writing.cancel()

    async def _serve_pool(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            with self._pool_scope:
                if self.pool.enabled:
                    await self.pool.serve(task_status=task_status)
                    return
                task_status.started()
        finally:
            self._pool_done.set()

    async def _write(
        self,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await self._store.serve(task_status=task_status)

    @property
    def environ(self) -> dict[str, str]:
        """Return the environment every run's CLI inherits."""
        return self._environ

    @property
    def store(self) -> Store:
        """Return the store the registry keeps records and claims in."""
        return self._store

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

    def _keeper(self, run_id: str) -> Keep | None:
        store = self._store
        if not store.keeps_history:
            return None

        def keep(first: int, count: int, data: bytes) -> None:
            store.append_events(run_id, EventBatch(first, count, data))

        return keep

    def on_end(self, callback: Callable[[Run], None]) -> None:
        """Call ``callback`` with each run as it ends (after its last record is queued).

        A callback must not raise; one that does is logged, and the others still run.
        """
        self._on_end.append(callback)

    def on_event(self, callback: Callable[[str, str, dict[str, Any]], None]) -> None:
        """Call ``callback(run_id, event, data)`` for each gateway event of every run.

        Gateway events are the ones the gateway makes (``process``, ``approval``,
        ``done``, ...), not the CLI's lines. A callback must not block or raise; one
        that raises is logged, and the run goes on.
        """
        self._on_event.append(callback)

    def _observe(self, run_id: str, event: str, data: dict[str, Any]) -> None:
        for callback in self._on_event:
            try:
                callback(run_id, event, data)
            except Exception:
                log.exception("run %s: an observer of its events failed", run_id)

    def start(
        self,
        request: ChatRequest,
        plan: Plan,
        launch: Launch,
        owner: Principal = ADMIN,
        share: Share | None = None,
        *,
        profile: Profile | None = None,
    ) -> Run:
        """Claim the request's sessions, register a run and start its supervisor.

        The run's events are read through ``run.attach_reader()``; it is found by
        :meth:`get` under ``run.run_id`` (its run id) until it is let go. With a
        ``profile``, the run takes a pooled CLI of it if one waits when its slot comes.

        Raises:
            Unavailable: the gateway is shutting down.
            SessionBusy: a live run is using ``request.session_id`` or
                ``request.new_session_id``, or is live in the project a
                ``continue_conversation`` would share.
            QueueFull: MAX_CONCURRENT_RUNS run and MAX_QUEUED_RUNS wait already.
        """
        if not self.serving or self._nursery is None:
            raise Unavailable("the server is shutting down", code=ErrorCode.SHUTTING_DOWN)
        run_id = launch.run_id
        sessions = [s for s in (request.session_id, request.new_session_id) if s is not None]
        # --continue picks the project's most recent session, which may be a live run's.
        continue_from = request.cwd if _continues(request) else None
        self._store.claim(run_id, sessions, project_key(request.cwd), continue_from=continue_from)
        try:
            slot = self.slots.take(share)
            try:
                run = Run(
                    request=request,
                    plan=plan,
                    launch=launch,
                    limits=self._limits,
                    slot=slot,
                    held_total=self.held,
                    confine=self._confine,
                    on_session=self._claim_session,
                    on_start=self._spawned,
                    on_finish=self._forget,
                    reap=self.reap,
                    keep_events=self._keeper(run_id),
                    store_room=self._store if self._store.keeps_history else None,
                    owner=owner,
                    on_teardown=None if self._metrics is None else self._metrics.teardown,
                    pool=None if profile is None else self.pool,
                    profile=profile,
                    on_event=partial(self._observe, run_id) if self._on_event else None,
                )
                self._runs[run_id] = run
                self._store.save_run(self.record(run))
            except BaseException:
                slot.release()
                self._runs.pop(run_id, None)
                raise
        except BaseException:  # the claims are the run's: it never started
            self._store.release(run_id)
            raise
        if self._metrics is not None:
            self._metrics.run_started(run)
        self._nursery.start_soon(run.supervise, name=f"run {run_id}")
        if not run.detached and request.stream:
            self._nursery.start_soon(run.cancel_unless_read, self._limits.reader_timeout)
        return run

    def find(self, run_id: str, viewer: Principal = ADMIN) -> Run | None:
        """Return the run with this id if the registry holds it (live, or kept) and
        ``viewer`` may see it, else None."""
        run = self._runs.get(run_id)
        return run if run is not None and viewer.owns(run.owner.key_id) else None

    def get(self, run_id: str, viewer: Principal = ADMIN) -> Run:
        """Return the run with this id: live, or finished and detached within its TTL.

        Raises:
            NotFound: no such run (or it has been let go), or ``viewer`` may not see
                it: another key's run answers as one that does not exist.
        """
        run = self.find(run_id, viewer)
        if run is None:
            raise NotFound(f"no active process {run_id}", code=ErrorCode.PROCESS_NOT_FOUND)
        return run

    def runs(self, viewer: Principal = ADMIN, key_id: str | None = None) -> list[Run]:
        """Return the runs ``viewer`` may see (only ``key_id``'s, if given): live ones and
        finished detached ones, oldest first."""
        return [
            run
            for run in self._runs.values()
            if viewer.owns(run.owner.key_id) and (key_id is None or run.owner.key_id == key_id)
        ]

    def live_runs(self) -> list[Run]:
        """Return the runs that have not finished, oldest first."""
        return [run for run in self._runs.values() if not run.finished.is_set()]

    async def cancel(self, run_id: str, viewer: Principal = ADMIN) -> Run:
        """Cancel a run and return once its processes are gone and it is deregistered.

        Raises:
            NotFound: no run has this id that ``viewer`` may see.

        Cancellation: cancelling the caller stops the wait, not the teardown.
        """
        run = self.get(run_id, viewer)
        run.cancel()
        await run.finished.wait()
        return run

    async def drain(self) -> None:
        """Refuse new runs, end the pool's CLIs, cancel every live run, and wait for all.

        Cancellation: the wait stops; the runs and pooled CLIs still end in their tasks.
        """
        self._closing = True
        self._pool_scope.cancel()
        runs = self.live_runs()
        for run in runs:
            run.cancel()
        for run in runs:
            await run.finished.wait()
        if self._nursery is not None:
            await self._pool_done.wait()

    def _claim_session(self, run: Run, session_id: str) -> None:
        holder = self._store.claim_later(run.run_id, session_id)
        if holder != run.run_id:
            log.warning("runs %s and %s both use session %s", holder, run.run_id, session_id)
        self._record(run)

    def _forget(self, run: Run) -> None:
        # A detached run stays readable for a while; its session is free at once.
        run_id = run.run_id
        self._store.release(run_id)
        self._record(run)
        if not (run.detached and self._retention.keep(run_id)):
            self._evict(run_id)
        for callback in self._on_end:
            try:
                callback(run)
            except Exception:
                log.exception("run %s: counting its end failed", run_id, extra=run_extra(run_id))
        log.info("run %s ended: %s", run_id, run.status, extra=run_extra(run_id, run.owner.name))
        if self._metrics is not None:
            self._metrics.run_ended(run)

    def _spawned(self, run: Run) -> None:
        self._record(run)
        if self._metrics is not None:
            self._metrics.run_spawned(run)

    def record(self, run: Run) -> RunRecord:
        """Return what the store keeps of ``run`` now (its prompt only with STORE_PROMPTS)."""
        return record_of(run, prompt=self._settings.store_prompts)

    def fresh(self, record: RunRecord) -> RunRecord:
        """Return ``record`` as it stands now if the registry holds its run, else as given."""
        run = self._runs.get(record.run_id)
        if run is None:
            return record
        now = self.record(run)
        return replace(now, events_pruned=record.events_pruned)

    def _record(self, run: Run) -> None:
        # A run under way is not failed for its record: a store that cannot take it
        # costs the record, and says so in the log.
        try:
            self._store.save_run(self.record(run))
        except Exception:
            log.exception(
                "run %s: its record could not be saved", run.run_id, extra=run_extra(run.run_id)
            )

    def _evict(self, run_id: str) -> None:
        if self._runs.pop(run_id, None) is not None:
            self._store.evict(run_id)
