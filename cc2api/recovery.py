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

from .launch import WORKDIR_PREFIX, remove_folder
from .proctree import end_leftovers
from .sse import frame_json
from .store import STORE_MARKER_VAR, EventBatch, RunRecord, Store
from .wire import DoneEvent, Status

log = logging.getLogger(__name__)

__all__ = ["lost_record", "recover"]


async def recover(store: Store, grace: float) -> list[RunRecord]:
    """End the leftovers of the runs the store knows as live, mark them lost, and flush.

    Returns the runs marked lost. Cancellation: the teardown of leftovers is shielded
    (bounded by ``grace`` and SIGKILL); the marking is synchronous, its flush awaited.
    """
    unfinished = await store.unfinished()
    if not unfinished:
        return []
    run_ids = [record.run_id for record in unfinished]
    with trio.CancelScope(shield=True):
        left = await end_leftovers(run_ids, (STORE_MARKER_VAR, store.store_id), grace)
        await trio.to_thread.run_sync(_remove_folders, run_ids)
    now = datetime.now(UTC)
    for record in unfinished:
        lost, done = lost_record(record, now)
        store.append_events(record.run_id, done)
        store.save_run(lost)
        log.warning(
            "run %s was live when the last gateway died: marked lost (%d event(s) kept, "
            "%d leftover process(es) ended)",
            record.run_id,
            record.last_event_id,
            left.get(record.run_id, 0),
        )
    await store.flush()
    return [lost_record(record, now)[0] for record in unfinished]


def lost_record(record: RunRecord, now: datetime) -> tuple[RunRecord, EventBatch]:
    """Return the record of a run found lost at ``now``, and its ``done`` event."""
    done_id = record.last_event_id + 1
    done = DoneEvent(
        process_id=record.run_id,
        status=Status.LOST,
        exit_code=None,
        session_id=record.session_id,
        duration_ms=max(0, round((now - record.created_at).total_seconds() * 1000)),
    )
    batch = EventBatch(done_id, 1, frame_json(done_id, done.event, done.wire()))
    # Its end is when it was found lost: when the gateway died is not known.
    return replace(record, status=str(Status.LOST), ended_at=now, last_event_id=done_id), batch


def _remove_folders(run_ids: list[str]) -> None:
    temp = Path(tempfile.gettempdir())
    for run_id in run_ids:
        for folder in temp.glob(f"{WORKDIR_PREFIX}{run_id}-*"):
            remove_folder(folder)
