"""Webhooks on the wire: the envelope every delivery's body is, and the records route's answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .wire import Count, Timestamp, Uuid, Wire

__all__ = [
    "WEBHOOK_OUTCOMES",
    "WebhookAttemptInfo",
    "WebhookAttempts",
    "WebhookEnvelope",
    "WebhookEventType",
    "WebhookOutcome",
]

WebhookEventType = Literal["run.completed", "approval.requested"]
# delivered: a 2xx answer. retrying: this attempt failed, another follows. failed: the
# last attempt failed. refused: the host no longer passes the SSRF rules. dropped: the
# queue (WEBHOOK_MAX_PENDING) was full, so nothing was sent.
WebhookOutcome = Literal["delivered", "retrying", "failed", "refused", "dropped"]
WEBHOOK_OUTCOMES: tuple[WebhookOutcome, ...] = (
    "delivered",
    "retrying",
    "failed",
    "refused",
    "dropped",
)


class WebhookEnvelope(Wire):
    """The JSON body of every webhook POST; ``X-Cc2api-Signature`` signs it as sent."""

    id: Uuid = Field(description="The delivery's id: the same in every attempt of it.")
    type: WebhookEventType = Field(description="What happened.")
    created: int = Field(description="When it happened, in Unix seconds.")
    process_id: Uuid = Field(description="The run it happened in.")
    data: dict[str, Any] = Field(
        description="run.completed: the `done` event's data with total_cost_usd, usage and "
        "num_turns. approval.requested: the pending approval (approval_id, tool_name, "
        "input, ...), as the `approval` event has it."
    )


class WebhookAttemptInfo(Wire):
    """One attempt to deliver one webhook (or a delivery dropped before any attempt)."""

    delivery_id: Uuid
    event_type: WebhookEventType
    attempt: Count = Field(description="1 for the first attempt; 0 for a dropped delivery.")
    at: Timestamp
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(description="Why no answer came (timeout, refused, ...).")
    outcome: WebhookOutcome


class WebhookAttempts(Wire):
    """The answer of `GET /runs/{process_id}/webhooks`: every attempt, oldest first."""

    process_id: Uuid
    attempts: list[WebhookAttemptInfo]
    count: Count
