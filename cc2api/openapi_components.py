"""The OpenAPI document's ``components``: generated from the request and wire models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from .key_wire import KeyCreated, KeyInfo, KeyRevoked, Keys, KeyUpdate, KeyUpdated, NewKey
from .models import ApprovalAnswer, ChatRequest, FollowUp
from .usage_wire import Usage
from .webhook_wire import WebhookAttempts, WebhookEnvelope
from .wire import (
    EVENTS,
    ApprovalAnswered,
    Approvals,
    Cancelled,
    Document,
    Error,
    FollowUpAccepted,
    Health,
    Interrupted,
    Processes,
    RunInfo,
    Runs,
    SessionDeleted,
    SessionMessages,
    Sessions,
    Wire,
)

REF_TEMPLATE = "#/components/schemas/{model}"
KEY_REQUESTS: tuple[type[BaseModel], ...] = (NewKey, KeyUpdate)
KEY_ANSWERS: tuple[type[Wire], ...] = (Keys, KeyInfo, KeyCreated, KeyUpdated, KeyRevoked)
REQUESTS: tuple[type[BaseModel], ...] = (ChatRequest, FollowUp, ApprovalAnswer, *KEY_REQUESTS)
# The answers the path table names; what they hold (Process, Status, ...) comes with them.
ANSWERS: tuple[type[Wire], ...] = (
    Error,
    Health,
    Processes,
    Runs,
    RunInfo,
    Cancelled,
    Interrupted,
    FollowUpAccepted,
    Approvals,
    ApprovalAnswered,
    Document,
    Sessions,
    SessionMessages,
    SessionDeleted,
    *KEY_ANSWERS,
    Usage,
    WebhookAttempts,
    WebhookEnvelope,
    *(model for model in EVENTS.values() if model is not None),
)


def ref(model: type[BaseModel]) -> dict[str, str]:
    """Return a reference to the schema of ``model``."""
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Return an optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def json_answer(description: str, model: type[BaseModel]) -> dict[str, Any]:
    """Return a response whose JSON body is ``model``."""
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """Return a required JSON request body of ``model``."""
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}


def components() -> dict[str, Any]:
    """Return the schemas of every request and answer, generated from their models."""
    schemas: dict[str, Any] = {}
    # Requests as they are validated, answers as they are sent.
    modes: tuple[tuple[tuple[type[BaseModel], ...], JsonSchemaMode], ...] = (
        (REQUESTS, "validation"),
        (ANSWERS, "serialization"),
    )
    for models, mode in modes:
        for model in models:
            schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
    schemas["StreamEvent"] = _stream_event()
    return schemas


def _stream_event() -> dict[str, Any]:
    """Return the schema of one SSE event as a client reads it (Open API 3.1: per event)."""
    kinds = []
    for name, data in EVENTS.items():
        content: dict[str, Any] = {"type": "string", "contentMediaType": "application/json"}
        if data is not None:
            content["contentSchema"] = ref(data)
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
