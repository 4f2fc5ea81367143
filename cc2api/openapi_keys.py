"""The OpenAPI paths of the admin API (``/admin/keys``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .key_wire import KEY_NAME_PATTERN, KeyCreated, KeyInfo, KeyRevoked, Keys, KeyUpdate, NewKey
from .openapi_components import ref
from .wire import Error


def _json(description: str, model: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}


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
        "403": _json("An API key sent it: keys are the admin's (`admin_only`).", Error),
        "429": locked_out,
    }
    missing = _json("No key has this name (`key_not_found`).", Error)
    invalid = _json("A field is missing, unknown or invalid (`validation_error`).", Error)
    return {
        "/admin/keys": {
            "get": {
                "operationId": "keys",
                "summary": "Every API key, revoked ones included (never a token)",
                "security": auth,
                "responses": {"200": _json("The keys", Keys), "422": invalid, **common},
            },
            "post": {
                "operationId": "create_key",
                "summary": "Make an API key; its token is in this answer only",
                "security": auth,
                "requestBody": _body(NewKey),
                "responses": {
                    "201": _json("The key and its token", KeyCreated),
                    "400": _json("The body is not JSON (`invalid_json`).", Error),
                    "409": _json("A key has this name already (`key_exists`).", Error),
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
                "responses": {"200": _json("The key", KeyInfo), "404": missing, **common},
            },
            "patch": {
                "operationId": "update_key",
                "summary": "Change some of a key's policy; it applies to the next request",
                "security": auth,
                "parameters": [name],
                "requestBody": _body(KeyUpdate),
                "responses": {
                    "200": _json("The key as it is now", KeyInfo),
                    "400": _json("The body is not JSON (`invalid_json`).", Error),
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
                    "200": _json("The key, revoked, and the runs cancelled", KeyRevoked),
                    "404": missing,
                    "422": invalid,
                    **common,
                },
            },
        },
    }
