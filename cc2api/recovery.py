"""At startup, what a gateway that died left behind: runs marked ``lost``, processes ended.

A gateway killed by SIGKILL (or by the OOM killer, or a power loss) tears nothing
down: its runs' CLIs and their tools go on running, and spending, with nobody
reading them, and the store still records those runs as live. Before the next
gateway on the same DATA_DIR serves, it ends every process that carries the marker
of one of those runs and the store's id (so never another gateway's), the way a
cancel ends a run's tree, removes their private folders, and records each run
``lost``: its stored events stay, followed by a ``done`` event saying so.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import trio

from .launch import POOL_PREFIX, WORKDIR_PREFIX, pool_marker, remove_folder
from .logs import run_extra
from .proctree import end_leftovers
from .sse import frame_json
from .store import STORE_MARKER_VAR, EventBatch, RunRecord, Store
from .wire import DoneEvent, Status

log = logging.getLogger(__name__)

__all__ = ["lost_done", "lost_record", "recover"]


async def recover(store: Store, grace: float) -> list[RunRecord]:
    """End what the last gateway's runs left running, mark its live runs lost, and flush.

    Call it before any run starts: every process carrying the store's id is ended.
    Returns the runs marked lost. Cancellation: the teardown of leftovers is shielded
    (bounded by ``grace`` and SIGKILL); the marking is synchronous, its flush awaited.
    """
    unfinished = await store.unfinished()
    with trio.CancelScope(shield=True):
        left = await end_leftovers((STORE_MARKER_VAR, store.store_id), grace)
        run_ids = sorted({record.run_id for record in unfinished} | set(left))
        await trio.to_thread.run_sync(_remove_folders, run_ids, pool_marker(store.store_id))
    now = datetime.now(UTC)
    known = {record.run_id for record in unfinished} | {
        record.run_id for record in await _stored(store, set(left))
    }
    # Pooled CLIs' leftovers are ended, and their folders removed, but were no runs.
    for run_id in sorted(run for run in set(left) - known if not run.startswith(POOL_PREFIX)):
        # Its record never reached the disk (a crash within a batch, or a full disk): it
        # is recorded now, so that a client coming back learns how it ended.
        log.warning(
            "ended the leftovers of run %s, which the store never recorded",
            run_id,
            extra=run_extra(run_id),
        )
        unfinished.append(
            RunRecord(run_id=run_id, created_at=now, status="running", cwd=left[run_id])
        )
    if not unfinished:
        return []
    for record in unfinished:
        lost, done = lost_record(record, now)
        store.append_events(record.run_id, done)
        store.save_run(lost)
        log.warning(
            "run %s was live when the last gateway died: marked lost (%d event(s) kept%s)",
            record.run_id,
            record.last_event_id,
            ", its leftover processes ended" if record.run_id in left else "",
        )
    await store.flush()
    return [lost_record(record, now)[0] for record in unfinished]


def lost_done(record: RunRecord, now: datetime) -> DoneEvent:
    """Return the ``done`` event of a run found lost at ``now``."""
    return DoneEvent(
        process_id=record.run_id,
        status=Status.LOST,
        exit_code=None,
        session_id=record.session_id,
        duration_ms=max(0, round((now - record.created_at).total_seconds() * 1000)),
    )


def lost_record(record: RunRecord, now: datetime) -> tuple[RunRecord, EventBatch]:
    """Return the record of a run found lost at ``now``, and its ``done`` event."""
    done_id = record.last_event_id + 1
    done = lost_done(record, now)
    batch = EventBatch(done_id, 1, frame_json(done_id, done.event, done.wire()))
    # Its end is when it was found lost: when the gateway died is not known.
    return replace(record, status=str(Status.LOST), ended_at=now, last_event_id=done_id), batch


async def _stored(store: Store, run_ids: set[str]) -> list[RunRecord]:
    found = [await store.get_run(run_id) for run_id in sorted(run_ids)]
    return [record for record in found if record is not None]


def _remove_folders(run_ids: list[str], pooled: str) -> None:
    temp = Path(tempfile.gettempdir())
    # Pooled CLIs exit when their gateway dies, so no process is left to name their
    # folders (nor those of runs that took one): every folder of this store's pool goes.
    for pattern in (*(f"{run_id}-*" for run_id in run_ids), f"{pooled}*"):
        for folder in temp.glob(f"{WORKDIR_PREFIX}{pattern}"):
            remove_folder(folder)
