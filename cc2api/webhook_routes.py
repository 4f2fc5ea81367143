"""The webhook records route: ``GET /runs/{process_id}/webhooks``."""

from __future__ import annotations

from quart import Blueprint, Response, request

from . import query
from .bodies import run_id_of
from .errors import NotFound
from .gateway import current_gateway
from .hooks import json_response
from .principal import current_principal
from .webhook_wire import WebhookAttempts
from .wire import ErrorCode

webhook_routes = Blueprint("webhooks", __name__)


@webhook_routes.get("/runs/<process_id>/webhooks")
async def run_webhooks(process_id: str) -> Response:
    """List every attempt to deliver the run's webhooks, oldest first.

    A key sees its own runs' only: another's answer 404, as ``GET /runs/{id}`` does.
    """
    registry, viewer = current_gateway().registry, current_principal()
    query.only(request.args, ())
    run_id = run_id_of(process_id)
    held = registry.find(run_id)
    record = registry.record(held) if held is not None else await registry.store.get_run(run_id)
    attempts = await registry.store.webhook_attempts(run_id)
    # A record let go (STORE=memory) leaves its attempts, which say whose run it was.
    owner = record.api_key_id if record is not None else None
    known = record is not None or bool(attempts)
    if record is None and attempts:
        owner = attempts[0].api_key_id
    if not known or not viewer.owns(owner):
        raise NotFound(f"no run {run_id}", code=ErrorCode.PROCESS_NOT_FOUND)
    infos = [attempt.info() for attempt in attempts]
    return json_response(
        WebhookAttempts(process_id=run_id, attempts=infos, count=len(infos)).wire()
    )
