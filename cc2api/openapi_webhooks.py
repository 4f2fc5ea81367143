"""The OpenAPI document's webhooks: the records route and the POSTs a run's webhook_url gets."""

from __future__ import annotations

from typing import Any

from .openapi_components import json_answer, ref
from .webhook_sign import SIGNATURE_HEADER
from .webhook_wire import WebhookAttempts, WebhookEnvelope
from .wire import Error


def webhook_paths(
    auth: list[dict[str, list[str]]],
    process_id: dict[str, Any],
    unauthorized: dict[str, Any],
    locked_out: dict[str, Any],
) -> dict[str, Any]:
    """Return the path of the records route."""
    return {
        "/runs/{process_id}/webhooks": {
            "get": {
                "operationId": "run_webhooks",
                "summary": "Every attempt to deliver a run's webhooks, oldest first",
                "security": auth,
                "parameters": [process_id],
                "responses": {
                    "200": json_answer("The attempts", WebhookAttempts),
                    "401": unauthorized,
                    "404": json_answer(
                        "No such run, or another key's (`process_not_found`).", Error
                    ),
                    "422": json_answer("An unknown parameter (`validation_error`).", Error),
                    "429": locked_out,
                },
            }
        }
    }


def webhooks() -> dict[str, Any]:
    """Return the document's ``webhooks``: what the gateway POSTs to a run's webhook_url."""
    events = {
        "run.completed": "A run ended: the `done` event's data, with its cost and usage.",
        "approval.requested": "A tool call waits for an answer (runs with approval: http).",
    }
    return {
        name: {
            "post": {
                "operationId": f"webhook_{name.replace('.', '_')}",
                "summary": summary,
                "parameters": [
                    {
                        "name": SIGNATURE_HEADER,
                        "in": "header",
                        "required": True,
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 with the "
                        'webhook secret over f"{t}.{body}">.',
                        "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                    },
                    {
                        "name": "X-Cc2api-Event",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "const": name},
                    },
                    {
                        "name": "X-Cc2api-Delivery",
                        "in": "header",
                        "required": True,
                        "description": "The envelope's id: the same in every attempt.",
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(WebhookEnvelope)}},
                },
                "responses": {
                    "2XX": {"description": "Delivered; any other answer is tried again."}
                },
            }
        }
        for name, summary in events.items()
    }
