"""What the gateway says on the wire: statuses, error codes and every JSON shape, once each.

The JSON answers and SSE event payloads are built from these models, and the OpenAPI
document's ``components`` are generated from them (see :mod:`cc2api.openapi`), so
the two cannot drift apart. Each model's :meth:`Wire.wire` returns the dict to send:
every field, except those typed ``| MISSING`` and left unset, which are omitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import MISSING, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from .codes import (
    FINAL_STATUSES,
    RUN_ERROR_CODES,
    ErrorCode,
    FinalStatus,
    RunErrorCode,
    Status,
    Verdict,
    as_final,
)

__all__ = [
    "EVENTS",
    "FINAL_STATUSES",
    "MESSAGE_EVENT",
    "REASON_FIELDS",
    "RUN_ERROR_CODES",
    "Approval",
    "ApprovalAnswered",
    "Approvals",
    "Cancelled",
    "Document",
    "DoneEvent",
    "DroppedEvent",
    "Error",
    "ErrorCode",
    "ErrorEvent",
    "Event",
    "FinalStatus",
    "FollowUpAccepted",
    "Health",
    "Interrupted",
    "Process",
    "ProcessEvent",
    "Processes",
    "QueuedEvent",
    "RunErrorCode",
    "RunFailure",
    "RunInfo",
    "Runs",
    "Session",
    "SessionDeleted",
    "SessionMessages",
    "Sessions",
    "Status",
    "StoreHealth",
    "Verdict",
    "Wire",
    "as_final",
    "timestamp",
]


def timestamp(moment: datetime) -> str:
    """Return an aware UTC time as the wire writes it: ISO 8601 with ``Z``."""
    return moment.isoformat().replace("+00:00", "Z")


Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]
Timestamp = Annotated[
    datetime,
    PlainSerializer(timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Count = Annotated[int, Field(ge=0)]


class Wire(BaseModel):
    """A JSON shape the gateway sends; built by keyword, checked, then sent as :meth:`wire`."""

    # Python-mode dumps keep what a CLI line held (NaN, lone surrogates in keys) as
    # json.dumps would send it; enum values make the dump plain str, as before.
    model_config = ConfigDict(frozen=True, use_enum_values=True)

    def wire(self) -> dict[str, Any]:
        """Return the dict to send as JSON: every field, the unset ``MISSING`` ones left out."""
        return self.model_dump()


class Error(Wire):
    """The body of every answer that is not 2xx."""

    detail: str = Field(description="What is wrong, in words.")
    # A str, not an ErrorCode: werkzeug's refusals are named by the exception.
    code: str = Field(description="Stable code for programs.")


class StoreHealth(Wire):
    """The store, as `GET /health` shows it."""

    kind: Literal["sqlite", "memory"] = Field(description="The STORE setting.")
    backlog_bytes: Count = Field(description="Events queued for the store, not written yet.")
    backlog_peak_bytes: Count = Field(description="The most there were at once since start.")


class PoolHealth(Wire):
    """The warm pool, as `GET /health` shows it (all zero when POOL_SIZE is 0)."""

    size: Count = Field(description="POOL_SIZE: the most CLIs that wait, in all.")
    idle: Count = Field(description="CLIs started and waiting for a run now.")
    starting: Count = Field(description="CLIs spawned and still starting.")
    profiles: Count = Field(description="Plans kept warm now.")
    hits: Count = Field(description="Runs that took a waiting CLI, since start.")
    misses: Count = Field(description="Poolable runs that found none and spawned cold.")
    spawned: Count = Field(description="CLIs the pool started.")
    retired: dict[str, Count] = Field(
        description="CLIs ended unused, by why: idle, stale, exited, printed, memory, "
        "evicted, rebalanced, error."
    )
    rss_bytes: Count = Field(description="Resident memory of the waiting CLIs' trees.")
    max_rss_bytes: Count = Field(description="POOL_MAX_RSS_MB, in bytes.")


class Health(Wire):
    """The answer of `GET /health`."""

    status: Literal["ok", "degraded"]
    claude_version: str | None
    active_processes: Count = Field(description="Live runs, queued ones included.")
    running: Count = Field(description="Runs holding one of the MAX_CONCURRENT_RUNS slots.")
    queued: Count = Field(description="Runs waiting for a slot.")
    version: str
    store: StoreHealth
    pool: PoolHealth
    reason: str | MISSING = Field(default=MISSING, description="Why degraded.")


class Process(Wire):
    """A run as `GET /processes` lists it."""

    process_id: Uuid
    pid: int | None
    cwd: str
    model: str | None
    session_id: str | None
    started_at: Timestamp
    status: Status = Field(
        description="A final status only for a finished detached run, still kept."
    )
    queue_position: Count = Field(description="Place in the queue from 1 while queued, else 0.")
    detached: bool
    finished_at: Timestamp | None
    last_event_id: Count
    pending_approvals: Count
    pooled: bool = Field(
        default=False, description="The run took a CLI the warm pool had spawned ahead."
    )


class Processes(Wire):
    """The answer of `GET /processes`: the live runs, and finished detached ones kept."""

    processes: list[Process]
    count: Count


class RunInfo(Wire):
    """A run's record, as `GET /runs` and `GET /runs/{process_id}` answer it."""

    process_id: Uuid
    status: Status
    created_at: Timestamp = Field(description="Accepted.")
    started_at: Timestamp | None = Field(description="Its CLI started; null while queued.")
    ended_at: Timestamp | None = Field(
        description="Settled; for a `lost` run, when the next start marked it."
    )
    exit_code: int | None
    error_code: str | None = Field(description="The `error` event's code, if it failed.")
    error_message: str | None
    cwd: str
    session_id: str | None = Field(description="The session the CLI last said it uses.")
    sessions: list[str] = Field(description="Every session it used, the one resumed first.")
    model: str | None
    permission_mode: str | None
    options: dict[str, Any] = Field(
        description="The request's options that cannot hold a secret, as given."
    )
    detached: bool
    total_cost_usd: float | None = Field(description="From the CLI's `result` line.")
    usage: dict[str, Any] | None = Field(description="From the CLI's `result` line.")
    num_turns: int | None
    duration_api_ms: int | None
    last_event_id: Count
    events_pruned: bool = Field(
        description="STORE_MAX_BYTES pruned its events: a replay starts with `dropped`."
    )
    prompt: str | MISSING = Field(default=MISSING, description="Only with STORE_PROMPTS=true.")


class Runs(Wire):
    """The answer of `GET /runs`: records newest first, and the cursor of the next page."""

    runs: list[RunInfo]
    count: Count
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class Cancelled(Wire):
    """The answer of `DELETE /chat/{process_id}`."""

    process_id: Uuid
    status: FinalStatus


class Interrupted(Wire):
    """The answer of `POST /chat/{process_id}/interrupt`."""

    process_id: Uuid
    status: FinalStatus
    forced: bool = Field(description="The CLI did not acknowledge; the run was torn down.")


class FollowUpAccepted(Wire):
    """The answer of `POST /chat/{process_id}/messages`."""

    process_id: Uuid
    ahead: Count = Field(description="Messages that will be answered first.")


class Event(Wire):
    """The data of an SSE event; :attr:`event` is its name."""

    event: ClassVar[str]


class ProcessEvent(Event):
    """Data of the `process` event."""

    event: ClassVar[str] = "process"
    process_id: Uuid


class QueuedEvent(Event):
    """Data of the `queued` event: the run waits for a slot."""

    event: ClassVar[str] = "queued"
    position: int = Field(ge=1, description="Place in the queue; 1 is next.")
    running: Count
    max_concurrent_runs: int = Field(ge=1)


class ErrorEvent(Event):
    """Data of the `error` event."""

    event: ClassVar[str] = "error"
    code: RunErrorCode
    message: str
    exit_code: int | None
    stderr_tail: str = Field(description="The last 8 KiB of stderr.")


class DoneEvent(Event):
    """Data of the `done` event."""

    event: ClassVar[str] = "done"
    process_id: Uuid
    status: FinalStatus
    exit_code: int | None
    session_id: str | None
    duration_ms: Count


class DroppedEvent(Event):
    """Data of the `dropped` event: the replay starts after a gap."""

    event: ClassVar[str] = "dropped"
    dropped: int = Field(ge=1, description="Events gone.")
    first_id: int = Field(ge=2, description="The first kept.")


def _reason(description: str) -> Any:
    return Field(default=None, description=description)


class Approval(Event):
    """A tool call waiting for an answer (the `approval` event's data)."""

    event: ClassVar[str] = "approval"
    approval_id: Uuid
    tool_name: str
    input: dict[str, Any] = Field(description="The tool's input, as the model gave it.")
    suggestions: list[Any] = Field(description="The CLI's permission suggestions, as it gave them.")
    requested_at: Timestamp
    # The CLI's reasons for asking, passed on as it gave them (None: it gave none).
    display_name: str | None = _reason("The CLI's name for the tool.")
    description: str | None = _reason("What the call acts on (a path, or Bash's description).")
    decision_reason: str | None = _reason("Why the CLI asks.")
    decision_reason_type: str | None = _reason("`safetyCheck`, `workingDir`, `rule`, ...")
    blocked_path: str | None = _reason("For Bash: the path that made the CLI ask.")
    tool_use_id: str | None = _reason("The tool_use block this call comes from.")
    refused: str | None = _reason(
        "Why the gateway refused the call without asking (then `approval_answered` says "
        "`refused` at once); null when it waits for an answer."
    )


REASON_FIELDS = (
    "display_name",
    "description",
    "decision_reason",
    "decision_reason_type",
    "blocked_path",
    "tool_use_id",
)


class ApprovalAnswered(Event):
    """An approval's answer."""

    event: ClassVar[str] = "approval_answered"
    approval_id: Uuid
    answer: Verdict


class Approvals(Wire):
    """The answer of `GET /chat/{process_id}/approvals`: the pending ones, oldest first."""

    approvals: list[Approval]
    count: Count


class Document(Wire):
    """The answer with `stream: false`; failures add `detail`, `code`, `error`."""

    process_id: Uuid
    session_id: str | None
    status: FinalStatus
    exit_code: int | None
    result: dict[str, Any] | None = Field(description="The CLI's last result line.")
    messages: list[Any] = Field(description="Every line the CLI printed, parsed.")
    detail: str | MISSING = MISSING
    code: str | MISSING = MISSING
    error: ErrorEvent | MISSING = MISSING


MESSAGE_EVENT = "message"  # one CLI stdout line, passed on as it is: no model
# Every event, in the order a stream may bring them; None: the data is the CLI's line.
EVENTS: dict[str, type[Event] | None] = {
    ProcessEvent.event: ProcessEvent,
    QueuedEvent.event: QueuedEvent,
    MESSAGE_EVENT: None,
    Approval.event: Approval,
    ApprovalAnswered.event: ApprovalAnswered,
    DroppedEvent.event: DroppedEvent,
    ErrorEvent.event: ErrorEvent,
    DoneEvent.event: DoneEvent,
}


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed, as known before it is settled; :meth:`event` completes it."""

    code: RunErrorCode
    message: str

    def event(self, exit_code: int | None, stderr_tail: str) -> ErrorEvent:
        """Return the ``error`` event of the settled run."""
        return ErrorEvent(
            code=self.code, message=self.message, exit_code=exit_code, stderr_tail=stderr_tail
        )


# -- sessions ------------------------------------------------------------------
# The CLI's sessions (GET /sessions, GET and DELETE /sessions/{session_id}), read from
# its own transcripts by cc2api.session_index.


class Session(Wire):
    """A CLI session, as its transcript and the store tell it."""

    session_id: Uuid
    cwd: str | None = Field(
        description="The folder its first turn was recorded in; null when none is recorded."
    )
    created_at: Timestamp = Field(
        description="Its first entry's time (without any: the transcript's modification time)."
    )
    last_activity: Timestamp = Field(
        description="Its last entry's time (without any: the transcript's modification time)."
    )
    message_count: Count = Field(
        description="Its user and assistant messages, tool results included (not meta or "
        "sidechain entries)."
    )
    preview: str | None = Field(
        description="The first prompt, on one line, cut at 200 characters; null before any."
    )
    runs: list[Uuid] = Field(description="This gateway's runs that used it, oldest first.")
    held_by: Uuid | None = Field(description="The live run using it now, if any.")


class Sessions(Wire):
    """The answer of `GET /sessions`: newest activity first."""

    sessions: list[Session]
    count: Count
    next_cursor: str | None = Field(description="The next page's `cursor`; null on the last.")


class SessionMessages(Wire):
    """The answer of `GET /sessions/{session_id}`: a page of its transcript, in file order."""

    session: Session
    messages: list[Any] = Field(
        description="The transcript's lines, each parsed, as the CLI wrote them."
    )
    count: Count = Field(description="Lines on this page.")
    next_cursor: str | None = Field(description="The next page's `cursor`; null on the last.")


class SessionDeleted(Wire):
    """The answer of `DELETE /sessions/{session_id}`."""

    session_id: Uuid
    deleted: Literal[True]
