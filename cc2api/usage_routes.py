"""``GET /usage``: tokens, cost, runs and wall time, by day, key or model, from the store.

Who asks decides what is counted: a key gets its own usage only (``key`` may name
itself; naming another key is 404 ``key_not_found``, as a key that does not exist), the
admin gets everyone's, or one key's with ``key=NAME`` (``admin`` names the admin's own
runs; an unknown name is 404 ``key_not_found``). The store is flushed first, so a run that has ended
is in the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quart import Blueprint, Response, request

from . import query
from .errors import ValidationFailed
from .gateway import current_gateway
from .hooks import json_response
from .key_filter import key_filter
from .principal import ADMIN_NAME, current_principal
from .usage import ADMIN_KEY, DEFAULT_DAYS, GROUP_BYS, GroupBy, UsageQuery
from .usage_wire import Usage, UsageGroup

__all__ = ["PARAMETERS", "usage_query", "usage_routes"]

PARAMETERS = ("since", "until", "group_by", "key")

usage_routes = Blueprint("usage", __name__)


@usage_routes.get("/usage")
async def usage() -> Response:
    """Return the usage of the runs that ended in the window, grouped."""
    gateway = current_gateway()
    store = gateway.registry.store
    viewer = current_principal()
    wanted, name = usage_query(request.args, datetime.now(UTC))
    if viewer.is_admin and name == ADMIN_NAME:
        key_id: str | None = ADMIN_KEY
    else:
        key_id = key_filter(gateway, request.args)  # 404 for a name this caller may not see
    if not viewer.is_admin:
        key_id = viewer.key_id
    await store.flush()
    groups = await store.usage(_with_key(wanted, key_id))
    answer = Usage(
        since=wanted.since,
        until=wanted.until,
        group_by=wanted.group_by,
        groups=[UsageGroup.of(row) for row in groups],
    )
    return json_response(answer.wire())


def _with_key(wanted: UsageQuery, key_id: str | None) -> UsageQuery:
    return UsageQuery(wanted.since, wanted.until, wanted.group_by, key_id)


def usage_query(args: query.Args, now: datetime) -> tuple[UsageQuery, str | None]:
    """Return the GET /usage query the parameters ask for, and the key name it names.

    Raises:
        ValidationFailed: a parameter is unknown, repeated or malformed; the message
            names it.
    """
    query.only(args, PARAMETERS)
    since = query.moment_of(args, "since")
    until = query.moment_of(args, "until") or now
    since = since or until - timedelta(days=DEFAULT_DAYS)
    if until <= since:
        raise ValidationFailed("until: must be later than since")
    group_by = args.get("group_by", "day")
    if group_by not in GROUP_BYS:
        raise ValidationFailed(f"group_by: must be one of {', '.join(GROUP_BYS)}, got {group_by!r}")
    key = args.get("key")
    if key is not None and not key:
        raise ValidationFailed("key: must name a key")
    grouped: GroupBy = group_by
    return UsageQuery(since=since, until=until, group_by=grouped), key
