"""The history API: ``GET /runs`` and ``GET /runs/{process_id}``, from the store."""

from __future__ import annotations

from dataclasses import replace

from quart import Blueprint, Response, request

from . import query
from .bodies import run_id_of
from .errors import NotFound, ValidationFailed
from .gateway import current_gateway
from .hooks import json_response
from .key_filter import key_filter
from .principal import current_principal
from .store import RunQuery, RunRecord, decode_cursor
from .wire import ErrorCode, RunInfo, Runs, Status

PARAMETERS = ("status", "session_id", "cwd", "since", "until", "cursor", "limit", "key")

history = Blueprint("history", __name__)


@history.get("/runs")
async def runs() -> Response:
    """List runs newest first, filtered, a page at a time."""
    gateway = current_gateway()
    registry, viewer = gateway.registry, current_principal()
    wanted = run_query(request.args)
    # A key sees its own runs only (naming another is 404); the admin all, or one key's.
    key_id = key_filter(gateway, request.args)
    wanted = replace(wanted, api_key_id=key_id if viewer.is_admin else viewer.key_id)
    page = await registry.store.list_runs(wanted)
    fresh = [registry.fresh(record) for record in page.records]
    # A live run may have moved on since it was stored (running, now cancelling).
    found = [
        run_info(record)
        for record in fresh
        if not wanted.statuses or record.status in wanted.statuses
    ]
    return json_response(Runs(runs=found, count=len(found), next_cursor=page.next_cursor).wire())


@history.get("/runs/<process_id>")
async def run(process_id: str) -> Response:
    """Return one run's record: as it stands if it is live, else as stored."""
    registry, viewer = current_gateway().registry, current_principal()
    run_id = run_id_of(process_id)
    held = registry.find(run_id)
    record = registry.record(held) if held is not None else await registry.store.get_run(run_id)
    if record is None or not viewer.owns(record.api_key_id):
        raise NotFound(f"no run {run_id}", code=ErrorCode.PROCESS_NOT_FOUND)
    return json_response(run_info(record).wire())


def run_info(record: RunRecord) -> RunInfo:
    """Return the wire shape of a stored record."""
    prompt = {} if record.prompt is None else {"prompt": record.prompt}
    return RunInfo(
        process_id=record.run_id,
        status=Status(record.status),
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        exit_code=record.exit_code,
        error_code=record.error_code,
        error_message=record.error_message,
        cwd=record.cwd,
        session_id=record.session_id,
        sessions=list(record.sessions),
        model=record.model,
        permission_mode=record.permission_mode,
        options=dict(record.options),
        detached=record.detached,
        total_cost_usd=record.total_cost_usd,
        usage=None if record.usage is None else dict(record.usage),
        num_turns=record.num_turns,
        duration_api_ms=record.duration_api_ms,
        last_event_id=record.last_event_id,
        events_pruned=record.events_pruned,
        **prompt,
    )


def run_query(args: query.Args) -> RunQuery:
    """Return the GET /runs query the parameters ask for.

    Raises:
        ValidationFailed: a parameter is unknown, repeated (but ``status``) or malformed;
            the message names it.
    """
    query.only(args, PARAMETERS, repeatable=("status",))
    since, until = query.moment_of(args, "since"), query.moment_of(args, "until")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until: must be later than since")
    cursor = args.get("cursor")
    query.cursor_of(args, decode_cursor)  # checked here, decoded by the store
    return RunQuery(
        statuses=_statuses(args.getlist("status")),
        session_id=args.get("session_id") or None,
        cwd_prefix=query.folder_of(args, "cwd"),
        since=since,
        until=until,
        cursor=cursor,
        limit=query.limit_of(args),
    )


def _statuses(given: list[str]) -> frozenset[str]:
    found = frozenset(part.strip() for value in given for part in value.split(",") if part.strip())
    for status in sorted(found - {str(status) for status in Status}):
        known = ", ".join(Status)
        raise ValidationFailed(f"status: {status!r} is not a status (one of {known})")
    return found
