"""The OpenAPI paths of the admin API (``/admin/keys``)."""

from __future__ import annotations

from typing import Any

from .key_wire import (
    KEY_NAME_PATTERN,
    KeyCreated,
    KeyInfo,
    KeyRevoked,
    Keys,
    KeyUpdate,
    KeyUpdated,
    NewKey,
)
from .openapi_components import json_answer, json_body
from .wire import Error


def key_paths(
    auth: list[dict[str, list[str]]], unauthorized: dict[str, Any], locked_out: dict[str, Any]
) -> dict[str, Any]:
    """Return the paths of the admin API."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": KEY_NAME_PATTERN},
    }
    common = {
        "401": unauthorized,
        "403": json_answer("An API key sent it: keys are the admin's (`admin_only`).", Error),
        "429": locked_out,
    }
    missing = json_answer("No key has this name (`key_not_found`).", Error)
    invalid = json_answer("A field is missing, unknown or invalid (`validation_error`).", Error)
    return {
        "/admin/keys": {
            "get": {
                "operationId": "keys",
                "summary": "Every API key, revoked ones included (never a token)",
                "security": auth,
                "responses": {"200": json_answer("The keys", Keys), "422": invalid, **common},
            },
            "post": {
                "operationId": "create_key",
                "summary": "Make an API key; its token is in this answer only",
                "security": auth,
                "requestBody": json_body(NewKey),
                "responses": {
                    "201": json_answer("The key, its token and its webhook secret", KeyCreated),
                    "400": json_answer("The body is not JSON (`invalid_json`).", Error),
                    "409": json_answer("A key has this name already (`key_exists`).", Error),
                    "422": invalid,
                    **common,
                },
            },
        },
        "/admin/keys/{name}": {
            "get": {
                "operationId": "key",
                "summary": "One API key",
                "security": auth,
                "parameters": [name],
                "responses": {"200": json_answer("The key", KeyInfo), "404": missing, **common},
            },
            "patch": {
                "operationId": "update_key",
                "summary": "Change some of a key's policy; it applies to the next request",
                "security": auth,
                "parameters": [name],
                "requestBody": json_body(KeyUpdate),
                "responses": {
                    "200": json_answer(
                        "The key as it is now (and its new webhook secret, if rotated)",
                        KeyUpdated,
                    ),
                    "400": json_answer("The body is not JSON (`invalid_json`).", Error),
                    "404": missing,
                    "422": invalid,
                    **common,
                },
            },
            "delete": {
                "operationId": "revoke_key",
                "summary": "Revoke a key: refused from the next request on",
                "security": auth,
                "parameters": [
                    name,
                    {
                        "name": "cancel_runs",
                        "in": "query",
                        "required": False,
                        "description": "true: cancel the key's runs too; answered once "
                        "their processes are gone.",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": {
                    "200": json_answer("The key, revoked, and the runs cancelled", KeyRevoked),
                    "404": missing,
                    "422": invalid,
                    **common,
                },
            },
        },
    }
