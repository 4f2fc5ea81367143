"""The OpenAPI paths of the history API (``GET /runs``, ``GET /runs/{process_id}``)."""

from __future__ import annotations

from typing import Any

from .openapi_components import json_answer, query_parameter
from .query import DEFAULT_PAGE
from .store import MAX_PAGE
from .wire import Error, RunInfo, Runs, Status


def page_parameters() -> list[dict[str, Any]]:
    """Return the ``cursor`` and ``limit`` parameters every paged listing takes."""
    return [
        query_parameter(
            "cursor", "The `next_cursor` of the page before, as it came.", {"type": "string"}
        ),
        query_parameter(
            "limit",
            f"The most on one page, 1 to {MAX_PAGE}.",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
        ),
    ]


def key_parameter() -> dict[str, Any]:
    """Return the ``key`` parameter of the listings: the admin's filter by key."""
    return query_parameter(
        "key",
        "Only this key's runs (the admin; a key may name only itself).",
        {"type": "string"},
    )


def history_paths(
    auth: list[dict[str, list[str]]],
    process_id: dict[str, Any],
    unauthorized: dict[str, Any],
    locked_out: dict[str, Any],
) -> dict[str, Any]:
    """Return the paths of the history API."""
    when = {"type": "string", "format": "date-time"}
    statuses = {"type": "array", "items": {"type": "string", "enum": [str(s) for s in Status]}}
    return {
        "/runs": {
            "get": {
                "operationId": "runs",
                "summary": "Runs within retention, newest first, live ones included",
                "security": auth,
                "parameters": [
                    {
                        **query_parameter(
                            "status", "Any of these (repeat it, or separate by commas).", statuses
                        ),
                        "explode": True,
                    },
                    query_parameter(
                        "session_id", "Runs that used this session.", {"type": "string"}
                    ),
                    query_parameter("cwd", "Runs in this folder or below it.", {"type": "string"}),
                    query_parameter(
                        "since", "Accepted at or after (ISO 8601, with a time zone).", when
                    ),
                    query_parameter("until", "Accepted before (ISO 8601, with a time zone).", when),
                    key_parameter(),
                    *page_parameters(),
                ],
                "responses": {
                    "200": json_answer("A page of runs", Runs),
                    "404": json_answer("`key` names no key (`key_not_found`).", Error),
                    "422": json_answer(
                        "A parameter unknown, repeated or malformed (`validation_error`).", Error
                    ),
                    "401": unauthorized,
                    "429": locked_out,
                },
            }
        },
        "/runs/{process_id}": {
            "get": {
                "operationId": "run",
                "summary": "One run's record: live, or stored (within retention)",
                "security": auth,
                "parameters": [process_id],
                "responses": {
                    "200": json_answer("The run", RunInfo),
                    "401": unauthorized,
                    "404": json_answer("No such run (`process_not_found`).", Error),
                    "429": locked_out,
                },
            }
        },
    }
