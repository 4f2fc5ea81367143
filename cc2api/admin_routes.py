"""The admin API: ``/admin/keys``, for the .env credential only."""

from __future__ import annotations

from functools import partial

from quart import Blueprint, Response, request

from . import query
from .bodies import parse_body, raw_body
from .codes import ErrorCode
from .errors import Forbidden, ValidationFailed
from .gateway import Gateway, current_gateway
from .hooks import json_response
from .jsonbody import off_loop
from .key_wire import KeyCreated, KeyRevoked, Keys, KeyUpdate, KeyUpdated, NewKey
from .principal import current_principal

admin_routes = Blueprint("admin", __name__)


def _admin() -> Gateway:
    """Return the gateway, for the admin only.

    Raises:
        Forbidden: ``admin_only``: an API key sent the request.
    """
    if not current_principal().is_admin:
        raise Forbidden(
            "only the admin (AUTH_USER/AUTH_PASSWORD) manages keys", code=ErrorCode.ADMIN_ONLY
        )
    return current_gateway()


@admin_routes.get("/admin/keys")
async def list_keys() -> Response:
    """List every key, revoked ones included, by name."""
    gateway = _admin()
    query.only(request.args, ())
    keys = [key.info() for key in gateway.keys.ring.all()]
    return json_response(Keys(keys=keys).wire())


@admin_routes.post("/admin/keys")
async def create_key() -> Response:
    """Make a key; its token is in this answer and nowhere else."""
    gateway = _admin()
    body = await off_loop(partial(parse_body, model=NewKey), await raw_body(), gateway.parsers)
    key, token = await gateway.keys.create(body.name, body.policy)
    assert key.webhook_secret is not None  # noqa: S101 (every new key has one)
    created = KeyCreated(**key.info().model_dump(), token=token, webhook_secret=key.webhook_secret)
    return json_response(created.wire(), 201)


@admin_routes.get("/admin/keys/<name>")
async def show_key(name: str) -> Response:
    """Show one key."""
    return json_response(_admin().keys.get(name).info().wire())


@admin_routes.patch("/admin/keys/<name>")
async def update_key(name: str) -> Response:
    """Change some of a key's policy, at once: the next request is held to it."""
    gateway = _admin()
    body = await off_loop(partial(parse_body, model=KeyUpdate), await raw_body(), gateway.parsers)
    key = await gateway.keys.update(
        name, body.policy, rotate_webhook_secret=body.rotate_webhook_secret
    )
    # CLIs planned under the old policy go; a key now pooled: false gets none.
    gateway.registry.pool.key_changed(key.key_id, poolable=key.policy.pooled)
    gateway.key_limits.share(key)
    gateway.registry.slots.refill()  # a larger max_runs lets its queued runs go
    secret = key.webhook_secret if body.rotate_webhook_secret else None
    return json_response(KeyUpdated(**key.info().model_dump(), webhook_secret=secret).wire())


@admin_routes.delete("/admin/keys/<name>")
async def revoke_key(name: str) -> Response:
    """Revoke a key: refused from the next request on; ``cancel_runs=true`` ends its runs.

    Answered once the key is revoked and, with ``cancel_runs``, its runs' processes
    are gone. Without it, its runs go on to their end.
    """
    gateway = _admin()
    args = request.args
    query.only(args, ("cancel_runs",))
    cancel_runs = _flag(args.get("cancel_runs", "false"))
    key = await gateway.keys.revoke(name)
    gateway.registry.pool.key_changed(key.key_id, poolable=False)
    cancelled: list[str] = []
    if cancel_runs:
        runs = [run for run in gateway.registry.runs(key_id=key.key_id) if run.live]
        for run in runs:
            run.cancel()
        for run in runs:  # each tears its processes down in its own task; wait for all
            await run.finished.wait()
        cancelled = [run.run_id for run in runs]
    return json_response(KeyRevoked(key=key.info(), cancelled=cancelled).wire())


def _flag(value: str) -> bool:
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValidationFailed(f"cancel_runs: {value!r} is not true or false")
