"""The OpenAPI path of ``GET /usage``."""

from __future__ import annotations

from typing import Any

from .openapi_components import json_answer, query_parameter
from .usage import DEFAULT_DAYS, GROUP_BYS
from .usage_wire import Usage
from .wire import Error


def usage_paths(
    auth: list[dict[str, list[str]]], unauthorized: dict[str, Any], locked_out: dict[str, Any]
) -> dict[str, Any]:
    """Return the path of the usage API."""
    when = {"type": "string", "format": "date-time"}
    return {
        "/usage": {
            "get": {
                "operationId": "usage",
                "summary": "Runs, cost, tokens and wall time by day, key or model",
                "security": auth,
                "parameters": [
                    query_parameter(
                        "since",
                        "Runs that ended in this time's hour (UTC) or later (ISO 8601, with a "
                        f"time zone); default: {DEFAULT_DAYS} days before `until`.",
                        when,
                    ),
                    query_parameter(
                        "until",
                        "Runs that ended in hours starting before this; default: now.",
                        when,
                    ),
                    query_parameter(
                        "group_by",
                        "Sum by day (UTC), key or model.",
                        {"type": "string", "enum": list(GROUP_BYS), "default": "day"},
                    ),
                    query_parameter(
                        "key",
                        "Only this key's runs (`admin`: the admin's own). A key may name only "
                        "itself; an unknown name gives no groups.",
                        {"type": "string"},
                    ),
                ],
                "responses": {
                    "200": json_answer("Usage by group", Usage),
                    "401": unauthorized,
                    "404": json_answer(
                        "`key` names no key this caller may see (`key_not_found`).", Error
                    ),
                    "422": json_answer(
                        "A parameter unknown, repeated or malformed (`validation_error`).", Error
                    ),
                    "429": locked_out,
                },
            }
        }
    }
