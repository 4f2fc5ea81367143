"""The OpenAPI document: every endpoint, request field, response, error and SSE event."""

from __future__ import annotations

from typing import Any

from . import __version__
from .models import ChatRequest

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
    "This address failed to log in too often (`too_many_failed_logins`); "
    "`Retry-After` says when to try again."
)
EVENTS = {
    "process": "ProcessEvent",
    "queued": "QueuedEvent",
    "message": None,
    "error": "ErrorEvent",
    "done": "DoneEvent",
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


STREAM_DESCRIPTION = """\
A Server-Sent Events stream. Every event has an `id:` (its sequence number in the run,
from 1) and an `event:` name:

- `process` (always first): `ProcessEvent`
- `queued` (second, only while the run waits for one of MAX_CONCURRENT_RUNS slots):
  `QueuedEvent`
- `message`: one stdout line of the CLI, passed on byte for byte (JSON from the CLI)
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
        ],
        "properties": {
            "process_id": {"type": "string", "format": "uuid"},
            "pid": {"type": ["integer", "null"]},
            "cwd": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "session_id": {"type": ["string", "null"]},
            "started_at": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["queued", "running", "cancelling"]},
            "queue_position": {
                "type": "integer",
                "minimum": 0,
                "description": "Place in the queue from 1 while queued, else 0.",
            },
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
            "status": {
                "type": "string",
                "enum": ["cancelled", "completed", "failed", "timeout"],
            },
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
                "enum": ["completed", "failed", "cancelled", "timeout"],
            },
            "exit_code": {"type": ["integer", "null"]},
            "session_id": {"type": ["string", "null"]},
            "duration_ms": {"type": "integer", "minimum": 0},
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
        "required": ["id", "event", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": "The event's sequence number in the run, from 1.",
            },
            "event": {"type": "string", "enum": list(EVENTS)},
            "data": {"type": "string"},
        },
        "oneOf": kinds,
    }


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the gateway."""
    request_schema = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = {
        **SCHEMAS,
        "StreamEvent": _stream_event(),
        **request_schema.pop("$defs", {}),
        "ChatRequest": request_schema,
    }
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
                                }
                            },
                        },
                        "400": _error("Body not JSON (`invalid_json`) or bad cwd (`invalid_cwd`)."),
                        "401": unauthorized,
                        "403": _error(
                            "Refused by the operator's settings (`cwd_forbidden`, "
                            "`permission_mode_forbidden`, `full_access_forbidden`, "
                            "`root_full_access`, `caller_config_forbidden`)."
                        ),
                        "409": _error("The session is in use by a live run (`session_busy`)."),
                        "413": _error(
                            "Body over MAX_BODY_BYTES, 10 MiB by default "
                            "(`request_entity_too_large`)."
                        ),
                        "422": _error(
                            "A field is missing, unknown or invalid (`validation_error`)."
                        ),
                        "429": _error(
                            "MAX_CONCURRENT_RUNS runs are running and MAX_QUEUED_RUNS wait "
                            "already (`queue_full`), or this address failed to log in too "
                            "often (`too_many_failed_logins`); `Retry-After` says when to "
                            "try again.",
                            RETRY_AFTER,
                        ),
                        "503": _error(
                            "No usable CLI or shutting down (`cli_unavailable`, `shutting_down`)."
                        ),
                    },
                }
            },
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
