"""The OpenAPI document: every endpoint, request field, response, error and SSE event."""

from __future__ import annotations

from typing import Any

from . import __version__
from .models import ApprovalAnswer, ChatRequest, FollowUp

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR}},
    }
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before asking again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
CHALLENGE = {
    "WWW-Authenticate": {
        "description": 'The Basic challenge: `Basic realm="cc2api"`.',
        "required": True,
        "schema": {"type": "string"},
    }
}
LOCKED_OUT = (
    "This address, or all addresses together, failed to log in too often "
    "(`too_many_failed_logins`); `Retry-After` says when to try again."
)
EVENTS = {
    "process": "ProcessEvent",
    "queued": "QueuedEvent",
    "message": None,
    "approval": "Approval",
    "approval_answered": "ApprovalAnswered",
    "dropped": "DroppedEvent",
    "error": "ErrorEvent",
    "done": "DoneEvent",
}
FINAL_STATUSES = ["completed", "failed", "cancelled", "timeout", "interrupted"]


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


STREAM_DESCRIPTION = """\
A Server-Sent Events stream. Every event has an `id:` (its sequence number in the run,
from 1) and an `event:` name:

- `process` (always first): `ProcessEvent`
- `queued` (second, only while the run waits for one of MAX_CONCURRENT_RUNS slots):
  `QueuedEvent`
- `message`: one stdout line of the CLI, passed on byte for byte (JSON from the CLI)
- `approval` (with `approval: "http"`): a tool call waits for an answer: `Approval`
- `approval_answered`: it was answered (`allow`, `deny`) or timed out: `ApprovalAnswered`
- `dropped` (first in a replay, without an id, when older events were dropped): `DroppedEvent`
- `error` (only when the run failed or timed out, just before `done`): `ErrorEvent`
- `done` (always last): `DoneEvent`

While the run is quiet a comment `: ping` comes every HEARTBEAT_SECONDS.
"""

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["detail", "code"],
        "properties": {
            "detail": {"type": "string", "description": "What is wrong, in words."},
            "code": {"type": "string", "description": "Stable code for programs."},
        },
    },
    "Health": {
        "type": "object",
        "required": [
            "status",
            "claude_version",
            "active_processes",
            "running",
            "queued",
            "version",
        ],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "claude_version": {"type": ["string", "null"]},
            "active_processes": {
                "type": "integer",
                "minimum": 0,
                "description": "Live runs, queued ones included.",
            },
            "running": {
                "type": "integer",
                "minimum": 0,
                "description": "Runs holding one of the MAX_CONCURRENT_RUNS slots.",
            },
            "queued": {"type": "integer", "minimum": 0, "description": "Runs waiting for a slot."},
            "version": {"type": "string"},
            "reason": {"type": "string", "description": "Why degraded."},
        },
    },
    "Process": {
        "type": "object",
        "required": [
            "process_id",
            "pid",
            "cwd",
            "model",
            "session_id",
            "started_at",
            "status",
            "queue_position",
            "detached",
            "finished_at",
            "last_event_id",
            "pending_approvals",
        ],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "pid": {"type": ["integer", "null"]},
            "cwd": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "session_id": {"type": ["string", "null"]},
            "started_at": {"type": "string", "format": "date-time"},
            "status": {
                "type": "string",
                "enum": ["queued", "running", "cancelling", *FINAL_STATUSES],
                "description": "A final status only for a finished detached run, still kept.",
            },
            "queue_position": {
                "type": "integer",
                "minimum": 0,
                "description": "Place in the queue from 1 while queued, else 0.",
            },
            "detached": {"type": "boolean"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "last_event_id": {"type": "integer", "minimum": 0},
            "pending_approvals": {"type": "integer", "minimum": 0},
        },
    },
    "Processes": {
        "type": "object",
        "required": ["processes", "count"],
        "properties": {
            "processes": {"type": "array", "items": {"$ref": "#/components/schemas/Process"}},
            "count": {"type": "integer", "minimum": 0},
        },
    },
    "Cancelled": {
        "type": "object",
        "required": ["process_id", "status"],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": FINAL_STATUSES},
        },
    },
    "ProcessEvent": {
        "type": "object",
        "description": "Data of the `process` event.",
        "required": ["process_id"],
        "properties": {"process_id": {"type": "string", "format": "uuid"}},
    },
    "QueuedEvent": {
        "type": "object",
        "description": "Data of the `queued` event: the run waits for a slot.",
        "required": ["position", "running", "max_concurrent_runs"],
        "properties": {
            "position": {
                "type": "integer",
                "minimum": 1,
                "description": "Place in the queue; 1 is next.",
            },
            "running": {"type": "integer", "minimum": 0},
            "max_concurrent_runs": {"type": "integer", "minimum": 1},
        },
    },
    "ErrorEvent": {
        "type": "object",
        "description": "Data of the `error` event.",
        "required": ["code", "message", "exit_code", "stderr_tail"],
        "properties": {
            "code": {
                "type": "string",
                "enum": [
                    "spawn_failed",
                    "cli_failed",
                    "root_full_access",
                    "line_too_long",
                    "cli_did_not_exit",
                    "timeout",
                    "document_too_large",
                    "confinement_failed",
                    "internal_error",
                ],
            },
            "message": {"type": "string"},
            "exit_code": {"type": ["integer", "null"]},
            "stderr_tail": {"type": "string", "description": "The last 8 KiB of stderr."},
        },
    },
    "DoneEvent": {
        "type": "object",
        "description": "Data of the `done` event.",
        "required": ["process_id", "status", "exit_code", "session_id", "duration_ms"],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "status": {
                "type": "string",
                "enum": FINAL_STATUSES,
            },
            "exit_code": {"type": ["integer", "null"]},
            "session_id": {"type": ["string", "null"]},
            "duration_ms": {"type": "integer", "minimum": 0},
        },
    },
    "DroppedEvent": {
        "type": "object",
        "description": "Data of the `dropped` event: the replay starts after a gap.",
        "required": ["dropped", "first_id"],
        "properties": {
            "dropped": {"type": "integer", "minimum": 1, "description": "Events gone."},
            "first_id": {"type": "integer", "minimum": 2, "description": "The first kept."},
        },
    },
    "Approval": {
        "type": "object",
        "description": "A tool call waiting for an answer (the `approval` event's data).",
        "required": ["approval_id", "tool_name", "input", "suggestions", "requested_at"],
        "properties": {
            "approval_id": {"type": "string", "format": "uuid"},
            "tool_name": {"type": "string"},
            "input": {"type": "object", "description": "The tool's input, as the model gave it."},
            "suggestions": {
                "type": "array",
                "description": "The CLI's permission suggestions, as it gave them.",
            },
            "requested_at": {"type": "string", "format": "date-time"},
            **{
                name: {"type": ["string", "null"], "description": description}
                for name, description in (
                    ("display_name", "The CLI's name for the tool."),
                    ("description", "What the call acts on (a path, or Bash's description)."),
                    ("decision_reason", "Why the CLI asks."),
                    ("decision_reason_type", "`safetyCheck`, `workingDir`, `rule`, ..."),
                    ("blocked_path", "For Bash: the path that made the CLI ask."),
                    ("tool_use_id", "The tool_use block this call comes from."),
                )
            },
            "refused": {
                "type": ["string", "null"],
                "description": "Why the gateway refused the call without asking (then "
                "`approval_answered` says `refused` at once); null when it waits for an answer.",
            },
        },
    },
    "ApprovalAnswered": {
        "type": "object",
        "description": "An approval's answer.",
        "required": ["approval_id", "answer"],
        "properties": {
            "approval_id": {"type": "string", "format": "uuid"},
            "answer": {
                "type": "string",
                "enum": ["allow", "deny", "refused", "timeout", "cancelled"],
            },
        },
    },
    "Approvals": {
        "type": "object",
        "required": ["approvals", "count"],
        "properties": {
            "approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}},
            "count": {"type": "integer", "minimum": 0},
        },
    },
    "Interrupted": {
        "type": "object",
        "required": ["process_id", "status", "forced"],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": FINAL_STATUSES},
            "forced": {
                "type": "boolean",
                "description": "The CLI did not acknowledge; the run was torn down.",
            },
        },
    },
    "FollowUpAccepted": {
        "type": "object",
        "required": ["process_id", "ahead"],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "ahead": {
                "type": "integer",
                "minimum": 0,
                "description": "Messages that will be answered first.",
            },
        },
    },
    "Document": {
        "type": "object",
        "description": "The answer with `stream: false`; failures add `detail`, `code`, `error`.",
        "required": ["process_id", "session_id", "status", "exit_code", "result", "messages"],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "session_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": FINAL_STATUSES},
            "exit_code": {"type": ["integer", "null"]},
            "result": {"type": ["object", "null"], "description": "The CLI's last result line."},
            "messages": {"type": "array", "description": "Every line the CLI printed, parsed."},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "error": {"$ref": "#/components/schemas/ErrorEvent"},
        },
    },
}


def _stream_event() -> dict[str, Any]:
    """Return the schema of one SSE event as a client reads it (Open API 3.1: per event)."""
    kinds = []
    for name, data in EVENTS.items():
        content: dict[str, Any] = {"type": "string", "contentMediaType": "application/json"}
        if data is not None:
            content["contentSchema"] = {"$ref": f"#/components/schemas/{data}"}
        kinds.append({"properties": {"event": {"const": name}, "data": content}})
    return {
        "type": "object",
        "description": "One event of the stream; `data` is JSON, its schema named by `event`.",
        "required": ["event", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": "The event's sequence number in the run, from 1 "
                "(every event but `dropped` has one).",
            },
            "event": {"type": "string", "enum": list(EVENTS)},
            "data": {"type": "string"},
        },
        "oneOf": kinds,
    }


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the gateway."""
    schemas: dict[str, Any] = {**SCHEMAS, "StreamEvent": _stream_event()}
    for model in (ChatRequest, FollowUp, ApprovalAnswer):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    auth: list[dict[str, list[str]]] = [{"basic": []}]
    process_id = {
        "name": "process_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    unauthorized = _error("Missing or wrong credentials (`unauthorized`).", CHALLENGE)
    locked_out = _error(LOCKED_OUT, RETRY_AFTER)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cc2api",
            "version": __version__,
            "description": "HTTP gateway for the Claude Code CLI. See API.md.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Health, CLI version and number of active runs (no auth)",
                    "security": [],
                    "responses": {"200": _json("Health", {"$ref": "#/components/schemas/Health"})},
                }
            },
            "/chat": {
                "post": {
                    "operationId": "chat",
                    "summary": "Start a run of the Claude Code CLI and stream it",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": STREAM_DESCRIPTION,
                            "headers": {
                                "X-Process-ID": {
                                    "description": "The run's id, as in the `process` event.",
                                    "required": True,
                                    "schema": {"type": "string", "format": "uuid"},
                                }
                            },
                            "content": {
                                "text/event-stream": {
                                    "schema": {"$ref": "#/components/schemas/StreamEvent"}
                                },
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Document"}
                                },
                            },
                        },
                        "400": _error("Body not JSON (`invalid_json`) or bad cwd (`invalid_cwd`)."),
                        "401": unauthorized,
                        "403": _error(
                            "Refused by the operator's settings (`cwd_forbidden`, also for a "
                            "session recorded outside ALLOWED_CWD_ROOTS; "
                            "`permission_mode_forbidden`, `full_access_forbidden`, "
                            "`root_full_access`, `caller_config_forbidden`)."
                        ),
                        "404": _error(
                            "A bounded or confined run names a session with no transcript in "
                            "its folder's project (`unknown_session`)."
                        ),
                        "409": _error(
                            "The session is in use by a live run (`session_busy`), or a "
                            "bounded or confined run's `new_session_id` names a session that "
                            "exists (`session_exists`); with "
                            "`stream: false`, the run was cancelled (`cancelled`, a Document)."
                        ),
                        "413": _error(
                            "Body over MAX_BODY_BYTES, 10 MiB by default "
                            "(`request_entity_too_large`), or holding more than 20,000 "
                            "strings or values (`body_too_complex`)."
                        ),
                        "422": _error(
                            "A field is missing, unknown or invalid (`validation_error`)."
                        ),
                        "429": _error(
                            "MAX_CONCURRENT_RUNS runs are running and MAX_QUEUED_RUNS wait "
                            "already (`queue_full`), or this address (or all together) "
                            "failed to log in too often (`too_many_failed_logins`); "
                            "`Retry-After` says when to try again.",
                            RETRY_AFTER,
                        ),
                        "502": _json(
                            "With `stream: false`: the run failed (a Document with `code`).",
                            {"$ref": "#/components/schemas/Document"},
                        ),
                        "503": _error(
                            "No usable CLI, runs must be confined and cannot be, or shutting "
                            "down (`cli_unavailable`, `confinement_unavailable`, "
                            "`shutting_down`)."
                        ),
                        "504": _json(
                            "With `stream: false`: the run timed out (a Document, `timeout`).",
                            {"$ref": "#/components/schemas/Document"},
                        ),
                    },
                }
            },
            **_steering_paths(auth, process_id, unauthorized, locked_out),
            "/chat/{process_id}": {
                "delete": {
                    "operationId": "cancel",
                    "summary": "Cancel a run; answers once its processes are gone",
                    "security": auth,
                    "parameters": [process_id],
                    "responses": {
                        "200": _json("Cancelled", {"$ref": "#/components/schemas/Cancelled"}),
                        "401": unauthorized,
                        "404": _error("No such run (`process_not_found`)."),
                        "429": locked_out,
                    },
                }
            },
            "/processes": {
                "get": {
                    "operationId": "processes",
                    "summary": "The live runs",
                    "security": auth,
                    "responses": {
                        "200": _json("Live runs", {"$ref": "#/components/schemas/Processes"}),
                        "401": unauthorized,
                        "429": locked_out,
                    },
                }
            },
        },
    }


def _body(name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _steering_paths(
    auth: list[dict[str, list[str]]],
    process_id: dict[str, Any],
    unauthorized: dict[str, Any],
    locked_out: dict[str, Any],
) -> dict[str, Any]:
    """Return the paths that read and steer a run after it started."""
    common = {
        "401": unauthorized,
        "404": _error("No such run (`process_not_found`)."),
        "429": locked_out,
    }
    invalid = _error("A field is missing, unknown or invalid (`validation_error`).")
    not_json = _error("Body not a JSON object (`invalid_json`).")
    too_large = _error(
        "Body over MAX_BODY_BYTES (`request_entity_too_large`), or holding more than "
        "20,000 strings or values (`body_too_complex`)."
    )
    approval_id = {
        "name": "approval_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    last_event_id = {
        "description": "Resume after this event id.",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
    return {
        "/chat/{process_id}/events": {
            "get": {
                "operationId": "events",
                "summary": "Read a run from its first kept event, or after Last-Event-ID",
                "security": auth,
                "parameters": [
                    process_id,
                    {"name": "Last-Event-ID", "in": "header", **last_event_id},
                    {"name": "last_event_id", "in": "query", **last_event_id},
                ],
                "responses": {
                    "200": {
                        "description": STREAM_DESCRIPTION,
                        "content": {
                            "text/event-stream": {
                                "schema": {"$ref": "#/components/schemas/StreamEvent"}
                            }
                        },
                    },
                    "400": _error("Not an event id of the run (`invalid_last_event_id`)."),
                    **common,
                },
            }
        },
        "/chat/{process_id}/interrupt": {
            "post": {
                "operationId": "interrupt",
                "summary": "Stop the current turn; answers once the run has ended",
                "security": auth,
                "parameters": [process_id],
                "responses": {
                    "200": _json("Interrupted", {"$ref": "#/components/schemas/Interrupted"}),
                    **common,
                },
            }
        },
        "/chat/{process_id}/messages": {
            "post": {
                "operationId": "follow_up",
                "summary": "Send a follow-up message into a live run",
                "security": auth,
                "parameters": [process_id],
                "requestBody": _body("FollowUp"),
                "responses": {
                    **common,
                    "202": _json("Accepted", {"$ref": "#/components/schemas/FollowUpAccepted"}),
                    "400": not_json,
                    "409": _error("The run has ended or is ending (`run_ended`)."),
                    "429": _error(
                        "16 follow-ups, or FOLLOWUP_MAX_BYTES of them, wait already, or all "
                        "runs hold FOLLOWUPS_TOTAL_MAX_BYTES (`too_many_messages`); or this "
                        "address (or all together) failed to log in too often "
                        "(`too_many_failed_logins`).",
                        RETRY_AFTER,
                    ),
                    "413": too_large,
                    "422": invalid,
                },
            }
        },
        "/chat/{process_id}/approvals": {
            "get": {
                "operationId": "approvals",
                "summary": "The run's tool calls waiting for an answer",
                "security": auth,
                "parameters": [process_id],
                "responses": {
                    "200": _json("Pending approvals", {"$ref": "#/components/schemas/Approvals"}),
                    **common,
                },
            }
        },
        "/chat/{process_id}/approvals/{approval_id}": {
            "post": {
                "operationId": "answer_approval",
                "summary": "Allow or deny a tool call",
                "security": auth,
                "parameters": [process_id, approval_id],
                "requestBody": _body("ApprovalAnswer"),
                "responses": {
                    "200": _json("Answered", {"$ref": "#/components/schemas/ApprovalAnswered"}),
                    "400": not_json,
                    "404": _error(
                        "No such run or approval (`process_not_found`, `approval_not_found`)."
                    ),
                    "403": _error(
                        "`updated_input` changes what the call acts on (`updated_input_forbidden`)."
                    ),
                    "409": _error(
                        "Answered already, refused, timed out or expired (`approval_answered`)."
                    ),
                    "413": too_large,
                    "422": invalid,
                    "401": unauthorized,
                    "429": locked_out,
                },
            }
        },
    }
