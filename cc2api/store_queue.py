"""What waits in memory for the SQLite store's writer: records and event batches, bounded."""

from __future__ import annotations

from collections import deque

from .store import (
    EventBatch,
    RunRecord,
)

# -- what waits in memory ---------------------------------------------------------


class Backlog:
    """Records and event batches not yet written: one write's worth, or the queue."""

    def __init__(self) -> None:
        self.records: dict[str, RunRecord] = {}
        self.events: dict[str, deque[EventBatch]] = {}
        self.arrival: deque[str] = deque()  # the run of each batch, oldest first
        self.bytes = 0

    def __bool__(self) -> bool:
        return bool(self.records or self.arrival)

    def add(self, run_id: str, batch: EventBatch) -> None:
        self.events.setdefault(run_id, deque()).append(batch)
        self.arrival.append(run_id)
        self.bytes += len(batch.data)

    def put_before(self, newer: Backlog) -> None:
        """Take ``newer``'s records and batches after this one's (a write that failed)."""
        self.records.update(newer.records)
        for run_id, batches in newer.events.items():
            self.events.setdefault(run_id, deque()).extend(batches)
        self.arrival.extend(newer.arrival)
        self.bytes += newer.bytes

    def drop_oldest(self) -> int:
        """Drop the oldest batch; return its size."""
        run_id = self.arrival.popleft()
        batches = self.events[run_id]
        size = len(batches.popleft().data)
        if not batches:
            del self.events[run_id]
        self.bytes -= size
        return size

    def rows(self) -> list[tuple[str, EventBatch]]:
        # A run's batches together, in order: they land side by side in the index.
        return [(run_id, batch) for run_id, batches in self.events.items() for batch in batches]


class Pending:
    """The queue, the batch being written, and the figures of both."""

    def __init__(self, limit: int) -> None:
        self.queue = Backlog()
        self.writing: Backlog | None = None
        self.limit = limit
        self.peak = 0
        self.queued = 0  # saves and appends so far: flush() waits for a count
        self.dropped = 0  # batches dropped past the limit, and not yet reported
        self.dropped_bytes = 0

    @property
    def bytes(self) -> int:
        return self.queue.bytes + (self.writing.bytes if self.writing else 0)

    def save(self, record: RunRecord) -> None:
        self.queue.records[record.run_id] = record
        self.queued += 1

    def append(self, run_id: str, batch: EventBatch) -> None:
        self.queue.add(run_id, batch)
        self.queued += 1
        self.peak = max(self.peak, self.bytes)
        self.bound()

    def bound(self) -> None:
        """Drop the oldest queued batches while over the limit (the batch being written stays)."""
        while self.bytes > self.limit and self.queue.arrival:
            self.dropped_bytes += self.queue.drop_oldest()
            self.dropped += 1

    def take(self) -> Backlog:
        taken, self.queue = self.queue, Backlog()
        self.writing = taken
        return taken

    def written(self) -> None:
        self.writing = None

    def failed(self) -> None:
        """Put what the failed write took back in front of the queue."""
        if self.writing is None:
            return
        self.writing.put_before(self.queue)
        self.queue, self.writing = self.writing, None
        self.bound()

    def records(self) -> dict[str, RunRecord]:
        """Return the records in memory by run, the newest save of each."""
        if self.writing is None:
            return dict(self.queue.records)
        return {**self.writing.records, **self.queue.records}

    def batches(self, run_id: str) -> list[EventBatch]:
        older = self.writing.events.get(run_id, ()) if self.writing else ()
        return [*older, *self.queue.events.get(run_id, ())]

    def last_id(self, run_id: str) -> int:
        for part in (self.queue, self.writing):  # the newest first
            batches = part.events.get(run_id) if part is not None else None
            if batches:
                return batches[-1].first + batches[-1].count - 1
        return 0


# -- opening and closing ------------------------------------------------------------
