"""The OpenAPI document: every endpoint, request field, response, error and SSE event."""

from __future__ import annotations

from typing import Any

from . import __version__
from .models import ApprovalAnswer, ChatRequest, FollowUp
from .openapi_components import REF_TEMPLATE, components, json_body, ref
from .openapi_history import history_paths, key_parameter, page_parameters
from .openapi_keys import key_paths
from .openapi_usage import usage_paths
from .openapi_webhooks import webhook_paths, webhooks
from .wire import (
    ApprovalAnswered,
    Approvals,
    Cancelled,
    Document,
    Error,
    FollowUpAccepted,
    Health,
    Interrupted,
    Processes,
    SessionDeleted,
    SessionMessages,
    Sessions,
)

ERROR = ref(Error)
STREAM_EVENT = {"$ref": REF_TEMPLATE.format(model="StreamEvent")}


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
- `dropped` (in a replay, without an id, where events are gone: trimmed from memory and
  not in the store, or pruned by STORE_MAX_BYTES): `DroppedEvent`
- `error` (only when the run failed or timed out, just before `done`): `ErrorEvent`
- `done` (always last): `DoneEvent`

While the run is quiet a comment `: ping` comes every HEARTBEAT_SECONDS.
"""


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the gateway."""
    # The admin's Basic credential, a key's token as Bearer, or a key as Basic (name, token).
    auth: list[dict[str, list[str]]] = [{"basic": []}, {"bearer": []}]
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
            "schemas": components(),
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "METRICS_TOKEN, for GET /metrics only.",
                },
            },
        },
        "webhooks": webhooks(),
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Health, CLI version and number of active runs (no auth)",
                    "security": [],
                    "responses": {"200": _json("Health", ref(Health))},
                }
            },
            "/chat": {
                "post": {
                    "operationId": "chat",
                    "summary": "Start a run of the Claude Code CLI and stream it",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref(ChatRequest)}},
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
                                "text/event-stream": {"schema": STREAM_EVENT},
                                "application/json": {"schema": ref(Document)},
                            },
                        },
                        "400": _error(
                            "Body not JSON (`invalid_json`), bad cwd (`invalid_cwd`), a "
                            "webhook_url the SSRF rules refuse (`webhook_forbidden`) or one "
                            "nothing signs for (`webhook_secret_missing`)."
                        ),
                        "401": unauthorized,
                        "403": _error(
                            "Refused by the operator's settings or the key's policy "
                            "(`cwd_forbidden`, also for a session recorded outside "
                            "ALLOWED_CWD_ROOTS; `permission_mode_forbidden`, "
                            "`full_access_forbidden`, `root_full_access`, "
                            "`caller_config_forbidden`)."
                        ),
                        "404": _error(
                            "`session_id` names no session the CLI keeps (`unknown_session`): "
                            "no transcript of that id, or, for a bounded or confined run, none "
                            "in its folder's project, or, for a key, none its runs used."
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
                            "already, or the key's max_runs and max_queued (`queue_full`); "
                            "the key started runs_per_minute runs in the last minute "
                            "(`rate_limited`); its daily or monthly budget is spent "
                            "(`budget_exhausted`, with `resets_at`); or this address (or all "
                            "together) failed to log in too often (`too_many_failed_logins`); "
                            "`Retry-After` says when to try again.",
                            RETRY_AFTER,
                        ),
                        "502": _json(
                            "With `stream: false`: the run failed (a Document with `code`).",
                            ref(Document),
                        ),
                        "503": _error(
                            "No usable CLI, runs must be confined and cannot be, or shutting "
                            "down (`cli_unavailable`, `confinement_unavailable`, "
                            "`shutting_down`)."
                        ),
                        "504": _json(
                            "With `stream: false`: the run timed out (a Document, `timeout`).",
                            ref(Document),
                        ),
                    },
                }
            },
            **_steering_paths(auth, process_id, unauthorized, locked_out),
            **history_paths(auth, process_id, unauthorized, locked_out),
            **_session_paths(auth, unauthorized, locked_out),
            **key_paths(auth, unauthorized, locked_out),
            **usage_paths(auth, unauthorized, locked_out),
            **webhook_paths(auth, process_id, unauthorized, locked_out),
            "/chat/{process_id}": {
                "delete": {
                    "operationId": "cancel",
                    "summary": "Cancel a run; answers once its processes are gone",
                    "security": auth,
                    "parameters": [process_id],
                    "responses": {
                        "200": _json("Cancelled", ref(Cancelled)),
                        "401": unauthorized,
                        "404": _error("No such run (`process_not_found`)."),
                        "429": locked_out,
                    },
                }
            },
            "/processes": {
                "get": {
                    "operationId": "processes",
                    "summary": "The live runs (a key's own)",
                    "security": auth,
                    "parameters": [key_parameter()],
                    "responses": {
                        "200": _json("Live runs", ref(Processes)),
                        "404": _error("`key` names no key (`key_not_found`)."),
                        "422": _error("A parameter is unknown or repeated (`validation_error`)."),
                        "401": unauthorized,
                        "429": locked_out,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (the admin, or METRICS_TOKEN as a bearer)",
                    "security": [*auth, {"metricsToken": []}],
                    "responses": {
                        "200": {
                            "description": "The Prometheus text format; see API.md, Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": unauthorized,
                        "403": _error("An API key, not the admin (`forbidden`)."),
                        "429": locked_out,
                    },
                }
            },
        },
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
                "summary": (
                    "Replay a run (live, or stored within retention, also after a restart) "
                    "from its first event or after Last-Event-ID, then follow it"
                ),
                "security": auth,
                "parameters": [
                    process_id,
                    {"name": "Last-Event-ID", "in": "header", **last_event_id},
                    {"name": "last_event_id", "in": "query", **last_event_id},
                ],
                "responses": {
                    "200": {
                        "description": STREAM_DESCRIPTION,
                        "content": {"text/event-stream": {"schema": STREAM_EVENT}},
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
                    "200": _json("Interrupted", ref(Interrupted)),
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
                "requestBody": json_body(FollowUp),
                "responses": {
                    **common,
                    "202": _json("Accepted", ref(FollowUpAccepted)),
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
                    "200": _json("Pending approvals", ref(Approvals)),
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
                "requestBody": json_body(ApprovalAnswer),
                "responses": {
                    "200": _json("Answered", ref(ApprovalAnswered)),
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


def _session_paths(
    auth: list[dict[str, list[str]]],
    unauthorized: dict[str, Any],
    locked_out: dict[str, Any],
) -> dict[str, Any]:
    """Return the paths of the CLI's sessions: listed, read and deleted."""
    session_id = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    cursor, limit = page_parameters()
    invalid = _error(
        "A query parameter is unknown, repeated or invalid (`validation_error`), named in `detail`."
    )
    unknown = _error(
        "No such session: no transcript of this id, one recorded outside "
        "ALLOWED_CWD_ROOTS, or not a UUID (`unknown_session`)."
    )
    common = {"401": unauthorized, "429": locked_out}
    return {
        "/sessions": {
            "get": {
                "operationId": "sessions",
                "summary": "The CLI's sessions, newest activity first",
                "security": auth,
                "parameters": [
                    {
                        "name": "cwd",
                        "in": "query",
                        "required": False,
                        "description": "Only sessions recorded in exactly this folder.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Only sessions active at or after this time (ISO 8601).",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    cursor,
                    limit,
                ],
                "responses": {
                    "200": _json("A page of sessions", ref(Sessions)),
                    "422": invalid,
                    **common,
                },
            }
        },
        "/sessions/{session_id}": {
            "get": {
                "operationId": "session",
                "summary": "A session and a page of its transcript",
                "security": auth,
                "parameters": [session_id, cursor, limit],
                "responses": {
                    "200": _json("The session and its lines", ref(SessionMessages)),
                    "404": unknown,
                    "422": invalid,
                    **common,
                },
            },
            "delete": {
                "operationId": "delete_session",
                "summary": "Delete a session: its transcript and its folder",
                "security": auth,
                "parameters": [session_id],
                "responses": {
                    "200": _json("Deleted", ref(SessionDeleted)),
                    "404": unknown,
                    "409": _error("A live run is using the session (`session_busy`)."),
                    **common,
                },
            },
        },
    }
