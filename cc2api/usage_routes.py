"""``GET /usage``: tokens, cost, runs and wall time, by day, key or model, from the store.

Who asks decides what is counted: a key gets its own usage only (``key`` may name
itself; naming another key is 404, as a key that does not exist), the admin gets
everyone's, or one key's with ``key=NAME`` (``admin`` names the admin's own runs; an
unknown name gives no groups). The store is flushed first, so a run that has ended
is in the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quart import Blueprint, Response, request

from . import query
from .errors import NotFound, ValidationFailed
from .gateway import current_gateway
from .hooks import json_response
from .principal import ADMIN_NAME, current_principal
from .store import Store
from .usage import ADMIN_KEY, DEFAULT_DAYS, GROUP_BYS, GroupBy, UsageQuery
from .usage_wire import Usage, UsageGroup
from .wire import ErrorCode

__all__ = ["PARAMETERS", "usage_query", "usage_routes"]

PARAMETERS = ("since", "until", "group_by", "key")

usage_routes = Blueprint("usage", __name__)


@usage_routes.get("/usage")
async def usage() -> Response:
    """Return the usage of the runs that ended in the window, grouped."""
    store = current_gateway().registry.store
    viewer = current_principal()
    wanted, name = usage_query(request.args, datetime.now(UTC))
    if not viewer.is_admin:
        if name is not None and name != viewer.name:
            raise NotFound(f"no key {name!r}", code=ErrorCode.NOT_FOUND)
        key_id: str | None = viewer.key_id
    else:
        key_id = None if name is None else await _key_id_named(store, wanted, name)
    await store.flush()
    groups = [] if key_id == _NOBODY else await store.usage(_with_key(wanted, key_id))
    answer = Usage(
        since=wanted.since,
        until=wanted.until,
        group_by=wanted.group_by,
        groups=[UsageGroup.of(row) for row in groups],
    )
    return json_response(answer.wire())


_NOBODY = "\0"  # a key id no key has: the name named none


def _with_key(wanted: UsageQuery, key_id: str | None) -> UsageQuery:
    return UsageQuery(wanted.since, wanted.until, wanted.group_by, key_id)


async def _key_id_named(store: Store, wanted: UsageQuery, name: str) -> str:
    """Return the id of the key called ``name`` that has usage in the window, else _NOBODY."""
    if name == ADMIN_NAME:
        return ADMIN_KEY
    await store.flush()
    by_key = await store.usage(UsageQuery(wanted.since, wanted.until, "key"))
    return next((row.key_id for row in by_key if row.group == name and row.key_id), _NOBODY)


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
